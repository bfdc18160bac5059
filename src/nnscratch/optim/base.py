"""What every optimizer shares: (param, grad) pairs bound once, updated in place by ``step``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..backend import CPU, backend_of
from ..validation import check_positive_float

Pairs = Sequence[tuple[np.ndarray, np.ndarray]]


class Optimizer:
    """Base class. ``bind(pairs)`` hands over the (param, grad) pairs; ``step()`` updates them.

    State (momentum buffers and the like) lives here, one dict per pair, never in the layers.
    """

    def __init__(self, lr: float, clip_norm: float | None = None) -> None:
        name = type(self).__name__
        self.lr = check_positive_float(lr, f"{name} lr")
        self.clip_norm = None if clip_norm is None else check_positive_float(
            clip_norm, f"{name} clip_norm")
        self.pairs: list[tuple[np.ndarray, np.ndarray]] = []
        self.state: list[dict[str, Any]] = []
        #: per pair, scratch arrays a step writes into (not state: never saved)
        self.scratch: list[dict[str, Any]] = []
        #: the backend and array module of the bound arrays (NumPy, or CuPy on a GPU)
        self.backend = CPU
        self.xp = np

    def bind(self, pairs: Pairs) -> None:
        """Attach the optimizer to ``pairs``; keeps its state if they are the same arrays."""
        pairs = [(p, g) for p, g in pairs]
        same = len(pairs) == len(self.pairs) and all(
            p is q and g is h for (p, g), (q, h) in zip(pairs, self.pairs, strict=True))
        if not same:
            for p, g in pairs:
                if p.shape != g.shape or p.dtype != g.dtype:
                    raise ValueError("each parameter and its gradient must match in shape and dtype")
            self.pairs = pairs
            self.state = [{} for _ in pairs]
            self.scratch = [{} for _ in pairs]
            self.backend = backend_of(pairs[0][0]) if pairs else CPU
            self.xp = self.backend.xp

    def step(self) -> None:
        raise NotImplementedError

    def plain_descent_lr(self) -> float | None:
        """``lr`` when every step is exactly ``p -= lr * g`` for each pair (no state, no decay, no
        clipping), else ``None``. A training loop may then apply the update itself, inside the
        products that compute the gradients (``accel.dense.SoftmaxEpochs``)."""
        return None

    def buffer(self, i: int, name: str) -> Any:
        """A scratch array ``name`` shaped like parameter ``i``, made at the first call."""
        buf = self.scratch[i].get(name)
        if buf is None:
            buf = self.scratch[i][name] = self.xp.empty_like(self.pairs[i][0])
        return buf

    def clip_gradients(self) -> float:
        """Scale every gradient by ``clip_norm / (norm + 1e-6)`` when their global 2-norm exceeds
        ``clip_norm`` (PyTorch's ``clip_grad_norm_``); returns the norm before clipping."""
        xp = self.xp
        norm = float(np.sqrt(sum(float(xp.vdot(g, g)) for _, g in self.pairs)))
        if self.clip_norm is not None:
            coef = self.clip_norm / (norm + 1e-6)
            if coef < 1:
                for _, g in self.pairs:
                    g *= coef
        return norm

    def state_dict(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """(scalars, arrays) that :meth:`load_state_dict` restores exactly (for checkpoints)."""
        scalars = {"lr": self.lr, "t": getattr(self, "t", 0)}
        arrays = {f"{i}.{k}": v for i, st in enumerate(self.state) for k, v in st.items()
                  if hasattr(v, "shape")}   # NumPy or CuPy arrays
        return scalars, arrays

    def load_state_dict(self, scalars: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        """Restore a :meth:`state_dict` after :meth:`bind` to the same model's parameters."""
        lr = check_positive_float(scalars["lr"], f"{type(self).__name__} lr")
        t = scalars.get("t", 0)
        if type(t) is not int or t < 0:
            raise ValueError(f"optimizer step count must be an integer >= 0, got {t!r}")
        state: list[dict[str, Any]] = [{} for _ in self.pairs]   # exactly the saved state
        for name, value in arrays.items():
            i, _, key = name.partition(".")
            if not (i.isdigit() and int(i) < len(self.pairs) and key):
                raise ValueError(f"optimizer state {name!r} names no parameter of this model")
            p = self.pairs[int(i)][0]
            if tuple(value.shape) != tuple(p.shape):
                raise ValueError(f"optimizer state {name!r} has shape {tuple(value.shape)}, its "
                                 f"parameter {tuple(p.shape)}")
            state[int(i)][key] = self.xp.array(value, dtype=p.dtype)
        self.lr, self.state = lr, state
        if hasattr(self, "t"):
            self.t = t

    def get_config(self) -> dict[str, Any]:
        return {"lr": self.lr}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"
