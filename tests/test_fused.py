"""The fused training epochs (accel.dense.SoftmaxEpochs) against the plain fit loop.

``Sequential(..., accelerate=False)`` sends the same fit through the plain loop (each layer's
forward/backward, the loss's forward/backward, ``optimizer.step``): both must give the same
weights and the same history.
"""

from __future__ import annotations

import numpy as np
import pytest

from nnscratch import Sequential
from nnscratch.accel import dense as fastpath
from nnscratch.accel import planner
from nnscratch.layers import Dense, ReLU
from nnscratch.losses import MeanSquaredError, SoftmaxCrossEntropy
from nnscratch.optim import SGD, Adam
from nnscratch.optim.schedules import StepLR


def _net(sizes, dtype="float64", seed=3, accelerate=True):
    layers = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True):
        layers += [Dense(n_in, n_out), ReLU()]
    return Sequential(layers[:-1], seed=seed, dtype=dtype, accelerate=accelerate)


def _stack(model):
    """The model's one DenseReLUStack stage, or None."""
    stages = planner.training_stages(model)
    return stages[0] if len(stages) == 1 and isinstance(stages[0], fastpath.DenseReLUStack) else None


def _softmax_epochs(model, X, Y, batch_size):
    """The fused epochs the planner would use for ``model`` (None where it would not)."""
    stack = _stack(model)
    if stack is None or stack.sizes[0][0] > fastpath.FUSED_MAX_INPUTS:
        return None
    return fastpath.SoftmaxEpochs(stack, X, Y, batch_size)


