"""Dropout and BatchNorm: gradients, statistics, inference behaviour, save/load."""

from __future__ import annotations

import numpy as np
import pytest

from nnscratch import InputError, Sequential, load_model
from nnscratch.gradcheck import check_layer
from nnscratch.layers import BatchNorm, Dense, Dropout, ReLU
from nnscratch.optim import Adam


class _FixedMaskDropout(Dropout):
    """Dropout redrawing the same mask at every call, so finite differences make sense."""

    def forward(self, x, training=False):
        self._rng = np.random.default_rng(7)
        return super().forward(x, training)


def test_dropout_gradients_with_a_fixed_mask(rng):
    result = check_layer(_FixedMaskDropout(0.3), rng.standard_normal((6, 8)), rng)
    assert result.ok, str(result)


def test_dropout_statistics_and_inference(rng):
    layer = Dropout(0.25)
    layer.reset_parameters(np.random.default_rng(0), np.dtype(np.float64))
    x = np.ones((400, 250))
    y = layer.forward(x, training=True)
    assert set(np.unique(y)) == {0.0, 1 / 0.75}
    assert abs((y == 0).mean() - 0.25) < 0.01       # p of the units dropped
    assert abs(y.mean() - 1.0) < 0.01               # expectation kept
    g = layer.backward(np.ones_like(x))
    np.testing.assert_array_equal(g, y)             # same mask, same scale
    assert layer.forward(x) is x                    # identity at inference
    assert Dropout(0.0).forward(x, training=True) is x


def test_dropout_is_seeded_by_the_model(scaled):
    X, y, _, _ = scaled
    models = [Sequential([Dense(64, 32), Dropout(0.5), ReLU(), Dense(32, 10)], seed=3)
              for _ in range(2)]
    for m in models:
        m.fit(X[:200], y[:200], epochs=2, optimizer=Adam(lr=0.01))
    np.testing.assert_array_equal(models[0].parameters()[0][0], models[1].parameters()[0][0])


@pytest.mark.parametrize("n,f", [(3, 1), (5, 3), (16, 4)])
def test_batchnorm_gradients(n, f, rng):
    layer = BatchNorm(f)
    layer.reset_parameters(rng, np.dtype(np.float64))
    layer.params["gamma"][...] = rng.uniform(0.5, 2, f)
    layer.params["beta"][...] = rng.standard_normal(f)
    result = check_layer(layer, rng.standard_normal((n, f)) * 3 + 1, rng, tol=1e-5)
    assert result.ok, str(result)
    assert set(result.errors) == {"x", "gamma", "beta"}


def test_batchnorm_running_statistics_and_inference(rng):
    layer = BatchNorm(3, momentum=0.1)
    layer.reset_parameters(rng, np.dtype(np.float64))
    x = rng.standard_normal((10, 3)) * 2 + 5
    y = layer.forward(x, training=True)
    np.testing.assert_allclose(y.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(y.var(axis=0), 1, rtol=1e-4)
    np.testing.assert_allclose(layer.state["running_mean"], 0.1 * x.mean(axis=0))
    np.testing.assert_allclose(layer.state["running_var"], 0.9 + 0.1 * x.var(axis=0, ddof=1))
    st = layer.state
    expected = (x - st["running_mean"]) / np.sqrt(st["running_var"] + 1e-5)
    np.testing.assert_allclose(layer.forward(x), expected)
    with pytest.raises(InputError, match="more than 1"):
        layer.forward(x[:1], training=True)


def test_batchnorm_state_is_saved_and_not_trained(scaled, tmp_path):
    X, y, Xt, _ = scaled
    model = Sequential([Dense(64, 32), BatchNorm(32), ReLU(), Dropout(0.2), Dense(32, 10)],
                       seed=0)
    assert model.n_params == 64 * 32 + 32 + 2 * 32 + 32 * 10 + 10  # state is not a parameter
    model.fit(X, y, epochs=3, optimizer=Adam(lr=0.01))
    assert not np.allclose(model.layers[1].state["running_mean"], 0)
    model.save(tmp_path / "bn.safetensors")
    loaded = load_model(tmp_path / "bn.safetensors")
    np.testing.assert_array_equal(loaded.layers[1].state["running_var"],
                                  model.layers[1].state["running_var"])
    np.testing.assert_array_equal(loaded.predict_proba(Xt), model.predict_proba(Xt))


@pytest.mark.parametrize("make", [lambda: Dropout(1.0), lambda: Dropout(-0.1),
                                  lambda: Dropout("half"), lambda: BatchNorm(0),
                                  lambda: BatchNorm(3, momentum=1.5), lambda: BatchNorm(3, eps=0)])
def test_arguments_are_validated(make):
    with pytest.raises(ValueError):
        make()


def test_batchnorm_matches_pytorch(rng):
    torch = pytest.importorskip("torch")
    x, g = rng.standard_normal((8, 4)) * 2 + 1, rng.standard_normal((8, 4))
    ours = BatchNorm(4, momentum=0.2, eps=1e-3)
    ours.reset_parameters(rng, np.dtype(np.float64))
    theirs = torch.nn.BatchNorm1d(4, momentum=0.2, eps=1e-3).double()
    tx = torch.tensor(x, requires_grad=True)
    ty = theirs(tx)
    ty.backward(torch.tensor(g))
    np.testing.assert_allclose(ours.forward(x, training=True), ty.detach().numpy(), atol=1e-12)
    np.testing.assert_allclose(ours.backward(g), tx.grad.numpy(), atol=1e-12)
    np.testing.assert_allclose(ours.grads["gamma"], theirs.weight.grad.numpy(), atol=1e-12)
    np.testing.assert_allclose(ours.state["running_var"], theirs.running_var.numpy(), atol=1e-12)
    theirs.eval()
    np.testing.assert_allclose(ours.forward(x), theirs(tx).detach().numpy(), atol=1e-12)
