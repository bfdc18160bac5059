"""Reshaping layers."""

from __future__ import annotations

import numpy as np

from .base import Layer


class Flatten(Layer):
    r"""(N, d1, d2, ...) -> (N, d1 * d2 * ...), as PyTorch's ``Flatten``; backward reshapes back.

    In accelerated training and prediction :class:`nnscratch.accel.kernels.FastFlatten` replaces
    it: batch-last maps are flattened as a transposed view instead of a copy."""

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        X = self._input(x, (2, 3, 4, 5, 6, 7, 8), "(N, d1, d2, ...)")
        if training:
            self._cache = (X.shape, X.dtype)
        # (row-major rows out, whatever the memory order in: the layers after, Dropout and
        # Dense, are fastest on rows; no copy when X is row-major already)
        return self.xp.ascontiguousarray(X.reshape(X.shape[0], -1))

    def backward(self, grad_y: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        shape, dtype = self._cached()
        dY = self._grad(grad_y, (shape[0], int(np.prod(shape[1:]))), dtype)
        return dY.reshape(shape) if input_grad else None

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int]:
        return (int(np.prod(input_shape)),)
