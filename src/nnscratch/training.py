"""The fit loop: shuffle, mini-batches, forward, loss gradient, backward, step, History.

It works on any model object with ``forward(x, training)``, ``backward(grad_y, input_grad)`` and
``parameters()`` (a list of (param, grad) pairs) and does not import :mod:`nnscratch.model`.

Each epoch::

    order = rng.permutation(n)                     (or 0..n-1 without shuffling)
    for each batch of indices b in order:
        z = model.forward(X[b], training=True)     the logits, layer after layer
        loss += loss.forward(z, y[b])              (the epoch's figures)
        model.backward(loss.backward())            dL/dz, then back through every layer
        optimizer.step()                           parameters -= lr * gradients (or Adam, ...)

That loop is what runs when the model says ``accelerate=False``. With acceleration on (the
default) the model hands over a plan from :mod:`nnscratch.accel` whose ``run_epoch`` trains the
same epoch faster (fused kernels, kept buffers, whole epochs in a few NumPy calls per step); the
plan draws from the same generator in the same order, and the tests check that both give the
same weights.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from . import interrupts
from .callbacks import Callback
from .errors import TrainingDiverged
from .losses import one_hot


class Trainable(Protocol):
    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray: ...

    def backward(self, grad_y: np.ndarray, input_grad: bool = True) -> np.ndarray | None: ...

    def parameters(self) -> list[tuple[np.ndarray, np.ndarray]]: ...

    # optional: ``training_plan(loss, optimizer, X, y, Y, batch_size, augment)`` -> an
    # accelerated plan with ``run_epoch(order, rng)``, or None (see nnscratch.accel)


class History:
    """Per-epoch training record, as Keras' ``History``: ``history["loss"]`` is a list.

    Keys: ``loss``, ``accuracy``, ``lr`` (the learning rate of the epoch) and, with validation
    data, ``val_loss``, ``val_accuracy``. Trained on real-valued targets (regression) there is
    no ``accuracy`` nor ``val_accuracy``.
    """

    def __init__(self) -> None:
        self.history: dict[str, list[float]] = {}
        self.epoch: list[int] = []
        #: True when restored from a checkpoint (the schedule then is not started again)
        self.resumed = False

    def append(self, epoch: int, logs: dict[str, float]) -> None:
        self.epoch.append(epoch)
        for k, v in logs.items():
            self.history.setdefault(k, []).append(v)

    def __getitem__(self, key: str) -> list[float]:
        return self.history[key]

    def __getattr__(self, key: str) -> list[float]:  # history.loss, history.val_accuracy, ...
        try:
            return self.__dict__["history"][key]
        except KeyError:
            raise AttributeError(f"History has no {key!r}; it has {list(self.history)}") from None

    def __contains__(self, key: object) -> bool:
        return key in self.history

    def __len__(self) -> int:
        return len(self.epoch)

    def __repr__(self) -> str:
        last = {k: round(v[-1], 6) for k, v in self.history.items() if v}
        return f"History(epochs={len(self.epoch)}, last={last})"


def evaluate_logits(loss: Any, logits: np.ndarray,
                    labels: np.ndarray) -> tuple[float, float | None]:
    """Mean loss and accuracy (``argmax == label``, as ``predict``) of ``logits`` (n, k);
    for real-valued targets ``labels`` (n, k) the accuracy is None."""
    n = logits.shape[0]
    if labels.ndim == 2:
        return float(loss.per_example(logits, labels).sum()) / n, None
    accuracy = int((logits.argmax(axis=1) == labels).sum()) / n
    return float(loss.per_example(logits, labels).sum()) / n, accuracy


def restore_training_state(model: Any, optimizer: Any, schedule: Any,
                           callbacks: Sequence[Callback] = ()) -> tuple[int, History]:
    """Put a model loaded from a checkpoint written by ``ModelCheckpoint(training_state=True)``
    back where training stopped; returns ``(initial_epoch, history)`` for ``fit``.

    ``optimizer``, ``schedule`` and ``callbacks`` must be built as in the original run (the
    same callbacks in the same order); they get their state back (EarlyStopping's counters and
    best weights, ...), and the model's generator its position (shuffling, dropout and
    augmentation continue exactly).
    Raises ``ValueError`` if the checkpoint holds no (or a corrupt) training state.
    """
    info, arrays = getattr(model, "training_state", (None, {}))
    if info is None:
        raise ValueError("not a resumable checkpoint (no training state)")
    try:
        if not isinstance(info, dict):
            raise TypeError("not a mapping")
        epoch = info["epoch"]
        if type(epoch) is not int or epoch < 0:
            raise ValueError(f"epoch {epoch!r}")
        optimizer.bind(model.parameters())
        optimizer.load_state_dict(info["optimizer"],
                                  {k: v for k, v in arrays.items() if not k.startswith("callbacks.")})
        if schedule is not None:
            schedule.load_state_dict(info["schedule"])
        model.rng.bit_generator.state = info["rng"]
        saved = info.get("callbacks") or {}
        if not isinstance(saved, dict):
            raise TypeError("callbacks is not a mapping")
        for i, cb in enumerate(callbacks):
            key = f"{i}.{type(cb).__name__}"
            if key in saved:
                prefix = f"callbacks.{key}."
                cb.load_state_dict(saved[key], {k[len(prefix):]: v for k, v in arrays.items()
                                                if k.startswith(prefix)})
        history = History()
        history.history = {str(k): [float(x) for x in v] for k, v in info["history"].items()}
        if any(len(v) != epoch for v in history.history.values()):
            raise ValueError("history does not cover the epochs done")
        history.epoch = list(range(1, epoch + 1))
        history.resumed = True
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, OverflowError) as exc:
        raise ValueError(f"corrupt training state ({type(exc).__name__}: {exc})"[:300]) from None
    return epoch, history


def _run_snapshot(model: Any, optimizer: Any, rng: np.random.Generator) -> Any:
    """What an interrupted epoch changes: parameters, layer state, optimizer, generator."""
    arrays = [p for p, _ in model.parameters()]
    arrays += [v for layer in getattr(model, "layers", []) for v in layer.state.values()]
    scalars, opt = optimizer.state_dict()
    return ([(a, a.copy()) for a in arrays], dict(scalars),
            {k: v.copy() for k, v in opt.items()}, rng.bit_generator.state)


def _restore_run(snapshot: Any, optimizer: Any, rng: np.random.Generator) -> None:
    arrays, scalars, opt, state = snapshot
    for a, saved in arrays:
        a[...] = saved
    optimizer.load_state_dict(scalars, opt)
    rng.bit_generator.state = state


def fit(model: Trainable, X: np.ndarray, y: np.ndarray, *, n_classes: int, epochs: int,
        batch_size: int, optimizer: Any, loss: Any, rng: np.random.Generator,
        validation_data: tuple[np.ndarray, np.ndarray] | None = None, shuffle: bool = True,
        callbacks: Sequence[Callback] = (), schedule: Any = None, initial_epoch: int = 0,
        history: History | None = None, augment: Any = None) -> History:
    """Train ``model`` in place on checked arrays ``X`` (n, d) and integer labels ``y`` (n,),
    or real-valued targets ``y`` (n, k) in the model's dtype (regression, e.g. under
    :class:`~nnscratch.losses.MeanSquaredError`: then no accuracy is recorded).

    ``X`` must already be in the model's dtype; validation data likewise. ``augment(xb, rng)``,
    if given, transforms each training batch (never the validation data). ``initial_epoch`` and
    ``history`` continue a run restored from a checkpoint (optimizer, schedule and generator
    already restored): epochs ``initial_epoch + 1 .. epochs`` are trained.
    """
    n = X.shape[0]
    xp = getattr(model, "xp", np)  # the model's array module: X and y are already on its device
    optimizer.bind(model.parameters())
    # the targets as rows: one-hot rows of the labels, or the real-valued targets themselves
    Y = y if y.ndim == 2 else one_hot(y, n_classes, X.dtype)
    plan = None
    if hasattr(model, "training_plan"):   # acceleration (None when the model says it is off)
        plan = model.training_plan(loss, optimizer, X, y, Y, batch_size, augment)
    resumed = history is not None and getattr(history, "resumed", False)
    history = History() if history is None else history
    if schedule is not None and initial_epoch == 0 and not resumed:
        optimizer.lr = schedule.start(optimizer.lr)
    run = {"optimizer": optimizer, "schedule": schedule, "rng": rng, "history": history,
           "callbacks": list(callbacks)}
    stop, armed = interrupts.STOP, interrupts.ARMED[0]
    interrupted = False
    for cb in callbacks:
        cb.set_model(model)
        cb.set_run(run)
        cb.on_train_begin(epochs)
    # a blow-up (overflow, NaN) is reported once, clearly, by the guard on the epoch's loss
    try:
        with np.errstate(over="ignore", invalid="ignore"):
            for epoch in range(initial_epoch, epochs):
                # (with signal handlers on, the start of each epoch is kept: an interrupted
                # epoch is undone, so that the checkpoint resumes exactly)
                snapshot = _run_snapshot(model, optimizer, rng) if armed else None
                # the order of this epoch's examples, drawn on the host as on every device
                order = xp.asarray(rng.permutation(n)) if shuffle else None
                if plan is not None:
                    epoch_loss, epoch_acc = plan.run_epoch(order, rng)
                else:
                    epoch_loss, epoch_acc = _plain_epoch(model, X, y, order, batch_size,
                                                         optimizer, loss, augment, rng)
                if stop[0] and snapshot is not None:   # a signal: stopped after a batch
                    _restore_run(snapshot, optimizer, rng)
                    interrupted = True
                    raise interrupts.TrainingInterrupted(epoch + 1, stop[0], run)
                if not math.isfinite(epoch_loss):
                    raise TrainingDiverged(
                        f"training loss became {epoch_loss} at epoch {epoch + 1}; "
                        "lower the learning rate")
                logs = {"loss": epoch_loss}
                if epoch_acc is not None:          # (None for real-valued targets)
                    logs["accuracy"] = epoch_acc
                logs["lr"] = float(optimizer.lr)
                if validation_data is not None:
                    Xv, yv = validation_data
                    val_loss, val_acc = evaluate_logits(loss, model.forward(Xv, False), yv)
                    logs["val_loss"] = val_loss
                    if val_acc is not None:
                        logs["val_accuracy"] = val_acc
                history.append(epoch + 1, logs)
                if schedule is not None:  # the learning rate of the next epoch
                    optimizer.lr = schedule.step(epoch + 1, logs)
                if any([cb.on_epoch_end(epoch + 1, logs) for cb in callbacks]):
                    break
    finally:
        for cb in callbacks:
            if interrupted:   # (no end-of-training actions, e.g. restoring the best weights)
                cb.on_interrupt()
            else:
                cb.on_train_end()
    return history


def _plain_epoch(model: Trainable, X: np.ndarray, y: np.ndarray, order: Any, batch_size: int,
                 optimizer: Any, loss: Any, augment: Any,
                 rng: np.random.Generator) -> tuple[float, float | None]:
    """One epoch of mini-batch steps through the layers; returns the mean loss and accuracy of
    the batches as they were seen (each example scored by the weights of its step); the
    accuracy is None for real-valued targets ``y`` (n, k)."""
    n = X.shape[0]
    labels = y.ndim == 1
    total_loss, hits = 0.0, 0
    for start in range(0, n, batch_size):
        xb, yb = (X[start:start + batch_size], y[start:start + batch_size]) if order is None \
            else (X[order[start:start + batch_size]], y[order[start:start + batch_size]])
        if augment is not None:                # e.g. random shifts, drawn from the run's rng
            xb = augment(xb, rng)
        z = model.forward(xb, training=True)   # logits of the batch
        total_loss += loss.forward(z, yb) * len(yb)
        if labels:
            hits += int((z.argmax(axis=1) == yb).sum())
        model.backward(loss.backward(), input_grad=False)   # no gradient for the data itself
        optimizer.step()
        if interrupts.STOP[0]:                 # Ctrl-C / SIGTERM: stop after this batch
            break
    return total_loss / n, (hits / n if labels else None)
