"""nnscratch: neural networks from scratch in NumPy.

>>> from nnscratch import Sequential, load_model
>>> from nnscratch.layers import Dense, ReLU

``import nnscratch`` changes nothing in the process and imports nothing heavy: the names below
load their modules when first used.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

#: public name -> the module that defines it (loaded when the name is first used)
_EXPORTS = {
    "DeviceError": "errors", "InputError": "errors", "ModelFileError": "errors",
    "NNScratchError": "errors", "TrainingDiverged": "errors",
    "Sequential": "model", "load_model": "model", "History": "training",
    "NNClassifier": "estimator", "NNRegressor": "estimator",   # (scikit-learn estimators)
}

__all__ = ["DeviceError", "History", "InputError", "ModelFileError", "NNClassifier", "NNRegressor",
           "NNScratchError", "Sequential", "TrainingDiverged", "__version__", "enable_threads",
           "load_model"]


def enable_threads(quiet: bool = False) -> bool:
    """Split training's large element-wise passes over the CPU's cores (results unchanged).

    Call it before NumPy is imported; returns True when the split is on, else warns in one line
    why it cannot take effect (``quiet`` silences that) and returns False. The ``nnscratch``
    command does this itself. See :mod:`nnscratch.accel.threads`.
    """
    from .accel.threads import enable_threads as _enable

    return _enable(quiet)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'nnscratch' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
