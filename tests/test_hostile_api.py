"""Hostile input over the public Python API, by generation (issue 15).

``Sequential.fit``, ``predict``, ``predict_proba``, ``score``, ``load_model``, the optimizers and
the data readers get arrays of every dtype (bool, ints, float16/32/64, complex, object, strings),
0-d to 5-d, empty, NaN, inf, huge, non-contiguous, Fortran-order, read-only, memmapped, lists and
pandas DataFrames. Each case works (and the result is checked) or raises nnscratch's own error
(a ValueError/TypeError subclass) raised from nnscratch's code, whose message names the problem.
Single layers' forward/backward: tests/test_layer_api.py. The count is printed (``-s``).
"""

from __future__ import annotations

import traceback
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nnscratch import Sequential, load_model
from nnscratch.errors import NNScratchError
from nnscratch.layers import Dense, ReLU

COUNT = {"cases": 0, "worked": 0, "refused": 0}
SRC = str(Path(__import__("nnscratch").__file__).parent)
DTYPES = [np.bool_, np.int8, np.uint8, np.int32, np.int64, np.uint64, np.float16, np.float32,
          np.float64, np.complex64, np.complex128, object, "U3", "S2", "datetime64[s]"]
VALUES = [0.0, 1.0, -1.0, 0.5, 3.0, np.nan, np.inf, -np.inf, 1e300, -1e300, 1e38, 65504.0]


def _frame_in_nnscratch(exc: BaseException) -> bool:
    frames = traceback.extract_tb(exc.__traceback__)
    return bool(frames) and frames[-1].filename.startswith(SRC)


def _run(call, check=None):
    """``call()`` works (``check(result)`` holds) or raises nnscratch's own one-line error."""
    COUNT["cases"] += 1
    try:
        result = call()
    except NNScratchError as exc:   # (ValueErrors; DeviceError, a bad device, a RuntimeError)
        assert isinstance(exc, (ValueError, TypeError)) or type(exc).__name__ == "DeviceError"
        assert _frame_in_nnscratch(exc), traceback.format_exception(exc)[-3:]
        assert str(exc).strip() and "\n" not in str(exc)
        COUNT["refused"] += 1
        return None
    except (ValueError, TypeError) as exc:
        # plain ValueError/TypeError are allowed only from nnscratch's own validation
        # (hyper-parameters), never from NumPy's insides
        assert _frame_in_nnscratch(exc), traceback.format_exception(exc)[-3:]
        COUNT["refused"] += 1
        return None
    if check is not None:
        check(result)
    COUNT["worked"] += 1
    return result


@st.composite
def arrays(draw, n_features=4):
    """Arrays of any dtype, 0-d to 5-d (often the right 2-D shape), in any layout."""
    dtype = draw(st.sampled_from(DTYPES))
    if draw(st.booleans()):
        shape = (draw(st.integers(0, 6)), n_features)
    else:
        shape = tuple(draw(st.lists(st.integers(0, 5), max_size=5)))
    size = int(np.prod(shape))
    values = draw(st.lists(st.sampled_from(VALUES), min_size=size, max_size=size))
    with np.errstate(all="ignore"):
        base = np.array(values, dtype=np.float64).reshape(shape)
        try:
            a = base.astype(dtype)
        except (ValueError, TypeError, OverflowError):
            a = base.astype(object)
    layout = draw(st.sampled_from(["c", "f", "strided", "readonly", "list", "memmap", "frame"]))
    if layout == "f":
        a = np.asfortranarray(a)
    elif layout == "strided" and a.ndim:
        a = np.repeat(a, 2, axis=-1)[..., ::2]
    elif layout == "readonly":
        a = a.copy()
        a.flags.writeable = False
    elif layout == "list":
        return a.tolist()
    elif layout == "memmap" and a.dtype != object and a.size:
        path = Path(draw(st.just(str(MEMMAP_DIR)))) / f"m{COUNT['cases']}.npy"
        np.save(path, a)
        return np.load(path, mmap_mode="r")
    elif layout == "frame" and a.ndim == 2:
        pd = pytest.importorskip("pandas")
        return pd.DataFrame(a)
    return a


MEMMAP_DIR = Path("/tmp")


@pytest.fixture(scope="module", autouse=True)
def _report(tmp_path_factory):
    global MEMMAP_DIR
    MEMMAP_DIR = tmp_path_factory.mktemp("memmap")
    yield
    print(f"\nhostile API cases: {COUNT['cases']} tried, {COUNT['worked']} worked (checked), "
          f"{COUNT['refused']} refused by nnscratch, 0 non-nnscratch errors")


def _model():
    return Sequential([Dense(4, 3), ReLU(), Dense(3, 2)], seed=0)


def _proba_ok(p):
    assert p.dtype == np.float32 and np.isfinite(p).all()
    np.testing.assert_allclose(p.sum(axis=1), 1, rtol=1e-5)


