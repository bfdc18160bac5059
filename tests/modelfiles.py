"""Helpers for tests that forge model files: write tensors and metadata, re-signing the checksum."""

from __future__ import annotations

import json

import numpy as np
from safetensors.numpy import save

from nnscratch.io import _code, _read_safetensors, tensor_digest


def read_raw(path):
    """(metadata, {name: array}) of a model file, without any of nnscratch's checks."""
    from nnscratch.io import DTYPES

    meta, raw = _read_safetensors(path)
    return dict(meta), {k: np.frombuffer(b, DTYPES[c]).reshape(s).copy()
                        for k, (c, s, b) in raw.items()}


def forge(path, tensors, meta, header=None, sign=True):
    """Write ``tensors`` with ``meta`` (``header``: a new nnscratch JSON, dict or str); with
    ``sign`` the sha256 is recomputed, so only the semantic checks can refuse the file."""
    meta = dict(meta)
    if header is not None:
        meta["nnscratch"] = header if isinstance(header, str) else json.dumps(header)
    if sign:
        arrays = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
        meta["sha256"] = tensor_digest({k: (_code(a), a.shape, a) for k, a in arrays.items()},
                                       meta["nnscratch"])
    path.write_bytes(save(dict(tensors), metadata=meta))
    return path
