"""Real-valued targets (regression) under mean squared error, in the core: ``Sequential.fit`` with
y of shape (n,) or (n, k), its gradients checked numerically in float64 (with a negative
control), one SGD step worked by hand, and the accelerated plan equal to the plain loop."""

from __future__ import annotations

import numpy as np
import pytest

from nnscratch import InputError, Sequential
from nnscratch.gradcheck import check_loss, numerical_gradient, relative_error
from nnscratch.layers import BatchNorm, Conv2D, Dense, Dropout, Flatten, MaxPool2D, ReLU, Tanh
from nnscratch.losses import MeanSquaredError
from nnscratch.optim import SGD, Adam, RMSprop


def _data(n=60, d=5, k=2, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    return X, np.tanh(X @ rng.standard_normal((d, k))) + 0.1 * rng.standard_normal((n, k))


def _model_gradients(model, X, Y, loss):
    """Analytic gradient of the model's parameters (flat) for MSE(model(X), Y), and a numerical
    one by central differences."""
    params, grads = model.parameters()[0]

    def f():
        return loss.forward(model.forward(X, training=True), Y)

    loss.forward(model.forward(X, training=True), Y)
    model.backward(loss.backward())
    analytic = grads.copy()
    return numerical_gradient(f, params), analytic


@pytest.mark.parametrize("k", [1, 3])
def test_mse_loss_gradient_on_real_targets(k):
    rng = np.random.default_rng(1)
    result = check_loss(MeanSquaredError(), rng.standard_normal((6, k)), rng.standard_normal((6, k)))
    assert result.ok, result


def test_model_gradient_under_mse_matches_central_differences():
    X, Y = _data(n=8, d=4, k=2)
    model = Sequential([Dense(4, 5), Tanh(), Dense(5, 3), ReLU(), Dense(3, 2)], seed=0,
                       dtype="float64")
    numeric, analytic = _model_gradients(model, X, Y, MeanSquaredError())
    assert relative_error(numeric, analytic) < 1e-6


def test_gradient_check_catches_a_wrong_mse_gradient():
    """Negative control: the same check fails on a loss whose gradient lacks the factor 2."""

    class HalfGradientMSE(MeanSquaredError):
        def backward(self):
            return super().backward() / 2

    X, Y = _data(n=8, d=4, k=2)
    model = Sequential([Dense(4, 5), Tanh(), Dense(5, 2)], seed=0, dtype="float64")
    numeric, analytic = _model_gradients(model, X, Y, HalfGradientMSE())
    assert relative_error(numeric, analytic) > 0.1


def test_one_sgd_step_by_hand():
    """A linear model: W <- W - lr * 2 X^T (X W + b - Y) / (m k), b likewise with ones."""
    X, Y = _data(n=4, d=3, k=2)
    model = Sequential([Dense(3, 2)], seed=0, dtype="float64")
    W, b = model.layers[0].params["W"].copy(), model.layers[0].params["b"].copy()
    model.fit(X, Y, epochs=1, batch_size=4, shuffle=False, optimizer=SGD(lr=0.1),
              loss=MeanSquaredError())
    G = 2 * (X @ W + b - Y) / Y.size
    np.testing.assert_allclose(model.layers[0].params["W"], W - 0.1 * X.T @ G, rtol=1e-12)
    np.testing.assert_allclose(model.layers[0].params["b"], b - 0.1 * G.sum(axis=0), rtol=1e-12)


def _train(accelerate, layers, X, Y, opt, **kw):
    model = Sequential(layers(), seed=3, dtype="float64", accelerate=accelerate,
                       input_shape=kw.pop("input_shape", None))
    h = model.fit(X, Y, epochs=3, batch_size=16, optimizer=opt(), loss=MeanSquaredError(), **kw)
    return model, h


CASES = {
    "mlp-sgd": (lambda: [Dense(5, 16), ReLU(), Dense(16, 8), ReLU(), Dense(8, 2)],
                lambda: SGD(lr=0.05), {}),
    "mlp-adam-dropout-val": (lambda: [Dense(5, 16), ReLU(), Dropout(0.2), Dense(16, 2)],
                             lambda: Adam(lr=0.01), {"validation_split": 0.25}),
    "mlp-rmsprop-bn": (lambda: [Dense(5, 8), Tanh(), BatchNorm(8), Dense(8, 2)],
                       lambda: RMSprop(lr=0.01, momentum=0.5), {"shuffle": False}),
}


@pytest.mark.parametrize("name", list(CASES))
def test_accelerated_regression_equals_the_plain_loop(name):
    layers, opt, kw = CASES[name]
    X, Y = _data()
    fast, hf = _train(True, layers, X, Y, opt, **dict(kw))
    plain, hp = _train(False, layers, X, Y, opt, **dict(kw))
    np.testing.assert_allclose(fast.parameters()[0][0], plain.parameters()[0][0], rtol=1e-9,
                               atol=1e-12)
    assert set(hf.history) == set(hp.history) and "accuracy" not in hf.history
    for key in hf.history:
        np.testing.assert_allclose(hf[key], hp[key], rtol=1e-9)


def test_accelerated_cnn_regression_equals_the_plain_loop():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((24, 1, 6, 6))
    Y = rng.standard_normal(24)

    def layers():
        # (no BatchNorm right after the conv: its bias's exact gradient is zero and the two paths'
        # rounding noise in it differs, see tests/test_accelerate.py)
        return [Conv2D(1, 3, 3, padding=1), ReLU(), MaxPool2D(2), Flatten(), Dense(27, 1)]

    fast, _ = _train(True, layers, X, Y, lambda: Adam(lr=0.01), input_shape=(1, 6, 6))
    plain, _ = _train(False, layers, X, Y, lambda: Adam(lr=0.01), input_shape=(1, 6, 6))
    np.testing.assert_allclose(fast.parameters()[0][0], plain.parameters()[0][0], rtol=1e-9,
                               atol=1e-12)


def test_equality_test_can_fail():
    """Negative control for the comparison above: a different learning rate is caught."""
    X, Y = _data()
    layers, _, _ = CASES["mlp-sgd"]
    a, _ = _train(True, layers, X, Y, lambda: SGD(lr=0.05))
    b, _ = _train(False, layers, X, Y, lambda: SGD(lr=0.0500001))
    assert not np.allclose(a.parameters()[0][0], b.parameters()[0][0], rtol=1e-9, atol=1e-12)


def test_regression_learns_and_keeps_shapes():
    X, Y = _data(n=200)
    model = Sequential([Dense(5, 32), ReLU(), Dense(32, 1)], seed=0)
    h = model.fit(X, Y[:, 0], epochs=40, optimizer=Adam(lr=0.01), loss=MeanSquaredError())
    assert h["loss"][-1] < 0.2 * h["loss"][0]
    assert model.decision_function(X).shape == (200, 1)


def test_labels_under_mse_are_still_classes():
    """Integer labels (and one-hot rows) under MSE stay a classification: accuracy recorded."""
    X, _ = _data()
    y = (X[:, 0] > 0).astype(int)
    model = Sequential([Dense(5, 2)], seed=0)
    h = model.fit(X, y, epochs=2, loss=MeanSquaredError())
    assert "accuracy" in h.history
    h = model.fit(X, np.eye(2)[y], epochs=1, loss=MeanSquaredError())
    assert "accuracy" in h.history


@pytest.mark.parametrize("y, match", [
    (np.full(60, np.nan), "NaN"),
    (np.zeros((60, 3)), "shape"),
    (np.zeros(59), "59 targets"),
    (np.array(["a"] * 60), "numbers"),
])
def test_bad_real_targets_are_refused(y, match):
    X, _ = _data()
    model = Sequential([Dense(5, 1)], seed=0)
    with pytest.raises(InputError, match=match):
        model.fit(X, y, epochs=1, loss=MeanSquaredError())