SETTINGS = settings(max_examples=300, deadline=None, derandomize=True,
                    suppress_health_check=list(HealthCheck))


@SETTINGS
@given(X=arrays())
def test_predict_predict_proba_and_score(X):
    model = _model()
    _run(lambda: model.predict_proba(X), _proba_ok)
    _run(lambda: model.predict(X), lambda p: set(np.unique(p)) <= {0, 1})
    _run(lambda: model.score(X, np.zeros(np.shape(X)[0] if np.ndim(X) else 0, int)),
         lambda s: 0 <= s <= 1)


@SETTINGS
@given(X=arrays(), y=arrays(n_features=1), epochs=st.sampled_from([1, 0, -1, 1.5, True, "2"]),
       batch=st.sampled_from([1, 2, 0, None, 10**12]))
def test_fit(X, y, epochs, batch):
    model = _model()
    y = np.ravel(y) if isinstance(y, np.ndarray) and y.ndim == 2 and y.shape[1:] == (1,) else y

    def fit():
        return model.fit(X, y, epochs=epochs, batch_size=batch)

    def trained(history):
        assert len(history) == epochs and np.isfinite(history["loss"]).all()
        assert np.isfinite(model.parameters()[0][0]).all()

    _run(fit, trained)


@SETTINGS
@given(lr=st.sampled_from([0.1, 0, -1, np.nan, np.inf, "a", None, True, 1e308]),
       kind=st.sampled_from(["SGD", "Adam", "AdamW", "RMSprop"]),
       grads=arrays())
def test_optimizers(lr, kind, grads):
    from nnscratch import optim

    def make():
        return getattr(optim, kind)(lr=lr)

    opt = _run(make)
    if opt is None:
        return
    p = np.zeros(4, np.float32)
    g = np.asarray(grads) if not hasattr(grads, "to_numpy") else grads.to_numpy()

    def bind_and_step():
        opt.bind([(p, g)])
        opt.step()
        return p

    # a gradient that is not the parameter's twin is refused by bind; a twin steps
    _run(bind_and_step, lambda out: None)


@SETTINGS
@given(X=arrays(n_features=64))
def test_data_readers(X, tmp_path_factory):
    from nnscratch.data import as_rows, load_inputs

    _run(lambda: as_rows(X, "X", (1, 8, 8), 16.0),
         lambda r: r.shape[1] == 64 and r.dtype == np.float64)
    folder = MEMMAP_DIR
    arr = np.asarray(X) if not hasattr(X, "to_numpy") else X.to_numpy()
    if arr.dtype != object:
        np.save(folder / "in.npy", arr)
        _run(lambda: load_inputs([folder / "in.npy"]), lambda r: r[0].shape[1] == 64)
    if arr.dtype.kind in "biuf" and arr.ndim <= 2:
        np.savetxt(folder / "in.csv", np.atleast_2d(arr).astype(np.float64), delimiter=",")
        _run(lambda: load_inputs([folder / "in.csv"]), lambda r: r[0].shape[1] == 64)


@SETTINGS
@given(path=st.sampled_from(["", "/", "/nonexistent/m.safetensors", "\0", "x" * 5000, None, 3,
                             b"m.safetensors", Path("/dev/null")]),
       device=st.sampled_from(["cpu", "gpu", 3, None, "cuda:x"]))
def test_load_model_arguments(path, device):
    _run(lambda: load_model(path, device=device))


def test_the_harness_can_fail():
    """Negative controls: a NumPy-internal error and a silent wrong result are caught."""
    with pytest.raises(AssertionError):
        _run(lambda: np.ones(3) + np.ones(4))             # raised inside NumPy
    with pytest.raises(AssertionError):
        _run(lambda: np.full((2, 2), 0.3, np.float32), _proba_ok)   # rows do not sum to 1
    COUNT["cases"] -= 2


def test_cli_never_prints_a_traceback_unless_debugging(tmp_path):
    """One line without NNSCRATCH_DEBUG; the traceback with NNSCRATCH_DEBUG=1 (bug reports)."""
    import os
    import subprocess
    import sys

    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}      ")
    args = [sys.executable, "-m", "nnscratch", "evaluate", str(bad)]
    env = {k: v for k, v in os.environ.items() if k != "NNSCRATCH_DEBUG"}
    plain = subprocess.run(args, capture_output=True, text=True, env=env)
    assert plain.returncode == 1
    assert len(plain.stderr.splitlines()) == 1 and "Traceback" not in plain.stderr
    assert "not JSON" in plain.stderr
    debug = subprocess.run(args, capture_output=True, text=True,
                           env={**env, "NNSCRATCH_DEBUG": "1"})
    assert debug.returncode == 1
    assert "Traceback (most recent call last)" in debug.stderr
    assert debug.stderr.rstrip().splitlines()[-1] == plain.stderr.rstrip()
