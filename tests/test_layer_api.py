"""The layers' public API as a NumPy user meets it (issue 14).

- Every layer used on its own takes float32 or float64 data (and ints, bools), in any memory
  order, read-only or not, and computes in its parameters' dtype.
- ``layer.params[name] = array`` writes into the parameter: a model then uses and trains it.
- Bad data (strings, objects, complex, empty, wrong shapes, NaN where it matters) raises
  nnscratch's own error from nnscratch's code, never a NumPy-internal one (property tests).
- Prediction shares no buffers: one model predicts from 8 threads at once.
"""

from __future__ import annotations

import threading
import traceback
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nnscratch import Sequential
from nnscratch.errors import CallOrderError, InputError, NNScratchError
from nnscratch.layers import (
    GELU,
    AvgPool2D,
    BatchNorm,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    GlobalAvgPool2D,
    LeakyReLU,
    MaxPool2D,
    ReLU,
    Sigmoid,
    Tanh,
)
from nnscratch.optim import SGD

#: name -> (make(dtype) -> layer, an input shape it takes)
LAYERS = {
    "Dense": (lambda dt: Dense(7, 5, dtype=dt), (4, 7)),
    "ReLU": (lambda dt: ReLU(), (3, 4)),
    "LeakyReLU": (lambda dt: LeakyReLU(0.1), (2, 3, 4)),
    "Tanh": (lambda dt: Tanh(), (5,)),
    "Sigmoid": (lambda dt: Sigmoid(), (2, 2, 2, 2, 2)),
    "GELU": (lambda dt: GELU(), (3, 4)),
    "GELU-tanh": (lambda dt: GELU("tanh"), (3, 4)),
    "Conv2D": (lambda dt: Conv2D(2, 3, 3, padding=1, dtype=dt), (2, 2, 5, 4)),
    "Conv2D-strided": (lambda dt: Conv2D(2, 3, (2, 3), stride=2, dtype=dt), (3, 2, 6, 7)),
    "MaxPool2D": (lambda dt: MaxPool2D(2), (2, 3, 4, 5)),
    "AvgPool2D": (lambda dt: AvgPool2D(2, 1), (2, 3, 4, 5)),
    "GlobalAvgPool2D": (lambda dt: GlobalAvgPool2D(), (2, 3, 4, 5)),
    "BatchNorm-1d": (lambda dt: BatchNorm(3, dtype=dt), (4, 3)),
    "BatchNorm-2d": (lambda dt: BatchNorm(3, dtype=dt), (2, 3, 2, 2)),
    "Dropout": (lambda dt: Dropout(0.3), (4, 6)),
    "Flatten": (lambda dt: Flatten(), (2, 3, 2)),
}


def _data(shape, dtype, rng):
    x = rng.standard_normal(shape) * 2
    return x.astype(dtype)


# -- standalone use in float32 and float64 -------------------------------------------------------
@pytest.mark.parametrize("name", LAYERS)
@pytest.mark.parametrize("layer_dtype", ["float32", "float64"])
@pytest.mark.parametrize("data_dtype", [np.float32, np.float64, np.int64, bool])
def test_every_layer_works_on_its_own_in_float32_and_float64(name, layer_dtype, data_dtype, rng):
    make, shape = LAYERS[name]
    layer = make(layer_dtype)
    x = _data(shape, data_dtype, rng)
    y = layer.forward(x, training=True)
    if layer.params:   # layers with parameters compute in their parameters' dtype
        expected = np.dtype(layer_dtype)
    else:              # the others keep float32/float64 data's dtype, else float32
        expected = x.dtype if x.dtype in (np.float32, np.float64) else np.dtype(np.float32)
    assert y.dtype == expected
    g = rng.standard_normal(y.shape)          # float64, whatever the layer's dtype
    dx = layer.backward(g)
    assert dx.shape == x.shape and dx.dtype == expected
    for k, grad in layer.grads.items():
        assert grad.shape == layer.params[k].shape and np.isfinite(grad).all()
    assert layer.backward(g, input_grad=False) is None
    pred = layer.forward(x, training=False)
    assert pred.dtype == expected and pred.shape == y.shape


def test_float64_data_into_a_float32_dense_then_backward():
    """The example of the issue: NumPy's "output array is not acceptable" no more."""
    layer = Dense(7, 5)
    y = layer.forward(np.ones((3, 7)), True)
    assert y.dtype == np.float32
    assert layer.backward(np.ones((3, 5))).dtype == np.float32
    conv = Conv2D(1, 2, 3)
    conv.forward(np.ones((2, 1, 5, 5)), True)
    assert conv.backward(np.ones((2, 2, 3, 3))).dtype == np.float32


