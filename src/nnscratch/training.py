"""The fit loop: shuffle, mini-batches, gradient steps, History.

It works on any model object with ``forward(x, training)``, ``backward(grad_y, input_grad)`` and
``parameters()`` (a list of (param, grad) pairs) and does not import :mod:`nnscratch.model`.

Where the time goes, and what the loop does about it (a batch-32 step of the 64-32-10 net costs
tens of microseconds, so every NumPy call counts):

- once per epoch the training set (inputs and one-hot labels side by side) is shuffled into a
  copy (``xp.take(..., out=)``); the batches are views into that copy, made once before the
  first epoch: no per-batch indexing;
- the layers and the loss write into preallocated buffers (see :mod:`nnscratch.layers.base`);
- the loss value is not computed per step: each batch's logits are copied into an epoch-long
  (column-major) array and the epoch's mean loss and accuracy are computed from it in one
  vectorised pass. They are therefore the running figures Keras and scikit-learn report: each
  example scored by the weights of the moment it was seen;
- the first trainable layer does not compute a gradient for the input data;
- a ``Dense (ReLU Dense)*`` model under softmax cross-entropy without augmentation runs whole
  epochs in :class:`nnscratch.fastpath.SoftmaxEpochs`: the same steps in fewer, contiguous NumPy
  calls, with the softmax's overflow guard checked once per epoch (``_fused_epoch``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from .backend import backend_of
from .callbacks import Callback
from .errors import TrainingDiverged
from .fastpath import argmax_hits
from .losses import SoftmaxCrossEntropy, one_hot


class Trainable(Protocol):
    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray: ...

    def backward(self, grad_y: np.ndarray, input_grad: bool = True) -> np.ndarray | None: ...

    def parameters(self) -> list[tuple[np.ndarray, np.ndarray]]: ...

    # optional: ``training_functions() -> (forward(x), backward(grad))`` for the step fast path


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
    n = logits.shape[0]   # (sums over n: ndarray.mean costs a Python-level wrapper per call)
    xp = backend_of(logits).xp
    row_max = logits.max(axis=1)
    hits = argmax_hits(logits, labels, row_max, logits[xp.arange(n), labels], xp)
    return float(loss.per_example(logits, labels).sum()) / n, hits / n


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


#: use the fused epochs of :class:`nnscratch.fastpath.SoftmaxEpochs` where they apply (the tests
#: switch this off to compare with the step-by-step loop)
FUSED = True


def _fused_epoch(fused: Any, perm: Any, labels: Any, model: Any,
                 optimizer: Any) -> tuple[float, float]:
    """One epoch through ``fused`` (a :class:`~nnscratch.fastpath.SoftmaxEpochs`); returns its
    mean loss and accuracy. Its steps use the softmax without the max shift; if the epoch's
    logits show that was inaccurate somewhere, the parameters and the optimizer are put back as
    they were at the start of the epoch and the epoch runs again with the shift, as every later
    epoch will."""
    def epoch() -> tuple[bool, float, float]:   # (in range, loss, accuracy)
        return fused.figures(fused.run(perm, optimizer), labels)

    if fused.safe:
        return epoch()[1:]
    params = [p.copy() for p, _ in model.parameters()]
    scalars, arrays = optimizer.state_dict()
    arrays = {name: a.copy() for name, a in arrays.items()}
    in_range, loss, accuracy = epoch()
    if in_range:
        return loss, accuracy
    for (p, _), saved in zip(model.parameters(), params, strict=True):
        p[...] = saved
    optimizer.load_state_dict(scalars, arrays)
    fused.safe = True
    return epoch()[1:]


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
    n, d = X.shape
    xp = getattr(model, "xp", np)  # the model's array module: X and y are already on its device
    Y = one_hot(y, n_classes, X.dtype)
    ys = xp.empty_like(y) if shuffle else y     # the labels in the order of the epoch
    take_rows = backend_of(X).take_rows
    optimizer.bind(model.parameters())
    # whole epochs in one fused loop when the model and the loss allow it (see fastpath.py)
    fused = (model.softmax_epochs(X, Y, batch_size)
             if FUSED and augment is None and type(loss) is SoftmaxCrossEntropy
             and hasattr(model, "softmax_epochs") else None)
    if fused is None:
        # X and its one-hot labels side by side, so one take shuffles both
        XY = xp.concatenate([X, Y], axis=1)
        XYs = xp.empty_like(XY) if shuffle else XY
        # the epoch's logits, row i for example ys[i]; column-major because row-wise reductions
        # over 10 columns are 5x faster that way, and copying a batch into it costs the same
        Z = xp.empty((n, n_classes), dtype=X.dtype, order="F")
        batches = [(XYs[i:i + batch_size, :d], XYs[i:i + batch_size, d:], Z[i:i + batch_size])
                   for i in range(0, n, batch_size)]
        fast = model.training_functions() if hasattr(model, "training_functions") else None
        if fast is not None:
            forward, backward = fast
        else:
            forward, backward = ((lambda x: model.forward(x, True)),
                                 (lambda g: model.backward(g, False)))
        step, gradient = optimizer.step, loss.gradient
        copyto = xp.copyto
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
                perm = None
                if shuffle:
                    perm = xp.asarray(rng.permutation(n))  # drawn on the host, as on every device
                    take_rows(y, perm, ys)
                if fused is not None:
                    epoch_loss, epoch_acc = _fused_epoch(fused, perm, ys, model, optimizer)
                else:
                    if perm is not None:
                        take_rows(XY, perm, XYs)
                    for xb, yb, zb in batches:
                        if augment is not None:   # e.g. random shifts, drawn from the run's rng
                            xb = augment(xb, rng)
                        z = forward(xb)           # logits of the batch
                        copyto(zb, z)             # kept for the epoch's loss and accuracy
                        backward(gradient(z, yb))  # dL/dZ, then back through the layers
                        step()                    # parameters -= lr * gradients (or Adam, ...)
                    epoch_loss, epoch_acc = evaluate_logits(loss, Z, ys)
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
