"""Model files (safetensors tensors + a JSON header, no pickle) and atomic writes.

The format is specified in ``docs/model-format.md``. In short: a standard safetensors file whose
``__metadata__`` holds ``{"format": "nnscratch", "format_version": "2.0", "nnscratch": <JSON>,
"sha256": <hex>}``; the JSON holds the architecture, dtype, preprocessing, class names, dataset,
split, training config and library version; ``sha256`` is :func:`tensor_digest` of the tensors
and that JSON. Files of version "1" (no checksum) are still read.

Reading never trusts a size it has not checked: the safetensors header is parsed here (its length
against the file's size and a 100 MB cap, as safetensors does; duplicate keys refused; every
tensor's declared bytes against its offsets, the offsets against the file) before any tensor
byte is read, so a header claiming a 12.8 GB tensor fails without allocating it.

Every file nnscratch writes goes through :func:`atomic_write`: a temporary file in the same
folder, flushed and fsynced, then ``os.replace``-d over the target and the folder fsynced. A
crash at any moment leaves the old file or the new one, never a torn one.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np

from .errors import ModelFileError
from .interrupts import deferred

FORMAT = "nnscratch"
#: the version this code writes ("major.minor"); it reads every major in READ_MAJORS
FORMAT_VERSION = "2.0"
READ_MAJORS = (1, 2)
#: safetensors' own limit on the JSON header (``MAX_HEADER_SIZE``)
MAX_HEADER_BYTES = 100_000_000

#: safetensors dtype codes <-> NumPy (little-endian)
DTYPES = {"F16": "<f2", "F32": "<f4", "F64": "<f8", "I8": "i1", "I16": "<i2", "I32": "<i4",
          "I64": "<i8", "U8": "u1", "U16": "<u2", "U32": "<u4", "U64": "<u8", "BOOL": "?"}
CODES = {np.dtype(v).str.replace("|", "<").replace("=", "<"): k for k, v in DTYPES.items()}


# -- atomic writes -----------------------------------------------------------------------------
def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # (platforms without directory file descriptors)
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """``with atomic_write(path, "w") as f: f.write(...)``: ``path`` appears complete or not at all.

    Writes to a temporary file in the same folder, flushes and fsyncs it, renames it over
    ``path`` (``os.replace``) and fsyncs the folder. If the block raises, ``path`` is untouched
    and the temporary file removed. ``mode`` is ``"w"`` or ``"wb"``; ``kwargs`` go to ``open``
    (``newline=""``, ``encoding``...). While the CLI handles Ctrl-C, a second Ctrl-C waits for
    the write to end (:func:`nnscratch.interrupts.deferred`), so it never leaves a temporary file.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write mode must be 'w' or 'wb', got {mode!r}")
    with deferred():
        with _atomic_write(Path(path), mode, **kwargs) as f:
            yield f


@contextmanager
def _atomic_write(path: Path, mode: str, **kwargs: Any) -> Iterator[IO[Any]]:
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    try:
        if mode == "w":
            kwargs.setdefault("encoding", "utf-8")
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the usual file permissions
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(folder)


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_write(path, "wb") as f:
        f.write(data)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    with atomic_write(path, "w") as f:
        f.write(text)


