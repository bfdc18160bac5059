"""Checks on user data, each failing with an :class:`InputError` that names the problem."""

from __future__ import annotations

import numpy as np

from .errors import InputError


def check_features(X: object, n_features: int | None, dtype: np.dtype, name: str = "X",
                   input_shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Return ``X`` as a 2-D array of ``dtype``; reject what a model cannot take.

    A single example given as a 1-D array of length ``n_features`` is accepted as one row.
    Integers and booleans (as 0/1) are numbers; strings, objects and complex numbers are not.
    """
    try:
        arr = np.asarray(X)
    except (ValueError, TypeError) as exc:  # ragged lists and the like
        raise InputError(f"{name} could not be read as an array: {exc}") from None
    if arr.dtype.kind not in "biuf":
        raise InputError(f"{name} must be numeric, got dtype {arr.dtype}")
    if input_shape is not None and len(input_shape) > 1:  # images: (N, C, H, W) or one (C, H, W)
        if arr.shape == tuple(input_shape):
            arr = arr.reshape(1, -1)
        elif arr.ndim == len(input_shape) + 1 and arr.shape[1:] == tuple(input_shape):
            arr = arr.reshape(arr.shape[0], -1)
        elif arr.ndim > 2:
            raise InputError(f"{name} must hold images of shape {tuple(input_shape)}, "
                             f"got an array of shape {arr.shape}")
    if arr.ndim == 1 and n_features is not None and arr.shape[0] == n_features:
        arr = arr.reshape(1, -1)
    if arr.ndim != 2:
        raise InputError(f"{name} must be 2-D (n_samples, n_features), got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise InputError(f"{name} is empty: it has 0 samples")
    if n_features is not None and arr.shape[1] != n_features:
        raise InputError(
            f"{name} has {arr.shape[1]} features per sample, the model expects {n_features}"
        )
    with np.errstate(over="ignore", invalid="ignore"):  # too-large values are reported below
        cast = np.asarray(arr, dtype=dtype)  # no copy when it already is
    if not np.isfinite(cast).all():  # one check on the hot path; the message is worked out after
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise InputError(f"{name} contains NaN or infinite values")
        raise InputError(f"{name} holds values too large for {np.dtype(dtype).name}")
    return cast


def check_labels(y: object, n_samples: int, n_classes: int, name: str = "y") -> np.ndarray:
    """Return ``y`` as a 1-D ``int64`` array of class indices in ``0..n_classes-1``.

    Accepts integer labels (n,) or (n, 1), integral floats, and one-hot rows (n, n_classes).
    """
    try:
        arr = np.asarray(y)
    except (ValueError, TypeError) as exc:
        raise InputError(f"{name} could not be read as an array: {exc}") from None
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr.ravel()
    elif (arr.ndim == 2 and arr.shape[1] == n_classes and arr.dtype.kind in "biuf"
          and np.isin(arr, (0, 1)).all() and (arr.sum(axis=1) == 1).all()):
        arr = arr.argmax(axis=1)  # one-hot rows
    if arr.ndim != 1:
        raise InputError(f"{name} must be 1-D class labels (or one-hot rows), got shape {arr.shape}")
    if arr.shape[0] != n_samples:
        raise InputError(f"{name} has {arr.shape[0]} labels but X has {n_samples} samples")
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all():
            raise InputError(f"{name} contains NaN or infinite values")
        if not np.all(arr == np.round(arr)):
            raise InputError(f"{name} must hold integer class labels, got non-integer values")
    elif arr.dtype.kind not in "biu":
        raise InputError(f"{name} must hold integer class labels, got dtype {arr.dtype}")
    bad = (arr < 0) | (arr >= n_classes)
    if bad.any():
        raise InputError(
            f"{name} holds labels outside 0..{n_classes - 1} "
            f"(e.g. {arr[bad][0]!r}); the model has {n_classes} outputs"
        )
    return arr.astype(np.int64)


def is_real_valued(y: object, n_outputs: int) -> bool:
    """Would ``y`` be real-valued targets (not class labels) for a model of ``n_outputs``
    outputs under mean squared error? Anything when there is one output (its checks say what
    is wrong with it); with ``k > 1`` outputs, float rows (n, k) that are not one-hot rows (those
    stay class labels)."""
    if n_outputs == 1:
        return True
    try:
        arr = np.asarray(y)
    except (ValueError, TypeError):
        return False
    if arr.ndim != 2 or arr.shape[1] != n_outputs or arr.dtype.kind != "f":
        return False
    one_hot = np.isin(arr, (0, 1)).all() and (arr.sum(axis=1) == 1).all()
    return not one_hot


def check_targets(y: object, n_samples: int, n_outputs: int, dtype: np.dtype,
                  name: str = "y") -> np.ndarray:
    """Return real-valued targets ``y`` (n,) or (n, k) as a 2-D (n, n_outputs) array of ``dtype``
    (regression under mean squared error); reject shapes, NaN/inf and non-numbers."""
    try:
        arr = np.asarray(y)
    except (ValueError, TypeError) as exc:
        raise InputError(f"{name} could not be read as an array: {exc}") from None
    if arr.dtype.kind not in "biuf":
        raise InputError(f"{name} must hold numbers, got dtype {arr.dtype}")
    if arr.ndim == 1:
        arr = arr.reshape(-1, 1)
    if arr.ndim != 2 or arr.shape[1] != n_outputs:
        raise InputError(f"{name} must be targets of shape (n,) or (n, {n_outputs}) for a model "
                         f"with {n_outputs} outputs, got shape {arr.shape}")
    if arr.shape[0] != n_samples:
        raise InputError(f"{name} has {arr.shape[0]} targets but X has {n_samples} samples")
    cast = np.asarray(arr, dtype=dtype)
    if not np.isfinite(cast).all():
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise InputError(f"{name} contains NaN or infinite values")
        raise InputError(f"{name} holds values too large for {np.dtype(dtype).name}")
    return cast


def check_positive_int(value: object, name: str) -> int:
    """Return ``value`` if it is an int >= 1, else raise ``ValueError`` quoting it."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def check_positive_float(value: object, name: str, allow_zero: bool = False) -> float:
    """Return ``value`` as a float if finite and > 0 (or >= 0), else raise ``ValueError``."""
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if ok:
        v = float(value)  # type: ignore[arg-type]
        ok = np.isfinite(v) and (v >= 0 if allow_zero else v > 0)
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")
    return float(value)  # type: ignore[arg-type]


def check_seed(seed: object, name: str) -> int | None:
    """``seed`` if it is None or an integer >= 0, else ``ValueError`` quoting it."""
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))
                             or seed < 0):
        raise ValueError(f"{name} must be a non-negative integer or None, got {seed!r}")
    return None if seed is None else int(seed)
