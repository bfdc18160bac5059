"""Learning-rate schedules, stepped once per epoch, with PyTorch's ``lr_scheduler`` semantics.

A schedule is told the optimizer's base learning rate once (``start``), and after every epoch
(``step``) returns the learning rate of the next one. ``epoch`` counts finished epochs: the first
epoch runs with ``lr(0)``.

- ``StepLR(step_size, gamma)``:       lr = base * gamma ** (epoch // step_size)
- ``ExponentialLR(gamma)``:           lr = base * gamma ** epoch
- ``CosineAnnealingLR(T_max, eta_min)``:
                                      lr = eta_min + (base - eta_min) * (1 + cos(pi * epoch / T_max)) / 2
- ``LinearWarmup(epochs, start_factor, then)``: lr rises linearly from ``start_factor * base`` to
  the schedule ``then`` (or the constant base) over ``epochs`` epochs, then follows ``then``,
  counted from the end of the warm-up (PyTorch's ``LinearLR`` chained by ``SequentialLR``);
- ``ReduceLROnPlateau(factor, patience, ...)``: multiplies the lr by ``factor`` when the monitored
  value (default ``val_loss``, else ``loss``) has not improved for ``patience`` epochs.
"""

from __future__ import annotations

import math
from typing import Any

from ..validation import check_positive_float, check_positive_int