def _data(n, d, k, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    X = rng.random((n, d)).astype(dtype)
    y = rng.integers(0, k, n)
    y[:k] = np.arange(k)     # every class present
    return X, y


def _fit_both(monkeypatch, make_model, make_opt, X, y, **kw):
    """(model, history) fitted through the fused epochs and through the plain loop."""
    out = []
    for fused in (True, False):
        model = make_model()
        model.accelerate = fused
        assert _stack(model) is not None      # (so the fused path applies when accelerated)
        history = model.fit(X, y, optimizer=make_opt(), **kw)
        out.append((model, history))
    return out


@pytest.mark.parametrize("sizes", [[6, 3], [6, 5, 3], [7, 8, 5, 4, 3]])
@pytest.mark.parametrize("n,batch_size", [(40, 8), (43, 8), (5, 8), (30, 1)])
def test_fused_epochs_give_the_step_by_step_weights(monkeypatch, sizes, n, batch_size):
    X, y = _data(n, sizes[0], sizes[-1])
    (a, ha), (b, hb) = _fit_both(monkeypatch, lambda: _net(sizes), lambda: SGD(lr=0.3), X, y,
                                 epochs=4, batch_size=batch_size)
    np.testing.assert_allclose(a.parameters()[0][0], b.parameters()[0][0], rtol=1e-10,
                               atol=1e-12)
    np.testing.assert_allclose(ha["loss"], hb["loss"], rtol=1e-10)
    assert ha["accuracy"] == hb["accuracy"]
    assert not np.array_equal(a.parameters()[0][0], _net(sizes).parameters()[0][0])  # it trained


@pytest.mark.parametrize("make_opt", [
    lambda: SGD(lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3),
    lambda: Adam(lr=0.01, weight_decay=1e-3),
    lambda: SGD(lr=0.5, clip_norm=0.1),
], ids=["sgd-nesterov-wd", "adam-wd", "sgd-clip"])
def test_fused_epochs_with_other_optimizers_schedule_and_no_shuffle(monkeypatch, make_opt):
    X, y = _data(50, 6, 4)
    for shuffle in (True, False):
        (a, ha), (b, hb) = _fit_both(monkeypatch, lambda: _net([6, 7, 4]), make_opt, X, y,
                                     epochs=5, batch_size=16, shuffle=shuffle,
                                     schedule=StepLR(step_size=2, gamma=0.5),
                                     validation_data=(X[:10], y[:10]))
        np.testing.assert_allclose(a.parameters()[0][0], b.parameters()[0][0], rtol=1e-9,
                                   atol=1e-12)
        for key in ("loss", "val_loss", "lr"):
            np.testing.assert_allclose(ha[key], hb[key], rtol=1e-9)


def test_float32_seed_net_matches_to_float32_rounding(monkeypatch):
    X, y = _data(100, 64, 10, dtype=np.float32)
    (a, ha), (b, hb) = _fit_both(monkeypatch, lambda: _net([64, 32, 10], "float32"),
                                 lambda: SGD(lr=0.1), X, y, epochs=3, batch_size=32)
    assert a.parameters()[0][0].dtype == np.float32
    np.testing.assert_allclose(a.parameters()[0][0], b.parameters()[0][0], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ha["loss"], hb["loss"], rtol=1e-4)


def _extreme_net(bias, sizes=(6, 5, 3)):
    """A net whose logits all sit near ``bias`` (+800 overflows exp in float64, -800 makes
    every term of an example underflow to 0)."""
    def make():
        model = _net(list(sizes))
        model.layers[-1].params["b"][...] = bias
        model.layers[-1].params["b"][0] += 1.0
        return model
    return make


@pytest.mark.parametrize("bias", [800.0, -800.0], ids=["overflow", "underflow"])
@pytest.mark.parametrize("make_opt", [lambda: SGD(lr=0.1), lambda: Adam(lr=0.01)],
                         ids=["sgd", "adam"])
def test_out_of_range_logits_rerun_the_epoch_with_the_shift(monkeypatch, bias, make_opt):
    X, y = _data(40, 6, 3)
    (a, ha), (b, hb) = _fit_both(monkeypatch, _extreme_net(bias), make_opt, X, y, epochs=3,
                                 batch_size=8)
    pa = a.parameters()[0][0]
    assert np.isfinite(pa).all() and np.isfinite(ha["loss"]).all()
    # the rerun restored parameters and optimizer state (Adam's moments and step count): any
    # leftover of the discarded epoch would show here
    np.testing.assert_allclose(pa, b.parameters()[0][0], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(ha["loss"], hb["loss"], rtol=1e-9)


@pytest.mark.parametrize("bias", [800.0, -800.0], ids=["overflow", "underflow"])
def test_negative_control_the_unshifted_softmax_does_break_there(bias):
    """Without the check and rerun, the plain softmax of those logits ruins the weights: the
    test above would fail if ``figures`` let such an epoch through."""
    X, y = _data(40, 6, 3)
    model = _extreme_net(bias)()
    opt = SGD(lr=0.1)
    opt.bind(model.parameters())
    epochs = _softmax_epochs(model, X, np.eye(3)[y], 8)
    with np.errstate(all="ignore"):
        logits = epochs.run(None, opt)
    assert not epochs.figures(logits, y)[0]
    assert not np.isfinite(model.parameters()[0][0]).all()


def test_the_range_check_bounds_are_where_the_plain_softmax_is_accurate():
    X, y = _data(16, 6, 3, dtype=np.float32)
    epochs = _softmax_epochs(_net([6, 3], "float32"), X, np.eye(3, dtype=np.float32)[y], 8)
    hi, lo = epochs.logit_range
    with np.errstate(over="ignore"):    # m * (sum of k terms) stays finite below hi, not far above
        assert np.isfinite(np.float32(8 * 3) * np.exp(np.float32(hi)))
        assert not np.isfinite(np.float32(8 * 3) * np.exp(np.float32(hi + 4.5)))
    assert np.exp(np.float32(lo)) >= np.finfo(np.float32).tiny * 1e7 and -70 < lo < -65
    Z = np.zeros((16, 3), np.float32, order="F")
    assert epochs.figures(Z, y)[0]
    for value, ok in ((hi - 0.5, True), (hi + 0.5, False), (np.inf, False), (np.nan, False)):
        Z[5, 1] = value
        with np.errstate(invalid="ignore"):
            assert epochs.figures(Z, y)[0] is ok, value
    Z[5, 1] = 0
    Z[7] = lo - 1                                       # one example far below the rest
    assert not epochs.figures(Z, y)[0]
    Z[7, 2] = lo + 1                                    # its largest term is fine again
    assert epochs.figures(Z, y)[0]
    # the plain softmax really is accurate over the whole range it accepts (probabilities far
    # below 1e-25 may come out as 0: nothing a gradient P - Y can notice)
    z = np.array([[hi - 0.1, hi - 3, 0.0], [lo + 0.1, lo - 5, lo - 60]], np.float32)
    with np.errstate(under="ignore"):
        e = np.exp(z)
        p = e / (8 * e.sum(axis=1, keepdims=True)) * 8
    shifted = np.exp(z - z.max(axis=1, keepdims=True))
    np.testing.assert_allclose(p, shifted / shifted.sum(axis=1, keepdims=True), rtol=1e-5,
                               atol=1e-25)


def test_epoch_logits_are_in_the_order_of_the_labels(monkeypatch):
    """The logits ``run`` returns, row i for example perm[i], are those the weights of each
    batch's step gave: checked by recomputing them with a zero learning rate."""
    X, y = _data(43, 6, 3)
    model = _net([6, 5, 3])
    opt = SGD(lr=1e-300)          # (a step that changes nothing)
    opt.bind(model.parameters())
    epochs = _softmax_epochs(model, X, np.eye(3)[y], 8)
    perm = np.random.default_rng(1).permutation(43)
    Z = epochs.run(perm, opt)
    np.testing.assert_allclose(Z, model.forward(X[perm]), rtol=1e-12)


def test_fused_path_applies_only_to_softmax_without_augment(monkeypatch):
    calls = []
    real = planner.SoftmaxEpochs

    def spy(*args):
        calls.append(args)
        return real(*args)

    monkeypatch.setattr(planner, "SoftmaxEpochs", spy)
    X, y = _data(30, 6, 3)
    _net([6, 5, 3]).fit(X, y, epochs=1, optimizer=SGD(lr=0.1))
    assert len(calls) == 1
    _net([6, 5, 3]).fit(X, y, epochs=1, optimizer=SGD(lr=0.1), loss=MeanSquaredError())
    _net([6, 5, 3]).fit(X, y, epochs=1, optimizer=SGD(lr=0.1), augment=lambda xb, rng: xb)
    assert len(calls) == 1
    _net([6, 5, 3]).fit(X, y, epochs=1, optimizer=SGD(lr=0.1), loss=SoftmaxCrossEntropy())
    assert len(calls) == 2
    model = Sequential([Dense(6, 5), ReLU(), Dense(5, 3), ReLU()], seed=0)  # no fast path
    assert _stack(model) is None and _softmax_epochs(model, X, np.eye(3)[y], 8) is None


@pytest.mark.parametrize("case", ["plain", "ties", "all-equal", "nan"])
def test_epoch_accuracy_is_argmax_accuracy(case):
    """evaluate_logits avoids argmax unless a row holds its maximum twice (or a NaN); the
    result is always that of argmax (first index of the maximum) == label."""
    from nnscratch.training import evaluate_logits

    rng = np.random.default_rng(0)
    Z = np.asfortranarray(rng.standard_normal((200, 10)).astype(np.float32))
    labels = rng.integers(0, 10, 200)
    labels[:50] = Z[:50].argmax(axis=1)                 # some hits
    if case == "ties":              # the label ties with an earlier class: argmax says miss
        Z[60:70, 0] = Z[60:70].max(axis=1) + 1
        Z[60:70, 5] = Z[60:70, 0]
        labels[60:70] = 5
    elif case == "all-equal":       # e.g. a dead network: argmax is class 0 everywhere
        Z[...] = 0.25
    elif case == "nan":
        Z[3, 4] = np.nan
    expected = float((Z.argmax(axis=1) == labels).mean())
    with np.errstate(invalid="ignore"):
        _, acc = evaluate_logits(SoftmaxCrossEntropy(), Z, labels)
    assert acc == pytest.approx(expected, abs=1e-12)
    if case == "all-equal":
        assert acc == pytest.approx(float((labels == 0).mean()))


def test_wide_inputs_keep_the_step_by_step_loop():
    """Above FUSED_MAX_INPUTS features (MNIST's 784) the fused epochs were measured slower."""
    X, y = _data(20, fastpath.FUSED_MAX_INPUTS + 1, 3, dtype=np.float32)
    wide = _net([X.shape[1], 4, 3], "float32")
    assert _stack(wide) is not None
    assert _softmax_epochs(wide, X, np.eye(3, dtype=np.float32)[y], 8) is None
    narrow = _net([fastpath.FUSED_MAX_INPUTS, 4, 3], "float32")
    assert _softmax_epochs(narrow, X[:, 1:], np.eye(3, dtype=np.float32)[y], 8) is not None


@pytest.mark.parametrize("own", [True, False], ids=["epoch-logits", "other-logits"])
def test_figures_are_the_loss_and_accuracy_of_the_logits(own):
    """``figures`` gives evaluate_logits' loss and accuracy, for the epoch's own logits (read
    through their column-major store) and for any other (n, k) array."""
    from nnscratch.training import evaluate_logits

    X, y = _data(43, 6, 3, dtype=np.float32)
    model = _net([6, 5, 3], "float32")
    opt = SGD(lr=0.1)
    opt.bind(model.parameters())
    epochs = _softmax_epochs(model, X, np.eye(3, dtype=np.float32)[y], 8)
    perm = np.random.default_rng(2).permutation(43)
    Z = epochs.run(perm, opt)
    if not own:
        Z = np.ascontiguousarray(Z) * 3 + 1
    ok, loss, acc = epochs.figures(Z, y[perm])
    ref_loss, ref_acc = evaluate_logits(SoftmaxCrossEntropy(), Z, y[perm])
    assert ok and loss == pytest.approx(ref_loss, rel=1e-6) and acc == ref_acc
    assert epochs.figures(Z, y)[1] != pytest.approx(loss, rel=1e-3)   # the labels matter


@pytest.mark.parametrize("order", ["shuffled", "as-given"])
@pytest.mark.parametrize("case", ["plain", "ties", "safe"])
def test_epoch_figures_read_the_epoch_logits_in_the_epoch_order(order, case):
    """``epoch_figures(perm, labels)`` (the fit loop's figures: label logits found from
    ``labels * n`` gathered in the epoch's order) equals evaluate_logits on the logits ``run``
    returned and ``labels[perm]``; with ties the accuracy is still argmax's, and in ``safe``
    epochs (shifted softmax) the loss adds the row maxima back."""
    from nnscratch.training import evaluate_logits

    X, y = _data(43, 6, 3, dtype=np.float32)
    model = _net([6, 5, 3], "float32")
    opt = SGD(lr=0.1)
    opt.bind(model.parameters())
    epochs = _softmax_epochs(model, X, np.eye(3, dtype=np.float32)[y], 8)
    epochs.safe = case == "safe"
    perm = np.random.default_rng(3).permutation(43) if order == "shuffled" else None
    Z = epochs.run(perm, opt)
    labels = y if perm is None else y[perm]
    if case == "ties":     # rows whose label ties with an earlier class for the maximum: misses
        rows = [i for i in range(43) if labels[i] > 0][:5]
        for i in rows:
            Z[i, labels[i]] = Z[i, 0] = Z[i].max() + 1
    ok, loss, acc = epochs.epoch_figures(perm, y)
    ref_loss, ref_acc = evaluate_logits(SoftmaxCrossEntropy(), Z, labels)
    if case == "ties":     # (Z was changed after the steps: its S no longer match, so only
        assert acc == ref_acc == float((Z.argmax(axis=1) == labels).mean())   # the accuracy)
        assert acc < float((Z[np.arange(43), labels] == Z.max(axis=1)).mean())
        return
    assert ok and loss == pytest.approx(ref_loss, rel=1e-6) and acc == ref_acc
    assert epochs.epoch_figures(perm, np.roll(y, 1))[1] != pytest.approx(loss, rel=1e-3)


def test_one_hidden_layer_under_plain_sgd_updates_inside_the_products(monkeypatch):
    """The seed shape (one hidden layer) under plain SGD takes ``_run_one_hidden_sgd``; other
    depths, other optimizers and the shifted epochs take the general loop. Both are checked
    against the step-by-step loop above ([6, 5, 3] with SGD(lr=0.3) is this path)."""
    calls = []
    real = fastpath.SoftmaxEpochs._run_one_hidden_sgd
    monkeypatch.setattr(fastpath.SoftmaxEpochs, "_run_one_hidden_sgd",
                        lambda self, lr: calls.append(lr) or real(self, lr))
    X, y = _data(30, 6, 3)
    _net([6, 5, 3]).fit(X, y, epochs=2, optimizer=SGD(lr=0.1))
    assert calls == [0.1, 0.1]
    _net([6, 3]).fit(X, y, epochs=2, optimizer=SGD(lr=0.1))
    _net([6, 5, 4, 3]).fit(X, y, epochs=2, optimizer=SGD(lr=0.1))
    for opt in (SGD(lr=0.1, momentum=0.9), SGD(lr=0.1, weight_decay=1e-3),
                SGD(lr=0.1, clip_norm=1.0), Adam(lr=0.01)):
        _net([6, 5, 3]).fit(X, y, epochs=2, optimizer=opt)
    assert len(calls) == 2


def test_the_update_inside_the_products_is_plain_sgd():
    """One epoch of ``_run_one_hidden_sgd`` moves the parameters as the general loop with
    ``optimizer.step`` does (float64: to rounding), and leaves the SGD it was given untouched."""
    X, y = _data(43, 6, 3)
    got = []
    for plain in (True, False):
        model = _net([6, 5, 3])
        opt = SGD(lr=0.2)
        if not plain:     # the same SGD, seen by the fused epochs as not plain
            opt.plain_descent_lr = lambda: None
        opt.bind(model.parameters())
        epochs = _softmax_epochs(model, X, np.eye(3)[y], 8)
        assert epochs.update_gemm is not None
        epochs.run(np.random.default_rng(4).permutation(43), opt)
        got.append(model.parameters()[0][0].copy())
    assert not np.array_equal(got[0], _net([6, 5, 3]).parameters()[0][0])
    np.testing.assert_allclose(got[0], got[1], rtol=1e-12, atol=1e-14)


def test_no_update_inside_products_for_cupy_like_or_large_or_deep_stacks():
    X, y = _data(20, 6, 3, dtype=np.float32)
    Y = np.eye(3, dtype=np.float32)[y]
    assert _softmax_epochs(_net([6, 5, 3], "float32"), X, Y, 8).update_gemm is not None
    assert _softmax_epochs(_net([6, 5, 4, 3], "float32"), X, Y, 8).update_gemm is None
    wide = _net([6, fastpath.UPDATE_GEMM_MAX // (7 * 8) + 1, 3], "float32")
    assert _softmax_epochs(wide, X, Y, 8).update_gemm is None
