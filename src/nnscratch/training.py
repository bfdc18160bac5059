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

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

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
    data, ``val_loss``, ``val_accuracy``.
    """

    def __init__(self) -> None:
        self.history: dict[str, list[float]] = {}
        self.epoch: list[int] = []

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


def evaluate_logits(loss: Any, logits: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Mean loss and accuracy (``argmax == label``, as ``predict``) of ``logits`` (n, k)."""
    n = logits.shape[0]
    accuracy = int((logits.argmax(axis=1) == labels).sum()) / n
    return float(loss.per_example(logits, labels).sum()) / n, accuracy


def restore_training_state(model: Any, optimizer: Any, schedule: Any) -> tuple[int, History]:
    """Put a model loaded from a checkpoint written by ``ModelCheckpoint(training_state=True)``
    back where training stopped; returns ``(initial_epoch, history)`` for ``fit``.

    ``optimizer`` and ``schedule`` must be built as in the original run; they get their state
    back, and the model's generator its position (shuffling and dropout continue exactly).
    Raises ``ValueError`` if the checkpoint holds no (or a corrupt) training state.
    """
    info, arrays = getattr(model, "training_state", (None, {}))
    if info is None:
        raise ValueError("not a resumable checkpoint (no training state)")
    try:
        optimizer.bind(model.parameters())
        optimizer.load_state_dict(info["optimizer"], arrays)
        if schedule is not None:
            schedule.load_state_dict(info["schedule"])
        model.rng.bit_generator.state = info["rng"]
        history = History()
        history.history = {k: list(v) for k, v in info["history"].items()}
        history.epoch = list(range(1, int(info["epoch"]) + 1))
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise ValueError(f"corrupt training state ({exc})") from None
    return int(info["epoch"]), history


def fit(model: Trainable, X: np.ndarray, y: np.ndarray, *, n_classes: int, epochs: int,
        batch_size: int, optimizer: Any, loss: Any, rng: np.random.Generator,
        validation_data: tuple[np.ndarray, np.ndarray] | None = None, shuffle: bool = True,
        callbacks: Sequence[Callback] = (), schedule: Any = None, initial_epoch: int = 0,
        history: History | None = None, augment: Any = None) -> History:
    """Train ``model`` in place on checked arrays ``X`` (n, d) and integer labels ``y`` (n,).

    ``X`` must already be in the model's dtype; validation data likewise. ``augment(xb, rng)``,
    if given, transforms each training batch (never the validation data). ``initial_epoch`` and
    ``history`` continue a run restored from a checkpoint (optimizer, schedule and generator
    already restored): epochs ``initial_epoch + 1 .. epochs`` are trained.
    """
    n = X.shape[0]
    xp = getattr(model, "xp", np)  # the model's array module: X and y are already on its device
    optimizer.bind(model.parameters())
    plan = None
    if hasattr(model, "training_plan"):   # acceleration (None when the model says it is off)
        plan = model.training_plan(loss, optimizer, X, y, one_hot(y, n_classes, X.dtype),
                                   batch_size, augment)
    history = History() if history is None else history
    if schedule is not None and initial_epoch == 0:
        optimizer.lr = schedule.start(optimizer.lr)
    run = {"optimizer": optimizer, "schedule": schedule, "rng": rng, "history": history}
    for cb in callbacks:
        cb.set_model(model)
        cb.set_run(run)
        cb.on_train_begin(epochs)
    # a blow-up (overflow, NaN) is reported once, clearly, by the guard on the epoch's loss
    try:
        with np.errstate(over="ignore", invalid="ignore"):
            for epoch in range(initial_epoch, epochs):
                # the order of this epoch's examples, drawn on the host as on every device
                order = xp.asarray(rng.permutation(n)) if shuffle else None
                if plan is not None:
                    epoch_loss, epoch_acc = plan.run_epoch(order, rng)
                else:
                    epoch_loss, epoch_acc = _plain_epoch(model, X, y, order, batch_size,
                                                         optimizer, loss, augment, rng)
                if not np.isfinite(epoch_loss):
                    raise TrainingDiverged(
                        f"training loss became {epoch_loss} at epoch {epoch + 1}; "
                        "lower the learning rate")
                logs = {"loss": epoch_loss, "accuracy": epoch_acc, "lr": float(optimizer.lr)}
                if validation_data is not None:
                    Xv, yv = validation_data
                    logs["val_loss"], logs["val_accuracy"] = evaluate_logits(
                        loss, model.forward(Xv, False), yv)
                history.append(epoch + 1, logs)
                if schedule is not None:  # the learning rate of the next epoch
                    optimizer.lr = schedule.step(epoch + 1, logs)
                if any([cb.on_epoch_end(epoch + 1, logs) for cb in callbacks]):
                    break
    finally:
        for cb in callbacks:
            cb.on_train_end()
    return history


def _plain_epoch(model: Trainable, X: np.ndarray, y: np.ndarray, order: Any, batch_size: int,
                 optimizer: Any, loss: Any, augment: Any,
                 rng: np.random.Generator) -> tuple[float, float]:
    """One epoch of mini-batch steps through the layers; returns the mean loss and accuracy of
    the batches as they were seen (each example scored by the weights of its step)."""
    n = X.shape[0]
    total_loss, hits = 0.0, 0
    for start in range(0, n, batch_size):
        xb, yb = (X[start:start + batch_size], y[start:start + batch_size]) if order is None \
            else (X[order[start:start + batch_size]], y[order[start:start + batch_size]])
        if augment is not None:                # e.g. random shifts, drawn from the run's rng
            xb = augment(xb, rng)
        z = model.forward(xb, training=True)   # logits of the batch
        total_loss += loss.forward(z, yb) * len(yb)
        hits += int((z.argmax(axis=1) == yb).sum())
        model.backward(loss.backward(), input_grad=False)   # no gradient for the data itself
        optimizer.step()
    return total_loss / n, hits / n
