"""Read the inputs of ``nnscratch predict``: arrays of digits or pictures of digits."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from ..errors import InputError
from .digits import DIGITS_MAX
from .images import image_to_digits8x8

ARRAY_SUFFIXES = {".npy", ".csv", ".txt"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


def _read_array(path: Path) -> np.ndarray:
    try:
        if path.suffix.lower() == ".npy":
            return np.load(path, allow_pickle=False)
        text = path.read_text(encoding="utf-8")
        if not text.strip():
            raise InputError(f"{path}: is empty")
        return np.loadtxt(io.StringIO(text.replace(",", " ")), dtype=np.float64, ndmin=1)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (ValueError, OSError, UnicodeDecodeError, EOFError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{path}: could not read numbers ({reason})") from None


def as_digit_rows(arr: np.ndarray, source: str, side: int = 8) -> np.ndarray:
    """(64,), (8, 8), (n, 64) or (n, 8, 8) digits in 0..16 -> (n, 64) floats, checked."""
    n_feat = side * side
    arr = np.asarray(arr)
    if arr.dtype.kind not in "biuf":
        raise InputError(f"{source}: digits must be numeric, got dtype {arr.dtype}")
    if arr.size == 0:
        raise InputError(f"{source}: is empty")
    if arr.shape in ((n_feat,), (side, side)):
        rows = arr.reshape(1, n_feat)
    elif arr.ndim == 2 and arr.shape[1] == n_feat:
        rows = arr
    elif arr.ndim == 3 and arr.shape[1:] == (side, side):
        rows = arr.reshape(arr.shape[0], n_feat)
    else:
        raise InputError(f"{source}: expected {side}x{side} digits ({n_feat} values each), "
                         f"got an array of shape {arr.shape}")
    rows = rows.astype(np.float64)
    if not np.isfinite(rows).all():
        raise InputError(f"{source}: contains NaN or infinite values")
    lo, hi = float(rows.min()), float(rows.max())
    if lo < 0 or hi > DIGITS_MAX:
        raise InputError(f"{source}: values must be in the dataset's 0..{DIGITS_MAX:g} scale, "
                         f"found {lo:g}..{hi:g}")
    return rows


def load_digit_inputs(paths: list[str | os.PathLike[str]]) -> tuple[np.ndarray, list[str]]:
    """Read every path into (n, 64) raw digits; returns the rows and a name for each row."""
    rows, names = [], []
    for p in map(Path, paths):
        suffix = p.suffix.lower()
        if suffix in ARRAY_SUFFIXES:
            block = as_digit_rows(_read_array(p), str(p))
        elif suffix in IMAGE_SUFFIXES or (p.exists() and suffix not in ARRAY_SUFFIXES):
            block = as_digit_rows(image_to_digits8x8(p), str(p))
        else:
            raise InputError(f"{p}: no such file")
        rows.append(block)
        names += [str(p)] if len(block) == 1 else [f"{p}[{i}]" for i in range(len(block))]
    return np.concatenate(rows), names
