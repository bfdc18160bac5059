"""Pooling over (N, C, H, W) images: max, average, and global average."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InputError
from ..validation import check_positive_int
from .base import Layer, batch_last, empty_images


def _pooled_hw(x: np.ndarray, k: int, s: int) -> tuple[int, int]:
    """(Ho, Wo) of k x k windows at stride s over (N, C, H, W) images; InputError if they don't fit."""
    if x.ndim != 4:
        raise InputError(f"pooling expects (N, C, H, W) images, got shape {x.shape}")
    if x.shape[2] < k or x.shape[3] < k:
        raise InputError(f"a {k}x{k} pooling window does not fit a {x.shape[2]}x{x.shape[3]} image")
    return (x.shape[2] - k) // s + 1, (x.shape[3] - k) // s + 1


def _windows(x: np.ndarray, k: int, s: int, sliding_window_view: Any) -> np.ndarray:
    """(N, C, H, W) -> view (N, C, Ho, Wo, k, k) of every k x k window at stride s (no copy)."""
    _pooled_hw(x, k, s)
    return sliding_window_view(x, (k, k), axis=(2, 3))[:, :, ::s, ::s]


class _Pool2D(Layer):
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
        c, h, w = input_shape
        k, s = self.kernel_size, self.stride
        if h < k or w < k:
            raise ValueError(f"a {k}x{k} pooling window does not fit a {h}x{w} image")
        return c, (h - k) // s + 1, (w - k) // s + 1

    def _offset(self, x: np.ndarray, u: int, v: int, ho: int, wo: int) -> np.ndarray:
        """The strided view ``x[:, :, s*i + u, s*j + v]`` for i < ho, j < wo: element (u, v) of
        every window."""
        s = self.stride
        return x[:, :, u:u + s * (ho - 1) + 1:s, v:v + s * (wo - 1) + 1:s]

    def _scatter(self, dx: np.ndarray, weights_of: Any, g: np.ndarray) -> None:
        """dX[window offset (i, j)] += g * weights_of(i, j), one strided slice per offset."""
        k, (ho, wo) = self.kernel_size, g.shape[2:4]
        for i in range(k):          # a loop over the k*k offsets of a window, not over pixels
            for j in range(k):
                self._offset(dx, i, j, ho, wo)[...] += g * weights_of(i, j)


class MaxPool2D(_Pool2D):
    r"""Largest value of each ``k x k`` window (stride ``s``, default ``k``), PyTorch's
    ``MaxPool2d`` without padding. (N, C, H, W) -> (N, C, (H-k)//s+1, (W-k)//s+1).

    Plain form::

        Y[n, c, i, j] = max over u, v < k of  X[n, c, s*i + u, s*j + v]

    computed as a running maximum over the ``k*k`` window offsets ``(u, v)``: for each offset,
    the strided slice ``X[:, :, u::s, v::s]`` (cut to Ho x Wo) holds that element of every window,
    so one element-wise ``maximum`` per offset does all windows at once. (Taking ``argmax`` over a
    strided window view is 5-10x slower.)

    Backward: each window's gradient goes to the position of its maximum (the first one, in
    row-major order, on ties, as PyTorch); overlapping windows add up. Offsets are visited in
    row-major order, and an offset takes a window's gradient where it equals the maximum and no
    earlier offset took it.
    """

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        k = self.kernel_size
        ho, wo = _pooled_hw(x, k, self.stride)
        if training:  # training writes into buffers kept per input shape and layout (see Layer)
            ws = (self._workspace.get((x.shape, batch_last(x)))
                  or self._make_workspace(x, ho, wo))
            y = ws["y"]
        else:
            y = empty_images(self.xp, (x.shape[0], x.shape[1], ho, wo), x.dtype, batch_last(x))
        offsets = [self._offset(x, u, v, ho, wo) for u in range(k) for v in range(k)]

        def running_max(p: slice) -> None:   # (each part of the channels in its own thread)
            yp = y[:, p]
            self.xp.copyto(yp, offsets[0][:, p])
            for x_uv in offsets[1:]:
                self.xp.maximum(yp, x_uv[:, p], out=yp)
        self.backend.parallel(running_max, x.shape[1], 2 * x.size)
        if training:
            self._x, self._ws = x, ws
        return y

    def _make_workspace(self, x: np.ndarray, ho: int, wo: int) -> dict[str, np.ndarray]:
        # buffers in the memory order of x (batch-last after a batch-last Conv2D: each offset's
        # values are then runs of N contiguous numbers, not every other number of a row)
        n, c = x.shape[:2]
        xp, last = self.xp, batch_last(x)
        ws = self._workspace[x.shape, last] = {
            "y": empty_images(xp, (n, c, ho, wo), x.dtype, last),
            "dx": empty_images(xp, x.shape, x.dtype, last),
            "free": empty_images(xp, (n, c, ho, wo), bool, last),
            "hit": empty_images(xp, (n, c, ho, wo), bool, last)}
        ws["dx"].fill(0)
        return ws

    def backward(self, grad_y: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        if not input_grad:
            return None
        x, ws, k = self._x, self._ws, self.kernel_size
        y, dx, free, hit = ws["y"], ws["dx"], ws["free"], ws["hit"]
        (h, w), (ho, wo) = x.shape[2:4], y.shape[2:4]
        # unless the windows tile the whole image without overlap (then every input pixel is
        # written exactly once below), dx starts from zero
        if not (self.stride == k and h == ho * k and w == wo * k):
            dx.fill(0)
        free.fill(True)                       # windows whose gradient is not placed yet
        overlap = self.stride < k   # else each input pixel is in at most one window
        for u in range(k):
            for v in range(k):
                self.xp.equal(self._offset(x, u, v, ho, wo), y, out=hit)
                hit &= free
                free ^= hit                       # free &= ~hit (hit is inside free)
                dx_uv = self._offset(dx, u, v, ho, wo)
                if overlap:
                    dx_uv += grad_y * hit
                else:
                    self.xp.multiply(grad_y, hit, out=dx_uv)
        return dx


class AvgPool2D(_Pool2D):
    r"""Mean of each ``k x k`` window (stride ``s``, default ``k``), PyTorch's ``AvgPool2d``.

    Backward: each window's gradient is shared equally, ``g / k**2``, by its ``k**2`` inputs.
    """

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        if training:
            self._shape = x.shape
        windows = _windows(x, self.kernel_size, self.stride, self.backend.sliding_window_view)
        return windows.mean(axis=(-2, -1))

    def backward(self, grad_y: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        if not input_grad:
            return None
        dx = self.xp.zeros(self._shape, dtype=grad_y.dtype)
        share = grad_y / self.kernel_size**2
        self._scatter(dx, lambda i, j: 1, share)
        return dx


class GlobalAvgPool2D(Layer):
    r"""Mean over each channel's whole image: (N, C, H, W) -> (N, C).

    Backward: ``dX = dY[:, :, None, None] / (H * W)`` at every pixel.
    """

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        if x.ndim != 4:
            raise InputError(f"GlobalAvgPool2D expects (N, C, H, W) images, got shape {x.shape}")
        if training:
            self._shape = x.shape
        return x.mean(axis=(2, 3))

    def backward(self, grad_y: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        if not input_grad:
            return None
        n, c, h, w = self._shape
        return self.xp.broadcast_to((grad_y / (h * w))[:, :, None, None], self._shape).copy()

    def output_shape(self, input_shape: tuple[int, int, int]) -> tuple[int]:
        return (input_shape[0],)
