"""The one contract every layer follows.

``forward(x, training)`` computes the output and, when ``training`` is true, caches what
``backward`` needs. ``backward(grad_y)`` receives dL/dy, *overwrites* the layer's ``grads`` (same
keys and shapes as ``params``) with dL/dparam and returns dL/dx.

Speed note: in training mode a layer writes its outputs into workspace buffers it owns (one set per
batch size) instead of allocating new arrays each step. An array returned by ``forward(...,
training=True)`` or ``backward`` is therefore valid until the next call of the same method; copy it
if you need to keep it. With ``training=False`` (prediction) every call returns fresh arrays.

Images are (N, C, H, W) arrays everywhere, but not always in that order in memory: in training a
batch-last ``Conv2D`` returns its output as a (N, C, H, W) *view* of (C, H, W, N) memory (see
:func:`batch_last`), and batch norm and pooling keep that memory order for their outputs and
gradients. The values, and so every result, are the same in either order (NumPy indexes by
strides); only the speed differs: it saves the transposing copies between layers, and a channel's
numbers, or a pooling offset's, are then long contiguous runs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..backend import CPU, Backend


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


class Layer:
    """Base class: parameters and gradients live in matching named dicts.

    ``self.xp`` is the array module the layer computes with (NumPy, or CuPy on a GPU), set once by
    the model that owns the layer (:meth:`use_backend`); layer code calls ``xp.dot``,
    ``xp.empty``, ... where a CPU-only version would call ``np.dot``, ``np.empty``.
    """

    #: where the layer computes (see :mod:`nnscratch.backend`); NumPy unless a model says otherwise
    backend: Backend = CPU
    xp = np

    def __init__(self) -> None:
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        #: non-trainable arrays saved with the model (e.g. batch norm's running statistics)
        self.state: dict[str, np.ndarray] = {}
        self._workspace: dict[Any, tuple[np.ndarray, ...]] = {}

    # -- the contract -------------------------------------------------------------------------
    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        raise NotImplementedError

    def backward(self, grad_y: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        """Fill ``self.grads`` and return dL/dx (``None`` when ``input_grad`` is false)."""
        raise NotImplementedError

    # -- shared plumbing ----------------------------------------------------------------------
    def use_backend(self, backend: Backend) -> None:
        """Compute with ``backend``'s array module from now on (the model moves the arrays)."""
        self.backend, self.xp = backend, backend.xp
        self._workspace.clear()

    def reset_parameters(self, rng: np.random.Generator, dtype: np.dtype) -> None:
        """(Re)draw the parameters from ``rng`` in ``dtype``; layers without parameters do nothing."""
        self._workspace.clear()

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Shape of one example's output for one example's input shape (element-wise: the same).

        Raises ``ValueError`` when the layer cannot take that shape.
        """
        return input_shape

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments that rebuild this layer (saved in model files)."""
        return {}

    @property
    def n_params(self) -> int:
        return sum(p.size for p in self.params.values())

    def __repr__(self) -> str:
        args = ", ".join(
            f"{v!r}" if k in getattr(self, "_positional", ()) else f"{k}={v!r}"
            for k, v in self.get_config().items()
        )
        return f"{type(self).__name__}({args})"
