"""The loss's gradient in the accelerated training loop: :class:`SoftmaxGradient`.

:meth:`nnscratch.losses.SoftmaxCrossEntropy.gradient` is the readable form,
``(softmax(Z) - Y) / m``. This is the same mathematics in seven or eight NumPy calls into kept
buffers, with the softmax's max shift only where it is needed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..backend import backend_of


class SoftmaxGradient:
    """``gradient(logits, Y)``: dL/dZ = (softmax(Z) - Y) / m of softmax cross-entropy for one-hot
    ``Y`` (m, k) in the dtype of ``logits``. The result is a buffer reused at the next call with
    the same shape."""

    def __init__(self) -> None:
        self._buffers: dict[tuple[int, ...], tuple[Any, ...]] = {}

    def __call__(self, logits: np.ndarray, Y: np.ndarray) -> np.ndarray:
        bufs = self._buffers.get(logits.shape)
        if bufs is None:
            m, dt, xp = logits.shape[0], logits.dtype, backend_of(logits).xp
            row_sum = xp.empty(m, dt)
            bufs = self._buffers[logits.shape] = (
                # row sums are a product with a vector of ones: BLAS does it 2x faster than a
                # reduction over 10 columns; the divide broadcasts them as a column
                xp, xp.empty_like(logits), row_sum, row_sum[:, None], xp.ones(logits.shape[1], dt),
                xp.array(1.0 / m, dtype=dt),  # a 0-d array: no conversion of 1/m at each call
                # below this row sum of exp(Z - c) the row's largest term is near the smallest
                # normal float (1e-38 in float32) and its probabilities would lose precision
                float(np.finfo(dt).tiny) * 1e8,
                # largest logit for which the row sums of exp(Z) stay finite, with a margin
                float(np.log(np.finfo(dt).max / logits.shape[1])) - 4.0)
        xp, g, row_sum, row_sum_col, ones, inv_m, safe_row_sum, no_shift_below = bufs
        # Softmax is unchanged by subtracting any constant from a row; the shift only has to keep
        # exp from overflowing. When even the largest logit of the batch, c, is small enough that
        # exp cannot overflow, no shift is needed at all; otherwise every row is shifted by c
        # (one constant costs a third of the row maxima). A row whose own maximum is far below
        # the others could underflow to all zeros, so the row sums are checked, and then the
        # textbook shift by each row's own maximum is used instead.
        c = logits.max()
        if c < no_shift_below:
            xp.exp(logits, out=g)                           # E = exp(Z)
        else:
            xp.subtract(logits, c, out=g)                   # S = Z - c
            xp.exp(g, out=g)                                # E = exp(S)
        xp.dot(g, ones, out=row_sum)                        # sum(E) of each row
        if row_sum.min() < safe_row_sum:
            xp.subtract(logits, logits.max(axis=1, keepdims=True), out=g)   # the textbook shift
            xp.exp(g, out=g)
            xp.dot(g, ones, out=row_sum)
        xp.divide(g, row_sum_col, out=g)                    # P = E / sum(E)
        xp.subtract(g, Y, out=g)                            # P - Y
        xp.multiply(g, inv_m, out=g)                        # (P - Y) / m
        return g
