"""The exceptions nnscratch raises on bad input.

``InputError``, ``ModelFileError`` and ``ExportError`` are ``ValueError``s, ``TrainingDiverged``
is a ``FloatingPointError``, ``DeviceError`` and ``CallOrderError`` are ``RuntimeError``s,
``MissingDependencyError`` is an ``ImportError``, so code that already catches those keeps
working. Each message names the problem in one line: the faces (CLI, web) print it as is.
"""

from __future__ import annotations


class NNScratchError(Exception):
    """Base class of every error nnscratch raises on purpose."""


class InputError(NNScratchError, ValueError):
    """Data handed to fit/predict is malformed: shape, dtype, NaN/inf, empty, labels, range."""


class ModelFileError(NNScratchError, ValueError):
    """A model file is missing, truncated, corrupt or not an nnscratch model."""


class TrainingDiverged(NNScratchError, FloatingPointError):
    """The training loss became NaN or infinite."""


class DeviceError(NNScratchError, RuntimeError):
    """The device asked for cannot be used: unknown name, CuPy not installed, no usable GPU."""


class CallOrderError(NNScratchError, RuntimeError):
    """A method was called out of order, e.g. a layer's ``backward`` before ``forward(x, training=True)``."""


class ExportError(NNScratchError, ValueError):
    """A model cannot be exported as asked: a layer with no ONNX or PyTorch counterpart, raw-pixel
    input for a model that records no preprocessing."""


class MissingDependencyError(NNScratchError, ImportError):
    """An optional package a feature needs is not installed; the message says what to install."""
