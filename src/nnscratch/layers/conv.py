"""2-D convolution (cross-correlation, as in every deep-learning library) over (N, C, H, W) images."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..backend import resolve_dtype
from ..errors import InputError
from ..init import get_initializer
from ..validation import check_positive_int, check_seed
from .base import Layer, batch_last

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

    Computed as one matrix product with an im2col matrix. The padded input is held with the batch
    axis *last*, ``xpad[c, h, w, n]`` (C, H + 2*ph, W + 2*pw, N): each window copy (im2col) and each
    col2im add then runs over rows of ``Wo*N`` contiguous numbers instead of ``Wo``, which is
    several times faster on small images. With ``K = C*kH*kW`` and ``L = Ho*Wo*N``::

        xpad[c, ph + h, pw + w, n] = X[n, c, h, w]                 (zero border)
        col[c, u, v, i, j, n] = xpad[c, sh*i + u, sw*j + v, n]     viewed as (K, L)
        W2 = W.reshape(O, K)
        Yt = W2 @ col                                            (O, L)
        Y = Yt.reshape(O, Ho, Wo, N).transpose(3, 0, 1, 2) + b[:, None, None]     (N, O, Ho, Wo)

    In training ``Y`` is returned as exactly that view, batch-last in memory (see
    :mod:`nnscratch.layers.base`), with ``b`` added to ``Yt`` in place; prediction returns a
    row-major copy.

    Backward, given ``dY = dL/dY`` of shape (N, O, Ho, Wo)::

        dYt = dY.transpose(1, 2, 3, 0).reshape(O, L)            (no copy if dY is batch-last)
        dW = (dYt @ col.T).reshape(O, C, kH, kW)
        db = dYt @ ones(L)                                       (= dY.sum(axis=(0, 2, 3)))
        dcol = W2.T @ dYt                                        (K, L), viewed as (C, kH, kW, Ho, Wo, N)
        dxp[c, sh*i + u, sw*j + v, n] += dcol[c, u, v, i, j, n]  (col2im: one strided add per (u, v))
        dX[n, c, h, w] = dxp[c, ph + h, pw + w, n]

    (col2im adds each offset's columns straight into dX, cut to those that land inside the
    image, rather than into a padded ``dxp`` whose border is then cut off: the same sum.)

    Only ``col`` is kept from forward for backward. Inputs are cast to the layer's dtype.

    When ``K = C*kH*kW`` is small (below 32: e.g. a first layer on grey or RGB images) the output
    is much larger than ``col`` and moving it between the batch-last and the (N, C, H, W) layout
    costs more than the product itself. Such layers keep the batch axis first instead
    (``xpad[n, c, h, w]``, ``col[n]`` of shape (K, Ho*Wo)) and do one small product per example,
    all in one ``np.matmul`` call over the stack, with no transposes::

        Y[n] = W2 @ col[n] + b[:, None]                       (O, Ho*Wo), for every n at once
        dW = sum over n of  dY[n] @ col[n].T,   dcol[n] = W2.T @ dY[n]

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
        #: which layout the computation uses (see the class docstring); the result is the same
        self.batch_first = self.in_channels * self.kernel_size[0] * self.kernel_size[1] < 32
        seed = check_seed(seed, "Conv2D seed")
        self.reset_parameters(np.random.default_rng(seed), resolve_dtype(dtype))

    def reset_parameters(self, rng: np.random.Generator, dtype: np.dtype) -> None:
        super().reset_parameters(rng, dtype)
        (kh, kw), c, o = self.kernel_size, self.in_channels, self.out_channels
        self.params = {
            "W": self._init_fn(rng, (o, c, kh, kw), c * kh * kw, o * kh * kw, dtype),
            "b": np.zeros(o, dtype=dtype),
        }
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}

    def get_config(self) -> dict[str, Any]:
        return {"in_channels": self.in_channels, "out_channels": self.out_channels,
                "kernel_size": _compact(self.kernel_size), "stride": _compact(self.stride),
                "padding": _compact(self.padding), "init": self.init}

    # -- shapes ---------------------------------------------------------------------------------
    def _out_hw(self, c: int, h: int, w: int, error: type[ValueError], what: str) -> Pair:
        """(Ho, Wo) for a C x H x W input; ``error`` quoting ``what`` (the input) if it does not fit."""
        if c != self.in_channels:
            raise error(f"Conv2D expects {self.in_channels} input channels, got {c} ({what})")
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        ho, wo = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
        if ho < 1 or wo < 1:
            raise error(f"Conv2D kernel {kh}x{kw} with padding {(ph, pw)} does not fit a {h}x{w} "
                        f"image ({what}): the output would be {ho}x{wo}")
        return ho, wo

    def output_shape(self, input_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        """(C, H, W) -> (O, Ho, Wo); ``ValueError`` if the channels differ or the image is too small."""
        c, h, w = input_shape
        return (self.out_channels, *self._out_hw(c, h, w, ValueError, f"input (C, H, W) = {input_shape}"))

    # -- computation ----------------------------------------------------------------------------
    def _buffers(self, shape: tuple[int, ...], dtype: np.dtype, training: bool) -> dict[str, np.ndarray]:
        """Scratch arrays for one input shape (validated here); ``xpad``'s zero border is kept.

        Training keeps one set per shape (forward, backward and their outputs); prediction keeps
        one set of forward scratch, for the last shape seen, and returns a fresh ``Y`` each call.
        """
        xp = self.xp
        n, c, h, w = shape
        (kh, kw), (ph, pw), o = self.kernel_size, self.padding, self.out_channels
        ho, wo = self._out_hw(c, h, w, InputError, f"input (N, C, H, W) = {shape}")
        K, L = c * kh * kw, ho * wo * n
        bufs = {"xpad": xp.zeros((c, h + 2 * ph, w + 2 * pw, n), dtype),
                "col": xp.empty((c, kh, kw, ho, wo, n), dtype),
                "Yt": xp.empty((o, L), dtype)}
        bufs["win"] = self._windows(bufs["xpad"], lead=1)  # a view of xpad, made once
        if training:
            bufs.update(dYt=xp.empty((o, ho, wo, n), dtype),
                        dWT=xp.empty((K, o), dtype), ones=xp.ones(L, dtype), dcol=xp.empty((K, L), dtype),
                        dXl=xp.empty((c, h, w, n), dtype), dXt=xp.empty((c, n, h, w), dtype),
                        dX=xp.empty(shape, dtype))
            self._workspace[shape] = bufs
        else:
            bufs["YtT"] = xp.empty((o, n, ho * wo), dtype)  # Yt with (Ho*Wo, N) swapped: forward
            for key in [k for k in self._workspace if k[0] == "predict"]:
                del self._workspace[key]
            self._workspace["predict", shape] = bufs
        return bufs

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        xp = self.xp
        x = xp.asarray(x)
        if x.ndim != 4 or x.dtype.kind not in "biuf":
            raise InputError(f"Conv2D expects numeric (N, C, H, W) images, got shape {x.shape} "
                             f"and dtype {x.dtype}")
        if self.batch_first:
            return self._forward_batch_first(x, training)
        W = self.params["W"]
        if training:
            ws = self._workspace.get(x.shape) or self._buffers(x.shape, W.dtype, True)
        else:
            ws = self._workspace.get(("predict", x.shape)) or self._buffers(x.shape, W.dtype, False)
        n, c, h, w = x.shape
        ph, pw = self.padding
        xpad, col, Yt = ws["xpad"], ws["col"], ws["Yt"]
        o, ho, wo = self.out_channels, col.shape[3], col.shape[4]
        # xpad[c, ph + h, pw + w, n] = X[n, c, h, w]  (the zero border stays from _buffers; a
        # contiguous copy when X is itself batch-last), then col (C, kH, kW, Ho, Wo, N); each
        # part of the channels in its own thread (see nnscratch.threads)
        xT, win = x.transpose(1, 2, 3, 0), ws["win"]

        def im2col(p: slice) -> None:
            xp.copyto(xpad[p, ph:ph + h, pw:pw + w], xT[p])
            xp.copyto(col[p], win[p])
        self.backend.parallel(im2col, c, 2 * col.size)
        W2 = W.reshape(o, -1)
        xp.dot(W2, col.reshape(-1, Yt.shape[1]), out=Yt)                 # Yt = W2 @ col
        if training:
            self._ws = ws  # backward needs col (for dW) and the workspace
            # Y = Yt.reshape(O, Ho, Wo, N).transpose(3, 0, 1, 2) + b[:, None, None] as a view:
            # (N, O, Ho, Wo) in batch-last memory (see layers.base), no copy
            Yt += self.params["b"][:, None]
            return Yt.reshape(o, ho, wo, n).transpose(3, 0, 1, 2)
        # prediction returns a fresh row-major Y, made in two steps: (Ho*Wo, N) -> (N, Ho*Wo)
        # within each output channel, then (O, N) -> (N, O) over contiguous Ho*Wo blocks, adding
        # b on the way; NumPy's one-step copy gathers with a stride of N elements, 1.5-3x slower
        Y, YtT, b = xp.empty((n, o, ho, wo), W.dtype), ws["YtT"], self.params["b"][:, None]
        Yt3, YtT_T, Y3 = Yt.reshape(o, ho * wo, n), YtT.transpose(1, 0, 2), Y.reshape(n, o, ho * wo)

        def to_rows(p: slice) -> None:   # (each part of the output channels in its own thread)
            xp.copyto(YtT[p], Yt3[p].transpose(0, 2, 1))
            xp.add(YtT_T[:, p], b[p], out=Y3[:, p])
        self.backend.parallel(to_rows, o, 4 * Yt.size)
        return Y

    def backward(self, grad_y: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        xp = self.xp
        if self.batch_first:
            return self._backward_batch_first(grad_y, input_grad)
        ws = self._ws
        col, dWT = ws["col"], ws["dWT"]
        (o, ho, wo, n), K = ws["dYt"].shape, dWT.shape[0]
        L = ho * wo * n
        dYt = grad_y.transpose(1, 2, 3, 0)                                 # (O, Ho, Wo, N)
        if not batch_last(grad_y):          # (a batch-last gradient is used as it is)
            xp.copyto(ws["dYt"], dYt)
            dYt = ws["dYt"]
        dYt = dYt.reshape(o, L)
        # dW = dYt @ col.T, computed as (col @ dYt.T).T: OpenBLAS runs this orientation of the
        # same product (a long inner dimension L) 20-40% faster here
        xp.dot(col.reshape(K, L), dYt.T, out=dWT)
        xp.copyto(self.grads["W"].reshape(o, K), dWT.T)
        xp.dot(dYt, ws["ones"], out=self.grads["b"])                       # db = dYt @ ones(L)
        if not input_grad:
            return None
        dcol, dXl, dX = ws["dcol"], ws["dXl"], ws["dX"]
        W2 = self.params["W"].reshape(o, K)
        xp.dot(W2.T, dYt, out=dcol)                                        # dcol = W2.T @ dYt
        (kh, kw), c = self.kernel_size, dX.shape[1]
        dcol6, dXt = dcol.reshape(c, kh, kw, ho, wo, n), ws["dXt"]

        def col2im(p: slice) -> None:    # (each part of the channels in its own thread)
            # col2im, straight into dXl[c, h, w, n] = dxp[c, ph + h, pw + w, n]
            self._col2im_unpadded(dcol6[p], dXl[p])
            # dX[n, c, h, w] = dXl[c, h, w, n], in two steps as Y in forward
            xp.copyto(dXt[p], dXl[p].transpose(0, 3, 1, 2))
            xp.copyto(dX[:, p], dXt[p].transpose(1, 0, 2, 3))
        self.backend.parallel(col2im, c, 3 * dcol.size)
        return dX

    def _windows(self, xpad: np.ndarray, lead: int) -> np.ndarray:
        """The view ``win`` of ``xpad`` that im2col copies: ``win[..., u, v, i, j, ...] =
        xpad[..., sh*i + u, sw*j + v, ...]``, the spatial axes after ``lead`` leading axes (C for
        the batch-last layout, whose batch axis N comes last; N and C for batch-first). Made once
        per buffer: building a window view costs tens of microseconds of Python."""
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        windows = self.backend.sliding_window_view(xpad, (kh, kw), axis=(lead, lead + 1))
        keep = (slice(None),) * lead
        win = windows[(*keep, slice(None, None, sh), slice(None, None, sw))]
        # (..., Ho, Wo, [N,] kH, kW) -> (..., kH, kW, Ho, Wo, [N])
        nd = win.ndim
        spatial, rest = (lead, lead + 1), tuple(range(lead + 2, nd - 2))
        return win.transpose(*range(lead), nd - 2, nd - 1, *spatial, *rest)

    def _col2im(self, dcol: np.ndarray, dxp: np.ndarray, lead: int) -> None:
        """``dxp`` = the sum, over kernel offsets (u, v), of ``dcol[..., u, v, i, j, ...]`` added at
        ``dxp[..., sh*i + u, sw*j + v, ...]``; the spatial axes follow ``lead`` leading axes (C for
        the batch-last layout, N and C for batch-first). A loop over the kH*kW offsets, one strided
        add each, not over pixels."""
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        ho, wo = dcol.shape[lead + 2:lead + 4]
        keep = (slice(None),) * lead
        dxp.fill(0)
        for u in range(kh):
            for v in range(kw):
                rows, cols = slice(u, u + sh * (ho - 1) + 1, sh), slice(v, v + sw * (wo - 1) + 1, sw)
                dxp[(*keep, rows, cols)] += dcol[(*keep, u, v)]

    def _col2im_unpadded(self, dcol: np.ndarray, dX: np.ndarray) -> None:
        """``dX`` (C, H, W, N) = col2im of ``dcol`` (C, kH, kW, Ho, Wo, N) without the padded
        buffer: the same sum as :meth:`_col2im` followed by cutting off the border, with each
        kernel offset's columns cut to those that land inside the image instead. One strided
        add per offset, the first offset that covers the whole image copied (no zero fill
        then). About 30% faster than adding into the padded buffer here (2.4 -> 1.7 ms for a
        (32, 3, 3, 14, 14, 64) dcol), and no border to cut off afterwards."""
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        _, h, w, _ = dX.shape
        ho, wo = dcol.shape[3:5]

        def span(offset: int, step: int, pad: int, size: int, n_out: int) -> tuple[slice, slice]:
            # output positions i with 0 <= step*i + offset - pad < size: (target, source) slices
            lo = max(0, -(-(pad - offset) // step))
            hi = min(n_out, (size - 1 + pad - offset) // step + 1)
            first = step * lo + offset - pad
            return slice(first, first + step * (hi - lo - 1) + 1, step), slice(lo, hi)

        spans_h = [span(u, sh, ph, h, ho) for u in range(kh)]
        spans_w = [span(v, sw, pw, w, wo) for v in range(kw)]
        covers = [(u, v) for u in range(kh) for v in range(kw)
                  if sh == 1 == sw and spans_h[u][0] == slice(0, h, 1)
                  and spans_w[v][0] == slice(0, w, 1)]
        if covers:
            u0, v0 = covers[0]
            self.xp.copyto(dX, dcol[:, u0, v0, spans_h[u0][1], spans_w[v0][1]])
        else:
            dX.fill(0)
        for u in range(kh):
            for v in range(kw):
                if covers and (u, v) == covers[0]:
                    continue
                (rows, src_rows), (cols, src_cols) = spans_h[u], spans_w[v]
                if rows.start < rows.stop and cols.start < cols.stop:
                    dX[:, rows, cols] += dcol[:, u, v, src_rows, src_cols]

    # -- the batch-first layout, for small K (see the class docstring) ---------------------------
    def _forward_batch_first(self, x: np.ndarray, training: bool) -> np.ndarray:
        xp = self.xp
        n, c, h, w = x.shape
        (kh, kw), (ph, pw), o = self.kernel_size, self.padding, self.out_channels
        W = self.params["W"]
        key = ("batch_first", training, x.shape)
        ws = self._workspace.get(key)
        if ws is None:
            ho, wo = self._out_hw(c, h, w, InputError, f"input (N, C, H, W) = {x.shape}")
            if not training:  # keep one set of prediction buffers, for the last shape seen
                for k in [k for k in self._workspace if k[:2] == ("batch_first", False)]:
                    del self._workspace[k]
            ws = self._workspace[key] = {
                "xpad": xp.zeros((n, c, h + 2 * ph, w + 2 * pw), W.dtype),   # zero border kept
                "col": xp.empty((n, c, kh, kw, ho, wo), W.dtype)}
            ws["win"] = self._windows(ws["xpad"], lead=2)                    # a view, made once
        xpad, col, win = ws["xpad"], ws["col"], ws["win"]
        ho, wo = col.shape[4:]

        def im2col(p: slice) -> None:    # (each part of the images in its own thread)
            xp.copyto(xpad[p, :, ph:ph + h, pw:pw + w], x[p])                    # Xpad
            xp.copyto(col[p], win[p])                                           # col (N, C, kH, kW, Ho, Wo)
        self.backend.parallel(im2col, n, 2 * col.size)
        Y = ws.get("Y") if training else None
        if Y is None:
            Y = xp.empty((n, o, ho, wo), W.dtype)
            if training:
                ws["Y"] = Y
        Y3 = Y.reshape(n, o, ho * wo)
        xp.matmul(W.reshape(o, -1), col.reshape(n, -1, ho * wo), out=Y3)      # Y[n] = W2 @ col[n]
        Y3 += self.params["b"][:, None]
        if training:
            self._ws = ws
        return Y

    def _backward_batch_first(self, grad_y: np.ndarray, input_grad: bool) -> np.ndarray | None:
        xp = self.xp
        ws = self._ws
        col = ws["col"]
        n, c, kh, kw, ho, wo = col.shape
        o, K, L = self.out_channels, c * kh * kw, ho * wo
        dY = grad_y.reshape(n, o, L)
        col3 = col.reshape(n, K, L)
        if "dWn" not in ws:
            ws.update(dWn=xp.empty((n, o, K), col.dtype), ones=xp.ones(L, col.dtype))
        xp.matmul(dY, col3.transpose(0, 2, 1), out=ws["dWn"])                # dY[n] @ col[n].T
        ws["dWn"].sum(axis=0, out=self.grads["W"].reshape(o, K))               # summed over n
        (dY @ ws["ones"]).sum(axis=0, out=self.grads["b"])                     # db = dY.sum((0, 2, 3))
        if not input_grad:
            return None
        ph, pw = self.padding
        h, w = ws["xpad"].shape[2] - 2 * ph, ws["xpad"].shape[3] - 2 * pw
        if "dcol" not in ws:
            ws.update(dcol=xp.empty((n, K, L), col.dtype), dxp=xp.empty_like(ws["xpad"]),
                      dX=xp.empty((n, c, h, w), col.dtype))
        dcol, dxp = ws["dcol"], ws["dxp"]
        xp.matmul(self.params["W"].reshape(o, K).T, dY, out=dcol)             # dcol[n] = W2.T @ dY[n]
        self._col2im(dcol.reshape(n, c, kh, kw, ho, wo), dxp, lead=2)
        xp.copyto(ws["dX"], dxp[:, :, ph:ph + h, pw:pw + w])
        return ws["dX"]
