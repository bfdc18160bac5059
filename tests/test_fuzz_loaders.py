"""Fuzzing the loaders (issue 15): 2,000 mutations per format, fixed seed, bounded time and memory.

Formats: model files, checkpoints (model + training state, restored), IDX (plain and .gz),
CIFAR-10 batches, CSV and NPY inputs, PNG pictures. Mutations: flipped bytes, truncations,
inserted/duplicated runs of bytes, huge length fields, and for the JSON-bearing model files
re-signed semantic edits (wrong JSON types, duplicated keys, wrong-size tensors, huge shapes), so
that the checks behind the checksum are reached too; decompression bombs for PNG and gzip.

Each mutated file must load, or fail with nnscratch's own one-line error naming the file; never
another exception, never more than TIME_LIMIT seconds or MEMORY_LIMIT bytes (tracemalloc peak,
which sees NumPy's allocations). The counts per format are printed (``pytest -s``).
"""

from __future__ import annotations

import gzip
import io
import json
import struct
import time
import tracemalloc
import zlib

import numpy as np
import pytest
from modelfiles import forge, read_raw

from nnscratch import Sequential, load_model
from nnscratch.callbacks import ModelCheckpoint
from nnscratch.errors import NNScratchError
from nnscratch.layers import BatchNorm, Dense, ReLU
from nnscratch.optim import Adam

N_MUTATIONS = 2000
TIME_LIMIT = 2.0            # seconds for one load
MEMORY_LIMIT = 128 << 20    # bytes, peak of one load
COUNTS: dict[str, dict[str, int]] = {}


def _mutate(raw: bytes, rng: np.random.Generator) -> bytes:
    """One random byte-level mutation of ``raw``."""
    b = bytearray(raw)
    kind = rng.integers(6)
    if kind == 0:                                   # flip 1-8 bytes
        for _ in range(rng.integers(1, 9)):
            i = rng.integers(len(b))
            b[i] ^= int(rng.integers(1, 256))
    elif kind == 1:                                 # truncate
        b = b[:rng.integers(len(b))]
    elif kind == 2:                                 # a huge value in a 4- or 8-byte field
        width = 8 if rng.random() < 0.5 else 4
        i = rng.integers(max(1, len(b) - width))
        value = int(rng.choice([2**31 - 1, 2**32 - 1, 2**40, 2**63 - 1, 2**64 - 1]))
        value &= (1 << (8 * width)) - 1
        order = "<" if rng.random() < 0.5 else ">"
        b[i:i + width] = struct.pack(order + ("Q" if width == 8 else "I"), value)
    elif kind == 3:                                 # duplicate a run of bytes
        i, n = rng.integers(len(b)), rng.integers(1, 64)
        b[i:i] = b[i:i + n]
    elif kind == 4:                                 # delete a run of bytes
        i, n = rng.integers(len(b)), rng.integers(1, 64)
        del b[i:i + n]
    else:                                           # random bytes appended or prepended
        junk = rng.bytes(int(rng.integers(1, 64)))
        b = bytearray(junk) + b if rng.random() < 0.5 else b + bytearray(junk)
    return bytes(b)


def _check_load(fmt: str, path, load, kind: str) -> None:
    """Run ``load(path)`` bounded in time and memory; it loads or raises nnscratch's one line."""
    counts = COUNTS.setdefault(fmt, {"tried": 0, "loaded": 0, "refused": 0})
    counts["tried"] += 1
    tracemalloc.reset_peak()
    start = time.perf_counter()
    try:
        load(path)
        counts["loaded"] += 1
    except NNScratchError as exc:
        msg = str(exc)
        assert "\n" not in msg and msg.strip(), (fmt, kind, msg)
        assert str(path) in msg or path.name in msg, (fmt, kind, msg)
        counts["refused"] += 1
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"{fmt} mutation {kind}: {type(exc).__name__}: {exc}"[:500])
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    assert seconds < TIME_LIMIT, (fmt, kind, seconds)
    assert peak < MEMORY_LIMIT, (fmt, kind, peak)


@pytest.fixture(scope="module")
def traced():
    tracemalloc.start()
    yield
    tracemalloc.stop()
    print("\nfuzzed loaders (mutations tried / loaded / refused in one line; 0 crashes):")
    for fmt, c in COUNTS.items():
        print(f"  {fmt:12s} {c['tried']:5d} {c['loaded']:5d} {c['refused']:5d}")


def _tiny_model(seed=0):
    return Sequential([Dense(4, 3), BatchNorm(3), ReLU(), Dense(3, 2)], seed=seed)