@pytest.mark.parametrize("name", LAYERS)
def test_backward_before_forward_is_a_clear_error(name):
    make, shape = LAYERS[name]
    with pytest.raises(CallOrderError, match=r"backward called before forward\(x, training=True\)"):
        make("float64").backward(np.ones(shape))


@pytest.mark.parametrize("name", LAYERS)
def test_non_contiguous_fortran_and_read_only_inputs_just_work(name, rng):
    make, shape = LAYERS[name]
    x = rng.standard_normal(shape)
    ref_layer = make("float64")
    _copy_params(ref_layer, layer := make("float64"))
    y_ref, ro = ref_layer.forward(x, False), x.copy()
    ro.flags.writeable = False
    wide = np.zeros(shape[:-1] + (2 * shape[-1],))
    wide[..., ::2] = x
    variants = (np.asfortranarray(x), wide[..., ::2], ro)
    for variant in variants:
        np.testing.assert_allclose(layer.forward(variant, False), y_ref, rtol=1e-12, atol=1e-12)
    for variant in variants:
        y = layer.forward(variant, True)
        g = np.asfortranarray(np.ones(y.shape))
        assert layer.backward(g).shape == shape
    np.testing.assert_array_equal(ro, x)       # (and nothing written into the input)


def _copy_params(src, dst):
    for k, p in src.params.items():
        dst.params[k] = p


# -- params assignment ---------------------------------------------------------------------------
def test_assigned_parameters_are_used_by_predict_and_trained_by_fit(scaled):
    X, y, _, _ = scaled
    X, y = X[:128], y[:128]
    for model in (Sequential([Dense(64, 16), ReLU(), Dense(16, 10)], seed=0),
                  Sequential([Conv2D(1, 4, 3, padding=1), ReLU(), MaxPool2D(2), Flatten(),
                              Dense(64, 10)], input_shape=(1, 8, 8), seed=0)):
        last = model.layers[-1]
        bias = np.zeros(10)
        bias[3] = 50.0
        last.params["W"] = np.zeros((last.n_in, 10))   # (float64 into the float32 model: cast)
        last.params["b"] = bias
        assert last.params["b"].dtype == np.float32
        assert np.shares_memory(last.params["b"], model.parameters()[0][0])
        assert (model.predict(X) == 3).all()           # used by predict
        model.fit(X, y, epochs=2, optimizer=SGD(lr=0.1))
        assert np.shares_memory(last.params["W"], model.parameters()[0][0])
        assert np.abs(last.params["W"]).max() > 0      # changed by fit
        assert last.params["b"][3] < 50.0


@pytest.mark.parametrize("value,message", [
    (np.zeros((5, 7)), r"Dense\(7, 5, init='he_normal'\) params\['W'\] has shape \(7, 5\), got an "
                       r"array of shape \(5, 7\)"),
    (np.zeros((7, 5), complex), r"Dense\(7, 5.*\) params\['W'\] must be real numbers, got dtype complex128"),
    (np.full((7, 5), "a"), r"params\['W'\] must be real numbers, got dtype <U1"),
    (np.zeros((7, 5), object), r"params\['W'\] must be real numbers, got dtype object"),
    (np.full((7, 5), np.nan), r"params\['W'\]: the values contain NaN"),
    ([[1, 2], [3]], r"params\['W'\]: cannot use list as an array"),
])
def test_assigning_a_wrong_parameter_names_the_layer_and_the_parameter(value, message):
    layer = Dense(7, 5)
    before = layer.params["W"].copy()
    with pytest.raises(InputError, match=message):
        layer.params["W"] = value
    np.testing.assert_array_equal(layer.params["W"], before)
    with pytest.raises(InputError, match=r"Dense\(7, 5.*\) has no params entry 'V'"):
        layer.params["V"] = before


def test_assigning_state_writes_into_it():
    bn = BatchNorm(3)
    kept = bn.state["running_mean"]
    bn.state["running_mean"] = [1, 2, 3]
    assert bn.state["running_mean"] is kept and kept.tolist() == [1, 2, 3]
    bn.params.update(gamma=np.full(3, 2.0))
    assert bn.params["gamma"].tolist() == [2, 2, 2]


