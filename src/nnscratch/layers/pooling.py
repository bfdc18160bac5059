"""Pooling over (N, C, H, W) images: max, average, and global average."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InputError
from ..validation import check_positive_int
from .base import Layer


class _Pool2D(Layer):
    """Shared plumbing of ``k x k`` window pooling at stride ``s``: the input check, and the
    strided view of one window offset."""

    _positional = ("kernel_size",)

    def __init__(self, kernel_size: int, stride: int | None = None) -> None:
        super().__init__()
        name = type(self).__name__
        self.kernel_size = check_positive_int(kernel_size, f"{name} kernel_size")
        self.stride = self.kernel_size if stride is None else check_positive_int(
            stride, f"{name} stride")

    def get_config(self) -> dict[str, Any]:
        return {"kernel_size": self.kernel_size, "stride": self.stride}

    def output_shape(self, input_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        """(C, H, W) -> (C, Ho, Wo); :class:`InputError` (a ``ValueError``) if a window does not
        fit."""
        c, h, w = input_shape
        k, s = self.kernel_size, self.stride
        if h < k or w < k:
            raise InputError(f"a {k}x{k} pooling window does not fit a {h}x{w} image")
        return c, (h - k) // s + 1, (w - k) // s + 1

    def _images(self, x: Any) -> tuple[Any, int, int]:
        """The checked (N, C, H, W) input and its (Ho, Wo)."""
        X = self._input(x, (4,), "(N, C, H, W) images as")
        _, ho, wo = self.output_shape(X.shape[1:])
        return X, ho, wo

    def _offset(self, x: np.ndarray, u: int, v: int, ho: int, wo: int) -> np.ndarray:
        """The strided view ``x[:, :, s*i + u, s*j + v]`` for i < ho, j < wo: element (u, v) of
        every window, for all windows at once."""
        s = self.stride
        return x[:, :, u:u + s * (ho - 1) + 1:s, v:v + s * (wo - 1) + 1:s]


class MaxPool2D(_Pool2D):
    r"""Largest value of each ``k x k`` window (stride ``s``, default ``k``), PyTorch's
    ``MaxPool2d`` without padding. (N, C, H, W) -> (N, C, (H-k)//s+1, (W-k)//s+1).

    Forward::

        Y[n, c, i, j] = max over u, v < k of  X[n, c, s*i + u, s*j + v]

    computed as a running maximum over the ``k*k`` window offsets ``(u, v)``: for each offset,
    the strided slice ``X[:, :, u::s, v::s]`` (cut to Ho x Wo) holds that element of every window,
    so one element-wise ``maximum`` per offset does all windows at once.

    Backward: each window's gradient goes to the position of its maximum, the *first* one in
    row-major order on ties (as PyTorch); overlapping windows add up. Offsets are visited in
    row-major order, and an offset takes a window's gradient where it equals the maximum and no
    earlier offset took it::

        free = True for every window
        for each offset (u, v) in row-major order:
            hit = (X[offset (u, v)] == Y) & free      (this offset holds the first maximum)
            free = free & ~hit
            dX[offset (u, v)] += dY * hit

    Input with NaN is refused (a NaN maximum has no position to route the gradient to).

    In training with acceleration on, ``nnscratch.accel.kernels.FastMaxPool2D`` replaces it (the
    same steps into kept buffers, with threads), and ``nnscratch.accel.convblock`` fuses it with
    the convolution and batch norm before it and the ReLU after it.
    """

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        xp, k = self.xp, self.kernel_size
        X, ho, wo = self._images(x)
        if xp.isnan(X).any():
            raise InputError("MaxPool2D input contains NaN")
        first, *others = [self._offset(X, u, v, ho, wo) for u in range(k) for v in range(k)]
        Y = first.copy()
        for X_uv in others:
            Y = xp.maximum(Y, X_uv)
        if training:
            self._cache = (X, Y)
        return Y

    def backward(self, grad_y: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        X, Y = self._cached()
        dY = self._grad(grad_y, Y.shape, X.dtype)
        if not input_grad:
            return None
        xp, k, (ho, wo) = self.xp, self.kernel_size, Y.shape[2:]
        dX = xp.zeros_like(X)
        free = xp.ones(Y.shape, dtype=bool)      # windows whose gradient is not placed yet
        for u in range(k):
            for v in range(k):
                hit = (self._offset(X, u, v, ho, wo) == Y) & free
                free &= ~hit
                self._offset(dX, u, v, ho, wo)[...] += dY * hit
        return dX


class AvgPool2D(_Pool2D):
    r"""Mean of each ``k x k`` window (stride ``s``, default ``k``), PyTorch's ``AvgPool2d``.

    Forward::

        Y[n, c, i, j] = mean over u, v < k of  X[n, c, s*i + u, s*j + v]

    Backward: each window's gradient is shared equally, ``dY / k**2``, by its ``k**2`` inputs;
    overlapping windows add up. Both loop over the ``k*k`` window offsets, as :class:`MaxPool2D`.
    In accelerated training, after a ``Conv2D`` and its activation it is part of
    :class:`nnscratch.accel.convact.ConvActBlock`; elsewhere it runs as it is (no kernel).
    """

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        k = self.kernel_size
        X, ho, wo = self._images(x)
        total = self.xp.zeros((X.shape[0], X.shape[1], ho, wo), X.dtype)
        for u in range(k):
            for v in range(k):
                total += self._offset(X, u, v, ho, wo)
        if training:
            self._cache = (X.shape, X.dtype)
        return total / X.dtype.type(k * k)

    def backward(self, grad_y: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        shape, dtype = self._cached()
        k = self.kernel_size
        ho, wo = self.output_shape(shape[1:])[1:]
        dY = self._grad(grad_y, (shape[0], shape[1], ho, wo), dtype)
        if not input_grad:
            return None
        dX = self.xp.zeros(shape, dtype=dY.dtype)
        share = dY / dY.dtype.type(k * k)
        for u in range(k):
            for v in range(k):
                self._offset(dX, u, v, ho, wo)[...] += share
        return dX


class GlobalAvgPool2D(Layer):
    r"""Mean over each channel's whole image: (N, C, H, W) -> (N, C).

    Forward: ``Y[n, c] = X[n, c].mean()``. Backward: ``dX = dY[:, :, None, None] / (H * W)`` at
    every pixel. In accelerated training and prediction
    :class:`nnscratch.accel.kernels.FastGlobalAvgPool2D` replaces it (the sums of batch-last maps
    as one product, and the gradient as a broadcast view instead of a copy).
    """

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        X = self._input(x, (4,), "(N, C, H, W) images as")
        if training:
            self._cache = (X.shape, X.dtype)
        return X.mean(axis=(2, 3))

    def backward(self, grad_y: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        shape, dtype = self._cached()
        n, c, h, w = shape
        dY = self._grad(grad_y, (n, c), dtype)
        if not input_grad:
            return None
        return self.xp.broadcast_to((dY / (h * w))[:, :, None, None], shape).copy()

    def output_shape(self, input_shape: tuple[int, int, int]) -> tuple[int]:
        return (input_shape[0],)
