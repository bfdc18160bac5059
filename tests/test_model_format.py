"""The model-file format (docs/model-format.md): version 2.0 header, checksum, strict loading,
bounded memory, files of version 1, and atomic writes (issue 15)."""

from __future__ import annotations

import json
import struct
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from modelfiles import forge, read_raw

from nnscratch import ModelFileError, Sequential, __version__, load_model
from nnscratch.io import atomic_write, tensor_digest
from nnscratch.layers import Dense, ReLU

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def saved(tmp_path):
    model = Sequential([Dense(4, 3), ReLU(), Dense(3, 2)], seed=0)
    model.metadata = {"split": {"dataset": "digits", "random_state": 42}, "config": {"lr": 0.1}}
    model.class_names = ["no", "yes"]
    path = tmp_path / "m.safetensors"
    model.save(path)
    return model, path


def _error(path, match):
    with pytest.raises(ModelFileError) as info:
        load_model(path)
    msg = str(info.value)
    assert str(path) in msg and "\n" not in msg, msg
    assert match in msg, msg


def test_version_1_fixture_loads_and_predicts_the_same(scaled):
    """A file written by the code before format 2 (tests/fixtures, main d1fd939)."""
    path = FIXTURES / "model_v1.safetensors"
    meta, _ = read_raw(path)
    assert meta["format_version"] == "1" and "sha256" not in meta
    model = load_model(path)
    expected = np.load(FIXTURES / "model_v1_proba.npy")
    np.testing.assert_array_equal(model.predict_proba(scaled[2][:20]), expected)
    assert model.preprocessing["scale"] == 1 / 16


def test_header_holds_what_the_spec_lists(saved):
    model, path = saved
    meta, tensors = read_raw(path)
    assert meta["format"] == "nnscratch" and meta["format_version"] == "2.0"
    header = json.loads(meta["nnscratch"])
    assert header["nnscratch_version"] == __version__
    assert header["dtype"] == "float32" and len(header["architecture"]) == 3
    assert header["class_names"] == ["no", "yes"]
    assert header["dataset"] == "digits" and header["split"]["random_state"] == 42
    assert header["config"] == {"lr": 0.1}
    # the checksum, recomputed from its definition in docs/model-format.md
    import hashlib

    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name]
        h.update(f"{name}\0F32\0{','.join(map(str, t.shape))}\0{t.nbytes}\0".encode())
        h.update(t.astype("<f4").tobytes())
    h.update(b"nnscratch\0" + meta["nnscratch"].encode())
    assert meta["sha256"] == h.hexdigest()
    loaded = load_model(path)
    assert loaded.class_names == ["no", "yes"] and loaded.metadata == model.metadata


def test_a_changed_weight_byte_is_refused(saved, tmp_path):
    _, path = saved
    raw = bytearray(path.read_bytes())
    load_model(path)                                   # control: the file as written loads
    raw[-3] ^= 0x01                                    # the last tensor's bytes
    bad = tmp_path / "flipped.safetensors"
    bad.write_bytes(bytes(raw))
    _error(bad, "checksum mismatch")


@pytest.mark.parametrize("version,ok", [("2.0", True), ("2.7", True), ("3.0", False),
                                        ("10", False), ("two", False), ("", False)])
def test_versions(saved, tmp_path, version, ok):
    _, path = saved
    meta, tensors = read_raw(path)
    bad = forge(tmp_path / "v.safetensors", tensors, dict(meta, format_version=version))
    if ok:
        load_model(bad)
    else:
        _error(bad, "is not supported")


def test_missing_checksum_in_version_2(saved, tmp_path):
    _, path = saved
    meta, tensors = read_raw(path)
    meta.pop("sha256")
    _error(forge(tmp_path / "n.safetensors", tensors, meta, sign=False), "no checksum")


@pytest.mark.parametrize("edit,match", [
    (lambda t: t.update({"layers.0.W": t["layers.0.W"].astype(np.int32)}), "stored as int32"),
    (lambda t: t.update({"layers.0.W": t["layers.0.W"].astype(np.float64)}), "stored as float64"),
    (lambda t: t.pop("layers.2.b"), "missing tensor layers.2.b"),
    (lambda t: t.update({"layers.1.W": np.zeros(1, np.float32)}), "unexpected tensor layers.1.W"),
    (lambda t: t.update({"layers.2.b": np.zeros(3, np.float32)}), "has shape (3,)"),
    (lambda t: t["layers.0.b"].__setitem__(0, np.inf), "NaN or infinite"),
])
def test_tensors_are_checked_not_cast(saved, tmp_path, edit, match):
    _, path = saved
    meta, tensors = read_raw(path)
    edit(tensors)
    _error(forge(tmp_path / "t.safetensors", tensors, meta), match)


def test_header_saying_float64_over_float32_tensors(saved, tmp_path):
    _, path = saved
    meta, tensors = read_raw(path)
    header = json.loads(meta["nnscratch"])
    header["dtype"] = "float64"
    _error(forge(tmp_path / "d.safetensors", tensors, meta, header), "stored as float32")


def test_duplicate_keys_are_refused(saved, tmp_path):
    _, path = saved
    meta, tensors = read_raw(path)
    text = meta["nnscratch"][:-1] + ', "dtype": "float64"}'
    _error(forge(tmp_path / "k.safetensors", tensors, meta, text), "duplicate key 'dtype'")


def _forged_header(path, header: dict, data: bytes = b""):
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)
    return path


@pytest.mark.parametrize("case", ["tensor", "architecture", "header-length"])
def test_a_lying_header_allocates_nothing_large(saved, tmp_path, case):
    """A header claiming a 12.8 GB layer is refused before anything that size is allocated."""
    _, path = saved
    meta, tensors = read_raw(path)
    bad = tmp_path / "huge.safetensors"
    if case == "tensor":
        _forged_header(bad, {"__metadata__": meta, "layers.0.W": {
            "dtype": "F32", "shape": [100_000, 32_000], "data_offsets": [0, 12_800_000_000]}},
            b"\0" * 64)
        match = "past the"
    elif case == "architecture":   # re-signed: only the size check can stop it
        header = json.loads(meta["nnscratch"])
        header["architecture"][0]["config"].update(n_in=100_000, n_out=32_000)
        forge(bad, tensors, meta, header)
        match = "it needs 3,200,032,"
    else:
        bad.write_bytes(struct.pack("<Q", 2**63) + b"{}")
        match = "header length"
    tracemalloc.start()
    try:
        _error(bad, match)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 10 << 20


def test_checksum_definition_is_order_and_name_sensitive():
    a = {"x": ("F32", (2,), np.zeros(2, "<f4")), "y": ("F32", (1,), np.ones(1, "<f4"))}
    b = {"x": ("F32", (1,), np.ones(1, "<f4")), "y": ("F32", (2,), np.zeros(2, "<f4"))}
    assert tensor_digest(a, "{}") != tensor_digest(b, "{}")
    assert tensor_digest(a, "{}") != tensor_digest(a, "{ }")
    assert tensor_digest(a, "{}") == tensor_digest(dict(reversed(list(a.items()))), "{}")


def test_atomic_write_keeps_the_old_file_on_error(tmp_path):
    path = tmp_path / "f.txt"
    with atomic_write(path, "w") as f:
        f.write("old\n")

    class Boom(Exception):
        pass

    with pytest.raises(Boom), atomic_write(path, "w") as f:
        f.write("new, half")
        raise Boom
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]
    with pytest.raises(ValueError, match="mode"):
        with atomic_write(path, "a"):
            pass
