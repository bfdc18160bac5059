"""Data augmentation for small images, applied per training batch with the run's generator."""

from __future__ import annotations

import numpy as np

from ..backend import backend_of
from ..validation import check_positive_int


class RandomShift:
    """Shift each image by a random whole number of pixels in each direction, in
    ``-max_shift..max_shift``, filling with zeros (the background of the digits).

    ``shape`` is one image's (C, H, W); batches come as rows of C*H*W numbers or as images and
    leave as (m, C, H, W). Vectorised: pad every image by ``max_shift`` and take, for each
    example, the (H, W) window at its own offset, in one fancy-indexing step.
    """

    def __init__(self, shape: tuple[int, int, int], max_shift: int = 1) -> None:
        if len(shape) != 3:
            raise ValueError(f"RandomShift needs the image shape (C, H, W), got {shape!r}")
        self.shape = tuple(int(d) for d in shape)
        self.max_shift = check_positive_int(max_shift, "RandomShift max_shift")

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        m, (c, h, w), s = x.shape[0], self.shape, self.max_shift
        backend = backend_of(x)  # NumPy, or CuPy for a batch on a GPU
        xp = backend.xp
        imgs = x.reshape(m, c, h, w)
        padded = xp.zeros((m, c, h + 2 * s, w + 2 * s), dtype=x.dtype)
        padded[:, :, s:s + h, s:s + w] = imgs
        # (dy, dx) + s for every example, drawn on the host by the run's NumPy generator
        offsets = backend.asarray(rng.integers(0, 2 * s + 1, size=(2, m)))
        windows = backend.sliding_window_view(padded, (h, w), axis=(2, 3))  # (m, c, 2s+1, 2s+1, h, w)
        return windows[xp.arange(m), :, offsets[0], offsets[1]]

    def __repr__(self) -> str:
        return f"RandomShift({self.shape}, max_shift={self.max_shift})"
