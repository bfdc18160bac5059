from __future__ import annotations

import numpy as np
import pytest

from nnscratch import History, Sequential
from nnscratch.layers import Dense, ReLU
from nnscratch.losses import MeanSquaredError, SoftmaxCrossEntropy
from nnscratch.optim import SGD


def seed_net(seed=0, dtype="float32"):
    return Sequential([Dense(64, 32), ReLU(), Dense(32, 10)], seed=seed, dtype=dtype)


def test_shapes_and_probabilities(scaled):
    X, _, _, _ = scaled
    model = seed_net()
    assert model.predict(X[:7]).shape == (7,)
    assert model.predict(X[:7]).dtype.kind == "i"
    proba = model.predict_proba(X[:7])
    assert proba.shape == (7, 10) and proba.dtype == np.float32
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    assert model.predict(X[0]).shape == (1,)  # one example as a 1-D array
    np.testing.assert_array_equal(model.predict(X[:7]), proba.argmax(axis=1))


def test_parameters_shapes_and_he_init():
    model = seed_net()
    d1, _, d2 = model.layers
    assert d1.params["W"].shape == (64, 32) and d1.params["b"].shape == (32,)
    assert d2.params["W"].shape == (32, 10) and d2.params["b"].shape == (10,)
    for layer in (d1, d2):
        assert set(layer.grads) == set(layer.params)
        assert all(layer.grads[k].shape == layer.params[k].shape for k in layer.params)
        assert not layer.params["b"].any()
    big = Sequential([Dense(400, 300)], seed=0)
    assert abs(big.layers[0].params["W"].std() - np.sqrt(2 / 400)) < 0.002  # He: var 2/fan_in
    assert model.n_params == 64 * 32 + 32 + 32 * 10 + 10


def test_same_seed_same_model_different_seed_different(scaled):
    X, y, _, _ = scaled
    a, b, c = seed_net(0), seed_net(0), seed_net(1)
    for m in (a, b, c):
        m.fit(X[:200], y[:200], epochs=3, optimizer=SGD(lr=0.1))
    np.testing.assert_array_equal(a.parameters()[0][0], b.parameters()[0][0])
    assert not np.array_equal(a.parameters()[0][0], c.parameters()[0][0])


def test_layers_are_views_of_one_flat_buffer():
    model = seed_net()
    (flat, grads), = model.parameters()
    for layer in (model.layers[0], model.layers[2]):
        for k in ("W", "b"):
            assert np.shares_memory(layer.params[k], flat)
            assert np.shares_memory(layer.grads[k], grads)
    flat[0] = 123.0
    assert model.layers[0].params["W"][0, 0] == 123.0


def test_replacing_a_parameter_array_is_picked_up(scaled):
    X, y, _, _ = scaled
    model = seed_net()
    model.layers[2].params["b"] = np.full(10, 5.0, dtype=np.float32)
    model.fit(X[:64], y[:64], epochs=1, optimizer=SGD(lr=0.1))
    assert np.shares_memory(model.layers[2].params["b"], model.parameters()[0][0])
    assert abs(model.layers[2].params["b"].mean() - 5.0) < 0.1  # kept, then trained


def test_history_and_validation(scaled):
    X, y, Xv, yv = scaled
    model = seed_net()
    h = model.fit(X, y, epochs=4, batch_size=64, optimizer=SGD(lr=0.1),
                  loss=SoftmaxCrossEntropy(), validation_data=(Xv, yv))
    assert isinstance(h, History) and model.history is h
    assert set(h.history) == {"loss", "accuracy", "lr", "val_loss", "val_accuracy"}
    assert h["lr"] == [0.1] * 4
    assert len(h) == 4 and h.epoch == [1, 2, 3, 4]
    assert all(len(v) == 4 for v in h.history.values())
    assert h["loss"][-1] < h["loss"][0]
    assert h["val_accuracy"][-1] == pytest.approx(model.score(Xv, yv))
    assert "History(epochs=4" in repr(h)


