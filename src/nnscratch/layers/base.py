"""The one contract every layer follows.

``forward(x, training)`` computes the output and, when ``training`` is true, caches what
``backward`` needs. ``backward(grad_y)`` receives dL/dy, *overwrites* the layer's ``grads`` (same
keys and shapes as ``params``) with dL/dparam and returns dL/dx.

Each layer file holds one plain NumPy implementation, the mathematics of its docstring. Training
with acceleration on runs faster kernels in their place (:mod:`nnscratch.accel`), proven equal to
these layers in the tests; a learner who switches acceleration off steps through the code here.

A layer used on its own takes what a NumPy user would hand it: float32 or float64 arrays (or
ints and bools), in any memory order, read-only or not. It computes in its parameters' dtype
(layers without parameters: float32 or float64 input keeps its dtype, anything else is computed
in ``layer.dtype``, float32 unless a model says otherwise) and casts the input to it. Data it
cannot mean (strings, objects, complex numbers, an empty array, a wrong shape) raises
:class:`~nnscratch.errors.InputError` naming the layer and the problem; ``backward`` before a
training ``forward`` raises :class:`~nnscratch.errors.CallOrderError`.

``forward(x, training=False)`` (prediction) changes nothing in the layer and returns fresh arrays,
so one model may predict from several threads at once.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..backend import CPU, Backend, backend_of
from ..errors import CallOrderError, InputError

#: dtype kinds a layer accepts as data: bool, signed and unsigned ints, floats
NUMERIC_KINDS = "biuf"
_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


class ParamDict(dict):
    """A layer's named arrays (``params``, ``grads`` or ``state``) whose keys and arrays are fixed.

    ``d[name] = value`` *writes* ``value`` into the existing array (``d[name][...] = value``)
    after checking its shape and dtype, so an assignment is used and trained: a model keeps all
    its parameters in one flat buffer and the layers' arrays are views of it. A wrong shape, an
    unknown name or data that is not real numbers raises :class:`InputError` naming the layer and
    the entry. A model binds new arrays (views) with :meth:`Layer.bind_params` /
    :meth:`Layer.bind_state`, which go through :meth:`bind`.
    """

    def __init__(self, label: str, kind: str, arrays: dict[str, Any]) -> None:
        super().__init__(arrays)
        self.label, self.kind = label, kind

    def __setitem__(self, name: str, value: Any) -> None:
        where = f"{self.label} {self.kind}[{name!r}]"
        if name not in self:
            raise InputError(f"{self.label} has no {self.kind} entry {name!r} (it has {list(self)})")
        target = dict.__getitem__(self, name)
        try:
            value = np.asarray(backend_of(value).to_numpy(value))
        except (ValueError, TypeError) as exc:
            raise InputError(f"{where}: cannot use {type(value).__name__} as an array ({exc})") from None
        if value.dtype.kind not in NUMERIC_KINDS:
            raise InputError(f"{where} must be real numbers, got dtype {value.dtype}")
        if value.shape != target.shape:
            raise InputError(f"{where} has shape {target.shape}, got an array of shape {value.shape}")
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            raise InputError(f"{where}: the values contain NaN or infinity")
        target[...] = backend_of(target).asarray(value.astype(target.dtype, copy=False))

    def update(self, *args: Any, **kwargs: Any) -> None:  # (dict.update skips __setitem__)
        for name, value in dict(*args, **kwargs).items():
            self[name] = value

    def setdefault(self, name: str, value: Any = None) -> Any:
        if name not in self:
            self[name] = value   # (raises: the names are fixed)
        return self[name]

    def bind(self, name: str, array: Any) -> None:
        """Make ``array`` (same shape and dtype) the one held under ``name``: no copy."""
        old = dict.__getitem__(self, name)
        if array.shape != old.shape or array.dtype != old.dtype:
            raise InputError(f"{self.label} {self.kind}[{name!r}]: cannot bind an array of shape "
                             f"{array.shape} and dtype {array.dtype} in place of {old.shape} {old.dtype}")
        dict.__setitem__(self, name, array)

    def __reduce__(self) -> tuple[Any, ...]:  # (pickle/deepcopy: rebuild, not item by item)
        return ParamDict, (self.label, self.kind, dict(self))


class Layer:
    """Base class: parameters and gradients live in matching named dicts.

    ``self.xp`` is the array module the layer computes with (NumPy, or CuPy on a GPU), set once by
    the model that owns the layer (:meth:`use_backend`); layer code calls ``xp.zeros``,
    ``xp.maximum``, ... where a CPU-only version would call ``np.zeros``, ``np.maximum``.
    """

    #: where the layer computes (see :mod:`nnscratch.backend`); NumPy unless a model says otherwise
    backend: Backend = CPU
    xp = np
    #: the dtype of a layer without parameters for input that is not float32/float64
    dtype: np.dtype = np.dtype(np.float32)

    def __init__(self) -> None:
        self.params: ParamDict = self._dict("params", {})
        self.grads: ParamDict = self._dict("grads", {})
        #: non-trainable arrays saved with the model (e.g. batch norm's running statistics)
        self.state: ParamDict = self._dict("state", {})
        #: what the last training forward kept for backward (None: nothing yet)
        self._cache: Any = None

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
        self._cache = None

    def reset_parameters(self, rng: np.random.Generator, dtype: np.dtype) -> None:
        """(Re)draw the parameters from ``rng`` in ``dtype``; layers without parameters only
        remember ``dtype``."""
        self.dtype = np.dtype(dtype)
        self._cache = None

    def set_arrays(self, params: dict[str, Any], state: dict[str, Any] | None = None) -> None:
        """Install freshly made parameters (gradients start at zero) and state: for
        :meth:`reset_parameters`."""
        self.params = self._dict("params", params)
        self.grads = self._dict("grads", {k: np.zeros_like(v) for k, v in params.items()})
        self.state = self._dict("state", state or {})

    def bind_params(self, params: dict[str, Any], grads: dict[str, Any]) -> None:
        """Hold ``params[name]`` and ``grads[name]`` (arrays of the same shapes and dtype, e.g.
        views of a model's flat buffers) from now on, without copying: what a model calls."""
        for name, array in params.items():
            self.params.bind(name, array)
        for name, array in grads.items():
            self.grads.bind(name, array)

    def bind_state(self, state: dict[str, Any]) -> None:
        """Hold ``state[name]`` (e.g. moved to the model's device) from now on, without copying."""
        for name, array in state.items():
            self.state.bind(name, array)

    def _dict(self, kind: str, arrays: dict[str, Any]) -> ParamDict:
        try:
            label = repr(self)
        except AttributeError:   # (in __init__, before the layer's settings exist)
            label = type(self).__name__
        return ParamDict(label, kind, arrays)

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

    # -- input checks (every layer's forward and backward start with these) --------------------
    def compute_dtype(self, x: Any) -> np.dtype:
        """The dtype the layer computes in for data ``x``: its parameters' dtype; without
        parameters, ``x``'s when float32/float64, else :attr:`dtype`."""
        for p in self.params.values():
            return p.dtype
        dt = getattr(x, "dtype", None)
        return dt if dt in _FLOATS else self.dtype

    def _array(self, x: Any, what: str) -> Any:
        """``x`` as an array of this layer's module, refused (InputError) unless real numbers."""
        name = type(self).__name__
        try:
            x = self.xp.asarray(x)
        except (ValueError, TypeError) as exc:
            raise InputError(f"{name} {what}: cannot use {type(x).__name__} as an array "
                             f"({exc})") from None
        if x.dtype.kind not in NUMERIC_KINDS:
            raise InputError(f"{name} {what} must be real numbers (bool, int or float), got dtype "
                             f"{x.dtype}")
        if x.size == 0:
            raise InputError(f"{name} {what} is empty (shape {x.shape})")
        return x

    def _input(self, x: Any, ndims: tuple[int, ...] | None = None, expect: str = "") -> Any:
        """The checked input of ``forward``, cast to :meth:`compute_dtype`; ``ndims`` the
        allowed numbers of axes (``expect`` says which shape, for the message)."""
        x = self._array(x, "input")
        if x.ndim == 0:
            raise InputError(f"{type(self).__name__} expects a batch of examples, got a single "
                             "number (a 0-d array)")
        if ndims is not None and x.ndim not in ndims:
            raise InputError(f"{type(self).__name__} expects {expect} input, got shape {x.shape}")
        return x.astype(self.compute_dtype(x), copy=False)

    def _grad(self, grad_y: Any, shape: tuple[int, ...], dtype: np.dtype) -> Any:
        """The checked ``grad_y`` of ``backward``: the shape of the last training output, cast to
        ``dtype`` (that forward's)."""
        g = self._array(grad_y, "gradient")
        if g.shape != tuple(shape):
            raise InputError(f"{type(self).__name__}.backward expects a gradient of the output's "
                             f"shape {tuple(shape)}, got {g.shape}")
        return g.astype(dtype, copy=False)

    def _cached(self) -> Any:
        """What the last training forward kept; CallOrderError if there was none."""
        if self._cache is None:
            raise CallOrderError(f"{type(self).__name__}.backward called before "
                                 "forward(x, training=True)")
        return self._cache
