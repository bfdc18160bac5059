"""2-D convolution (cross-correlation, as in every deep-learning library) over (N, C, H, W) images."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..backend import resolve_dtype
from ..errors import InputError
from ..init import get_initializer
from ..validation import check_positive_int, check_seed
from .base import Layer

Pair = tuple[int, int]


def _pair(value: object, name: str, minimum: int) -> Pair:
    """``value`` as an (h, w) pair of ints >= ``minimum``: an int means the same for both."""
    items = value if isinstance(value, (tuple, list)) else (value, value)
    ok = len(items) == 2 and all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= minimum for v in items)
    if not ok:
        what = "a positive integer" if minimum == 1 else "a non-negative integer"
        raise ValueError(f"Conv2D {name} must be {what} or a pair of them, got {value!r}")
    return int(items[0]), int(items[1])


def _compact(pair: Pair) -> int | Pair:
    """(3, 3) -> 3, (3, 5) stays: the short form for configs and reprs."""
    return pair[0] if pair[0] == pair[1] else pair


class Conv2D(Layer):
    r"""2-D convolution of (N, C, H, W) images, as PyTorch's ``Conv2d`` (no dilation or groups).

    Shapes: ``X`` (N, C, H, W), ``W`` (O, C, kH, kW), ``b`` (O,), ``Y`` (N, O, Ho, Wo) with
    ``Ho = (H + 2*ph - kH) // sh + 1`` and ``Wo = (W + 2*pw - kW) // sw + 1`` (stride ``sh, sw``,
    zero padding ``ph, pw``). Like every deep-learning library this is a cross-correlation (the
    kernel is not flipped)::

        Y[n, o, i, j] = b[o] + sum over c, u, v of  W[o, c, u, v] * Xpad[n, c, sh*i + u, sw*j + v]

    where ``Xpad`` is ``X`` with ``ph`` rows and ``pw`` columns of zeros on each side.

    Computed as one matrix product: each window of ``Xpad`` becomes one row of ``cols``
    ("im2col"), so that, as in :class:`Dense`, rows are examples (here one per output pixel).
    With ``K = C*kH*kW`` and ``W2 = W.reshape(O, K)``::

        cols[n, i, j, c, u, v] = Xpad[n, c, sh*i + u, sw*j + v]     viewed as (N*Ho*Wo, K)
        Z = cols @ W2.T + b                                         (N*Ho*Wo, O)
        Y = Z.reshape(N, Ho, Wo, O).transpose(0, 3, 1, 2)           (N, O, Ho, Wo)

    Backward, given ``dY = dL/dY`` of shape (N, O, Ho, Wo), as for :class:`Dense`::

        dZ = dY.transpose(0, 2, 3, 1).reshape(N*Ho*Wo, O)
        dW = (dZ.T @ cols).reshape(O, C, kH, kW)
        db = dZ.sum(axis=0)
        dcols = dZ @ W2                                             (N*Ho*Wo, K)
        dXpad[n, c, sh*i + u, sw*j + v] += dcols[n, i, j, c, u, v]  ("col2im": every window's
                                                                     share added back)
        dX = dXpad[:, :, ph:ph + H, pw:pw + W]

    col2im loops over the ``kH*kW`` kernel offsets ``(u, v)``: for one offset, the positions
    ``(sh*i + u, sw*j + v)`` of all windows are one strided slice of ``dXpad``.

    In training with acceleration on, ``nnscratch.accel.kernels.FastConv2D`` replaces it (the
    same products in a batch-last memory layout, with threads), and
    ``nnscratch.accel.convblock`` / ``nnscratch.accel.convact`` fuse it with the layers after it.

    Parameters
    ----------
    in_channels, out_channels : int
        ``C`` and ``O``.
    kernel_size, stride : int or (int, int)
        Window size ``(kH, kW)`` and step ``(sh, sw)``, each >= 1; an int means both.
    padding : int or (int, int)
        Zeros added on each side, ``(ph, pw)`` >= 0.
    init : str
        Weight initialiser, as for :class:`Dense`, with ``fan_in = C*kH*kW`` and
        ``fan_out = O*kH*kW``. Biases start at zero.
    seed : int or None
        Seed for the initial draw when the layer is used on its own.
    dtype : str
        ``"float32"`` (default) or ``"float64"``.
    """

    _positional = ("in_channels", "out_channels", "kernel_size")

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | Pair, stride: int | Pair = 1,
                 padding: int | Pair = 0, *, init: str = "he_normal", seed: int | None = None,
                 dtype: str = "float32") -> None:
        super().__init__()
        self.in_channels = check_positive_int(in_channels, "Conv2D in_channels")
        self.out_channels = check_positive_int(out_channels, "Conv2D out_channels")
        self.kernel_size = _pair(kernel_size, "kernel_size", 1)
        self.stride = _pair(stride, "stride", 1)
        self.padding = _pair(padding, "padding", 0)
        self.init = init
        self._init_fn = get_initializer(init)
        seed = check_seed(seed, "Conv2D seed")
        self.reset_parameters(np.random.default_rng(seed), resolve_dtype(dtype))

    def reset_parameters(self, rng: np.random.Generator, dtype: np.dtype) -> None:
        super().reset_parameters(rng, dtype)
        (kh, kw), c, o = self.kernel_size, self.in_channels, self.out_channels
        self.set_arrays({"W": self._init_fn(rng, (o, c, kh, kw), c * kh * kw, o * kh * kw, dtype),
                         "b": np.zeros(o, dtype=dtype)})

    def get_config(self) -> dict[str, Any]:
        return {"in_channels": self.in_channels, "out_channels": self.out_channels,
                "kernel_size": _compact(self.kernel_size), "stride": _compact(self.stride),
                "padding": _compact(self.padding), "init": self.init}

    # -- shapes ---------------------------------------------------------------------------------
    def output_hw(self, h: int, w: int) -> Pair:
        """(Ho, Wo) for an H x W image; :class:`InputError` (a ``ValueError``) if the kernel
        does not fit."""
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        ho, wo = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
        if ho < 1 or wo < 1:
            raise InputError(f"Conv2D kernel {kh}x{kw} with padding {(ph, pw)} does not fit a "
                             f"{h}x{w} image: the output would be {ho}x{wo}")
        return ho, wo

    def output_shape(self, input_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        """(C, H, W) -> (O, Ho, Wo); ``ValueError`` if the channels differ or the image is too small."""
        c, h, w = input_shape
        if c != self.in_channels:
            raise ValueError(f"Conv2D expects {self.in_channels} input channels, got {c} "
                             f"(input (C, H, W) = {tuple(input_shape)})")
        return (self.out_channels, *self.output_hw(h, w))

    # -- computation ----------------------------------------------------------------------------
    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        xp = self.xp
        X = self._input(x, (4,), f"(N, {self.in_channels}, H, W) images as")
        n, c, h, w = X.shape
        if c != self.in_channels:
            raise InputError(f"Conv2D expects (N, {self.in_channels}, H, W) images, got shape {X.shape}")
        ho, wo = self.output_hw(h, w)
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        o = self.out_channels
        Xpad = xp.pad(X, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
        # windows[n, c, i, j, u, v] = Xpad[n, c, sh*i + u, sw*j + v]  (a view, no copy)
        windows = self.backend.sliding_window_view(Xpad, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw]
        cols = windows.transpose(0, 2, 3, 1, 4, 5).reshape(n * ho * wo, c * kh * kw)   # (a copy)
        W2 = self.params["W"].reshape(o, -1)
        Z = cols @ W2.T + self.params["b"]
        if training:
            self._cache = (X.shape, cols)
        return Z.reshape(n, ho, wo, o).transpose(0, 3, 1, 2)

    def backward(self, grad_y: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        xp = self.xp
        (n, c, h, w), cols = self._cached()
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        o, (ho, wo) = self.out_channels, self.output_hw(h, w)
        dY = self._grad(grad_y, (n, o, ho, wo), cols.dtype)
        dZ = dY.transpose(0, 2, 3, 1).reshape(n * ho * wo, o)
        W2 = self.params["W"].reshape(o, -1)
        self.grads["W"][...] = (dZ.T @ cols).reshape(self.params["W"].shape)
        self.grads["b"][...] = dZ.sum(axis=0)
        if not input_grad:
            return None
        dcols = (dZ @ W2).reshape(n, ho, wo, c, kh, kw)
        dXpad = xp.zeros((n, c, h + 2 * ph, w + 2 * pw), cols.dtype)
        for u in range(kh):            # col2im: one strided slice per kernel offset (u, v)
            for v in range(kw):
                rows, columns = slice(u, u + sh * (ho - 1) + 1, sh), slice(v, v + sw * (wo - 1) + 1, sw)
                dXpad[:, :, rows, columns] += dcols[:, :, :, :, u, v].transpose(0, 3, 1, 2)
        return dXpad[:, :, ph:ph + h, pw:pw + w]
