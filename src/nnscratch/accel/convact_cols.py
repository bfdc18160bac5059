r"""im2col and col2im over batch-last images, for :mod:`.convact` (window offset first or not).

The layout is :class:`~nnscratch.layers.Conv2D`'s batch-last one: the padded input
``xpad[c, h, w, n]`` (C, H + 2*ph, W + 2*pw, N) and the im2col matrix
``col[c, u, v, i, j, n] = xpad[c, sh*i + u, sw*j + v, n]`` viewed as (K, L) with ``K = C*kH*kW``
and ``L = Ho*Wo*N``. Written from the conv's public attributes only (``kernel_size``, ``stride``,
``padding``), so the kernels in :mod:`nnscratch.accel` need none of the layer's internals.
"""

from __future__ import annotations

from typing import Any

Pair = tuple[int, int]


def windows(xpad: Any, kernel_size: Pair, stride: Pair, sliding_window_view: Any) -> Any:
    """The view ``win[c, u, v, i, j, n] = xpad[c, sh*i + u, sw*j + v, n]`` of a batch-last padded
    input (C, Hpad, Wpad, N): (C, kH, kW, Ho, Wo, N), no copy. Build it once per buffer (it costs
    tens of microseconds of Python)."""
    (kh, kw), (sh, sw) = kernel_size, stride
    win = sliding_window_view(xpad, (kh, kw), axis=(1, 2))[:, ::sh, ::sw]  # (C, Ho, Wo, N, kH, kW)
    return win.transpose(0, 4, 5, 1, 2, 3)


def offset_major(a: Any, k: int) -> Any:
    """A (C, kH, kW, Ho, Wo, N) array (or view) with ``Ho = k*Hp`` and ``Wo = k*Wp`` seen window
    offset first: (C, kH, kW, k, k, Hp, Wp, N), element ``[..., a, b, i, j, n]`` being output pixel
    ``(k*i + a, k*j + b)``. A view (splitting an axis never copies)."""
    c, kh, kw, ho, wo, n = a.shape
    return a.reshape(c, kh, kw, ho // k, k, wo // k, k, n).transpose(0, 1, 2, 4, 6, 3, 5, 7)


def _span(offset: int, step: int, pad: int, size: int, n_out: int) -> tuple[slice, slice]:
    """Output positions ``i < n_out`` with ``0 <= step*i + offset - pad < size``, as the pair
    (target slice in the unpadded image, source slice of i)."""
    lo = max(0, -(-(pad - offset) // step))
    hi = min(n_out, (size - 1 + pad - offset) // step + 1)
    first = step * lo + offset - pad
    return slice(first, first + step * (hi - lo - 1) + 1, step), slice(lo, hi)


def col2im(dcol: Any, dX: Any, kernel_size: Pair, stride: Pair, padding: Pair,
           xp: Any) -> None:
    """``dX`` (C, H, W, N) = col2im of ``dcol`` (C, kH, kW, Ho, Wo, N): for each kernel offset
    ``(u, v)``, ``dcol[:, u, v, i, j]`` added at pixel ``(sh*i + u - ph, sw*j + v - pw)``, those
    that land inside the image only (the padding's gradient is not wanted). One strided add per
    offset; the first offset that covers the whole image is copied instead (no zero fill then)."""
    (kh, kw), (sh, sw), (ph, pw) = kernel_size, stride, padding
    _, h, w, _ = dX.shape
    ho, wo = dcol.shape[3:5]
    spans_h = [_span(u, sh, ph, h, ho) for u in range(kh)]
    spans_w = [_span(v, sw, pw, w, wo) for v in range(kw)]
    first = next(((u, v) for u in range(kh) for v in range(kw)
                  if spans_h[u][0] == slice(0, h, 1) and spans_w[v][0] == slice(0, w, 1)), None)
    if first is None:
        dX.fill(0)
    else:
        u, v = first
        xp.copyto(dX, dcol[:, u, v, spans_h[u][1], spans_w[v][1]])
    for u in range(kh):
        for v in range(kw):
            (rows, src_rows), (cols, src_cols) = spans_h[u], spans_w[v]
            if (u, v) != first and rows.start < rows.stop and cols.start < cols.stop:
                dX[:, rows, cols] += dcol[:, u, v, src_rows, src_cols]


def col2im_offset_major(dcol: Any, dX: Any, kernel_size: Pair, stride: Pair, padding: Pair,
                        xp: Any) -> None:
    """:func:`col2im` for a ``dcol`` whose output pixels are in the offset-major order of
    :func:`offset_major`, (C, kH, kW, k, k, Hp, Wp, N): the same sum, one strided add per kernel
    offset ``(u, v)`` and pooling-window offset ``(a, b)`` (output pixel ``(k*i + a, k*j + b)``
    lands at ``(sh*(k*i + a) + u - ph, sw*(k*j + b) + v - pw)``)."""
    kh, kw, k, _, hp, wp = dcol.shape[1:7]
    (sh, sw), (ph, pw) = stride, padding
    _, h, w, _ = dX.shape
    dX.fill(0)
    for u in range(kh):
        for v in range(kw):
            for a in range(k):
                rows, src_rows = _span(sh * a + u, sh * k, ph, h, hp)
                if rows.start >= rows.stop:
                    continue
                for b in range(k):
                    cols, src_cols = _span(sw * b + v, sw * k, pw, w, wp)
                    if cols.start < cols.stop:
                        dX[:, rows, cols] += dcol[:, u, v, a, b, src_rows, src_cols]


