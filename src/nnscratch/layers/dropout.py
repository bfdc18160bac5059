"""Inverted dropout."""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import Layer


class Dropout(Layer):
    r"""Zero each input with probability ``p`` during training, as PyTorch's ``Dropout``.

    Training (``M`` a fresh mask per call, each entry 1 with probability ``1 - p``)::

        Y  = X * M / (1 - p)
        dX = dY * M / (1 - p)

    Inference: ``Y = X`` (the ``1 / (1 - p)`` during training keeps expectations equal, so nothing
    has to be rescaled at inference). The mask is drawn from the model's generator, so a seeded
    model drops the same units on every run.
    """

    _positional = ("p",)

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        ok = isinstance(p, (int, float)) and not isinstance(p, bool) and 0 <= p < 1
        if not ok:
            raise ValueError(f"Dropout p must be a probability in [0, 1), got {p!r}")
        self.p = float(p)
        self._rng = np.random.default_rng(0)

    def reset_parameters(self, rng: np.random.Generator, dtype: np.dtype) -> None:
        super().reset_parameters(rng, dtype)
        self._rng = rng  # the model's generator: one random stream per model

    def get_config(self) -> dict[str, Any]:
        return {"p": self.p}

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        if not training or self.p == 0:
            self._scale = None
            return x
        ws = self._workspace.get(x.shape)   # buffers kept per input shape (see Layer)
        if ws is None:
            xp = self.xp
            ws = self._workspace[x.shape] = {k: xp.empty_like(x) for k in ("y", "dx")}
            # the draws are made on the host by the model's NumPy generator (the same mask on
            # every device), then moved to the device's "scale" buffer (no copy on the CPU)
            ws["draw"] = np.empty(x.shape, x.dtype)
            ws["scale"] = self.backend.asarray(ws["draw"])
        self._rng.random(out=ws["draw"], dtype=x.dtype)     # float32/64 draws in [0, 1)
        scale = self._scale = ws["scale"]
        self.backend.upload(scale, ws["draw"])              # host -> device (nothing on the CPU)
        self.xp.greater_equal(scale, self.p, out=scale)     # M: 1 (kept) or 0
        scale *= x.dtype.type(1 / (1 - self.p))             # M / (1 - p)
        return self.xp.multiply(x, scale, out=ws["y"])

    def backward(self, grad_y: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        if not input_grad:
            return None
        if self._scale is None:
            return grad_y
        return self.xp.multiply(grad_y, self._scale, out=self._workspace[grad_y.shape]["dx"])