def test_epoch_loss_is_the_mean_loss_of_the_examples_as_they_were_seen(scaled):
    """Full-batch, unshuffled: the epoch's loss is the loss of the weights before the step."""
    X, y, _, _ = scaled
    model = seed_net(dtype="float64")
    before = SoftmaxCrossEntropy()(model.decision_function(X[:100]), y[:100])
    h = model.fit(X[:100], y[:100], epochs=1, batch_size=100, shuffle=False,
                  optimizer=SGD(lr=0.1))
    assert h["loss"][0] == pytest.approx(before, rel=1e-12)


def test_float64_training_matches_float32_closely(scaled):
    X, y, Xt, _ = scaled
    m32, m64 = seed_net(dtype="float32"), seed_net(dtype="float64")
    for m in (m32, m64):
        m.fit(X, y, epochs=5, optimizer=SGD(lr=0.1))
    assert m64.parameters()[0][0].dtype == np.float64
    assert m64.predict_proba(Xt).dtype == np.float64
    np.testing.assert_allclose(m32.predict_proba(Xt), m64.predict_proba(Xt), atol=1e-3)


def test_training_buffers_do_not_alias_user_data(scaled):
    X, y, _, _ = scaled
    X32 = X[:100].astype(np.float32)
    copy = X32.copy()
    model = seed_net()
    model.fit(X32, y[:100], epochs=2, optimizer=SGD(lr=0.1))
    np.testing.assert_array_equal(X32, copy)
    g = np.ones((5, 10), dtype=np.float32)
    model.forward(X32[:5], training=True)
    model.backward(g)
    assert (g == 1).all()  # backward never writes into the caller's array


def test_inference_forward_returns_fresh_arrays(scaled):
    X, _, _, _ = scaled
    model = seed_net()
    a = model.forward(X[:3])
    b = model.forward(X[3:6])
    assert not np.shares_memory(a, b)


def test_mse_loss_trains(scaled):
    X, y, _, _ = scaled
    model = seed_net()
    h = model.fit(X, y, epochs=5, optimizer=SGD(lr=0.1), loss=MeanSquaredError())
    assert h["loss"][-1] < h["loss"][0]


def test_repr_and_summary(capsys):
    model = seed_net()
    assert repr(model) == ("Sequential(\n  (0): Dense(64, 32, init='he_normal')\n"
                           "  (1): ReLU()\n  (2): Dense(32, 10, init='he_normal')\n)")
    assert model.summary() is None
    text = capsys.readouterr().out
    assert "2,410" in text and "(None, 10)" in text and "Dense(32, 10" in text
    assert "(float32, on cpu)" in text
    assert repr(SGD(lr=0.1)) == "SGD(lr=0.1, momentum=0.0, nesterov=False, weight_decay=0.0)"


@pytest.mark.parametrize("kwargs,match", [
    ({"epochs": 0}, "epochs"), ({"epochs": 1.5}, "epochs"), ({"batch_size": -3}, "batch_size"),
    ({"optimizer": "sgd"}, "optimizer"), ({"loss": "mse"}, "loss"),
    ({"validation_data": (np.zeros((2, 64)),)}, "validation_data"),
])
def test_fit_rejects_bad_arguments(scaled, kwargs, match):
    X, y, _, _ = scaled
    with pytest.raises(ValueError, match=match):
        seed_net().fit(X[:10], y[:10], **kwargs)


