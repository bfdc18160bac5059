r"""Fast training kernels: one per layer type that has a faster way to compute the same numbers.

The layers in :mod:`nnscratch.layers` are the specification: one plain NumPy implementation each.
The kernels here compute the same mathematics (bit for bit where the order of operations is the
same, else to rounding: ``tests/test_kernels.py`` compares every kernel with its layer in float64)
in ways that are faster and harder to read:

- **workspaces**: in training a kernel writes its outputs into buffers it owns (one set per input
  shape) instead of allocating new arrays each step. An array returned by ``forward(...,
  training=True)`` or ``backward`` is therefore valid until the next call of the same method;
  copy it to keep it. ``forward(x, training=False)`` allocates what it uses on every call and
  changes nothing in the kernel, so predictions may run in several threads at once;
- **batch-last memory** (see :mod:`nnscratch.accel.layout`): a batch-last convolution returns
  its output as a (N, C, H, W) view of (C, H, W, N) memory, and batch norm and pooling keep that
  memory order;
- **thread splits** of element-wise passes (:func:`nnscratch.accel.threads.parallel_of`: each part
  of the channels in its own thread on the CPU, once :func:`nnscratch.accel.enable_threads` ran).

Contract: ``Kernel(layer)``; ``forward(x, training)``; ``backward(grad_y, input_grad=True)``. A
kernel reads and writes its layer's public ``params``, ``grads`` (filled in place) and ``state``,
and uses only the layer's public methods and attributes. Kernels trust their input (a model has
checked it and built the layers to fit): the plain layers are the ones that check. A kernel is
made for its layer as it is: after ``use_backend`` or ``reset_parameters``, make a new one.

:data:`KERNELS` maps each layer class to its kernel class (an exact type: a subclass of a layer
may compute something else, and gets no kernel).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InputError
from ..layers import BatchNorm, Conv2D, Dense, Dropout, Flatten, GlobalAvgPool2D, Layer, MaxPool2D, ReLU
from . import im2col
from .blas import dot_by_chunks, dot_t_by_chunks, long_chunks
from .layout import batch_last, empty_images
from .threads import parallel_of


class Kernel:
    """Base of the kernels: the layer it stands in for, and that layer's array module."""

    def __init__(self, layer: Layer) -> None:
        self.layer = layer
        self.xp = layer.xp
        self._workspace: dict[Any, Any] = {}

    @property
    def params(self) -> dict[str, Any]:
        """The layer's parameters (the kernel holds none of its own)."""
        return self.layer.params

    @property
    def grads(self) -> dict[str, Any]:
        return self.layer.grads

    @property
    def state(self) -> dict[str, Any]:
        return self.layer.state

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        raise NotImplementedError

    def backward(self, grad_y: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.layer!r})"


