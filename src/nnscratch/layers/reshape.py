"""Reshaping layers."""

from __future__ import annotations

import numpy as np

from .base import Layer


class Flatten(Layer):
    r"""(N, d1, d2, ...) -> (N, d1 * d2 * ...), as PyTorch's ``Flatten``; backward reshapes back."""

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        if training:
            self._shape = x.shape
        # row-major out, whatever the memory order in (a batch-last image would otherwise give a
        # column-major view, and the layers after, Dropout and Dense, are fastest on rows); no
        # copy when x is row-major already
        return self.xp.ascontiguousarray(x.reshape(x.shape[0], -1))

    def backward(self, grad_y: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        return grad_y.reshape(self._shape) if input_grad else None

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int]:
        return (int(np.prod(input_shape)),)
