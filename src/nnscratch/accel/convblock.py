r"""The training fast path of a conv block: ``Conv2D -> BatchNorm -> [MaxPool2D] -> ReLU``.

Run layer by layer, such a block passes over its full-size feature maps about twenty times a step
(the convolution's output, batch norm's centring, variance, scaling and shift, and their
gradients, pooling's offsets and masks, ...). Each pass costs about as much as the arithmetic
it does, so :class:`ConvBlock` computes the same mathematics, for training, in fewer passes.
Notation: ``Z = W2 @ col + b`` is the convolution's output (O, n) as in
:class:`~nnscratch.layers.Conv2D`, with ``n = N*Ho*Wo`` values per channel; batch norm has
``mu``, ``var``, ``inv_std = 1 / sqrt(var + eps)``, ``Zhat = (Z - mu) * inv_std`` and
``A = gamma * Zhat + beta``; pooling gives ``M``, ReLU ``P = max(M, 0)``.

1. **Batch norm's shift and scale applied after pooling, on 4x fewer values.** Per channel,
   ``A = a * (Z - mu) + beta`` with ``a = gamma * inv_std`` is an increasing function of ``Z``
   where ``a >= 0``, so the maximum of a window of ``A`` is ``a * (maximum of the window of
   Z - mu) + beta``, at the same place. Channels with ``gamma < 0`` have their filters negated
   first: with ``s = sign(gamma)`` (+1 where ``gamma = 0``) the block convolves with ``s * W``,
   so that ``A = |a| * Xc + beta`` with ``Xc = s * (Z - mu)``, increasing in ``Xc``::

       Zs = (s * W2) @ col      Xc = Zs - mean(Zs)      var = mean(Xc**2)
       M' = max of each window of Xc                    P = max(|a| * M' + beta, 0)

2. **Backward through ReLU, pooling and batch norm in one expression.** With ``g = dP * (P > 0)``
   (pooled size) and ``dA`` that gradient routed to each window's first maximum (zero
   elsewhere; forward records which window offsets raised the running maximum, so no value is
   compared again), batch norm's backward ``dZ = a * (dA - sum(dA) / n - Zhat * sum(dA * Zhat) / n)``
   becomes, in the sign-flipped space (``dXs = s * dZ``)::

       D = sum(g * M')          dbeta = sum(g)          dgamma = s * inv_std * D
       dXs = |a| * dA + k * Xc + c,   k = -|a| * inv_std**2 * D / n,   c = -|a| * dbeta / n
       dW = s * (dXs @ col.T)   dcol = (s * W2).T @ dXs  -> col2im -> dX

   ``dXs`` overwrites ``Xc`` in place, one window offset at a time.
3. **The conv bias before batch norm cancels**: ``Z - mu`` does not depend on it, so its
   gradient is exactly zero and the block does not add it (the running mean includes it).
4. **Few values per patch: batch norm's statistics from the patches (the "fold").** When
   ``K = C*kH*kW <= O`` (a first layer on grey or RGB images), the im2col matrix is smaller than
   the output, and ``Z - mu = W2 @ colc`` with ``colc = col - m`` (``m`` the mean column), so
   with the patches' covariance ``S = colc @ colc.T / n`` (K x K)::

       mu = W2 @ m + b          var = (W2 @ S) * W2 summed per row
       A = [a * W2, beta] @ [colc; 1]       (one product: the normalised map, never centred)
       R = dA @ colc.T          dgamma = inv_std * (R * W2) summed per row
       dW = a * (R - dgamma * inv_std * (W2 @ S))

   so the full-size output is written once and read only to pool it.

With pooling, the conv's output columns are ordered by window offset first (see
``ConvBlock._buffers``), so each offset of every window is one contiguous block. Maps are kept
batch-last (``(C, H, W, N)`` in memory, see :mod:`nnscratch.accel.layout`): the block's output is
a (N, C, H, W) view of such an array, and its input gradient a view of the interior of one with
a zero border (where col2im adds up).

The results are those of the layers run one by one (``tests/test_convblock.py`` compares both
in float64, ties in the pooling windows included, checks gradients numerically with negative
controls, and trains a CNN both ways); they differ only where rounding makes two values of a
window equal after batch norm but not before (the gradient then goes to the larger one, where
the layer path takes the first). Prediction (``training=False``) always runs the layers
themselves, with batch norm's running statistics. The planner
(:mod:`nnscratch.accel.planner`) puts these blocks in place of the layers where they form one
(:func:`match`); ``Sequential(..., accelerate=False)`` trains layer by layer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from ..errors import InputError
from ..layers import BatchNorm, Conv2D, Layer, MaxPool2D, ReLU
from .blas import dot_by_chunks, dot_t_by_chunks, long_chunks
from .im2col import col2im_unpadded, windows
from .threads import parallel_of


def match(layers: Sequence[Layer], i: int,
          output_shapes: Sequence[tuple[int, ...]]) -> int | None:
    """The end of the conv block starting at ``layers[i]``, or None: ``Conv2D``, a ``BatchNorm``
    of its channels, optionally a ``MaxPool2D`` whose windows tile the conv's output exactly
    (stride = kernel size, which divides the map's height and width), then ``ReLU``.
    ``output_shapes[j]`` is the (C, H, W) shape layer ``j`` outputs. (The planner has moved a
    max-pool after the ReLU before it, :func:`nnscratch.accel.planner.reorder`.)"""
    if i + 2 >= len(layers):
        return None
    conv, bn, nxt = layers[i:i + 3]
    if type(conv) is not Conv2D or type(bn) is not BatchNorm or len(output_shapes[i]) != 3:
        return None
    if type(nxt) is ReLU:
        return i + 3
    if type(nxt) is MaxPool2D and i + 3 < len(layers) and type(layers[i + 3]) is ReLU:
        k, (_, h, w) = nxt.kernel_size, output_shapes[i]
        if nxt.stride == k and h % k == 0 and w % k == 0:
            return i + 4
    return None


def build(layers: Sequence[Layer]) -> ConvBlock:
    """The block for ``layers[i:stop]`` as :func:`match` found them."""
    conv, bn, *rest = layers
    return ConvBlock(conv, bn, rest[0] if len(rest) == 2 else None, rest[-1])  # type: ignore[arg-type]


class ConvBlock:
    """Training forward and backward of ``Conv2D -> BatchNorm -> [MaxPool2D] -> ReLU`` (see the
    module docstring), with the layer contract of :class:`~nnscratch.layers.Layer` in training:
    it fills the conv's and batch norm's ``grads``, updates batch norm's running statistics, and
    its outputs are valid until its next call."""

    def __init__(self, conv: Conv2D, bn: BatchNorm, pool: MaxPool2D | None, relu: ReLU) -> None:
        self.conv, self.bn, self.pool, self.relu = conv, bn, pool, relu
        (kh, kw), c, o = conv.kernel_size, conv.in_channels, conv.out_channels
        #: batch norm's statistics from the patches' covariance (see the module docstring)
        self.fold = c * kh * kw <= o
        #: the conv's output stored window offset first (see _buffers)
        self.offset_major = pool is not None and self.fold
        self._workspace: dict[tuple[int, ...], dict[str, Any]] = {}

    def __repr__(self) -> str:
        parts = [self.conv, self.bn] + ([self.pool] if self.pool else []) + [self.relu]
        return f"ConvBlock({', '.join(map(repr, parts))})"

    # -- buffers ----------------------------------------------------------------------------------
    def _buffers(self, shape: tuple[int, ...], dtype: Any) -> dict[str, Any]:
        """Scratch arrays for inputs of ``shape``. The conv's output ``Y`` has one row of
        ``L = N*Ho*Wo`` values per channel, batch-last: (O, Ho, Wo, N). With pooling and the fold
        (``offset_major``: first layers, whose output is large and which need no input
        gradient) it is ordered by window offset first, (O, k, k, Hp, Wp, N) holding pixel
        ``(k*i + u, k*j + v)`` at ``[:, u, v, i, j]``, so that each offset's values are one
        contiguous block per channel (the fold's product over the routed gradient needs that
        order too); the other blocks keep the spatial order, whose im2col and col2im copy longer
        runs (a little faster for the MNIST CNN's second block timed on its own; within the
        noise over whole epochs). The im2col matrix ``col`` has its columns in the output's
        order; the routed gradient ``dA`` (pooling only) is always offset-major."""
        conv, xp = self.conv, self.conv.xp
        n, c, h, w = shape
        (kh, kw), (ph, pw), o = conv.kernel_size, conv.padding, conv.out_channels
        if c != conv.in_channels:
            raise InputError(f"Conv2D expects {conv.in_channels} input channels, got {c} "
                             f"(input (N, C, H, W) = {shape})")
        ho, wo = conv.output_hw(h, w)
        k = self.pool.kernel_size if self.pool else 1
        hp, wp, K = ho // k, wo // k, c * kh * kw
        if n * ho * wo < 2:   # (as BatchNorm itself)
            raise InputError("BatchNorm needs more than 1 value per feature in training")
        pooled = (o, hp, wp, n)
        xpad = xp.zeros((c, h + 2 * ph, w + 2 * pw, n), dtype)            # zero border kept
        win = windows(xpad, conv.kernel_size, conv.stride, 1,   # (C, kH, kW, Ho, Wo, N):
                      conv.backend.sliding_window_view)       #   a view of xpad
        if self.offset_major:
            win = win.reshape(c, kh, kw, hp, k, wp, k, n).transpose(0, 1, 2, 4, 6, 3, 5, 7)
        out = win.shape[3:]                        # one channel's output, in the column order
        # col (K, L), with a last row of ones where the fold puts beta into the product
        col = xp.ones((K + self.fold, math.prod(out)), dtype)
        Y = xp.empty((o, *out), dtype)
        ws = {"xpad": xpad, "win": win, "col": col, "col6": col[:K].reshape(c, kh, kw, *out),
              "Y": Y, "Yq": self._offsets(Y, self.offset_major),
              "P": xp.empty(pooled, dtype), "g": xp.empty(pooled, dtype),
              "mask": xp.empty(pooled, bool), "taken": xp.empty(pooled, bool),
              # gt[q - 1]: offset q beat the maximum of offsets 0..q-1 (strictly), from forward
              "gt": xp.empty((k * k - 1, *pooled), bool),
              "ones": xp.ones(col.shape[1], dtype), "ones_p": xp.ones(hp * wp * n, dtype),
              "dWT": xp.empty((K, o), dtype)}
        if self.pool:
            ws["M"] = xp.empty(pooled, dtype)
            ws["dA"] = xp.empty((o, k, k, hp, wp, n), dtype)
            ws["dAq"] = self._offsets(ws["dA"], True)
        else:
            ws["M"] = Y
        # a first layer's products (few channels, long rows) go by chunks of their columns
        chunks = ws["chunks"] = long_chunks(col.shape[1], K + 1, max(K + 1, o), conv.backend)
        sums = ((K, K), (o, K)) if self.fold else ((K, o),)   # the products summed over chunks
        ws["parts"] = {rq: xp.empty((chunks, *rq), dtype) for rq in sums} if chunks else {}
        if self.fold:   # the patch covariance S and R = dA @ colc.T
            ws["S"], ws["R"] = xp.empty((K, K), dtype), xp.empty((o, K), dtype)
        self._workspace[shape] = ws
        return ws

    def _offsets(self, a: Any, offset_major: bool) -> list[Any]:
        """Views of a conv output ``a`` (in offset-major or spatial order), one per
        pooling-window offset (u, v) in row-major order, each holding that element of every
        window: (O, Hp, Wp, N); ``[a]`` without pooling."""
        if not self.pool:
            return [a]
        k = self.pool.kernel_size
        if offset_major:
            return [a[:, u, v] for u in range(k) for v in range(k)]
        return [a[:, u::k, v::k] for u in range(k) for v in range(k)]

    # -- forward ----------------------------------------------------------------------------------
    def forward(self, x: Any, training: bool = True) -> Any:
        """The block's output for (N, C, H, W) images ``x`` in training (batch statistics)."""
        conv, bn, xp = self.conv, self.bn, self.conv.xp
        if x.ndim != 4:
            raise InputError(f"Conv2D expects numeric (N, C, H, W) images, got shape {x.shape}")
        W = conv.params["W"]
        ws = self._workspace.get(x.shape) or self._buffers(x.shape, W.dtype)
        _, _, h, w = x.shape
        (ph, pw), o = conv.padding, conv.out_channels
        col, Y, P = ws["col"], ws["Y"], ws["P"]
        K, L = ws["dWT"].shape[0], ws["ones"].shape[0]
        W2, Y2 = W.reshape(o, K), Y.reshape(o, L)
        par, c = parallel_of(conv.backend), x.shape[1]     # (par: each part of the channels at once)
        # im2col, as in accel.kernels.FastConv2D.forward: xpad[c, ph + h, pw + w, n] = X[n, c, h, w]
        xpad, xT, col6, win = ws["xpad"], x.transpose(1, 2, 3, 0), ws["col6"], ws["win"]

        def im2col(p: slice) -> None:
            xp.copyto(xpad[p, ph:ph + h, pw:pw + w], xT[p])
            xp.copyto(col6[p], win[p])
        par(im2col, c, 2 * col6.size)
        gamma, beta = bn.params["gamma"], bn.params["beta"]
        if self.fold:
            # statistics from the patches: colc = col - m, S = colc @ colc.T / L
            colc = col[:K]
            m = (colc @ ws["ones"]) / L
            par(lambda p: xp.subtract(colc[p], m[p, None], out=colc[p]), K, 2 * colc.size)
            S = ws["S"]
            dot_t_by_chunks(colc, colc, S, ws["chunks"], ws["parts"].get((K, K)), par)
            S /= L
            WS = W2 @ S
            var = xp.maximum(xp.einsum("ij,ij->i", WS, W2), 0)      # var = W2 S W2.T, per row
            inv_std = 1 / xp.sqrt(var + bn.eps)
            a = gamma * inv_std
            bn.update_running(W2 @ m + conv.params["b"], var, L)   # mu = W2 @ m + b
            # Y = A = a * (W2 @ colc) + beta: one product with [a * W2, beta]
            dot_by_chunks(xp.concatenate([W2 * a[:, None], beta[:, None]], axis=1), col, Y2,
                          ws["chunks"], par)
            M = ws["M"]

            def pool_relu(p: slice) -> None:
                self._pool(ws, p)
                xp.maximum(M[p], 0, out=P[p])                       # P = ReLU(max over windows)
            par(pool_relu, o, 2 * Y.size)
            self._ctx = (ws, W2, S, WS, inv_std, a)
        else:
            s = xp.where(gamma < 0, -1, 1).astype(W.dtype)          # sign(gamma), +1 at 0
            Ws = W2 * s[:, None]
            dot_by_chunks(Ws, col, Y2, ws["chunks"], par)           # Zs = (s * W2) @ col
            mus = (Y2 @ ws["ones"]) / L
            var = xp.empty_like(mus)

            def center(p: slice) -> None:
                Y2[p] -= mus[p, None]                               # Xc = Zs - mean(Zs)
                xp.einsum("ij,ij->i", Y2[p], Y2[p], out=var[p])     # var = mean(Xc**2) (* L)
            par(center, o, 3 * Y2.size)
            var /= L
            inv_std = 1 / xp.sqrt(var + bn.eps)
            abs_a = abs(gamma) * inv_std
            bn.update_running(s * mus + conv.params["b"], var, L)  # mu = s*mean(Zs) + b
            M = ws["M"]

            def pool_bn_relu(p: slice) -> None:
                self._pool(ws, p)
                Pp = P[p]
                xp.multiply(M[p], abs_a[p, None, None, None], out=Pp)  # P = ReLU(|a| * M + beta)
                Pp += beta[p, None, None, None]
                xp.maximum(Pp, 0, out=Pp)
            par(pool_bn_relu, o, 2 * Y.size)
            self._ctx = (ws, s, Ws, M, inv_std, abs_a)
        return P.transpose(3, 0, 1, 2)

    def _pool(self, ws: dict[str, Any], p: slice) -> None:
        """M[p]: the maximum of each window of Y, over its offsets, for the channels ``p`` (M is
        Y itself without pooling), and which offsets raised the running maximum (``gt``, for
        backward)."""
        if not self.pool:
            return
        xp, M, (first, *rest) = self.conv.xp, ws["M"][p], ws["Yq"]
        xp.copyto(M, first[p])
        for Y_q, gt in zip(rest, ws["gt"], strict=True):
            xp.greater(Y_q[p], M, out=gt[p])
            xp.maximum(M, Y_q[p], out=M)

    def _routed(self, g: Any, ws: dict[str, Any], p: slice) -> Any:
        """Yield ``(Y_q, dA_q)`` for each window offset ``q``, for the channels ``p``: ``dA_q`` is
        ``g`` where offset ``q`` holds its window's first maximum (offsets in row-major order, as
        MaxPool2D), zero elsewhere (written into ``ws["dA"]``); without pooling, ``(Y, g)``.

        The first maximum is at the last offset that beat the running maximum of the offsets
        before it (``gt``, from forward; ties do not beat it), or at offset 0 if none did. So,
        from the last offset back: ``hit = gt & ~taken``, ``taken |= gt``, and ``hit = ~taken``
        for offset 0."""
        if not self.pool:
            yield ws["Y"][p], g[p]
            return
        xp, hit, taken, g = self.conv.xp, ws["mask"][p], ws["taken"][p], g[p]
        taken.fill(False)
        for q in range(len(ws["Yq"]) - 1, -1, -1):
            if q:
                gt = ws["gt"][q - 1][p]
                xp.greater(gt, taken, out=hit)          # gt & ~taken (booleans)
                taken |= gt
            else:
                xp.logical_not(taken, out=hit)
            dA_q = ws["dAq"][q][p]
            xp.multiply(g, hit, out=dA_q)
            yield ws["Yq"][q][p], dA_q

    # -- backward ---------------------------------------------------------------------------------
    def backward(self, grad_y: Any, input_grad: bool = True) -> Any:
        """Fill the conv's and batch norm's gradients; return dL/dx (``None`` if not asked)."""
        conv, bn, xp = self.conv, self.bn, self.conv.xp
        ws = self._ctx[0]
        col, Y, P, g, mask = ws["col"], ws["Y"], ws["P"], ws["g"], ws["mask"]
        K, o = ws["dWT"].shape
        L = ws["ones"].shape[0]
        par, gyT = parallel_of(conv.backend), grad_y.transpose(1, 2, 3, 0)

        def relu_backward(p: slice) -> None:
            xp.greater(P[p], 0, out=mask[p])                        # ReLU backward
            xp.multiply(gyT[p], mask[p], out=g[p])                  # g = dP * (P > 0)
        par(relu_backward, o, 4 * g.size)
        dbeta = g.reshape(o, -1) @ ws["ones_p"]                     # sum(dA) = sum(g)
        bn.grads["beta"][...] = dbeta
        conv.grads["b"].fill(0)                                     # cancels in batch norm
        Y2 = Y.reshape(o, L)
        if self.fold:
            _, W2, S, WS, inv_std, a = self._ctx
            def route(p: slice) -> None:                            # dA, into ws["dA"]
                for _ in self._routed(g, ws, p):
                    pass
            par(route, o, 2 * Y.size)
            dA = (ws["dA"] if self.pool else g).reshape(o, L)
            colc = col[:K]
            R = ws["R"]                                             # R = dA @ colc.T (O, K)
            dot_t_by_chunks(dA, colc, R, ws["chunks"], ws["parts"].get((o, K)), par)
            dgamma = inv_std * xp.einsum("ij,ij->i", R, W2)         # sum(dA * Zhat)
            bn.grads["gamma"][...] = dgamma
            # dW = dZ @ col.T = a * (R - dgamma * inv_std * (W2 @ S))
            xp.multiply((R - (dgamma * inv_std)[:, None] * WS), a[:, None],
                        out=conv.grads["W"].reshape(o, K))
            if not input_grad:
                return None
            # dZ = a * (dA - dbeta / L) - a * inv_std * dgamma / L * (W2 @ colc), into Y
            dot_by_chunks(W2, colc, Y2, ws["chunks"], par)
            k, c = (-a * inv_std * dgamma / L)[:, None], (-a * dbeta / L)[:, None]

            def combine(p: slice) -> None:
                Y2[p] *= k[p]
                Y2[p] += c[p]
                dA[p] *= a[p, None]
                Y2[p] += dA[p]
            par(combine, o, 6 * Y2.size)
            return self._input_gradient(W2, Y2, ws)
        _, s, Ws, M, inv_std, abs_a = self._ctx
        D = xp.einsum("ij,ij->i", g.reshape(o, -1), M.reshape(o, -1))   # sum(g * Xc at maxima)
        xp.multiply(s * inv_std, D, out=bn.grads["gamma"])
        k, c = (-abs_a * inv_std * inv_std * D / L)[:, None], (-abs_a * dbeta / L)[:, None]

        def dxs(p: slice) -> None:
            g[p] *= abs_a[p, None, None, None]                      # |a| * g
            Y2[p] *= k[p]                                           # dXs = k * Xc + c + |a| * dA,
            Y2[p] += c[p]                                           #   in place over Xc
            for Y_q, dA_q in self._routed(g, ws, p):
                Y_q += dA_q
        par(dxs, o, 5 * Y2.size)
        dWT = ws["dWT"]
        dot_t_by_chunks(col, Y2, dWT, ws["chunks"], ws["parts"].get((K, o)), par)   # (dXs @ col.T).T
        xp.multiply(dWT.T, s[:, None], out=conv.grads["W"].reshape(o, K))   # dW = s * dWs
        if not input_grad:
            return None
        return self._input_gradient(Ws, Y2, ws)

    def _input_gradient(self, W2: Any, dZ: Any, ws: dict[str, Any]) -> Any:
        """dX from dZ (O, L) through the convolution with weights ``W2`` (O, K): ``dcol = W2.T @
        dZ``, then col2im (each window offset's columns added back where they came from)."""
        xp, conv = self.conv.xp, self.conv
        if "dcol" not in ws:   # (the first block of a model never needs them)
            xpad = ws["xpad"]
            ws["dcol"] = xp.empty_like(ws["col6"])
            if self.offset_major:
                ws["dxp"] = xp.empty_like(xpad)        # col2im into a padded buffer
            else:
                (ph, pw), (c, hpad, wpad, n) = conv.padding, xpad.shape
                ws["dX"] = xp.empty((c, hpad - 2 * ph, wpad - 2 * pw, n), xpad.dtype)
        dcol = ws["dcol"]
        xp.dot(W2.T, dZ, out=dcol.reshape(W2.shape[1], -1))
        if not self.offset_major:   # straight into dX (C, H, W, N), returned batch-last
            dX = ws["dX"]
            size, stride, padding = conv.kernel_size, conv.stride, conv.padding
            parallel_of(conv.backend)(
                lambda p: col2im_unpadded(dcol[p], dX[p], size, stride, padding, xp),
                dX.shape[0], 3 * dcol.size)
            return dX.transpose(3, 0, 1, 2)
        dxp = ws["dxp"]
        (kh, kw), (sh, sw) = conv.kernel_size, conv.stride
        c, _, _, k, _, hp, wp, n = dcol.shape
        dxp.fill(0)
        for u in range(kh):
            for v in range(kw):
                # dxp[c, sh*(k*i + a) + u, sw*(k*j + b) + v, n] += dcol[c, u, v, a, b, i, j, n]
                rows = slice(u, u + sh * (k * hp - 1) + 1, sh)
                cols = slice(v, v + sw * (k * wp - 1) + 1, sw)
                target = dxp[:, rows, cols].reshape(c, hp, k, wp, k, n)
                target.transpose(0, 2, 4, 1, 3, 5)[...] += dcol[:, u, v]
        # dX[n, c, h, w] = dxp[c, ph + h, pw + w, n]: a view (batch-last, inside dxp's border)
        (ph, pw), (c, hpad, wpad, n) = conv.padding, dxp.shape
        return dxp[:, ph:hpad - ph, pw:wpad - pw].transpose(3, 0, 1, 2)
