"""Things the fit loop calls at the end of each epoch: progress bar, early stopping,
checkpoints; and :func:`training_state`, what a checkpoint holds to resume exactly."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from .backend import backend_of


class Callback:
    """Hooks called by the fit loop. ``on_epoch_end`` returning True stops training."""

    model: Any = None
    run: dict[str, Any] = {}  # optimizer, schedule, rng and history of the current fit

    def set_model(self, model: Any) -> None:
        self.model = model

    def set_run(self, run: dict[str, Any]) -> None:
        self.run = run

    def on_train_begin(self, epochs: int) -> None: ...

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> bool | None: ...

    def on_train_end(self) -> None: ...

    def on_interrupt(self) -> None:
        """Training stopped on a signal (instead of :meth:`on_train_end`); the run will resume."""

    def state_dict(self) -> tuple[dict[str, Any], dict[str, np.ndarray]] | None:
        """(scalars, arrays) a checkpoint keeps so that a resumed run continues exactly; None
        for callbacks without state."""
        return None

    def load_state_dict(self, scalars: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        """Restore :meth:`state_dict` before ``fit`` resumes (``on_train_begin`` keeps it)."""


def training_state(run: dict[str, Any], epoch: int, extra: dict[str, Any] | None = None
                   ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Everything resuming after ``epoch`` needs, from the fit loop's ``run``: (info, arrays)
    for :meth:`nnscratch.model.Sequential.save`; read back by
    :func:`nnscratch.training.restore_training_state`."""
    scalars, arrays = run["optimizer"].state_dict()
    arrays = dict(arrays)
    states: dict[str, Any] = {}
    for i, cb in enumerate(run.get("callbacks", [])):
        state = cb.state_dict()
        if state is None:
            continue
        key = f"{i}.{type(cb).__name__}"
        states[key] = state[0]
        arrays.update({f"callbacks.{key}.{k}": backend_of(v).to_numpy(v)
                       for k, v in state[1].items()})
    schedule = run["schedule"]
    info = {"epoch": epoch, "optimizer": scalars,
            "schedule": None if schedule is None else schedule.state_dict(),
            "rng": run["rng"].bit_generator.state, "history": run["history"].history,
            "callbacks": states, **(extra or {})}
    return info, arrays