@pytest.mark.parametrize("make,match", [
    (lambda: Sequential([]), "non-empty"),
    (lambda: Sequential([ReLU()]), "input size"),
    (lambda: Sequential([Dense(4, 3), Dense(4, 2)]), "does not fit"),
    (lambda: Sequential([Dense(4, 3), "relu"]), "not a Layer"),
    (lambda: Sequential([Dense(4, 3)], dtype="int8"), "dtype"),
    (lambda: Sequential([Dense(4, 3)], seed="x"), "seed"),
    (lambda: Dense(0, 3), "n_in"),
    (lambda: Dense(3, 2.5), "n_out"),
    (lambda: Dense(3, 2, init="zeros"), "unknown initializer"),
    (lambda: SGD(lr=-1), "lr"),
    (lambda: SGD(lr=float("nan")), "lr"),
    (lambda: SGD(lr=0.1, nesterov=True), "nesterov"),
    (lambda: SGD(lr=0.1, momentum=-0.5), "momentum"),
])
def test_constructors_validate(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_sgd_momentum_nesterov_weight_decay_match_the_formulas(rng):
    """Against the update written out independently (PyTorch's documented SGD)."""
    for mu, nesterov, wd in [(0.9, False, 0.0), (0.9, True, 0.01), (0.0, False, 0.1)]:
        p = rng.standard_normal(6)
        ref, v = p.copy(), None
        grad = np.zeros(6)
        opt = SGD(lr=0.1, momentum=mu, nesterov=nesterov, weight_decay=wd)
        opt.bind([(p, grad)])
        for _ in range(5):
            grad[...] = rng.standard_normal(6)
            d = grad + wd * ref
            if mu:
                v = d.copy() if v is None else mu * v + d
                d = d + mu * v if nesterov else v
            ref = ref - 0.1 * d
            opt.step()
            np.testing.assert_allclose(p, ref, rtol=1e-12)


def test_diverging_training_stops_with_clear_error(scaled):
    from nnscratch import TrainingDiverged

    X, y, _, _ = scaled
    with pytest.raises(TrainingDiverged, match="epoch 1.*learning rate"):
        seed_net().fit(X, y, epochs=3, optimizer=SGD(lr=1e30))


@pytest.mark.parametrize("sizes", [[5, 3], [6, 4, 3], [7, 8, 5, 4, 3]])
@pytest.mark.parametrize("m", [1, 4, 9])
def test_dense_relu_stack_matches_the_layers(sizes, m, rng):
    """The bias-trick stack (accel.dense.DenseReLUStack) gives the layers' own forward/backward
    numbers."""
    from nnscratch.accel.dense import DenseReLUStack
    from nnscratch.accel.planner import training_stages

    layers = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True):
        layers += [Dense(n_in, n_out), ReLU()]
    model = Sequential(layers[:-1], seed=1, dtype="float64")
    (stack,) = training_stages(model)
    assert isinstance(stack, DenseReLUStack)
    for layer in model.layers[::2]:
        layer.params["b"][...] = rng.standard_normal(layer.params["b"].shape)
    x, g = rng.standard_normal((m, sizes[0])), rng.standard_normal((m, sizes[-1]))

    z_fast = stack.forward(x).copy()
    dx_fast = stack.backward(g).copy()
    grads_fast = model.parameters()[0][1].copy()

    h = model.forward(x, training=True)  # the plain path: each layer's own forward, backward
    np.testing.assert_allclose(z_fast, h, rtol=1e-12, atol=1e-12)
    d = model.backward(g)
    np.testing.assert_allclose(dx_fast, d, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(grads_fast, model.parameters()[0][1], rtol=1e-12, atol=1e-12)
    assert model.backward(g, input_grad=False) is None


def test_other_stacks_take_other_stages(scaled):
    from nnscratch.accel.dense import DenseReLUStack
    from nnscratch.accel.planner import training_stages

    X, y, _, _ = scaled
    for layers in ([Dense(64, 10), Dense(10, 10)], [ReLU(), Dense(64, 10)],
                   [Dense(64, 16), ReLU(), Dense(16, 10), ReLU()]):
        model = Sequential(layers, seed=0)
        stages = training_stages(model)
        assert not (len(stages) == 1 and isinstance(stages[0], DenseReLUStack))
        h = model.fit(X[:200], y[:200], epochs=3, optimizer=SGD(lr=0.1))
        assert np.isfinite(h["loss"]).all()


def test_one_hot_labels_and_history_attributes(scaled):
    X, y, _, _ = scaled
    a, b = seed_net(), seed_net()
    ha = a.fit(X[:100], y[:100], epochs=2, optimizer=SGD(lr=0.1))
    hb = b.fit(X[:100], np.eye(10)[y[:100]], epochs=2, optimizer=SGD(lr=0.1))
    assert ha.loss == hb.loss == ha["loss"]
    np.testing.assert_array_equal(a.parameters()[0][0], b.parameters()[0][0])
    with pytest.raises(AttributeError, match="val_loss"):
        _ = ha.val_loss


def test_a_keyboard_interrupt_in_training_exits_130_in_one_line(tmp_path, monkeypatch, capsys):
    """A KeyboardInterrupt that reaches the CLI (a second Ctrl-C: the first one stops at the
    next batch and checkpoints, see tests/test_interrupts.py) exits at once with 130 and one
    line, no traceback."""
    from nnscratch.cli import main

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr("nnscratch.training.fit", interrupted)
    monkeypatch.setattr("nnscratch.model.fit", interrupted)
    assert main(["train", "--epochs", "5", "--out", str(tmp_path), "--quiet"]) == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1 and "interrupted" in err


def test_layer_by_layer_path_trains_exactly_like_the_fast_path(scaled):
    """The same network trained with and without acceleration lands on the same weights."""
    X, y, _, _ = scaled
    fast, plain = seed_net(dtype="float64"), seed_net(dtype="float64")
    plain.accelerate = False  # the layers' own forward/backward
    for m in (fast, plain):
        m.fit(X[:300], y[:300], epochs=3, batch_size=32, optimizer=SGD(lr=0.1))
    np.testing.assert_allclose(plain.parameters()[0][0], fast.parameters()[0][0], rtol=1e-10,
                               atol=1e-12)
    assert plain.history["loss"] == pytest.approx(fast.history["loss"], rel=1e-10)


def test_epoch_accuracy_is_argmax_accuracy_even_with_ties():
    """All-zero inputs give equal logits for every class: accuracy must not count ties."""
    X, y = np.zeros((40, 4)), np.arange(40) % 4
    model = Sequential([Dense(4, 4)], seed=0)
    h = model.fit(X, y, epochs=1, batch_size=40, shuffle=False, optimizer=SGD(lr=1e-9))
    assert h["accuracy"][0] == pytest.approx(model.score(X, y)) == 0.25


def test_a_layer_cannot_be_shared():
    d = Dense(4, 4)
    with pytest.raises(ValueError, match="appears twice"):
        Sequential([d, ReLU(), d])
    first = Sequential([Dense(4, 3)])
    with pytest.raises(ValueError, match="already belongs"):
        Sequential(first.layers)


@pytest.mark.parametrize("make,match", [
    (lambda: Sequential([Dense(4, 3)], dtype=None), "dtype"),
    (lambda: Sequential([Dense(4, 3)], seed=-1), "seed"),
    (lambda: Dense(4, 3, seed="x"), "seed"),
    (lambda: Dense(4, 3, seed=-2), "seed"),
])
def test_more_constructor_validation(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_fit_validates_shuffle_and_callbacks(scaled):
    X, y, _, _ = scaled
    with pytest.raises(ValueError, match="shuffle"):
        seed_net().fit(X[:10], y[:10], shuffle="no")
    with pytest.raises(ValueError, match="callbacks"):
        seed_net().fit(X[:10], y[:10], callbacks=[1])


def test_sgd_step_before_bind_does_nothing():
    SGD(lr=0.1).step()


def test_huge_inputs_are_rejected_not_turned_into_nan():
    from nnscratch import InputError

    model = Sequential([Dense(4, 16), ReLU(), Dense(16, 2)], seed=0)
    with pytest.raises(InputError, match="too large for float32"), np.errstate(over="ignore"):
        model.predict(np.full((1, 4), 1e39))
    with pytest.raises(InputError, match="overflow"), np.errstate(over="ignore", invalid="ignore"):
        model.predict_proba(np.full((1, 4), 3e38))
