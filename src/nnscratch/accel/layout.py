"""Batch-last images: (N, C, H, W) arrays laid out as (C, H, W, N) in memory.

Images are (N, C, H, W) arrays everywhere, but not always in that order in memory: in training a
batch-last :class:`~nnscratch.accel.kernels.FastConv2D` returns its output as a (N, C, H, W)
*view* of (C, H, W, N) memory, and the batch norm and pooling kernels keep that memory order for
their outputs and gradients. The values, and so every result, are the same in either order (NumPy
indexes by strides); only the speed differs: it saves the transposing copies between layers, and
a channel's numbers, or a pooling offset's, are then long contiguous runs. The plain layers take
any memory order.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def batch_last(x: np.ndarray) -> bool:
    """Is the (N, C, H, W) array ``x`` laid out as a contiguous (C, H, W, N) array (the batch
    axis last in memory), and not also plain row-major (as when N is 1)?"""
    return (x.ndim == 4 and not x.flags.c_contiguous
            and x.transpose(1, 2, 3, 0).flags.c_contiguous)


def empty_images(xp: Any, shape: tuple[int, int, int, int], dtype: Any, last: bool) -> np.ndarray:
    """An uninitialised (N, C, H, W) array, batch-last in memory when ``last`` (see
    :func:`batch_last`), else row-major."""
    if not last:
        return xp.empty(shape, dtype)
    n, c, h, w = shape
    return xp.empty((c, h, w, n), dtype).transpose(3, 0, 1, 2)
