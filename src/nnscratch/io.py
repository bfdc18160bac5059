"""Model files: safetensors tensors plus a JSON header in the safetensors metadata. No pickle.

Layout of ``model.safetensors``: tensors named ``layers.<i>.<param>`` (e.g. ``layers.0.W``);
metadata ``{"format": "nnscratch", "format_version": "1", "nnscratch": <JSON>}`` where the JSON
holds ``architecture`` (layer specs), ``dtype``, ``preprocessing`` and free-form ``metadata``.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

from .errors import ModelFileError

FORMAT = "nnscratch"
FORMAT_VERSION = "1"


def write_model_file(path: str | os.PathLike[str], tensors: dict[str, np.ndarray],
                     header: dict[str, Any]) -> Path:
    """Write atomically (temporary file + rename), so a crash never leaves half a model."""
    path = Path(path)
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "nnscratch": json.dumps(header)}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, tmp, metadata=meta)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the usual file permissions
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def read_model_file(path: str | os.PathLike[str]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Return (tensors, header); any problem raises :class:`ModelFileError` naming the file."""
    p = Path(path)
    if not p.exists():
        raise ModelFileError(f"{p}: no such model file")
    if p.is_dir():
        raise ModelFileError(f"{p}: is a directory, not a model file")
    try:
        with safe_open(str(p), framework="numpy") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open API)
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(
            f"{p}: not a readable model file (truncated or corrupt safetensors: {reason})"
        ) from None
    if meta.get("format") != FORMAT or "nnscratch" not in meta:
        raise ModelFileError(f"{p}: a safetensors file but not an nnscratch model (no header)")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(
            f"{p}: model format version {meta.get('format_version')!r} is not supported "
            f"(this nnscratch reads version {FORMAT_VERSION})")
    try:
        header = json.loads(meta["nnscratch"])
    except (json.JSONDecodeError, RecursionError) as exc:
        reason = str(exc).splitlines()[0] if isinstance(exc, json.JSONDecodeError) else "too deep"
        raise ModelFileError(f"{p}: corrupt model header ({reason})") from None
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
    return tensors, header
