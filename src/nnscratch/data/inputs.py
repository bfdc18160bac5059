"""Read the inputs of ``nnscratch predict``: arrays in a dataset's format, or pictures."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from .digits import DIGITS_MAX
from .images import image_to_array, image_to_digits8x8, image_to_mnist28x28

ARRAY_SUFFIXES = {".npy", ".csv", ".txt"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


#: the largest .npy/.csv/.txt input read
MAX_INPUT_BYTES = 256 << 20


def _check_npy(path: Path) -> None:
    """Refuse a .npy whose header claims more data than the file holds, before ``np.load``."""
    from numpy.lib import format as npy

    with open(path, "rb") as f:
        try:   # (NumPy's header parser raises whatever its tokenizer meets: normalise it)
            version = npy.read_magic(f)
            if version == (1, 0):
                shape, _, dtype = npy.read_array_header_1_0(f)
            elif version in ((2, 0), (3, 0)):
                shape, _, dtype = npy.read_array_header_2_0(f)
            else:
                raise ValueError(f"unsupported .npy version {version}")
        except (ValueError, OSError):
            raise
        except Exception as exc:  # noqa: BLE001
            raise ValueError(f"corrupt .npy header ({type(exc).__name__})") from None
        count = 1
        for d in shape:
            count *= int(d)
        if count * dtype.itemsize > path.stat().st_size - f.tell():
            raise ValueError(f"the header announces shape {tuple(shape)} of {dtype}, more than "
                             "the file holds (truncated?)")


def _read_array(path: Path) -> np.ndarray:
    try:
        if path.stat().st_size > MAX_INPUT_BYTES:
            raise InputError(f"{path}: larger than the {MAX_INPUT_BYTES:,} bytes nnscratch reads "
                             "as inputs")
        if path.suffix.lower() == ".npy":
            with open(path, "rb") as f:
                magic = f.read(6)
            if magic != b"\x93NUMPY":
                raise InputError(f"{path}: is not a NumPy .npy file (it does not start with "
                                 "the .npy header written by numpy.save); give an array saved "
                                 "with numpy.save, a .csv/.txt of numbers, or a picture")
            _check_npy(path)
            try:
                return np.load(path, allow_pickle=False)
            except ValueError as exc:
                if "pickle" in str(exc):
                    raise InputError(f"{path}: holds Python objects, not numbers (nnscratch "
                                     "never unpickles files); save a numeric array") from None
                raise
        text = path.read_text(encoding="utf-8")
        if not text.strip():
            raise InputError(f"{path}: is empty")
        return np.loadtxt(io.StringIO(text.replace(",", " ")), dtype=np.float64, ndmin=1)
    except InputError:
        raise
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (ValueError, OSError, UnicodeDecodeError, EOFError, SyntaxError, TypeError,
            OverflowError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{path}: could not read numbers ({reason[:200]})") from None


def input_format(preprocessing: dict) -> tuple[str, tuple[int, int, int], float]:
    """(kind, (C, H, W), raw_max) of a model's inputs, from its recorded ``preprocessing``.

    Older digits models record ``shape`` as [8, 8]: one channel.
    """
    shape = tuple(int(d) for d in preprocessing.get("shape", (8, 8)))
    chw = (1, *shape) if len(shape) == 2 else shape
    return (str(preprocessing.get("input", "digits8x8")), chw,  # type: ignore[return-value]
            float(preprocessing.get("raw_max", DIGITS_MAX)))


def as_rows(arr: np.ndarray, source: str, shape: tuple[int, int, int], raw_max: float) -> np.ndarray:
    """One or many inputs of ``shape`` (C, H, W) (or flat) in 0..raw_max -> (n, C*H*W) floats.

    Accepted: (C*H*W,), (C, H, W), (n, C*H*W), (n, C, H, W), and for one channel also (H, W)
    and (n, H, W).
    """
    c, h, w = shape
    n_feat = c * h * w
    arr = np.asarray(arr)
    what = f"{h}x{w}" + (f"x{c}" if c > 1 else "") + f" images ({n_feat} values each)"
    if arr.dtype.kind not in "biuf":
        raise InputError(f"{source}: inputs must be numeric, got dtype {arr.dtype}")
    if arr.size == 0:
        raise InputError(f"{source}: is empty")
    one_input = {(n_feat,), (c, h, w)} | ({(h, w)} if c == 1 else set())
    if arr.shape in one_input:
        rows = arr.reshape(1, n_feat)
    elif arr.ndim >= 2 and arr.shape[1:] in one_input:
        rows = arr.reshape(arr.shape[0], n_feat)
    else:
        raise InputError(f"{source}: expected {what}, got an array of shape {arr.shape}")
    rows = rows.astype(np.float64)
    if not np.isfinite(rows).all():
        raise InputError(f"{source}: contains NaN or infinite values")
    lo, hi = float(rows.min()), float(rows.max())
    if lo < 0 or hi > raw_max:
        raise InputError(f"{source}: values must be in the dataset's 0..{raw_max:g} scale, "
                         f"found {lo:g}..{hi:g}")
    return rows


def as_digit_rows(arr: np.ndarray, source: str, side: int = 8) -> np.ndarray:
    """(64,), (8, 8), (n, 64) or (n, 8, 8) digits in 0..16 -> (n, 64) floats, checked."""
    return as_rows(arr, source, (1, side, side), DIGITS_MAX)


def picture_to_input(path: Any, preprocessing: dict) -> np.ndarray:
    """A picture (a file's path or a PIL image) -> one input in the model's raw format (its
    dataset's pixel scale). ``nnscratch predict`` and ``nnscratch serve`` both come here."""
    kind, shape, _ = input_format(preprocessing)
    if kind == "digits8x8":
        return image_to_digits8x8(path)
    if kind == "mnist28x28":
        return image_to_mnist28x28(path)
    return image_to_array(path, shape)


def load_inputs(paths: list[str | os.PathLike[str]],
                preprocessing: dict | None = None) -> tuple[np.ndarray, list[str]]:
    """Read every path (arrays or pictures) into raw rows for a model with ``preprocessing``
    (default: the 8x8 digits); returns the rows and a name for each row."""
    preprocessing = preprocessing or {"input": "digits8x8"}
    _, shape, raw_max = input_format(preprocessing)
    rows, names = [], []
    for p in map(Path, paths):
        suffix = p.suffix.lower()
        if suffix in ARRAY_SUFFIXES:
            block = as_rows(_read_array(p), str(p), shape, raw_max)
        elif suffix in IMAGE_SUFFIXES or (p.exists() and suffix not in ARRAY_SUFFIXES):
            block = as_rows(picture_to_input(p, preprocessing), str(p), shape, raw_max)
        else:
            raise InputError(f"{p}: no such file")
        rows.append(block)
        names += [str(p)] if len(block) == 1 else [f"{p}[{i}]" for i in range(len(block))]
    return np.concatenate(rows), names


def load_digit_inputs(paths: list[str | os.PathLike[str]]) -> tuple[np.ndarray, list[str]]:
    """Read every path into (n, 64) raw digits; returns the rows and a name for each row."""
    return load_inputs(paths)
