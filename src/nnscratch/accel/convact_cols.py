r"""The window-offset-first layout of :mod:`.convact` (the rest of im2col/col2im is :mod:`.im2col`).

The layout is :class:`~nnscratch.layers.Conv2D`'s batch-last one: the padded input
``xpad[c, h, w, n]`` (C, H + 2*ph, W + 2*pw, N) and the im2col matrix
``col[c, u, v, i, j, n] = xpad[c, sh*i + u, sw*j + v, n]`` viewed as (K, L) with ``K = C*kH*kW``
and ``L = Ho*Wo*N``. Written from the conv's public attributes only (``kernel_size``, ``stride``,
``padding``), so the kernels in :mod:`nnscratch.accel` need none of the layer's internals.
"""

from __future__ import annotations

from typing import Any

from .im2col import span

Pair = tuple[int, int]


def offset_major(a: Any, k: int) -> Any:
    """A (C, kH, kW, Ho, Wo, N) array (or view) with ``Ho = k*Hp`` and ``Wo = k*Wp`` seen window
    offset first: (C, kH, kW, k, k, Hp, Wp, N), element ``[..., a, b, i, j, n]`` being output pixel
    ``(k*i + a, k*j + b)``. A view (splitting an axis never copies)."""
    c, kh, kw, ho, wo, n = a.shape
    return a.reshape(c, kh, kw, ho // k, k, wo // k, k, n).transpose(0, 1, 2, 4, 6, 3, 5, 7)


def col2im_offset_major(dcol: Any, dX: Any, kernel_size: Pair, stride: Pair, padding: Pair,
                        xp: Any) -> None:
    """:func:`~nnscratch.accel.im2col.col2im_unpadded` for a ``dcol`` whose output pixels are
    in the offset-major order of :func:`offset_major`, (C, kH, kW, k, k, Hp, Wp, N): the same
    sum, one strided add per kernel offset ``(u, v)`` and pooling-window offset ``(a, b)``
    (output pixel ``(k*i + a, k*j + b)``
    lands at ``(sh*(k*i + a) + u - ph, sw*(k*j + b) + v - pw)``)."""
    kh, kw, k, _, hp, wp = dcol.shape[1:7]
    (sh, sw), (ph, pw) = stride, padding
    _, h, w, _ = dX.shape
    dX.fill(0)
    for u in range(kh):
        for v in range(kw):
            for a in range(k):
                rows, src_rows = span(sh * a + u, sh * k, ph, h, hp)
                if rows.start >= rows.stop:
                    continue
                for b in range(k):
                    cols, src_cols = span(sw * b + v, sw * k, pw, w, wp)
                    if cols.start < cols.stop:
                        dX[:, rows, cols] += dcol[:, u, v, a, b, src_rows, src_cols]


