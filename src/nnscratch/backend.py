"""The dtypes the core computes in (the place where a CuPy array module will be chosen)."""

from __future__ import annotations

import numpy as np

#: dtypes a model may compute in
SUPPORTED_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


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
