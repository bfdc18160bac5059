"""BLAS and NumPy calls made cheaper for the training loops, which make tens of thousands a second.

A step of the seed network costs about twenty calls of ~0.5-0.8 us each, so what a call costs
beyond its arithmetic matters there (and nowhere else):

- :func:`dot_of`: ``numpy.dot`` without the ``__array_function__`` dispatch in front of it
  (``np.dot._implementation``, NEP 18), which costs a fifth of a small product's time;
- :func:`take_rows_of`: ``out[i] = a[indices[i]]`` for a shuffle, with ``mode="clip"``: with the
  default ``mode="raise"`` NumPy gathers into a buffer and copies that into ``out``, twice the
  time (the indices are a permutation, so nothing is ever clipped);
- :func:`host_blas`: SciPy's BLAS routines (``axpy``, ``gemm``) called directly, for in-place
  updates NumPy has no single call for (``y += a * x``, ``C += alpha * A @ B``);
- :func:`long_chunks`, :func:`dot_t_by_chunks`, :func:`dot_by_chunks`: products over a long axis
  with few rows on either side, as a first conv layer has (``dW = dZ @ col.T`` for a (10, 50176)
  ``col`` and 16 channels): one OpenBLAS call runs them at 7-25 GFLOP/s here, on one core, while
  the same product as a stack of products over chunks of the long axis (one ``matmul``, each
  chunk small enough for a one-thread BLAS call), the chunks shared between the two threads of
  :func:`~nnscratch.accel.threads.split`, takes a third of the time (0.70 -> 0.19 ms and
  0.97 -> 0.22 ms for ``dW`` of 16 and 6 channels of 3x3 and 5x5 kernels over 64 MNIST images;
  ``W @ col`` 0.47 -> 0.31 ms and 0.69 -> 0.32 ms). Longer products (a second conv layer's) were
  as fast or faster as one call, and stay one call.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np


def dot_of(backend: Any) -> Callable[..., Any]:
    """``xp.dot`` of ``backend``, without NumPy's dispatch layer where there is one."""
    dot = backend.xp.dot
    return getattr(dot, "_implementation", dot)


def _take_rows_cpu(a: np.ndarray, indices: np.ndarray, out: np.ndarray) -> np.ndarray:
    return np.take(a, indices, axis=0, out=out, mode="clip")


def take_rows_of(backend: Any) -> Callable[[Any, Any, Any], Any]:
    """``take_rows(a, indices, out)``: ``out[i] = a[indices[i]]`` for a valid permutation."""
    if backend.xp is np:
        return _take_rows_cpu
    xp = backend.xp
    return lambda a, indices, out: xp.take(a, indices, axis=0, out=out)


def host_blas(name: str, a: Any) -> Callable[..., Any] | None:
    """SciPy's BLAS routine ``name`` (``"axpy"``, ``"gemm"``, ...) for the dtype of ``a``, a
    C-contiguous float32/float64 NumPy array; ``None`` for anything else (CuPy arrays among them:
    SciPy's BLAS runs on the host)."""
    if type(a) is np.ndarray and a.dtype in (np.float32, np.float64) and a.flags.c_contiguous:
        from scipy.linalg.blas import get_blas_funcs
        return get_blas_funcs(name, (a,))
    return None


#: products go by chunks only over a long axis of at least this many entries ...
LONG_AXIS = 8192
#: ... and with at most this many rows on the small sides (``a @ b.T``: rows of ``a`` times rows
#: of ``b``; ``w @ b``: the rows and columns of ``w``)
SMALL_SIDES = 512
#: each chunk's product does at most this many multiply-adds: OpenBLAS runs it on one thread
#: (it threads a product above ~2**18), so two chunks can run at once without contention
CHUNK_WORK = 1 << 17
#: a chunk has this many entries of the long axis, at least and at most (the longest that
#: divides the axis is taken)
CHUNK_MIN, CHUNK_MAX = 256, 2048


def long_chunks(length: int, rows: int, cols: int, backend: Any) -> int | None:
    """How many equal chunks of its long axis (``length``) a product with a ``rows`` x ``cols``
    small side should be cut into on ``backend`` (see the module docstring), or ``None`` for one
    BLAS call: on a GPU, for short axes, for large small sides, and where no chunk of
    ``CHUNK_MIN``-``CHUNK_MAX`` entries divides ``length``. Computed once per shape (the
    kernels keep it with their buffers)."""
    if backend.xp is not np or length < LONG_AXIS or rows * cols > SMALL_SIDES:
        return None
    return _chunk_count(length, rows * cols, CHUNK_WORK, CHUNK_MIN, CHUNK_MAX)


@functools.lru_cache(maxsize=256)
def _chunk_count(length: int, sides: int, work: int, least: int, most: int) -> int | None:
    for chunk in range(min(most, work // sides), least - 1, -1):   # the longest that divides
        if length % chunk == 0:
            return length // chunk
    return None


def dot_t_by_chunks(a: np.ndarray, b: np.ndarray, out: np.ndarray, chunks: int | None,
                    parts: np.ndarray | None, par: Callable[..., None]) -> None:
    """``out = a @ b.T`` for ``a`` (r, L) and ``b`` (c, L) (fastest C-contiguous): with ``chunks``, the sum
    over the chunks of the long axis L of each chunk's product, those products in ``parts``
    (chunks, r, c), the chunks split among ``par``'s threads; without, one ``dot``."""
    if chunks is None:
        a.dot(b.T, out=out)
        return
    (r, length), c = a.shape, b.shape[0]
    a3 = a.reshape(r, chunks, length // chunks).transpose(1, 0, 2)     # (chunks, r, L / chunks)
    b3 = b.reshape(c, chunks, length // chunks).transpose(1, 2, 0)     # (chunks, L / chunks, c)
    par(lambda p: np.matmul(a3[p], b3[p], out=parts[p]), chunks, 1 << 30)
    np.add.reduce(parts, axis=0, out=out)


def dot_by_chunks(w: np.ndarray, b: np.ndarray, out: np.ndarray, chunks: int | None,
                  par: Callable[..., None]) -> None:
    """``out = w @ b`` for ``w`` (o, k) and ``b`` (k, L) (fastest C-contiguous), ``out`` (o, L): with
    ``chunks``, one product per chunk of the long axis L (each writes its own columns of
    ``out``), the chunks split among ``par``'s threads; without, one ``dot``."""
    if chunks is None:
        w.dot(b, out=out)
        return
    (k, length), o = b.shape, w.shape[0]
    b3 = b.reshape(k, chunks, length // chunks).transpose(1, 0, 2)
    out3 = out.reshape(o, chunks, length // chunks).transpose(1, 0, 2)
    par(lambda p: np.matmul(w, b3[p], out=out3[p]), chunks, 1 << 30)
