"""Activations: values against reference formulas / known numbers, gradients in float64."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nnscratch import Sequential, load_model
from nnscratch.gradcheck import check_layer
from nnscratch.layers import GELU, Dense, LeakyReLU, ReLU, Sigmoid, Tanh
from nnscratch.optim import SGD

ACTIVATIONS = [ReLU(), LeakyReLU(0.1), Tanh(), Sigmoid(), GELU(), GELU(approximate="tanh")]


@pytest.mark.parametrize("layer", ACTIVATIONS, ids=repr)
def test_gradients_float64(layer, rng):
    x = rng.standard_normal((5, 7)) * 2
    x[np.abs(x) < 1e-3] = 0.5  # away from ReLU's kink
    result = check_layer(layer, x, rng)
    assert result.ok, str(result)


@pytest.mark.parametrize("layer,x,expected", [
    (LeakyReLU(0.1), [-2.0, 0.0, 3.0], [-0.2, 0.0, 3.0]),
    (LeakyReLU(), [-100.0], [-1.0]),
    (Tanh(), [0.5], [math.tanh(0.5)]),
    (Sigmoid(), [0.0, 2.0, -2.0], [0.5, 1 / (1 + math.exp(-2)), 1 / (1 + math.exp(2))]),
    (GELU(), [1.0, -1.0, 0.0], [0.8413447460685429, -0.15865525393145707, 0.0]),
    (GELU(approximate="tanh"), [1.0], [0.8411919906082768]),
], ids=str)
def test_values(layer, x, expected):
    np.testing.assert_allclose(layer.forward(np.array([x])), [expected], rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("layer", [Sigmoid(), Tanh(), GELU(), GELU(approximate="tanh")], ids=repr)
def test_extreme_inputs_stay_finite(layer):
    for dtype in (np.float32, np.float64):
        x = np.array([[-1e4, -80.0, 0.0, 80.0, 1e4]], dtype=dtype)
        with np.errstate(over="raise", invalid="raise", divide="raise"):
            y = layer.forward(x, training=True)
            g = layer.backward(np.ones_like(x))
        assert y.dtype == dtype and g.dtype == dtype
        assert np.isfinite(y).all() and np.isfinite(g).all()


def test_bad_arguments():
    for make in (lambda: LeakyReLU(-0.1), lambda: LeakyReLU("x"), lambda: GELU("fast")):
        with pytest.raises(ValueError):
            make()


@pytest.mark.parametrize("act", [LeakyReLU, Tanh, Sigmoid, GELU])
def test_networks_with_each_activation_train_save_and_load(act, scaled, tmp_path):
    X, y, Xt, yt = scaled
    model = Sequential([Dense(64, 32, init="glorot_uniform"), act(), Dense(32, 10)], seed=0)
    h = model.fit(X, y, epochs=20, optimizer=SGD(lr=0.1))
    assert h["loss"][-1] < 0.5 * h["loss"][0]
    assert model.score(Xt, yt) > 0.85
    model.save(tmp_path / "m.safetensors")
    loaded = load_model(tmp_path / "m.safetensors")
    assert repr(loaded) == repr(model)
    np.testing.assert_array_equal(loaded.predict_proba(Xt), model.predict_proba(Xt))