class ProgressBar(Callback):
    """A tqdm bar over epochs showing loss and accuracy; silent when stderr is not a TTY."""

    def __init__(self, force: bool = False) -> None:
        self.force = force
        self._bar: Any = None

    def on_train_begin(self, epochs: int) -> None:
        if not (self.force or sys.stderr.isatty()):
            return
        import shutil

        from tqdm import tqdm

        # some pseudo-terminals report a 0x0 screen, on which tqdm would hide the bar
        size = shutil.get_terminal_size()
        self._bar = tqdm(total=epochs, unit="epoch", file=sys.stderr, mininterval=0.2,
                         ncols=min(size.columns or 100, 120), nrows=size.lines or 24)

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        if self._bar is None:
            return
        self._bar.update(1)
        if self._bar.n == self._bar.total or self._bar.n % 10 == 1:  # formatting costs ~20 us
            self._bar.set_postfix({k: f"{v:.4f}" for k, v in logs.items() if k != "lr"},
                                  refresh=False)

    def on_train_end(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def on_interrupt(self) -> None:
        self.on_train_end()


def _monitored(logs: dict[str, float], monitor: str) -> float:
    if monitor not in logs:
        raise ValueError(f"cannot monitor {monitor!r}: the fit loop records {sorted(logs)} "
                         "(val_* needs validation data)")
    return logs[monitor]


def _snapshot(model: Any) -> list[np.ndarray]:
    """Copies of every parameter and state array (batch norm statistics) of ``model``."""
    arrays = [p for p, _ in model.parameters()]
    arrays += [v for layer in getattr(model, "layers", []) for v in layer.state.values()]
    return [a.copy() for a in arrays]


def _restore(model: Any, snapshot: list[np.ndarray]) -> None:
    arrays = [p for p, _ in model.parameters()]
    arrays += [v for layer in getattr(model, "layers", []) for v in layer.state.values()]
    for a, saved in zip(arrays, snapshot, strict=True):
        backend = backend_of(a)
        backend.xp.copyto(a, backend.asarray(saved))


def _better(value: float, best: float, monitor: str, min_delta: float) -> bool:
    """Lower is better for losses, higher for accuracies."""
    if "acc" in monitor:
        return value > best + min_delta
    return value < best - min_delta


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs.

    With ``restore_best=True`` the model ends with the weights of its best epoch.
    """

    def __init__(self, monitor: str = "val_loss", patience: int = 10, min_delta: float = 0.0,
                 restore_best: bool = True) -> None:
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
            raise ValueError(f"EarlyStopping patience must be a positive integer, got {patience!r}")
        if not isinstance(monitor, str):
            raise ValueError(f"EarlyStopping monitor must be a name such as 'val_loss', "
                             f"got {monitor!r}")
        self.monitor, self.patience, self.min_delta = monitor, patience, float(min_delta)
        self.restore_best = bool(restore_best)

    def on_train_begin(self, epochs: int) -> None:
        if getattr(self, "_restored", False):   # resumed from a checkpoint: keep its state
            self._restored = False
            return
        self.best = -np.inf if "acc" in self.monitor else np.inf
        self.best_epoch, self.wait, self.stopped_epoch, self._best = 0, 0, 0, None

    def state_dict(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        arrays = {str(j): a for j, a in enumerate(self._best or [])}
        return ({"best": float(self.best), "best_epoch": self.best_epoch, "wait": self.wait,
                 "stopped_epoch": self.stopped_epoch, "n_best": len(arrays),
                 "has_best": self._best is not None}, arrays)

    def load_state_dict(self, scalars: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        best = scalars["best"]
        if isinstance(best, bool) or not isinstance(best, (int, float)):
            raise TypeError(f"EarlyStopping best {best!r}")
        ints = [scalars[k] for k in ("best_epoch", "wait", "stopped_epoch", "n_best")]
        if not all(type(v) is int and v >= 0 for v in ints):
            raise ValueError(f"EarlyStopping counters {ints!r}")
        if scalars["has_best"] and sorted(arrays) != sorted(str(j) for j in range(ints[3])):
            raise ValueError("EarlyStopping best weights are incomplete")
        self.best, (self.best_epoch, self.wait, self.stopped_epoch, _) = float(best), ints
        self._best = ([np.array(arrays[str(j)]) for j in range(ints[3])]
                      if scalars["has_best"] else None)
        self._restored = True

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> bool:
        value = _monitored(logs, self.monitor)
        if _better(value, self.best, self.monitor, self.min_delta):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best:
                self._best = _snapshot(self.model)
            return False
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            return True
        return False

    def on_train_end(self) -> None:
        if self.restore_best and self._best is not None:
            _restore(self.model, self._best)


class ModelCheckpoint(Callback):
    """Save the model to ``path`` every ``every`` epochs, or only when ``monitor`` improves.

    ``path`` may contain ``{epoch}`` (e.g. ``"checkpoints/epoch{epoch:04d}.safetensors"``).
    With ``training_state=True`` the file also holds what resuming needs to continue exactly:
    the optimizer's state, the schedule's, the generator's, the epoch and the history so far
    (``nnscratch train --resume``).
    """

    def __init__(self, path: str, every: int | None = None, best_only: bool = False,
                 monitor: str = "val_loss", training_state: bool = False,
                 extra: dict[str, Any] | None = None) -> None:
        if (every is None) == (not best_only):
            raise ValueError("ModelCheckpoint needs either every=N or best_only=True")
        if every is not None and (isinstance(every, bool) or not isinstance(every, int)
                                  or every < 1):
            raise ValueError(f"ModelCheckpoint every must be a positive integer, got {every!r}")
        self.path, self.every, self.best_only, self.monitor = str(path), every, best_only, monitor
        self.training_state, self.extra = training_state, dict(extra or {})
        self.saved: list[str] = []

    def on_train_begin(self, epochs: int) -> None:
        if getattr(self, "_restored", False):
            self._restored = False
            return
        self.best = -np.inf if "acc" in self.monitor else np.inf

    def state_dict(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {"best": float(self.best)}, {}

    def load_state_dict(self, scalars: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        best = scalars["best"]
        if isinstance(best, bool) or not isinstance(best, (int, float)):
            raise TypeError(f"ModelCheckpoint best {best!r}")
        self.best, self._restored = float(best), True

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        if self.best_only:
            value = _monitored(logs, self.monitor)
            if not _better(value, self.best, self.monitor, 0.0):
                return
            self.best = value
        elif epoch % self.every:  # type: ignore[operator]
            return
        path = self.path.format(epoch=epoch)
        if self.training_state:
            self.model.save(path, training_state=self._training_state(epoch))
        else:
            self.model.save(path)
        self.saved.append(path)

    def _training_state(self, epoch: int) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return training_state(self.run, epoch, self.extra)