# -- model files and checkpoints: byte mutations and re-signed semantic edits ---------------------
def _semantic(meta: dict, tensors: dict, rng: np.random.Generator) -> tuple[dict, dict, object]:
    """A re-signed edit of the header JSON or the tensors (what the checksum would hide)."""
    header = json.loads(meta["nnscratch"])
    tensors = dict(tensors)
    junk = [None, True, -1, 0, 2**70, 1e308, float("nan"), "x", [], {}, [1, "a"], {"a": {}}]
    kind = rng.integers(8)
    if kind == 0:     # a key's value replaced by a wrong JSON type
        key = str(rng.choice(sorted(header)))
        header[key] = junk[rng.integers(len(junk))]
        return meta, tensors, header
    if kind == 1:     # a layer config value replaced
        spec = header["architecture"][rng.integers(len(header["architecture"]))]
        cfg = spec.setdefault("config", {})
        key = str(rng.choice(sorted(cfg) or ["n_in"]))
        cfg[key] = [junk[rng.integers(len(junk))], 10**6, 10**9, 3][rng.integers(4)]
        return meta, tensors, header
    if kind == 2:     # duplicated keys in the JSON
        text = json.dumps(header)
        key = str(rng.choice(sorted(header)))
        return meta, tensors, text[:-1] + f', "{key}": {json.dumps(junk[rng.integers(4)])}}}'
    if kind == 3:     # a tensor of the wrong size, dtype or values
        name = str(rng.choice(sorted(tensors)))
        t = tensors[name]
        choice = rng.integers(5)
        if choice == 0:
            tensors[name] = np.zeros(t.size + 1, t.dtype)
        elif choice == 1:
            tensors[name] = t.astype(np.float64)
        elif choice == 2:
            tensors[name] = t.astype(np.int32)
        elif choice == 3:
            bad = t.copy()
            bad.flat[0] = [np.nan, np.inf, -np.inf][rng.integers(3)]
            tensors[name] = bad
        else:
            tensors[name] = t.reshape(-1)
        return meta, tensors, header
    if kind == 4:     # a tensor dropped or added
        if rng.random() < 0.5:
            tensors.pop(str(rng.choice(sorted(tensors))))
        else:
            tensors["layers.9.W"] = np.zeros(3, np.float32)
        return meta, tensors, header
    if kind == 5:     # the format version
        meta = dict(meta, format_version=str(rng.choice(["1", "2.9", "3.0", "0", "two", "", "2."])))
        return meta, tensors, header
    if kind == 6:     # an architecture claiming a huge layer (12.8 GB)
        header["architecture"][0]["config"].update(n_in=100_000, n_out=32_000)
        return meta, tensors, header
    # a training state with wrong types (checkpoints; a harmless extra key for models)
    state = header.get("training_state") or {}
    if state:
        key = str(rng.choice(sorted(state)))
        state[key] = junk[rng.integers(len(junk))]
    header["training_state"] = state or None
    return meta, tensors, header


def _fuzz_safetensors(fmt, path, tmp_path, rng, load):
    raw = path.read_bytes()
    meta, tensors = read_raw(path)
    bad = tmp_path / f"bad-{fmt}.safetensors"
    for i in range(N_MUTATIONS):
        if i % 2:
            bad.write_bytes(_mutate(raw, rng))
            kind = "bytes"
        else:
            m, t, h = _semantic(meta, tensors, rng)
            forge(bad, t, m, header=h, sign=rng.random() < 0.9)
            kind = "semantic"
        _check_load(fmt, bad, load, kind)


def test_fuzz_model_files(tmp_path, traced):
    rng = np.random.default_rng(15)
    good = tmp_path / "model.safetensors"
    model = _tiny_model()
    model.metadata = {"split": {"dataset": "digits"}, "config": {"epochs": 1}}
    model.save(good)
    load_model(good)   # (the unmutated file loads)
    _fuzz_safetensors("model", good, tmp_path, rng, load_model)


def test_fuzz_checkpoints(tmp_path, traced):
    from nnscratch.callbacks import EarlyStopping
    from nnscratch.optim.schedules import ReduceLROnPlateau
    from nnscratch.training import restore_training_state

    rng = np.random.default_rng(16)
    X, y = rng.standard_normal((20, 4)), rng.integers(0, 2, 20)
    model = _tiny_model()
    ckpt = ModelCheckpoint(str(tmp_path / "ck{epoch}.safetensors"), every=2, training_state=True)
    model.fit(X, y, epochs=2, optimizer=Adam(lr=0.01), validation_data=(X, y),
              schedule=ReduceLROnPlateau(patience=1),
              callbacks=[EarlyStopping(patience=5), ckpt])
    good = tmp_path / "ck2.safetensors"

    def load(path):
        m = load_model(path)
        try:
            restore_training_state(m, Adam(lr=0.01), ReduceLROnPlateau(patience=1),
                                   [EarlyStopping(patience=5)])
        except ValueError as exc:   # what the CLI turns into InputError naming the file
            from nnscratch.errors import InputError

            raise InputError(f"{path}: {exc}") from None

    load(good)
    _fuzz_safetensors("checkpoint", good, tmp_path, rng, load)