def test_layers_can_be_copied_and_pickled():
    import copy
    import pickle

    layer = Dense(3, 2, seed=0)
    for other in (copy.deepcopy(layer), pickle.loads(pickle.dumps(layer))):
        np.testing.assert_array_equal(other.params["W"], layer.params["W"])
        other.params["W"] = np.zeros((3, 2))
        assert layer.params["W"].any()


# -- property tests: every input either works or raises nnscratch's own error ------------------------
DTYPES = [bool, np.int8, np.uint8, np.int64, np.float16, np.float32, np.float64, np.complex64,
          np.complex128, object, str, "datetime64[s]"]


def _make_array(shape, dtype, rng, layout, special):
    x = np.asarray(rng.standard_normal(shape) * 3)
    if special == "nan" and x.size:
        x.flat[rng.integers(x.size)] = np.nan
    elif special == "inf" and x.size:
        x.flat[rng.integers(x.size)] = -np.inf
    elif special == "huge":
        x *= 1e300
    with np.errstate(all="ignore"):
        if dtype in (bool, np.int8, np.uint8, np.int64, "datetime64[s]"):
            x = np.nan_to_num(x, posinf=1, neginf=-1, nan=0).clip(-100, 100).astype(np.int64)
        x = np.asarray(x).astype(dtype)
    if layout == "fortran":
        x = np.asfortranarray(x)
    elif layout == "strided" and x.ndim:
        wide = np.empty(x.shape[:-1] + (2 * x.shape[-1],), x.dtype)
        wide[..., ::2] = x
        x = wide[..., ::2]
    elif layout == "read-only":
        x = x.copy()
        x.flags.writeable = False
    return x


def _ours_or_works(fn):
    """Run ``fn``; an error must be nnscratch's own, raised in nnscratch's code."""
    try:
        with np.errstate(all="ignore"):
            return True, fn()
    except NNScratchError as exc:
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        assert "nnscratch" in frame.filename, (frame, exc)
        assert type(exc).__name__ in str(type(exc)) and str(exc)
        return False, None


shapes = st.one_of(st.lists(st.integers(0, 4), min_size=0, max_size=5).map(tuple),
                   st.sampled_from([v[1] for v in LAYERS.values()]))


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(name=st.sampled_from(sorted(LAYERS)), shape=shapes, dtype=st.sampled_from(DTYPES),
       layout=st.sampled_from(["c", "fortran", "strided", "read-only"]),
       special=st.sampled_from(["none", "none", "nan", "inf", "huge"]),
       training=st.booleans(), gshape=st.sampled_from(["same", "other"]),
       gdtype=st.sampled_from(DTYPES), seed=st.integers(0, 2**16))
def test_any_input_works_or_raises_our_own_error(name, shape, dtype, layout, special, training,
                                                 gshape, gdtype, seed):
    rng = np.random.default_rng(seed)
    make, _ = LAYERS[name]
    layer = make("float32" if seed % 2 else "float64")
    x = _make_array(shape, dtype, rng, layout, special)
    ok, y = _ours_or_works(lambda: layer.forward(x, training=training))
    if not ok:
        return
    assert isinstance(y, np.ndarray) and y.dtype in (np.float32, np.float64)
    if not training:
        return
    g_shape = y.shape if gshape == "same" else tuple(d + 1 for d in y.shape)
    g = _make_array(g_shape, gdtype, rng, layout, "none")
    ok, dx = _ours_or_works(lambda: layer.backward(g))
    if ok:
        assert dx.shape == x.shape and dx.dtype == y.dtype


# -- prediction from several threads ---------------------------------------------------------------
def test_eight_threads_predicting_with_one_model_get_the_serial_answers(rng):
    models = [Sequential([Dense(64, 32), ReLU(), Dense(32, 10)], seed=0),
              Sequential([Conv2D(1, 8, 3, padding=1), BatchNorm(8), ReLU(), MaxPool2D(2),
                          Conv2D(8, 8, 3, padding=1), ReLU(), Flatten(), Dropout(0.3),
                          Dense(8 * 4 * 4, 10)], input_shape=(1, 8, 8), seed=0)]
    batches = [rng.random((n, 64)).astype(np.float32) for n in (1, 5, 32, 7, 64, 3, 16, 9) * 4]
    for model in models:
        serial = [model.predict_proba(b) for b in batches]
        start = threading.Barrier(8)

        def predict(i, model=model, start=start):
            if i < 8:
                start.wait()             # all eight threads at once
            return model.predict_proba(batches[i])
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(predict, range(len(batches))))
        for got, want in zip(results, serial, strict=True):
            np.testing.assert_array_equal(got, want)