# -- the checksum --------------------------------------------------------------------------------
def tensor_digest(tensors: dict[str, tuple[str, tuple[int, ...], Any]], header_json: str) -> str:
    """SHA-256 (hex) of ``tensors`` {name: (dtype code, shape, raw little-endian bytes)} and the
    header JSON, as ``docs/model-format.md`` defines it: for each tensor in sorted name order
    ``name NUL code NUL dims-joined-by-commas NUL byte-count NUL bytes``, then
    ``"nnscratch" NUL header-json`` (UTF-8)."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        code, shape, data = tensors[name]
        view = memoryview(data).cast("B")
        h.update(f"{name}\0{code}\0{','.join(map(str, shape))}\0{view.nbytes}\0".encode())
        h.update(view)
    h.update(b"nnscratch\0" + header_json.encode("utf-8"))
    return h.hexdigest()


def _code(a: np.ndarray) -> str:
    code = CODES.get(a.dtype.newbyteorder("<").str.replace("|", "<"))
    if code is None:
        raise ValueError(f"cannot store dtype {a.dtype} in a model file")
    return code


def write_model_file(path: str | os.PathLike[str], tensors: dict[str, np.ndarray],
                     header: dict[str, Any]) -> Path:
    """Write ``tensors`` and ``header`` as a version-2 model file, atomically."""
    from safetensors.numpy import save

    path = Path(path)
    arrays = {k: np.ascontiguousarray(v, dtype=v.dtype.newbyteorder("<")) for k, v in tensors.items()}
    text = json.dumps(header)
    digest = tensor_digest({k: (_code(a), a.shape, a) for k, a in arrays.items()}, text)
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "nnscratch": text,
            "sha256": digest}
    write_bytes_atomic(path, save(arrays, metadata=meta))
    return path


# -- reading -------------------------------------------------------------------------------------
def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k!r}")
        out[k] = v
    return out


def _loads(text: str | bytes) -> Any:
    return json.loads(text, object_pairs_hook=_no_duplicates)


def _parse_version(value: Any) -> tuple[int, int] | None:
    if not isinstance(value, str):
        return None
    major, _, minor = value.partition(".")
    if not major.isdigit() or not (minor == "" or minor.isdigit()) or len(value) > 20:
        return None
    return int(major), int(minor or 0)


def _read_safetensors(p: Path) -> tuple[dict[str, str], dict[str, tuple[str, tuple[int, ...], memoryview]]]:
    """(metadata, {name: (code, shape, raw bytes)}) of a safetensors file, every size checked
    against the file's before anything large is read."""
    def bad(reason: str) -> ModelFileError:
        return ModelFileError(f"{p}: not a readable model file (truncated or corrupt safetensors: "
                              f"{reason})")

    size = p.stat().st_size
    with open(p, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise bad(f"{size} bytes, shorter than the 8-byte header length")
        (n,) = struct.unpack("<Q", head)
        if n > MAX_HEADER_BYTES:
            raise bad(f"header length {n} exceeds the {MAX_HEADER_BYTES}-byte limit")
        if n > size - 8:
            raise bad(f"header length {n} runs past the end of the {size}-byte file")
        raw_header = f.read(n)
        try:
            header = _loads(raw_header.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise bad(f"header is not JSON: {reason[:120]}") from None
        if not isinstance(header, dict):
            raise bad("header is not a JSON object")
        meta = header.pop("__metadata__", None) or {}
        if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
            raise bad("__metadata__ is not a mapping of strings")
        data_len = size - 8 - n
        spans, entries = [], {}
        for name, info in header.items():
            if not (isinstance(info, dict) and set(info) == {"dtype", "shape", "data_offsets"}):
                raise bad(f"tensor {name!r}: entry is not {{dtype, shape, data_offsets}}")
            code, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
            if code not in DTYPES:
                raise bad(f"tensor {name!r}: unsupported dtype {code!r}")
            if not (isinstance(shape, list) and len(shape) <= 8 and all(
                    type(d) is int and 0 <= d < 2**40 for d in shape)):
                raise bad(f"tensor {name!r}: invalid shape {shape!r}"[:200])
            if not (isinstance(offsets, list) and len(offsets) == 2 and all(
                    type(o) is int and 0 <= o for o in offsets) and offsets[0] <= offsets[1]):
                raise bad(f"tensor {name!r}: invalid data_offsets {offsets!r}"[:200])
            nbytes = int(np.prod(shape, dtype=object)) * np.dtype(DTYPES[code]).itemsize
            if offsets[1] - offsets[0] != nbytes:
                raise bad(f"tensor {name!r}: shape {shape} needs {nbytes} bytes, its offsets "
                          f"hold {offsets[1] - offsets[0]}")
            if offsets[1] > data_len:
                raise bad(f"tensor {name!r} ends at byte {offsets[1]}, past the {data_len} bytes "
                          "of data in the file")
            spans.append((offsets[0], offsets[1]))
            entries[name] = (code, tuple(shape), offsets)
        end = 0
        for begin, stop in sorted(spans):
            if begin != end:
                raise bad("tensor data overlaps or leaves gaps")
            end = stop
        if end != data_len:
            raise bad(f"{data_len - end} bytes after the last tensor")
        data = memoryview(f.read(data_len))  # no larger than the file, and checked to fit
        if len(data) != data_len:
            raise bad("the file changed while it was read")
    return meta, {k: (c, s, data[o[0]:o[1]]) for k, (c, s, o) in entries.items()}


def read_model_file(path: str | os.PathLike[str]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Return (tensors, header); any problem raises :class:`ModelFileError` naming the file.

    Tensors are read-only little-endian arrays over the file's bytes, in their stored dtype
    (:func:`nnscratch.model.load_model` refuses any other than the model's)."""
    if not isinstance(path, (str, os.PathLike)):
        raise ModelFileError(f"a model file path must be a str or path, got {path!r}"[:200])
    p = Path(path)
    try:
        if not p.exists():
            raise ModelFileError(f"{p}: no such model file"[:300])
        if p.is_dir():
            raise ModelFileError(f"{p}: is a directory, not a model file")
        meta, raw = _read_safetensors(p)
    except OSError as exc:
        raise ModelFileError(f"{p}: could not be read ({exc.strerror or type(exc).__name__})") from None
    if meta.get("format") != FORMAT or "nnscratch" not in meta:
        raise ModelFileError(f"{p}: a safetensors file but not an nnscratch model (no header)")
    version = _parse_version(meta.get("format_version"))
    if version is None or version[0] not in READ_MAJORS:
        raise ModelFileError(
            f"{p}: model format version {str(meta.get('format_version'))[:40]!r} is not supported "
            f"(this nnscratch {_library_version()} reads versions 1 and 2.x; a newer nnscratch "
            "wrote it?)")
    if version[0] >= 2:
        digest = meta.get("sha256")
        if not isinstance(digest, str):
            raise ModelFileError(f"{p}: model file has no checksum (format {version[0]} needs one)")
        if tensor_digest(raw, meta["nnscratch"]) != digest:
            raise ModelFileError(f"{p}: checksum mismatch: the weights or header changed after "
                                 "the file was written (corrupt copy?)")
    try:
        header = _loads(meta["nnscratch"])
    except (ValueError, RecursionError) as exc:
        reason = str(exc).splitlines()[0] if isinstance(exc, ValueError) and str(exc) else "too deep"
        raise ModelFileError(f"{p}: corrupt model header ({reason[:120]})") from None
    if not isinstance(header, dict) or not isinstance(header.get("architecture"), list):
        raise ModelFileError(f"{p}: corrupt model header (no architecture list)")
    for key in ("preprocessing", "metadata"):
        if not isinstance(header.get(key) or {}, dict):
            raise ModelFileError(f"{p}: corrupt model header ({key} is not a mapping)")
    prep = header.get("preprocessing") or {}
    if "scale" in prep and not (isinstance(prep["scale"], (int, float))
                                and not isinstance(prep["scale"], bool)
                                and 0 < prep["scale"] < float("inf")):
        raise ModelFileError(f"{p}: corrupt model header (preprocessing scale {prep['scale']!r})")
    split = (header.get("metadata") or {}).get("split")
    if split is not None and not isinstance(split, dict):
        raise ModelFileError(f"{p}: corrupt model header (split is not a mapping)")
    header["format_version"] = meta["format_version"]
    tensors = {k: np.frombuffer(b, dtype=DTYPES[c]).reshape(s) for k, (c, s, b) in raw.items()}
    return tensors, header


def _library_version() -> str:
    from . import __version__

    return __version__