class Schedule:
    """Base class: a pure function of the epoch; override :meth:`lr`."""

    base_lr: float = 0.0

    def start(self, base_lr: float) -> float:
        self.base_lr = float(base_lr)
        return self.lr(0)

    def lr(self, epoch: int) -> float:
        raise NotImplementedError

    def step(self, epoch: int, logs: dict[str, float]) -> float:
        """Called after ``epoch`` epochs have finished; returns the next epoch's lr."""
        return self.lr(epoch)

    def get_config(self) -> dict[str, Any]:
        return {}

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint needs to continue the schedule exactly."""
        return {"base_lr": self.base_lr}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.base_lr = float(state["base_lr"])

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


def _fraction(value: Any, name: str, allow_one: bool = False) -> float:
    v = check_positive_float(value, name)
    if v > 1 or (v == 1 and not allow_one):
        raise ValueError(f"{name} must be in (0, 1{']' if allow_one else ')'}, got {value!r}")
    return v


class StepLR(Schedule):
    def __init__(self, step_size: int, gamma: float = 0.1) -> None:
        self.step_size = check_positive_int(step_size, "StepLR step_size")
        self.gamma = _fraction(gamma, "StepLR gamma", allow_one=True)

    def lr(self, epoch: int) -> float:
        return self.base_lr * self.gamma ** (epoch // self.step_size)

    def get_config(self) -> dict[str, Any]:
        return {"step_size": self.step_size, "gamma": self.gamma}


class ExponentialLR(Schedule):
    def __init__(self, gamma: float) -> None:
        self.gamma = _fraction(gamma, "ExponentialLR gamma", allow_one=True)

    def lr(self, epoch: int) -> float:
        return self.base_lr * self.gamma**epoch

    def get_config(self) -> dict[str, Any]:
        return {"gamma": self.gamma}


class CosineAnnealingLR(Schedule):
    def __init__(self, T_max: int, eta_min: float = 0.0) -> None:  # noqa: N803 (PyTorch's name)
        self.T_max = check_positive_int(T_max, "CosineAnnealingLR T_max")
        self.eta_min = check_positive_float(eta_min, "CosineAnnealingLR eta_min", allow_zero=True)

    def lr(self, epoch: int) -> float:
        return self.eta_min + (self.base_lr - self.eta_min) * (
            1 + math.cos(math.pi * epoch / self.T_max)) / 2

    def get_config(self) -> dict[str, Any]:
        return {"T_max": self.T_max, "eta_min": self.eta_min}


class LinearWarmup(Schedule):
    def __init__(self, epochs: int, start_factor: float = 0.1,
                 then: Schedule | None = None) -> None:
        self.epochs = check_positive_int(epochs, "LinearWarmup epochs")
        self.start_factor = _fraction(start_factor, "LinearWarmup start_factor", allow_one=True)
        if then is not None and not isinstance(then, Schedule):
            raise ValueError(f"LinearWarmup then must be a Schedule, got {then!r}")
        self.then = then

    def start(self, base_lr: float) -> float:
        if self.then is not None:
            self.then.start(base_lr)
        return super().start(base_lr)

    def lr(self, epoch: int) -> float:
        if epoch < self.epochs:
            f = self.start_factor + (1 - self.start_factor) * epoch / self.epochs
            return self.base_lr * f
        return self.base_lr if self.then is None else self.then.lr(epoch - self.epochs)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(),
                "then": None if self.then is None else self.then.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        if self.then is not None:
            self.then.load_state_dict(state["then"])

    def step(self, epoch: int, logs: dict[str, float]) -> float:
        if epoch < self.epochs or self.then is None:
            return self.lr(epoch)
        return self.then.step(epoch - self.epochs, logs)

    def get_config(self) -> dict[str, Any]:
        return {"epochs": self.epochs, "start_factor": self.start_factor, "then": self.then}


class ReduceLROnPlateau(Schedule):
    """PyTorch's ``ReduceLROnPlateau`` (mode "min", relative threshold)."""

    def __init__(self, factor: float = 0.1, patience: int = 10, threshold: float = 1e-4,
                 cooldown: int = 0, min_lr: float = 0.0, monitor: str | None = None) -> None:
        self.factor = _fraction(factor, "ReduceLROnPlateau factor")
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 0:
            raise ValueError(f"ReduceLROnPlateau patience must be an integer >= 0, got {patience!r}")
        self.patience = patience
        self.threshold = check_positive_float(threshold, "ReduceLROnPlateau threshold",
                                              allow_zero=True)
        if isinstance(cooldown, bool) or not isinstance(cooldown, int) or cooldown < 0:
            raise ValueError(f"ReduceLROnPlateau cooldown must be an integer >= 0, got {cooldown!r}")
        self.cooldown = cooldown
        self.min_lr = check_positive_float(min_lr, "ReduceLROnPlateau min_lr", allow_zero=True)
        self.monitor = monitor

    def start(self, base_lr: float) -> float:
        self.current = float(base_lr)
        self.best, self.bad_epochs, self.cooldown_left = math.inf, 0, 0
        return super().start(base_lr)

    def lr(self, epoch: int) -> float:
        return self.current

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "current": self.current, "best": self.best,
                "bad_epochs": self.bad_epochs, "cooldown_left": self.cooldown_left}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.current, self.best = float(state["current"]), float(state["best"])
        self.bad_epochs, self.cooldown_left = int(state["bad_epochs"]), int(state["cooldown_left"])

    def step(self, epoch: int, logs: dict[str, float]) -> float:
        key = self.monitor or ("val_loss" if "val_loss" in logs else "loss")
        if key not in logs:
            raise ValueError(f"ReduceLROnPlateau monitors {key!r}, which the fit loop does not "
                             f"record (it has {sorted(logs)})")
        value = logs[key]
        if value < self.best * (1 - self.threshold):
            self.best, self.bad_epochs = value, 0
        else:
            self.bad_epochs += 1
        if self.cooldown_left > 0:
            self.cooldown_left -= 1
            self.bad_epochs = 0
        if self.bad_epochs > self.patience:
            self.current = max(self.current * self.factor, self.min_lr)
            self.cooldown_left, self.bad_epochs = self.cooldown, 0
        return self.current

    def get_config(self) -> dict[str, Any]:
        return {"factor": self.factor, "patience": self.patience, "threshold": self.threshold,
                "cooldown": self.cooldown, "min_lr": self.min_lr, "monitor": self.monitor}
