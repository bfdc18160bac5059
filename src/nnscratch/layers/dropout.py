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

    In training with acceleration on, ``nnscratch.accel.kernels.FastDropout`` replaces it (the
    same draws, into kept buffers).
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

    def draw(self, out: np.ndarray) -> np.ndarray:
        """Fill the float32/float64 NumPy array ``out`` with uniform draws in [0, 1) from the
        layer's generator (the model's): where ``out >= p`` a value is kept."""
        return self._rng.random(out=out, dtype=out.dtype)

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        X = self._input(x)
        if not training:
            return X
        if self.p == 0:
            self._cache = (X.shape, X.dtype, None)
            return X
        # M: draws made on the host by the model's NumPy generator (the same mask on every device)
        M = self.backend.asarray(self.draw(np.empty(X.shape, X.dtype))) >= self.p
        scale = M * X.dtype.type(1 / (1 - self.p))           # M / (1 - p)
        self._cache = (X.shape, X.dtype, scale)
        return X * scale

    def backward(self, grad_y: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        shape, dtype, scale = self._cached()
        dY = self._grad(grad_y, shape, dtype)
        if not input_grad:
            return None
        return dY if scale is None else dY * scale
