"""BLAS and NumPy calls made cheaper for the training loops, which make tens of thousands a second.

A step of the seed network costs about twenty calls of ~0.5-0.8 us each, so what a call costs
beyond its arithmetic matters there (and nowhere else):

- :func:`dot_of`: ``numpy.dot`` without the ``__array_function__`` dispatch in front of it
  (``np.dot._implementation``, NEP 18), which costs a fifth of a small product's time;
- :func:`take_rows_of`: ``out[i] = a[indices[i]]`` for a shuffle, with ``mode="clip"``: with the
  default ``mode="raise"`` NumPy gathers into a buffer and copies that into ``out``, twice the
  time (the indices are a permutation, so nothing is ever clipped);
- :func:`host_blas`: SciPy's BLAS routines (``axpy``, ``gemm``) called directly, for in-place
  updates NumPy has no single call for (``y += a * x``, ``C += alpha * A @ B``).
"""

from __future__ import annotations

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