# -- IDX, CIFAR, CSV, NPY, PNG ------------------------------------------------------------------
def _idx_bytes(a: np.ndarray, code: int) -> bytes:
    return bytes([0, 0, code, a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape) + a.tobytes()


def _gzip_bomb(declared: tuple[int, ...], payload: int) -> bytes:
    """A gzip of an IDX header declaring ``declared`` followed by ``payload`` zero bytes."""
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    head = bytes([0, 0, 8, len(declared)]) + struct.pack(f">{len(declared)}I", *declared)
    out = [comp.compress(head)]
    zeros = bytes(1 << 20)
    for _ in range(payload >> 20):
        out.append(comp.compress(zeros))
    out.append(comp.flush())
    return b"".join(out)


BOMBS: dict[str, bytes] = {}


def _bombs() -> dict[str, bytes]:
    if not BOMBS:   # (made once: 64 MB and 2.7 GB claimed, ~64 kB each on disk)
        BOMBS["small header, 64 MB of zeros"] = _gzip_bomb((2, 4, 4), 64 << 20)
        BOMBS["2.7 GB header"] = _gzip_bomb((3_000_000, 30, 30), 64 << 20)
    return BOMBS


def _fuzz_bytes(fmt, raw, path, rng, load, bombs=()):
    for i in range(N_MUTATIONS):
        if bombs and i % 50 == 0:
            path.write_bytes(bombs[(i // 50) % len(bombs)])
            kind = "bomb"
        else:
            data = _mutate(raw, rng)
            if path.suffix == ".gz" and i % 3:   # mutate inside the compression too
                data = gzip.compress(_mutate(gzip.decompress(raw), rng), mtime=0)
            path.write_bytes(data)
            kind = "bytes"
        _check_load(fmt, path, load, kind)


def _idx_pair_loader(labels):
    from nnscratch.data.datasets import _idx_pair

    def load(path):
        return _idx_pair(path.parent, "train")
    return load


@pytest.mark.parametrize("gz", [False, True], ids=["idx", "idx.gz"])
def test_fuzz_idx(tmp_path, traced, gz):
    from nnscratch.data.datasets import read_idx

    rng = np.random.default_rng(17 + gz)
    images = rng.integers(0, 256, (6, 4, 4), dtype=np.uint8)
    raw = _idx_bytes(images, 0x08)
    suffix = ".gz" if gz else ""
    (tmp_path / f"train-labels-idx1-ubyte{suffix}").write_bytes(
        (gzip.compress if gz else bytes)(_idx_bytes(np.arange(6, dtype=np.uint8) % 2, 0x08)))
    path = tmp_path / f"train-images-idx3-ubyte{suffix}"
    if gz:
        raw = gzip.compress(raw, mtime=0)
    path.write_bytes(raw)
    assert read_idx(path).shape == (6, 4, 4)
    bombs = list(_bombs().values()) if gz else []
    _fuzz_bytes("idx.gz" if gz else "idx", raw, path, rng, _idx_pair_loader(None), bombs)


def test_fuzz_cifar(tmp_path, traced):
    from nnscratch.data.datasets import CIFAR_RECORD, read_cifar10_batch

    rng = np.random.default_rng(19)
    records = rng.integers(0, 256, (2, CIFAR_RECORD), dtype=np.uint8)
    records[:, 0] %= 10
    path = tmp_path / "data_batch_1.bin"
    path.write_bytes(records.tobytes())
    assert read_cifar10_batch(path)[0].shape == (2, 3072)
    _fuzz_bytes("cifar", records.tobytes(), path, rng, read_cifar10_batch)


@pytest.mark.parametrize("fmt", ["csv", "npy", "png"])
def test_fuzz_inputs(tmp_path, traced, fmt, readme_zero):
    from PIL import Image

    from nnscratch.data import load_inputs

    rng = np.random.default_rng({"csv": 20, "npy": 21, "png": 22}[fmt])
    path = tmp_path / f"input.{fmt}"
    if fmt == "csv":
        raw = (",".join(str(v) for v in readme_zero.ravel()) + "\n").encode()
    elif fmt == "npy":
        buf = io.BytesIO()
        np.save(buf, readme_zero.astype(np.float64))
        raw = buf.getvalue()
    else:
        buf = io.BytesIO()
        Image.fromarray((255 - readme_zero * 15).astype(np.uint8)).resize((16, 16)).save(buf, "PNG")
        raw = buf.getvalue()
    path.write_bytes(raw)
    assert load_inputs([path])[0].shape == (1, 64)
    bombs = []
    if fmt == "png":   # a 12000x12000 1-bit picture (2.4 GB decoded as grey levels), ~40 kB
        buf = io.BytesIO()
        Image.new("1", (12000, 12000), 1).save(buf, "PNG")
        bombs = [buf.getvalue()]
    _fuzz_bytes(fmt, raw, path, rng, lambda p: load_inputs([p]), bombs)


def test_the_fuzzer_can_fail(tmp_path, traced):
    """Negative controls: a loader raising a NumPy-style error, or allocating too much, fails."""
    path = tmp_path / "x.bin"
    path.write_bytes(b"x")

    def numpy_error(p):
        raise ValueError("operands could not be broadcast together")

    def greedy(p):
        return np.ones(MEMORY_LIMIT // 8 + 1)

    for load in (numpy_error, greedy):
        with pytest.raises((pytest.fail.Exception, AssertionError)):
            _check_load("control", path, load, "control")
    COUNTS.pop("control", None)
