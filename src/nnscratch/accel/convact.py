r"""The training fast path of ``Conv2D -> activation -> [MaxPool2D | AvgPool2D]``.

The activation is ``ReLU``, ``LeakyReLU``, ``Tanh`` or ``Sigmoid``; the convolution has any kernel
size, stride and padding, the pooling any window and stride. Notation as in
:class:`~nnscratch.layers.Conv2D`: ``col`` (K, L) is the im2col matrix of the input (``K =
C*kH*kW``, ``L = Ho*Wo*N``), ``W2 = W.reshape(O, K)``, ``Z = W2 @ col + b`` (O, L), ``A = f(Z)``
the activation, ``P`` the block's output. Run layer by layer, such a block passes over its
full-size maps about ten times a step (the bias, the activation and its mask and gradient, the
pooling's offsets, masks and scatter, layout changes); :class:`ConvActBlock` does the same
mathematics in fewer passes:

1. **Max pooling before the activation, and the bias after it.** ``f`` and ``z -> z + b`` are
   non-decreasing, so the maximum of a window of ``f(Z + b)`` is ``f(M + b)`` with ``M`` the
   maximum of the window of ``W2 @ col``, at the same place; the bias and the activation then
   run on the pooled values only (``k*k`` times fewer for ``k x k`` windows tiling the map)::

       Zc = W2 @ col      M = max of each window of Zc      P = f(M + b)
       g = dP * f'(P)     (f' from the output: ReLU P > 0, LeakyReLU 1 or slope, Tanh 1 - P**2,
                           Sigmoid P * (1 - P), as the layers compute it)
       dZ = g routed to each window's first maximum (zero elsewhere; overlapping windows add)

   Forward records which window offsets raised the running maximum, so backward compares no
   values again (as :class:`~nnscratch.accel.convblock.ConvBlock`).
2. **Without max pooling, the bias inside the product**: ``col`` has a last row of ones, so
   ``Z = [W2, b] @ [col; 1]``, and the activation runs in place on the product's output; backward
   forms ``dZ = dA * f'(A)`` in place over ``A``. Average pooling averages ``A`` per window
   (``P = sum of the window / k**2``); backward turns ``A`` into ``f'(A)`` in place (one
   contiguous pass) and multiplies each window offset by its share ``dP / k**2``.
3. **One product for both parameter gradients**: ``[dW, db] = dZ @ [col; 1].T`` (the row of ones
   is kept with ``col`` in every case), then ``dcol = W2.T @ dZ`` and col2im give ``dX``.

Maps are batch-last (``(C, H, W, N)`` in memory, see :mod:`nnscratch.layers.base`): the block's
output is a (N, C, Hp, Wp) view of such an array, its input gradient likewise. With max pooling
whose windows tile the conv's output, on a first layer (``K <= O``: a grey or RGB input, whose
output is larger than ``col``) the conv's output columns are ordered window offset first (see
:func:`~nnscratch.accel.convact_cols.offset_major`), so that each offset of every window is
one contiguous block. Element-wise passes run over parts of the channels at once
(:func:`.threads.parallel_of`).

The results are those of the layers run one by one (``tests/test_convact.py`` compares both in
float64 over many shapes, checks the gradients numerically with a negative control, and
:func:`match` on layer lists); the gradients differ only where rounding makes two values of a
window equal after the bias or the activation but not before (the gradient then goes to the
larger one, where the layers take the first; the activation's derivative is ~0 at such ties).
The planner (:mod:`.planner`) finds these blocks with :func:`match` (after its reorder pass,
which moves a max-pool before the activation) and makes them with :func:`build`. Prediction
(``training=False``) runs the layers themselves. Only the layers' public attributes are used.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import InputError
from ..layers import AvgPool2D, Conv2D, LeakyReLU, MaxPool2D, ReLU, Sigmoid, Tanh
from ..layers.base import Layer
from . import convact_cols as im2col_
from . import im2col
from .blas import dot_by_chunks, dot_t_by_chunks, long_chunks
from .threads import parallel_of

#: the activations the block fuses: each is non-decreasing (so max pooling commutes with it)
ACTIVATIONS = (ReLU, LeakyReLU, Tanh, Sigmoid)
POOLS = (MaxPool2D, AvgPool2D)


def match(layers: Sequence[Layer], i: int, output_shapes: Sequence[tuple[int, ...]]) -> int | None:
    """The stop index if ``layers[i:stop]`` form a block, else ``None``: ``Conv2D``, one of the
    activations, optionally ``MaxPool2D`` or ``AvgPool2D``; or ``Conv2D, MaxPool2D, activation``
    (the same function: the order the planner's reorder pass makes). ``output_shapes[i]`` is the
    (C, H, W) shape layer ``i`` outputs (the shapes fit: the model checked them)."""
    if not (i + 1 < len(layers) and type(layers[i]) is Conv2D and len(output_shapes[i]) == 3):
        return None
    nxt = type(layers[i + 1])
    if nxt in ACTIVATIONS:
        return i + 3 if i + 2 < len(layers) and type(layers[i + 2]) in POOLS else i + 2
    if nxt is MaxPool2D and i + 2 < len(layers) and type(layers[i + 2]) in ACTIVATIONS:
        return i + 3
    return None


def build(layers: Sequence[Layer]) -> ConvActBlock:
    """The block for a run of layers :func:`match` accepted."""
    conv, *rest = layers
    act = next(la for la in rest if type(la) in ACTIVATIONS)
    pool = next((la for la in rest if type(la) in POOLS), None)
    return ConvActBlock(conv, act, pool)  # type: ignore[arg-type]


class ConvActBlock:
    """Training forward and backward of ``Conv2D -> activation -> [pooling]`` (see the module
    docstring) with the layer contract in training: ``forward(x)`` gives the block's output,
    ``backward(grad_y, input_grad)`` fills the conv's ``grads`` (in place) and returns dL/dx;
    outputs are valid until the block's next call."""

    def __init__(self, conv: Conv2D, act: Layer, pool: Layer | None = None) -> None:
        if type(act) not in ACTIVATIONS:
            raise ValueError(f"ConvActBlock fuses {', '.join(a.__name__ for a in ACTIVATIONS)}, "
                             f"not {act!r}")
        if pool is not None and type(pool) not in POOLS:
            raise ValueError(f"ConvActBlock pools with MaxPool2D or AvgPool2D, not {pool!r}")
        self.conv, self.act, self.pool = conv, act, pool
        self.max_pool = type(pool) is MaxPool2D
        self.kind = type(act).__name__
        self._workspace: dict[tuple[int, ...], dict[str, Any]] = {}

    def __repr__(self) -> str:
        parts = [self.conv, self.act] + ([self.pool] if self.pool is not None else [])
        return f"ConvActBlock({', '.join(map(repr, parts))})"

    # -- buffers ------------------------------------------------------------------------------
    def _buffers(self, shape: tuple[int, ...], dtype: Any) -> dict[str, Any]:
        conv, xp = self.conv, self.conv.xp
        n, c, h, w = shape
        if c != conv.in_channels:
            raise InputError(f"Conv2D expects {conv.in_channels} input channels, got {c} "
                             f"(input (N, C, H, W) = {shape})")
        try:
            o, ho, wo = conv.output_shape((c, h, w))
        except ValueError as exc:
            raise InputError(str(exc)) from None
        (kh, kw), (ph, pw) = conv.kernel_size, conv.padding
        K = c * kh * kw
        ws: dict[str, Any] = {"K": K, "L": ho * wo * n, "out_hw": (ho, wo)}
        xpad = xp.zeros((c, h + 2 * ph, w + 2 * pw, n), dtype)             # zero border kept
        win = im2col.windows(xpad, conv.kernel_size, conv.stride, 1,
                              conv.backend.sliding_window_view)
        pooled = None
        k = s = 1
        if self.pool is not None:
            k, s = self.pool.kernel_size, self.pool.stride
            if ho < k or wo < k:
                raise InputError(f"a {k}x{k} pooling window does not fit a {ho}x{wo} image")
            hp, wp = (ho - k) // s + 1, (wo - k) // s + 1
            pooled = (o, hp, wp, n)
        #: each input pixel of the pooling in exactly one window
        tiled = pooled is not None and s == k and ho == k * pooled[1] and wo == k * pooled[2]
        om = self.max_pool and tiled and K <= o
        ws["offset_major"] = om
        if om:
            win = im2col_.offset_major(win, k)
        col = xp.ones((K + 1, ho * wo * n), dtype)       # the last row stays ones: the bias
        Y = xp.empty((o, *win.shape[3:]), dtype)          # Z, A, then dZ, in the column order
        ws.update(xpad=xpad, win=win, col=col, col6=col[:K].reshape(win.shape), Y=Y,
                  Y2=Y.reshape(o, -1), dWb=xp.empty((K + 1, o), dtype), tiled=tiled)
        # a first layer's products (few channels, long rows) go by chunks of their columns
        chunks = ws["chunks"] = long_chunks(ho * wo * n, K + 1, o, conv.backend)
        ws["parts"] = xp.empty((chunks, K + 1, o), dtype) if chunks else None
        if pooled is not None:
            if om:
                ws["Yq"] = [Y[:, a, b] for a in range(k) for b in range(k)]
            else:
                hp, wp = pooled[1:3]
                ws["Yq"] = [Y[:, a:a + s * (hp - 1) + 1:s, b:b + s * (wp - 1) + 1:s]
                            for a in range(k) for b in range(k)]
            ws["P"] = xp.empty(pooled, dtype)
            ws["g"] = xp.empty(pooled, dtype)
            ws["t"] = xp.empty(pooled, dtype)          # scratch of the pooled size
            ws["mask"] = xp.empty(pooled, bool)
        else:
            ws["t"], ws["mask"] = None, None
        if not self.max_pool:                          # full-size scratch (the activation on Z)
            ws["tf"], ws["maskf"] = xp.empty_like(Y), xp.empty(Y.shape, bool)
        if self.max_pool:
            # gt[q - 1]: offset q beat the maximum of offsets 0..q-1 (strictly), from forward
            ws["gt"] = xp.empty((k * k - 1, *pooled), bool)
            ws["taken"] = xp.empty(pooled, bool)
        elif pooled is not None and not tiled:     # average pooling: dA, and full-size scratch
            hp, wp = pooled[1:3]
            dA = ws["dA"] = xp.empty_like(Y)
            ws["dAq"] = [dA[:, a:a + s * (hp - 1) + 1:s, b:b + s * (wp - 1) + 1:s]
                         for a in range(k) for b in range(k)]
        self._workspace[shape] = ws
        return ws

    # -- the activation, on any arrays (parts of the channels) ----------------------------------
    def _act(self, z: Any, out: Any, t: Any, mask: Any) -> None:
        """``out = f(z)`` (``z`` may be ``out``), as the activation layer computes it; ``t`` and
        ``mask`` are scratch of the same shape."""
        xp, kind = self.conv.xp, self.kind
        if kind == "ReLU":
            xp.maximum(z, 0, out=out)
        elif kind == "LeakyReLU":       # where(z > 0, z, slope * z)
            slope = z.dtype.type(self.act.negative_slope)
            xp.multiply(z, slope, out=t)
            (xp.maximum if slope <= 1 else xp.minimum)(z, t, out=out)
        elif kind == "Tanh":
            xp.tanh(z, out=out)
        else:                           # Sigmoid: where(z >= 0, 1, e) / (1 + e), e = exp(-|z|)
            xp.greater_equal(z, 0, out=mask)
            xp.abs(z, out=t)
            xp.negative(t, out=t)
            xp.exp(t, out=t)
            xp.add(t, 1, out=out)
            xp.copyto(t, 1, where=mask)
            xp.divide(t, out, out=out)

    def _derivative(self, a: Any, t: Any, mask: Any) -> None:
        """``a = f'`` in place, from the activation's output ``a``, as the activation layer
        computes it (``t``, ``mask``: scratch of its shape). Masks are made with ``greater`` and
        copied to floats: NumPy's ``sign`` and ``copyto(..., where=)`` take 2-8x as long."""
        xp, kind = self.conv.xp, self.kind
        if kind == "ReLU":              # 1 where a > 0, else 0 (a >= 0), as ReLU's
            xp.greater(a, 0, out=mask)
            xp.copyto(a, mask)
        elif kind == "LeakyReLU":       # where(a > 0, 1, slope)
            self._leaky_slope(a, a, mask)
        elif kind == "Tanh":            # 1 - a * a
            xp.multiply(a, a, out=a)
            xp.subtract(1, a, out=a)
        else:                           # Sigmoid: a * (1 - a)
            xp.subtract(1, a, out=t)
            xp.multiply(a, t, out=a)

    def _leaky_slope(self, a: Any, out: Any, mask: Any) -> None:
        """``out = where(a > 0, 1, slope)`` (``out`` may be ``a``): for ``slope <= 1`` the
        maximum of the 0/1 mask and the slope."""
        xp, slope = self.conv.xp, a.dtype.type(self.act.negative_slope)
        xp.greater(a, 0, out=mask)
        xp.copyto(out, mask)
        if slope <= 1:
            xp.maximum(out, slope, out=out)
        else:
            xp.logical_not(mask, out=mask)    # (a <= 0)
            xp.copyto(out, slope, where=mask)

    def _act_grad(self, a: Any, grad: Any, out: Any, t: Any, mask: Any) -> None:
        """``out = grad * f'`` with ``f'`` from the activation's output ``a`` (``out`` may be
        ``a``, not ``grad``), as the activation layer computes it."""
        xp, kind = self.conv.xp, self.kind
        if kind == "ReLU":
            xp.greater(a, 0, out=mask)
            xp.multiply(grad, mask, out=out)
        elif kind == "LeakyReLU":       # grad * where(a > 0, 1, slope)
            self._leaky_slope(a, t, mask)
            xp.multiply(grad, t, out=out)
        elif kind == "Tanh":            # grad * (1 - a * a)
            xp.multiply(a, a, out=t)
            xp.subtract(1, t, out=t)
            xp.multiply(grad, t, out=out)
        else:                           # Sigmoid: grad * (a * (1 - a))
            xp.subtract(1, a, out=t)
            xp.multiply(a, t, out=t)
            xp.multiply(grad, t, out=out)

    # -- forward --------------------------------------------------------------------------------
    def forward(self, x: Any, training: bool = True) -> Any:
        """The block's output for (N, C, H, W) images ``x``; the layers themselves when not
        training."""
        if not training:
            for layer in (self.conv, self.act, self.pool):
                if layer is not None:
                    x = layer.forward(x, False)
            return x
        conv = self.conv
        xp, par = conv.xp, parallel_of(conv.backend)
        if x.ndim != 4:
            raise InputError(f"Conv2D expects numeric (N, C, H, W) images, got shape {x.shape}")
        W = conv.params["W"]
        ws = self._workspace.get(x.shape) or self._buffers(x.shape, W.dtype)
        if x.dtype != W.dtype:
            x = x.astype(W.dtype)
        _, c, h, w = x.shape
        (ph, pw), o = conv.padding, conv.out_channels
        K, col, Y, Y2, t, mask = ws["K"], ws["col"], ws["Y"], ws["Y2"], ws["t"], ws["mask"]
        # im2col: xpad[c, ph + h, pw + w, n] = X[n, c, h, w], then col6 = the windows of xpad
        xpad, col6, win = ws["xpad"], ws["col6"], ws["win"]
        xp.copyto(xpad[:, ph:ph + h, pw:pw + w], x.transpose(1, 2, 3, 0))
        if c > 1:
            par(lambda p: xp.copyto(col6[p], win[p]), c, 2 * col6.size)
        else:   # (one input channel: parts of the kernel's rows)
            par(lambda p: xp.copyto(col6[:, p], win[:, p]), col6.shape[1], 2 * col6.size)
        W2, b = W.reshape(o, K), conv.params["b"]
        self._ws, self._W2 = ws, W2
        if self.max_pool:
            dot_by_chunks(W2, col[:K], Y2, ws["chunks"], par)             # Zc = W2 @ col
            P, gt, Yq = ws["P"], ws["gt"], ws["Yq"]
            bias = b[:, None, None, None]

            def pool_act(p: slice) -> None:
                Pp = P[p]
                xp.copyto(Pp, Yq[0][p])                                 # M: the running maximum
                for Y_q, gt_q in zip(Yq[1:], gt, strict=True):
                    xp.greater(Y_q[p], Pp, out=gt_q[p])
                    xp.maximum(Pp, Y_q[p], out=Pp)
                Pp += bias[p]                                           # P = f(M + b)
                self._act(Pp, Pp, t[p], mask[p])
            par(pool_act, o, 2 * Y.size)
            return P.transpose(3, 0, 1, 2)
        Wb = xp.concatenate([W2, b[:, None]], axis=1)
        dot_by_chunks(Wb, col, Y2, ws["chunks"], par)                   # Z = [W2, b] @ [col; 1]
        tf, maskf = ws["tf"], ws["maskf"]
        par(lambda p: self._act(Y[p], Y[p], tf[p], maskf[p]), o, 3 * Y.size)  # A = f(Z), in place
        if self.pool is None:
            return Y.transpose(3, 0, 1, 2)
        P, Yq, k2 = ws["P"], ws["Yq"], self.pool.kernel_size ** 2

        def average(p: slice) -> None:
            Pp = P[p]
            xp.copyto(Pp, Yq[0][p])
            for Y_q in Yq[1:]:
                Pp += Y_q[p]
            xp.divide(Pp, k2, out=Pp)
        par(average, o, 2 * Y.size)
        return P.transpose(3, 0, 1, 2)

    # -- backward -------------------------------------------------------------------------------
    def backward(self, grad_y: Any, input_grad: bool = True) -> Any:
        """Fill the conv's gradients; return dL/dx (``None`` if not asked)."""
        conv = self.conv
        xp, par = conv.xp, parallel_of(conv.backend)
        ws = self._ws
        K, col, Y, Y2, t, mask = ws["K"], ws["col"], ws["Y"], ws["Y2"], ws["t"], ws["mask"]
        o = conv.out_channels
        gyT = grad_y.transpose(1, 2, 3, 0)                  # (O, Hp, Wp, N), batch-last order
        if self.max_pool:
            P, g, gt, taken, Yq = ws["P"], ws["g"], ws["gt"], ws["taken"], ws["Yq"]
            overlap = self.pool.stride < self.pool.kernel_size
            if not ws["tiled"]:
                Y.fill(0)

            def act_route(p: slice) -> None:
                gp, hit = g[p], mask[p]
                self._act_grad(P[p], gyT[p], gp, t[p], hit)     # g = dP * f'(P)
                # dZ: g at each window's first maximum: the last offset that beat the running
                # maximum of those before it (gt), or offset 0 if none did
                tk = taken[p]
                tk.fill(False)
                for q in range(len(Yq) - 1, -1, -1):
                    if q:
                        gt_q = gt[q - 1][p]
                        xp.greater(gt_q, tk, out=hit)           # gt & ~taken (booleans)
                        tk |= gt_q
                    else:
                        xp.logical_not(tk, out=hit)
                    if overlap:
                        xp.multiply(gp, hit, out=t[p])
                        Yq[q][p] += t[p]
                    else:
                        xp.multiply(gp, hit, out=Yq[q][p])
            par(act_route, o, 3 * Y.size)
        elif self.pool is None:
            tf, maskf = ws["tf"], ws["maskf"]
            par(lambda p: self._act_grad(Y[p], gyT[p], Y[p], tf[p], maskf[p]), o, 4 * Y.size)
        else:
            Yq, k2 = ws["Yq"], self.pool.kernel_size ** 2
            share = ws["P"]                                     # (P is not needed any more)
            dA = ws.get("dA")

            tf, maskf = ws["tf"], ws["maskf"]

            def spread(p: slice) -> None:
                sp = share[p]
                xp.divide(gyT[p], k2, out=sp)                   # each input's share, g / k**2
                self._derivative(Y[p], tf[p], maskf[p])         # f'(A), in place of A
                if dA is None:      # windows tile the map: dZ_q = f'(A_q) * share, in place
                    for Y_q in Yq:
                        xp.multiply(Y_q[p], sp, out=Y_q[p])
                    return
                dAp = dA[p]                                     # dA, then dZ = f'(A) * dA
                dAp.fill(0)
                for dA_q in ws["dAq"]:
                    dA_q[p] += sp
                xp.multiply(Y[p], dAp, out=Y[p])
            par(spread, o, 4 * Y.size)
        # [dW, db] = dZ @ [col; 1].T, computed as ([col; 1] @ dZ.T).T (the faster orientation)
        dWb = ws["dWb"]
        dot_t_by_chunks(col, Y2, dWb, ws["chunks"], ws["parts"], par)   # [dW, db].T = [col; 1] @ dZ.T
        xp.copyto(conv.grads["W"].reshape(o, K), dWb[:K].T)
        xp.copyto(conv.grads["b"], dWb[K])
        if not input_grad:
            return None
        if "dcol" not in ws:   # (a first layer never needs them)
            xpad = ws["xpad"]
            c, hpad, wpad, n = xpad.shape
            (ph, pw) = conv.padding
            ws["dcol"] = xp.empty_like(ws["col6"])
            ws["dX"] = xp.empty((c, hpad - 2 * ph, wpad - 2 * pw, n), xpad.dtype)
        dcol, dX = ws["dcol"], ws["dX"]
        xp.dot(self._W2.T, Y2, out=dcol.reshape(K, -1))                 # dcol = W2.T @ dZ
        geometry = (conv.kernel_size, conv.stride, conv.padding, xp)
        if ws["offset_major"]:
            im2col_.col2im_offset_major(dcol, dX, *geometry)
        else:
            par(lambda p: im2col.col2im_unpadded(dcol[p], dX[p], *geometry), dX.shape[0], 3 * dcol.size)
        return dX.transpose(3, 0, 1, 2)
