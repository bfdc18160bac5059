"""Model files: exact round trip, no pickle, and clear one-line errors on bad files."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
from modelfiles import forge

from nnscratch import ModelFileError, Sequential, load_model
from nnscratch.layers import Dense, ReLU


def _header(path):
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8:8 + n])


def test_round_trip_gives_identical_predictions(trained_model, model_file, scaled):
    _, _, X_test, _ = scaled
    loaded = load_model(model_file)
    np.testing.assert_array_equal(loaded.predict_proba(X_test), trained_model.predict_proba(X_test))
    np.testing.assert_array_equal(loaded.parameters()[0][0], trained_model.parameters()[0][0])
    assert repr(loaded) == repr(trained_model)
    assert loaded.preprocessing == trained_model.preprocessing


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_round_trip_keeps_dtype_and_metadata(tmp_path, dtype):
    model = Sequential([Dense(3, 4, init="glorot_uniform"), ReLU(), Dense(4, 2)], seed=5,
                       dtype=dtype)
    model.metadata = {"note": "hello", "split": {"random_state": 42}}
    model.save(tmp_path / "m.safetensors")
    loaded = load_model(tmp_path / "m.safetensors")
    assert loaded.dtype == np.dtype(dtype)
    assert loaded.metadata == model.metadata
    assert loaded.layers[0].init == "glorot_uniform"
    x = np.random.default_rng(0).random((4, 3))
    np.testing.assert_array_equal(loaded.predict_proba(x), model.predict_proba(x))


def test_model_file_is_safetensors_without_pickle(model_file):
    raw = model_file.read_bytes()
    header = _header(model_file)
    # safetensors: 8-byte length, JSON header, raw little-endian tensor bytes; nothing else
    tensors = {k: v for k, v in header.items() if k != "__metadata__"}
    assert set(tensors) == {"layers.0.W", "layers.0.b", "layers.2.W", "layers.2.b"}
    assert all(v["dtype"] == "F32" for v in tensors.values())
    end = max(v["data_offsets"][1] for v in tensors.values())
    assert len(raw) == 8 + struct.unpack("<Q", raw[:8])[0] + end
    meta = header["__metadata__"]
    assert meta["format"] == "nnscratch"
    body = json.loads(meta["nnscratch"])
    assert body["architecture"][0] == {"type": "Dense",
                                       "config": {"n_in": 64, "n_out": 32, "init": "he_normal"}}
    assert body["preprocessing"]["scale"] == 1 / 16
    for marker in (b"\x80\x04\x95", b"\x80\x05\x95", b"cnumpy", b"pickle", b"__reduce__"):
        assert marker not in raw


def _assert_one_line_error(path, match):
    with pytest.raises(ModelFileError) as info:
        load_model(path)
    msg = str(info.value)
    assert str(path) in msg and "\n" not in msg
    assert match in msg


def test_missing_file(tmp_path):
    _assert_one_line_error(tmp_path / "nope.safetensors", "no such model file")


def test_directory(tmp_path):
    _assert_one_line_error(tmp_path, "directory")


@pytest.mark.parametrize("keep", [0, 5, 8, 40, -10, -1])
def test_truncated_file(model_file, tmp_path, keep):
    raw = model_file.read_bytes()
    bad = tmp_path / "truncated.safetensors"
    bad.write_bytes(raw[:keep] if keep >= 0 else raw[:len(raw) + keep])
    _assert_one_line_error(bad, "truncated or corrupt")


def test_garbage_and_other_files(tmp_path):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(np.random.default_rng(0).bytes(500))
    _assert_one_line_error(junk, "truncated or corrupt")
    text = tmp_path / "model.txt"
    text.write_text("hello, I am not a model\n")
    _assert_one_line_error(text, "truncated or corrupt")


def test_safetensors_file_that_is_not_a_model(tmp_path):
    from safetensors.numpy import save_file

    other = tmp_path / "other.safetensors"
    save_file({"w": np.zeros(3, dtype=np.float32)}, str(other))
    _assert_one_line_error(other, "not an nnscratch model")


@pytest.mark.parametrize("edit,match", [
    (lambda h: h.update(preprocessing=[1, 2]), "preprocessing is not a mapping"),
    (lambda h: h.update(preprocessing="ab"), "preprocessing is not a mapping"),
    (lambda h: h.update(preprocessing={"scale": None}), "preprocessing scale"),
    (lambda h: h.update(metadata={"split": [1]}), "split is not a mapping"),
    (lambda h: h.update(metadata=5), "metadata is not a mapping"),
    (lambda h: h.update(architecture=[{"type": "Conv9D", "config": {}}]), "invalid architecture"),
    (lambda h: h["architecture"][0]["config"].update(n_out=31), "invalid architecture"),
    (lambda h: h.update(architecture="nope"), "corrupt model header"),
])
def test_header_that_does_not_match(model_file, tmp_path, edit, match):
    from safetensors.numpy import load_file, save_file

    from nnscratch.io import read_model_file

    tensors, header = read_model_file(model_file)
    edit(header)
    bad = tmp_path / "bad.safetensors"
    save_file(load_file(str(model_file)), str(bad), metadata={
        "format": "nnscratch", "format_version": "1", "nnscratch": json.dumps(header)})
    _assert_one_line_error(bad, match)


def test_absurdly_nested_header(model_file, tmp_path):
    from safetensors.numpy import load_file, save_file

    deep = "[" * 100_000 + "]" * 100_000
    bad = tmp_path / "deep.safetensors"
    save_file(load_file(str(model_file)), str(bad), metadata={
        "format": "nnscratch", "format_version": "1", "nnscratch": deep})
    _assert_one_line_error(bad, "corrupt model header")


def test_wrong_tensor_shape_or_nan(model_file, tmp_path):
    from safetensors import safe_open
    from safetensors.numpy import load_file, save_file

    with safe_open(str(model_file), framework="numpy") as f:
        meta = f.metadata()
    tensors = load_file(str(model_file))
    t2 = dict(tensors, **{"layers.0.b": np.zeros(31, dtype=np.float32)})
    save_file(t2, str(tmp_path / "shape.safetensors"), metadata=meta)
    _assert_one_line_error(tmp_path / "shape.safetensors", "checksum mismatch")
    forge(tmp_path / "shape2.safetensors", t2, meta)   # a valid checksum: the shape check refuses
    _assert_one_line_error(tmp_path / "shape2.safetensors", "has shape (31,)")
    t3 = dict(tensors, **{"layers.0.b": np.zeros(33, dtype=np.float32)})
    forge(tmp_path / "shape3.safetensors", t3, meta)
    _assert_one_line_error(tmp_path / "shape3.safetensors", "has shape (33,)")
    nan = tensors["layers.2.W"].copy()
    nan[0, 0] = np.nan
    save_file(dict(tensors, **{"layers.2.W": nan}), str(tmp_path / "nan.safetensors"), metadata=meta)
    _assert_one_line_error(tmp_path / "nan.safetensors", "checksum mismatch")
    forge(tmp_path / "nan2.safetensors", dict(tensors, **{"layers.2.W": nan}), meta)
    _assert_one_line_error(tmp_path / "nan2.safetensors", "NaN")


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path):
    import os

    model = Sequential([Dense(3, 2)], seed=0)
    model.save(tmp_path / "sub" / "m.safetensors")
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["m.safetensors"]
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "sub" / "m.safetensors").stat().st_mode & 0o777 == 0o666 & ~umask