class FastDense(Kernel):
    """:class:`~nnscratch.layers.Dense` with its products written into kept buffers (``dot``
    with ``out=``) and ``db`` as the product ``1 @ dZ``.

    Its input may be a transposed view, (N, n_in) over (n_in, N) memory, as
    :class:`FastFlatten` gives for batch-last maps; BLAS reads either orientation. The input
    gradient then follows that memory order: ``dX.T = W @ dZ.T`` into an (n_in, N) buffer,
    returned as its (N, n_in) view, so that the layers before read each example's numbers in
    the order they hold them."""

    layer: Dense

    def _make_workspace(self, m: int, dtype: np.dtype) -> tuple[np.ndarray, ...]:
        xp, layer = self.xp, self.layer
        ws = self._workspace[m] = (xp.empty((m, layer.n_out), dtype),  # Z
                                   xp.empty((m, layer.n_in), dtype),   # dX
                                   xp.ones(m, dtype),                  # for db = 1 @ dZ
                                   xp.empty((layer.n_in, m), dtype))   # dX.T (transposed input)
        return ws

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        W = self.layer.params["W"]
        if not training:
            return x @ W + self.layer.params["b"]
        self._x = x  # backward needs X for dW
        ws = self._ws = self._workspace.get(x.shape[0]) or self._make_workspace(x.shape[0], W.dtype)
        z = ws[0]
        self.xp.dot(x, W, out=z)       # Z = X @ W   (dot: the cheapest call into BLAS for 2-D arrays)
        z += self.layer.params["b"]    #     + b
        return z

    def backward(self, grad_y: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        _, dx, ones, dxT = self._ws
        xp, grads, x = self.xp, self.layer.grads, self._x
        xp.dot(x.T, grad_y, out=grads["W"])  # dW = X.T @ dZ
        # db = dZ.sum(axis=0), written as the product 1 @ dZ: BLAS does it ~2.5x faster
        xp.dot(ones, grad_y, out=grads["b"])
        if not input_grad:
            return None
        W = self.layer.params["W"]
        if x.T.flags.c_contiguous and not x.flags.c_contiguous:   # a transposed input
            xp.dot(W, grad_y.T, out=dxT)     # dX.T = W @ dZ.T
            return dxT.T
        xp.dot(grad_y, W.T, out=dx)          # dX = dZ @ W.T
        return dx


class FastReLU(Kernel):
    """:class:`~nnscratch.layers.ReLU` into kept buffers, its mask taken from the output."""

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        xp = self.xp
        if not training:
            return xp.maximum(x, 0)
        ws = self._ws = self._workspace.get(x.shape) or self._make_workspace(x)
        # A = max(Z, 0), against an array of zeros: a Python 0 would be converted at every call,
        # which costs more than the maximum itself at this size
        xp.maximum(x, ws[3], out=ws[0])
        return ws[0]

    def _make_workspace(self, x: np.ndarray) -> tuple[np.ndarray, ...]:
        xp = self.xp
        ws = self._workspace[x.shape] = (xp.empty_like(x), xp.empty_like(x, dtype=bool),
                                         xp.empty_like(x), xp.zeros_like(x))
        return ws  # A, mask, dZ, zeros

    def backward(self, grad_y: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        if not input_grad:
            return None
        a, mask, dx, _ = self._ws
        # Plain form: dx = grad_y * (z > 0). Since A > 0 exactly where Z > 0, the mask is taken
        # from the output (a boolean mask: NumPy's float sign(a) takes twice as long)
        self.xp.greater(a, 0, out=mask)
        self.xp.multiply(grad_y, mask, out=dx)
        return dx


class FastConv2D(Kernel):
    r""":class:`~nnscratch.layers.Conv2D` as one matrix product with an im2col matrix, arranged
    for speed. The padded input is held with the batch axis *last*, ``xpad[c, h, w, n]`` (C, H +
    2*ph, W + 2*pw, N): each window copy (im2col) and each col2im add then runs over rows of
    ``Wo*N`` contiguous numbers instead of ``Wo``, which is several times faster on small images.
    With ``K = C*kH*kW`` and ``L = Ho*Wo*N``::

        xpad[c, ph + h, pw + w, n] = X[n, c, h, w]                 (zero border)
        col[c, u, v, i, j, n] = xpad[c, sh*i + u, sw*j + v, n]     viewed as (K, L)
        W2 = W.reshape(O, K)
        Yt = W2 @ col                                            (O, L)
        Y = Yt.reshape(O, Ho, Wo, N).transpose(3, 0, 1, 2) + b[:, None, None]     (N, O, Ho, Wo)

    In training ``Y`` is returned as exactly that view, batch-last in memory (see
    :mod:`nnscratch.accel.layout`), with ``b`` added to ``Yt`` in place; prediction returns a
    row-major copy.

    Backward, given ``dY = dL/dY`` of shape (N, O, Ho, Wo)::

        dYt = dY.transpose(1, 2, 3, 0).reshape(O, L)            (no copy if dY is batch-last)
        dW = (dYt @ col.T).reshape(O, C, kH, kW)
        db = dYt @ ones(L)                                       (= dY.sum(axis=(0, 2, 3)))
        dcol = W2.T @ dYt                                        (K, L), viewed as (C, kH, kW, Ho, Wo, N)
        dxp[c, sh*i + u, sw*j + v, n] += dcol[c, u, v, i, j, n]  (col2im: one strided add per (u, v))
        dX[n, c, h, w] = dxp[c, ph + h, pw + w, n]

    (col2im adds each offset's columns straight into dX, cut to those that land inside the
    image, rather than into a padded ``dxp`` whose border is then cut off: the same sum, see
    :func:`nnscratch.accel.im2col.col2im_unpadded`.)

    Only ``col`` is kept from forward for backward. Inputs are cast to the layer's dtype.

    When ``K = C*kH*kW`` is small (below 32: e.g. a first layer on grey or RGB images) the output
    is much larger than ``col`` and moving it between the batch-last and the (N, C, H, W) layout
    costs more than the product itself. Such layers keep the batch axis first instead
    (``xpad[n, c, h, w]``, ``col[n]`` of shape (K, Ho*Wo)) and do one small product per example,
    all in one ``np.matmul`` call over the stack, with no transposes::

        Y[n] = W2 @ col[n] + b[:, None]                       (O, Ho*Wo), for every n at once
        dW = sum over n of  dY[n] @ col[n].T,   dcol[n] = W2.T @ dY[n]
    """

    layer: Conv2D

    def __init__(self, layer: Conv2D) -> None:
        super().__init__(layer)
        #: which layout the computation uses (see the class docstring); the result is the same
        kh, kw = layer.kernel_size
        self.batch_first = layer.in_channels * kh * kw < 32

    # -- shapes and buffers -----------------------------------------------------------------------
    def _out_hw(self, shape: tuple[int, ...]) -> tuple[int, int]:
        """(Ho, Wo) for (N, C, H, W) input of ``shape``; InputError if it does not fit."""
        if len(shape) != 4 or shape[1] != self.layer.in_channels:
            raise InputError(f"Conv2D expects (N, {self.layer.in_channels}, H, W) images, got "
                             f"shape {shape}")
        return self.layer.output_hw(shape[2], shape[3])

    def _windows(self, xpad: np.ndarray, lead: int) -> np.ndarray:
        layer = self.layer
        return im2col.windows(xpad, layer.kernel_size, layer.stride, lead,
                              layer.backend.sliding_window_view)

    def _buffers(self, shape: tuple[int, ...], dtype: np.dtype, training: bool) -> dict[str, np.ndarray]:
        """Scratch arrays for one input shape (validated here); ``xpad``'s zero border is kept.

        Training keeps one set per shape (forward, backward and their outputs); prediction makes
        a fresh set each call (calls may run in several threads at once).
        """
        xp, layer = self.xp, self.layer
        n, c, h, w = shape
        (kh, kw), (ph, pw), o = layer.kernel_size, layer.padding, layer.out_channels
        ho, wo = self._out_hw(shape)
        K, L = c * kh * kw, ho * wo * n
        bufs = {"xpad": xp.zeros((c, h + 2 * ph, w + 2 * pw, n), dtype),
                "col": xp.empty((c, kh, kw, ho, wo, n), dtype),
                "Yt": xp.empty((o, L), dtype),
                # a first layer's products (few channels, long rows) go by chunks of their columns
                "chunks": long_chunks(L, K, o, layer.backend)}
        bufs["win"] = self._windows(bufs["xpad"], lead=1)  # a view of xpad, made once
        if training:
            bufs.update(dYt=xp.empty((o, ho, wo, n), dtype),
                        dWT=xp.empty((K, o), dtype), ones=xp.ones(L, dtype), dcol=xp.empty((K, L), dtype),
                        dXl=xp.empty((c, h, w, n), dtype), dXt=xp.empty((c, n, h, w), dtype),
                        dX=xp.empty(shape, dtype))
            if bufs["chunks"]:
                bufs["parts"] = xp.empty((bufs["chunks"], K, o), dtype)
            self._workspace[shape] = bufs
        else:
            bufs["YtT"] = xp.empty((o, n, ho * wo), dtype)  # Yt with (Ho*Wo, N) swapped: forward
        return bufs

    # -- forward and backward -----------------------------------------------------------------------
    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        xp, layer = self.xp, self.layer
        x = xp.asarray(x)
        if x.ndim != 4 or x.dtype.kind not in "biuf":
            raise InputError(f"Conv2D expects (N, {layer.in_channels}, H, W) images of numbers, got "
                             f"shape {x.shape} and dtype {x.dtype}")
        if self.batch_first:
            return self._forward_batch_first(x, training)
        W = layer.params["W"]
        if training:
            ws = self._workspace.get(x.shape) or self._buffers(x.shape, W.dtype, True)
        else:
            ws = self._buffers(x.shape, W.dtype, False)
        n, c, h, w = x.shape
        ph, pw = layer.padding
        xpad, col, Yt = ws["xpad"], ws["col"], ws["Yt"]
        o, ho, wo = layer.out_channels, col.shape[3], col.shape[4]
        # xpad[c, ph + h, pw + w, n] = X[n, c, h, w]  (the zero border stays from _buffers; a
        # contiguous copy when X is itself batch-last), then col (C, kH, kW, Ho, Wo, N); each
        # part of the channels in its own thread (see nnscratch.accel.threads)
        xT, win = x.transpose(1, 2, 3, 0), ws["win"]

        def im2col(p: slice) -> None:
            xp.copyto(xpad[p, ph:ph + h, pw:pw + w], xT[p])
            xp.copyto(col[p], win[p])
        parallel_of(layer.backend)(im2col, c, 2 * col.size)
        W2 = W.reshape(o, -1)
        dot_by_chunks(W2, col.reshape(-1, Yt.shape[1]), Yt, ws["chunks"],  # Yt = W2 @ col
                      parallel_of(layer.backend))
        if training:
            self._ws = ws  # backward needs col (for dW) and the workspace
            # Y = Yt.reshape(O, Ho, Wo, N).transpose(3, 0, 1, 2) + b[:, None, None] as a view:
            # (N, O, Ho, Wo) in batch-last memory (see accel.layout), no copy
            Yt += layer.params["b"][:, None]
            return Yt.reshape(o, ho, wo, n).transpose(3, 0, 1, 2)
        # prediction returns a fresh row-major Y, made in two steps: (Ho*Wo, N) -> (N, Ho*Wo)
        # within each output channel, then (O, N) -> (N, O) over contiguous Ho*Wo blocks, adding
        # b on the way; NumPy's one-step copy gathers with a stride of N elements, 1.5-3x slower
        Y, YtT, b = xp.empty((n, o, ho, wo), W.dtype), ws["YtT"], layer.params["b"][:, None]
        Yt3, YtT_T, Y3 = Yt.reshape(o, ho * wo, n), YtT.transpose(1, 0, 2), Y.reshape(n, o, ho * wo)

        def to_rows(p: slice) -> None:   # (each part of the output channels in its own thread)
            xp.copyto(YtT[p], Yt3[p].transpose(0, 2, 1))
            xp.add(YtT_T[:, p], b[p], out=Y3[:, p])
        parallel_of(layer.backend)(to_rows, o, 4 * Yt.size)
        return Y

    def backward(self, grad_y: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        xp, layer = self.xp, self.layer
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
        dot_t_by_chunks(col.reshape(K, L), dYt, dWT, ws["chunks"], ws.get("parts"),
                        parallel_of(layer.backend))
        xp.copyto(layer.grads["W"].reshape(o, K), dWT.T)
        xp.dot(dYt, ws["ones"], out=layer.grads["b"])                      # db = dYt @ ones(L)
        if not input_grad:
            return None
        dcol, dXl, dX = ws["dcol"], ws["dXl"], ws["dX"]
        W2 = layer.params["W"].reshape(o, K)
        xp.dot(W2.T, dYt, out=dcol)                                        # dcol = W2.T @ dYt
        (kh, kw), c = layer.kernel_size, dX.shape[1]
        dcol6, dXt = dcol.reshape(c, kh, kw, ho, wo, n), ws["dXt"]
        size, stride, padding = layer.kernel_size, layer.stride, layer.padding

        def col2im(p: slice) -> None:    # (each part of the channels in its own thread)
            # col2im, straight into dXl[c, h, w, n] = dxp[c, ph + h, pw + w, n]
            im2col.col2im_unpadded(dcol6[p], dXl[p], size, stride, padding, xp)
            # dX[n, c, h, w] = dXl[c, h, w, n], in two steps as Y in forward
            xp.copyto(dXt[p], dXl[p].transpose(0, 3, 1, 2))
            xp.copyto(dX[:, p], dXt[p].transpose(1, 0, 2, 3))
        parallel_of(layer.backend)(col2im, c, 3 * dcol.size)
        return dX

    # -- the batch-first layout, for small K (see the class docstring) ---------------------------
    def _forward_batch_first(self, x: np.ndarray, training: bool) -> np.ndarray:
        xp, layer = self.xp, self.layer
        n, c, h, w = x.shape
        (kh, kw), (ph, pw), o = layer.kernel_size, layer.padding, layer.out_channels
        W = layer.params["W"]
        ws = self._workspace.get(("batch_first", x.shape)) if training else None
        if ws is None:    # (prediction: fresh buffers each call, see _buffers)
            ho, wo = self._out_hw(x.shape)
            ws = {"xpad": xp.zeros((n, c, h + 2 * ph, w + 2 * pw), W.dtype),   # zero border kept
                  "col": xp.empty((n, c, kh, kw, ho, wo), W.dtype)}
            ws["win"] = self._windows(ws["xpad"], lead=2)                    # a view, made once
            if training:
                self._workspace["batch_first", x.shape] = ws
        xpad, col, win = ws["xpad"], ws["col"], ws["win"]
        ho, wo = col.shape[4:]

        def im2col(p: slice) -> None:    # (each part of the images in its own thread)
            xp.copyto(xpad[p, :, ph:ph + h, pw:pw + w], x[p])                    # Xpad
            xp.copyto(col[p], win[p])                                           # col (N, C, kH, kW, Ho, Wo)
        parallel_of(layer.backend)(im2col, n, 2 * col.size)
        Y = ws.get("Y") if training else None
        if Y is None:
            Y = xp.empty((n, o, ho, wo), W.dtype)
            if training:
                ws["Y"] = Y
        Y3 = Y.reshape(n, o, ho * wo)
        xp.matmul(W.reshape(o, -1), col.reshape(n, -1, ho * wo), out=Y3)      # Y[n] = W2 @ col[n]
        Y3 += layer.params["b"][:, None]
        if training:
            self._ws = ws
        return Y

    def _backward_batch_first(self, grad_y: np.ndarray, input_grad: bool) -> np.ndarray | None:
        xp, layer = self.xp, self.layer
        ws = self._ws
        col = ws["col"]
        n, c, kh, kw, ho, wo = col.shape
        o, K, L = layer.out_channels, c * kh * kw, ho * wo
        dY = grad_y.reshape(n, o, L)
        col3 = col.reshape(n, K, L)
        if "dWn" not in ws:
            ws.update(dWn=xp.empty((n, o, K), col.dtype), ones=xp.ones(L, col.dtype))
        xp.matmul(dY, col3.transpose(0, 2, 1), out=ws["dWn"])                # dY[n] @ col[n].T
        ws["dWn"].sum(axis=0, out=layer.grads["W"].reshape(o, K))              # summed over n
        (dY @ ws["ones"]).sum(axis=0, out=layer.grads["b"])                    # db = dY.sum((0, 2, 3))
        if not input_grad:
            return None
        ph, pw = layer.padding
        h, w = ws["xpad"].shape[2] - 2 * ph, ws["xpad"].shape[3] - 2 * pw
        if "dcol" not in ws:
            ws.update(dcol=xp.empty((n, K, L), col.dtype), dxp=xp.empty_like(ws["xpad"]),
                      dX=xp.empty((n, c, h, w), col.dtype))
        dcol, dxp = ws["dcol"], ws["dxp"]
        xp.matmul(layer.params["W"].reshape(o, K).T, dY, out=dcol)            # dcol[n] = W2.T @ dY[n]
        im2col.col2im(dcol.reshape(n, c, kh, kw, ho, wo), dxp, layer.kernel_size, layer.stride,
                      lead=2)
        xp.copyto(ws["dX"], dxp[:, :, ph:ph + h, pw:pw + w])
        return ws["dX"]


def _offset(x: np.ndarray, s: int, u: int, v: int, ho: int, wo: int) -> np.ndarray:
    """The strided view ``x[:, :, s*i + u, s*j + v]`` for i < ho, j < wo: element (u, v) of
    every pooling window (stride ``s``)."""
    return x[:, :, u:u + s * (ho - 1) + 1:s, v:v + s * (wo - 1) + 1:s]


class FastMaxPool2D(Kernel):
    r""":class:`~nnscratch.layers.MaxPool2D` (the same running maximum over window offsets and
    first-maximum routing) with buffers kept per input shape and memory order, and each part of
    the channels in its own thread. Buffers follow the memory order of ``x`` (batch-last after a
    batch-last convolution: each offset's values are then runs of N contiguous numbers, not every
    other number of a row)."""

    layer: MaxPool2D

    def _out_hw(self, x: np.ndarray) -> tuple[int, int]:
        if x.ndim != 4:
            raise InputError(f"MaxPool2D expects (N, C, H, W) images, got shape {x.shape}")
        return self.layer.output_shape(x.shape[1:])[1:]

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        k, s = self.layer.kernel_size, self.layer.stride
        ho, wo = self._out_hw(x)
        if training:  # training writes into buffers kept per input shape and layout
            ws = (self._workspace.get((x.shape, batch_last(x)))
                  or self._make_workspace(x, ho, wo))
            y = ws["y"]
        else:
            y = empty_images(self.xp, (x.shape[0], x.shape[1], ho, wo), x.dtype, batch_last(x))
        offsets = [_offset(x, s, u, v, ho, wo) for u in range(k) for v in range(k)]

        def running_max(p: slice) -> None:   # (each part of the channels in its own thread)
            yp = y[:, p]
            self.xp.copyto(yp, offsets[0][:, p])
            for x_uv in offsets[1:]:
                self.xp.maximum(yp, x_uv[:, p], out=yp)
        parallel_of(self.layer.backend)(running_max, x.shape[1], 2 * x.size)
        if training:
            self._x, self._ws = x, ws
        return y

    def _make_workspace(self, x: np.ndarray, ho: int, wo: int) -> dict[str, np.ndarray]:
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
        x, ws, k, s = self._x, self._ws, self.layer.kernel_size, self.layer.stride
        y, dx, free, hit = ws["y"], ws["dx"], ws["free"], ws["hit"]
        (h, w), (ho, wo) = x.shape[2:4], y.shape[2:4]
        # unless the windows tile the whole image without overlap (then every input pixel is
        # written exactly once below), dx starts from zero
        if not (s == k and h == ho * k and w == wo * k):
            dx.fill(0)
        free.fill(True)                       # windows whose gradient is not placed yet
        overlap = s < k   # else each input pixel is in at most one window
        for u in range(k):
            for v in range(k):
                self.xp.equal(_offset(x, s, u, v, ho, wo), y, out=hit)
                hit &= free
                free ^= hit                       # free &= ~hit (hit is inside free)
                dx_uv = _offset(dx, s, u, v, ho, wo)
                if overlap:
                    dx_uv += grad_y * hit
                else:
                    self.xp.multiply(grad_y, hit, out=dx_uv)
        return dx


class FastBatchNorm(Kernel):
    r""":class:`~nnscratch.layers.BatchNorm` arranged for speed on (N, C, H, W) images in
    training, and for prediction on any input; (N, F) training runs the layer itself.

    Each pass over a (N, C, H, W) array costs about as much as the arithmetic, so the formulas
    are arranged to pass over the data as few times as possible:

    - per-channel sums over N, H and W are one matrix-vector product of the (N*C, H*W) view with
      a vector of ones, then a sum over N (NumPy's reduction over the axes (0, 2, 3) of a 4-D
      array is several times slower);
    - sums of products (the variance, and dgamma) are row-wise dot products (einsum), which make
      no temporary array;
    - Xhat is never stored: with Xc = X - mu, Xhat = Xc * inv_std, and
      Y = gamma * Xhat + beta = a * Xc + beta with a = gamma * inv_std.
    - a batch-last input (a (N, C, H, W) view of (C, H, W, N) memory, as a batch-last FastConv2D
      returns; see accel.layout) is worked on as (C, H*W*N): each channel one contiguous row,
      and the outputs keep that memory order. Any other input is worked on as (N, C, H*W).
      Per-channel arrays broadcast as [:, None] against either.

    Backward: dbeta = sum(dY), dgamma = sum(dY * Xhat) = inv_std * sum(dY * Xc), and with
    dXhat = gamma * dY the sums in dX are gamma * dbeta and gamma * dgamma, so::

        dX = a * (dY - dbeta / n - Xhat * dgamma / n),  a = gamma * inv_std
           = a * dY + k * Xc + c,   k = -a * inv_std * dgamma / n,  c = -a * dbeta / n

    Prediction: ``(X - running_mean) / sqrt(running_var + eps) * gamma + beta`` as one multiply
    and one add per value, ``X * a + (beta - running_mean * a)`` with ``a = gamma /
    sqrt(running_var + eps)``, each part of the features in its own thread.
    """

    layer: BatchNorm

    def _check(self, x: np.ndarray) -> None:
        f = self.layer.num_features
        if x.ndim not in (2, 4) or x.shape[1] != f:
            raise InputError(f"BatchNorm({f}) expects (N, {f}) or (N, {f}, H, W) inputs, got "
                             f"shape {x.shape}")

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        self._check(x)
        if not training:
            return self._predict(x)
        if x.ndim == 2:                       # (N, F): the layer's own formulas
            self._plain = True
            return self.layer.forward(x, True)
        self._plain = False
        return self._forward_images(x)

    def backward(self, grad_y: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        if self._plain:
            return self.layer.backward(grad_y, input_grad)
        return self._backward_images(grad_y, input_grad)

    def _predict(self, x: np.ndarray) -> np.ndarray:
        layer, xp = self.layer, self.xp
        shape = (1, layer.num_features) + (1,) * (x.ndim - 2)
        st = layer.state
        a = layer.params["gamma"] / xp.sqrt(st["running_var"] + layer.eps)
        a, shift = a.reshape(shape), (layer.params["beta"] - st["running_mean"] * a).reshape(shape)
        y = xp.empty_like(x, dtype=xp.result_type(x.dtype, a.dtype))  # (x's memory order)

        def affine(p: slice) -> None:   # (each part of the features in its own thread)
            xp.multiply(x[:, p], a[:, p], out=y[:, p])
            y[:, p] += shift[:, p]
        parallel_of(layer.backend)(affine, x.shape[1], 3 * x.size)
        return y

    def _channel_sum(self, a: np.ndarray, ws: dict[str, np.ndarray]) -> np.ndarray:
        """``a.sum(axis=(0, 2, 3))`` for ``a`` viewed as (N, C, H*W) or (C, H*W*N)."""
        if a.ndim == 2:
            return a @ ws["ones"]
        nb, c, hw = a.shape
        return (a.reshape(nb * c, hw) @ ws["ones"]).reshape(nb, c).sum(axis=0)

    def _channel_dot(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """``(a * b).sum(axis=(0, 2, 3))`` for (N, C, H*W) or (C, H*W*N) arrays, without a
        temporary."""
        if a.ndim == 2:
            return self.xp.einsum("ij,ij->i", a, b)
        nb, c, hw = a.shape
        return self.xp.einsum("ij,ij->i", a.reshape(nb * c, hw), b.reshape(nb * c, hw)).reshape(
            nb, c).sum(axis=0)

    @staticmethod
    def _rows(x: np.ndarray, last: bool) -> np.ndarray:
        """The working view of (N, C, H, W) ``x``: (C, H*W*N) if batch-last, else (N, C, H*W)
        (a copy where ``x`` is in neither order)."""
        nb, c, h, w = x.shape
        return x.transpose(1, 2, 3, 0).reshape(c, -1) if last else x.reshape(nb, c, h * w)

    @staticmethod
    def _images(a: np.ndarray, shape: tuple[int, ...], last: bool) -> np.ndarray:
        """A working array back as (N, C, H, W), a view in its own memory order."""
        nb, c, h, w = shape
        return a.reshape(c, h, w, nb).transpose(3, 0, 1, 2) if last else a.reshape(shape)

    def _forward_images(self, x: np.ndarray) -> np.ndarray:
        layer = self.layer
        nb, c, h, w = x.shape
        n = nb * h * w                       # values per channel
        if n < 2:
            raise InputError("BatchNorm needs more than 1 value per feature in training")
        xp, last = self.xp, batch_last(x)
        ws = self._workspace.get((x.shape, last))
        if ws is None:
            rows = (c, h * w * nb) if last else (nb, c, h * w)
            ws = self._workspace[x.shape, last] = {
                **{k: xp.empty(rows, x.dtype) for k in ("xc", "y", "tmp", "dx")},
                "ones": xp.ones(rows[-1], x.dtype), "last": last}
        x3, xc, y = self._rows(x, last), ws["xc"], ws["y"]
        mu = self._channel_sum(x3, ws) / n
        xp.subtract(x3, mu[:, None], out=xc)                   # Xc = X - mu
        var = self._channel_dot(xc, xc) / n                    # mean of Xc**2
        inv_std = 1 / xp.sqrt(var + layer.eps)
        xp.multiply(xc, (layer.params["gamma"] * inv_std)[:, None], out=y)
        y += layer.params["beta"][:, None]                     # Y = gamma * Xc * inv_std + beta
        layer.update_running(mu, var, n)
        self._ws, self._n, self._inv_std = ws, n, inv_std
        return self._images(y, x.shape, last)

    def _backward_images(self, grad_y: np.ndarray, input_grad: bool) -> np.ndarray | None:
        # (the formulas of the class docstring)
        layer = self.layer
        ws, n, inv_std = self._ws, self._n, self._inv_std
        xc, tmp, dx, last = ws["xc"], ws["tmp"], ws["dx"], ws["last"]
        g3 = self._rows(grad_y, last)
        dbeta = self._channel_sum(g3, ws)
        dgamma = self._channel_dot(g3, xc) * inv_std
        layer.grads["beta"][...] = dbeta
        layer.grads["gamma"][...] = dgamma
        if not input_grad:
            return None
        a = layer.params["gamma"] * inv_std
        self.xp.multiply(g3, a[:, None], out=dx)
        self.xp.multiply(xc, (-a * inv_std * dgamma / n)[:, None], out=tmp)
        dx += tmp
        dx += (-a * dbeta / n)[:, None]
        return self._images(dx, grad_y.shape, last)


class FastDropout(Kernel):
    """:class:`~nnscratch.layers.Dropout` into kept buffers: the same draws from the layer's
    generator (:meth:`~nnscratch.layers.Dropout.draw`), so the same masks."""

    layer: Dropout

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        layer = self.layer
        if not training:
            return x
        if layer.p == 0:
            self._scale = None
            return x
        ws = self._workspace.get(x.shape)   # buffers kept per input shape
        if ws is None:
            xp = self.xp
            ws = self._workspace[x.shape] = {k: xp.empty_like(x) for k in ("y", "dx")}
            # the draws are made on the host by the model's NumPy generator (the same mask on
            # every device), then moved to the device's "scale" buffer (no copy on the CPU)
            ws["draw"] = np.empty(x.shape, x.dtype)
            ws["scale"] = layer.backend.asarray(ws["draw"])
        layer.draw(ws["draw"])                               # float32/64 draws in [0, 1)
        scale = self._scale = ws["scale"]
        layer.backend.upload(scale, ws["draw"])              # host -> device (nothing on the CPU)
        self.xp.greater_equal(scale, layer.p, out=scale)     # M: 1 (kept) or 0
        scale *= x.dtype.type(1 / (1 - layer.p))             # M / (1 - p)
        return self.xp.multiply(x, scale, out=ws["y"])

    def backward(self, grad_y: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        if not input_grad:
            return None
        if self._scale is None:
            return grad_y
        return self.xp.multiply(grad_y, self._scale, out=self._workspace[grad_y.shape]["dx"])


class FastFlatten(Kernel):
    r""":class:`~nnscratch.layers.Flatten` without a copy for batch-last maps.

    The layer returns row-major rows, ``X.reshape(N, -1)``, which for a batch-last input (a
    (N, C, H, W) view of (C, H, W, N) memory) is a transposing copy. The same numbers, in the
    same order per example (``c*H*W + h*W + w``), are the rows of the (C*H*W, N) matrix that
    memory already is: this kernel returns its (N, C*H*W) transposed view, which
    :class:`FastDense` and the element-wise layers read as they are. Backward reshapes the
    gradient back; a gradient in the transposed order (as :class:`FastDense` then returns it)
    becomes a batch-last (N, C, H, W) view, again without a copy. Other inputs take the layer's
    own ``forward`` and ``backward``."""

    layer: Flatten

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        last = batch_last(x)
        if training:
            self._shape, self._last = x.shape, last
        if not last:
            return self.layer.forward(x, training)
        n = x.shape[0]
        return x.transpose(1, 2, 3, 0).reshape(-1, n).T        # (N, C*H*W), no copy

    def backward(self, grad_y: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        if not self._last:
            return self.layer.backward(grad_y, input_grad)
        if not input_grad:
            return None
        n, c, h, w = self._shape
        if grad_y.shape != (n, c * h * w):
            raise InputError(f"Flatten.backward expects a gradient of the output's shape "
                             f"{(n, c * h * w)}, got {grad_y.shape}")
        if grad_y.T.flags.c_contiguous:                          # (C*H*W, N) memory: a view
            return grad_y.T.reshape(c, h, w, n).transpose(3, 0, 1, 2)
        return grad_y.reshape(self._shape)


class FastGlobalAvgPool2D(Kernel):
    r""":class:`~nnscratch.layers.GlobalAvgPool2D` on batch-last maps, with a backward that
    copies nothing.

    Forward: ``Y[n, c] = sum over (h, w) of X[n, c, h, w] / (H*W)``. The layer takes the mean
    over the last two axes of the (N, C, H, W) array, which for a batch-last input (a view of
    (C, H, W, N) memory, as a batch-last convolution or conv block returns) is a reduction over
    strided values. Here that memory is read as a (C, H*W, N) array and summed over its middle
    axis with one matrix product, ``ones(H*W) @ X3`` per channel, into (C, N); the output is
    its (N, C) view. Other layouts take the layer's own ``mean``.

    Backward: ``dX = dY[:, :, None, None] / (H*W)`` at every pixel. The layer writes that into a
    new (N, C, H, W) array; here it is a read-only broadcast view of ``dY / (H*W)`` with the
    batch-last strides (the numbers of one (n, c) repeated over (h, w) without being stored),
    which the stage before reads as it would the copy. The results are those of the layer to
    rounding (the sums are added in another order).
    """

    layer: GlobalAvgPool2D

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        if not batch_last(x):          # (the layer itself, with its checks and casts)
            y = self.layer.forward(x, training)
        else:
            xp = self.xp
            n, c, h, w = x.shape
            x3 = x.transpose(1, 2, 3, 0).reshape(c, h * w, n)     # a view of the memory
            sums = xp.matmul(xp.ones(h * w, x.dtype), x3)         # (C, N)
            y = xp.divide(sums, h * w, out=sums).T                # the means, (N, C)
        if training:
            self._shape = x.shape
        return y

    def backward(self, grad_y: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        if not input_grad:
            return None
        n, c, h, w = self._shape
        share = self.xp.empty((c, n), grad_y.dtype)             # (C, N), rows of N numbers:
        self.xp.divide(grad_y.T, h * w, out=share)              #   each pixel's share
        return self.xp.broadcast_to(share[:, None, None, :], (c, h, w, n)).transpose(3, 0, 1, 2)


#: layer class -> kernel class, for exact types (a subclass of a layer gets no kernel)
KERNELS: dict[type[Layer], type[Kernel]] = {
    Dense: FastDense, ReLU: FastReLU, Conv2D: FastConv2D, MaxPool2D: FastMaxPool2D,
    BatchNorm: FastBatchNorm, Dropout: FastDropout, GlobalAvgPool2D: FastGlobalAvgPool2D,
    Flatten: FastFlatten,
}


def kernel_for(layer: Layer) -> Kernel | None:
    """A new kernel for ``layer``, or None if its exact type has none."""
    cls = KERNELS.get(type(layer))
    return None if cls is None else cls(layer)
