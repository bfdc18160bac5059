"""Where a model computes: the array module (NumPy on the CPU, CuPy on a CUDA GPU) and its dtypes.

The layer code is written once against an *array module* ``xp`` that offers NumPy's API: NumPy
itself, or CuPy, which mirrors it on the GPU. A :class:`Backend` is chosen once, when a model is
built (``Sequential(..., device="cuda")``, ``nnscratch train --device cuda``); every layer then
reads ``self.xp`` and never asks again which device it is on::

    xp = self.xp                      # numpy or cupy, set by the model
    xp.dot(x, W, out=z)               # the same line runs on both

What differs between the two beyond ``xp`` (moving arrays between host and device, the handful
of SciPy functions a layer uses) is an attribute of the backend, picked when it is made.
Parameters are always drawn on the host by the model's NumPy generator and then copied to the
device, so a seeded model starts from the same weights on the CPU and on the GPU.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from .errors import DeviceError

#: dtypes a model may compute in
SUPPORTED_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

#: the devices a user can ask for ("cuda:1" picks the second GPU)
DEVICE_HELP = "'cpu' or 'cuda' (or 'cuda:N' for GPU number N)"


def resolve_dtype(dtype: object) -> np.dtype:
    """Return ``dtype`` as a NumPy dtype, accepting ``"float32"``/``"float64"`` or the types.

    Raises ``ValueError`` naming the bad value for anything else.
    """
    try:
        resolved = None if dtype is None else np.dtype(dtype)  # type: ignore[call-overload]
    except TypeError:
        resolved = None
    if resolved is None or resolved not in SUPPORTED_DTYPES:  # (dtype("float64") == None!)
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    return resolved


@dataclass(frozen=True, eq=False)
class Backend:
    """An array module and what goes with it. Use :func:`get_backend` to get one."""

    #: "cpu" or "cuda:N"
    device: str
    #: the array module: ``numpy`` or ``cupy``
    xp: ModuleType
    #: host (NumPy) or device array -> an array of this backend (no copy when already there)
    asarray: Callable[..., Any]
    #: array of this backend -> NumPy array on the host (no copy on the CPU)
    to_numpy: Callable[[Any], np.ndarray]
    #: ``upload(device_array, host_array)``: copy a host array into the device array made from it
    #: by ``asarray`` (nothing to do on the CPU, where the two are the same array)
    upload: Callable[[Any, np.ndarray], None]
    #: the error function, element-wise (``scipy.special.erf`` or ``cupyx.scipy.special.erf``)
    erf: Callable[[Any], Any]
    #: ``numpy.lib.stride_tricks.sliding_window_view`` or CuPy's
    sliding_window_view: Callable[..., Any]
    def __repr__(self) -> str:
        return f"Backend({self.device!r}, xp={self.xp.__name__})"


def _erf_cpu(x: Any) -> Any:
    from scipy.special import erf  # SciPy is imported only by the layers that need it (GELU)

    return erf(x)


def _upload_cpu(device_array: np.ndarray, host_array: np.ndarray) -> None:
    """Nothing to copy: on the CPU ``asarray(host_array)`` *is* ``host_array``."""


CPU = Backend("cpu", np, np.asarray, np.asarray, _upload_cpu, _erf_cpu,
              np.lib.stride_tricks.sliding_window_view)

#: the backend of each array type seen so far: ``backend_of`` looks arrays up here
_BY_ARRAY_TYPE: dict[type, Backend] = {np.ndarray: CPU}
_CUDA: dict[int, Backend] = {}


def register(backend: Backend, array_type: type) -> Backend:
    """Record that arrays of ``array_type`` belong to ``backend`` (used for CuPy, and by tests)."""
    _BY_ARRAY_TYPE[array_type] = backend
    return backend


def backend_of(array: Any) -> Backend:
    """The backend an array lives on: CPU for NumPy arrays (and anything unknown), else CuPy's.

    For code that receives arrays rather than owning a model (losses, augmentation), like
    ``cupy.get_array_module``.
    """
    return _BY_ARRAY_TYPE.get(type(array), CPU)


def get_backend(device: str | Backend | None = "cpu") -> Backend:
    """The backend for ``device``: ``"cpu"`` (default), ``"cuda"`` or ``"cuda:N"``.

    Raises :class:`DeviceError` with the reason when CuPy is not installed, no CUDA GPU is
    visible, or the name is unknown. One process uses one GPU: CuPy computes on its *current*
    device, which the first ``"cuda:N"`` asked for sets, so asking for a second GPU is an error
    rather than a model silently running on the other one.
    """
    if isinstance(device, Backend):
        return device
    if device is None or device == "cpu":
        return CPU
    match = re.fullmatch(r"(?:cuda|gpu)(?::(\d+))?", device) if isinstance(device, str) else None
    if match is None:
        raise DeviceError(f"unknown device {device!r}: use {DEVICE_HELP}")
    index = int(match.group(1) or 0)
    if index not in _CUDA:
        if _CUDA:
            raise DeviceError(f"device {device!r}: this process already computes on "
                              f"{next(iter(_CUDA.values())).device}; one GPU per process")
        _CUDA[index] = _make_cuda(index, device)
    return _CUDA[index]


def _make_cuda(index: int, name: str) -> Backend:
    try:
        import cupy
    except ImportError as exc:
        raise DeviceError(
            f"device {name!r} needs CuPy, which could not be imported ({exc}); install it with "
            "pip install 'nnscratch[cuda]' (CuPy for CUDA 12; for another CUDA, the matching "
            "cupy-cudaXXx package), or use device 'cpu'") from None
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CUDARuntimeError: no driver, no device, ...
        raise DeviceError(f"device {name!r}: CuPy is installed but found no usable CUDA GPU "
                          f"({type(exc).__name__}: {exc}); use device 'cpu'") from None
    if count == 0:
        raise DeviceError(f"device {name!r}: CuPy is installed but no CUDA GPU is visible; "
                          "use device 'cpu'")
    if index >= count:
        raise DeviceError(f"device {name!r}: there are only {count} CUDA GPU(s) "
                          f"(cuda:0 to cuda:{count - 1})")
    cupy.cuda.Device(index).use()
    from cupyx.scipy.special import erf

    backend = Backend(f"cuda:{index}", cupy, cupy.asarray, cupy.asnumpy, cupy.ndarray.set, erf,
                      cupy.lib.stride_tricks.sliding_window_view)
    return register(backend, cupy.ndarray)
