"""Conv blocks (nnscratch.accel.convblock): the fused training path of Conv2D -> BatchNorm ->
[MaxPool2D] -> ReLU must give the numbers of the layers run one by one (the naive reference
here), pass numerical gradient checks, and fail them when its math is broken."""

from __future__ import annotations

import numpy as np
import pytest

from nnscratch import Sequential
from nnscratch.accel import convblock, planner
from nnscratch.accel.convblock import ConvBlock
from nnscratch.accel.layout import batch_last
from nnscratch.gradcheck import numerical_gradient, relative_error
from nnscratch.layers import (
    BatchNorm,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    LeakyReLU,
    MaxPool2D,
    ReLU,
)
from nnscratch.optim import SGD, Adam


def find_blocks(layers, output_shapes):
    """(start, stop) of every block ``convblock.match`` finds, scanning left to right."""
    blocks, i = [], 0
    while i < len(layers):
        stop = convblock.match(layers, i, output_shapes)
        if stop is None:
            i += 1
        else:
            blocks.append((i, stop))
            i = stop
    return blocks


def _layers(c, o, k=3, padding=1, pool=2, stride=1, gamma=None, seed=0):
    """A float64 conv, batch norm (with ``gamma`` and a random beta), pool or None, ReLU."""
    rng = np.random.default_rng(seed)
    conv = Conv2D(c, o, k, stride=stride, padding=padding, seed=seed, dtype="float64")
    conv.params["b"][...] = rng.standard_normal(o)          # (it cancels: must not matter)
    bn = BatchNorm(o)
    bn.reset_parameters(rng, np.dtype(np.float64))
    bn.params["gamma"][...] = rng.uniform(-1.5, 2, o) if gamma is None else gamma
    bn.params["beta"][...] = rng.standard_normal(o)
    return conv, bn, (MaxPool2D(pool) if pool else None), ReLU()


def _reference(layers, x, g, input_grad=True):
    """Output, input gradient, gradients and running statistics of the layers one by one."""
    layers = [layer for layer in layers if layer is not None]
    y = x
    for layer in layers:
        y = layer.forward(y, training=True)
    y = y.copy()
    for i in range(len(layers) - 1, -1, -1):
        g = layers[i].backward(g, input_grad or i > 0)
    conv, bn = layers[:2]
    return (y, None if g is None else g.copy(),
            {"W": conv.grads["W"].copy(), "b": conv.grads["b"].copy(),
             "gamma": bn.grads["gamma"].copy(), "beta": bn.grads["beta"].copy()},
            {k: v.copy() for k, v in bn.state.items()})


def _fused(layers, x, g, input_grad=True):
    block = ConvBlock(*layers)
    y = block.forward(x).copy()
    dx = block.backward(g, input_grad)
    conv, bn = layers[:2]
    return (y, None if dx is None else dx.copy(),
            {"W": conv.grads["W"].copy(), "b": conv.grads["b"].copy(),
             "gamma": bn.grads["gamma"].copy(), "beta": bn.grads["beta"].copy()},
            {k: v.copy() for k, v in bn.state.items()})


CASES = {   # name: (input shape (N, C, H, W), block arguments); fold where C*k*k <= O
    "fold, pool": ((5, 1, 8, 8), dict(c=1, o=12)),
    "fold, no pool": ((4, 1, 6, 6), dict(c=1, o=12, pool=None)),
    "general, pool": ((5, 3, 8, 8), dict(c=3, o=6)),
    "general, no pool": ((4, 3, 6, 5), dict(c=3, o=6, pool=None)),
    "fold, 1x1 kernel, 3x3 pool": ((3, 4, 6, 9), dict(c=4, o=8, k=1, padding=0, pool=3)),
    "general, stride 2, no padding": ((4, 2, 9, 9), dict(c=2, o=3, stride=2, padding=0)),
    "batch of one": ((1, 2, 4, 4), dict(c=2, o=5)),
}


@pytest.mark.parametrize("input_grad", [True, False])
@pytest.mark.parametrize("case", list(CASES))
def test_the_block_equals_the_layers_one_by_one(case, input_grad, rng):
    shape, kw = CASES[case]
    x = rng.standard_normal(shape) * 2 + 0.5
    x[:, :, :2] = 0                      # flat regions: equal values (ties) in pooling windows
    fused_layers = _layers(**kw)
    assert ConvBlock(*fused_layers).fold == (kw["c"] * kw.get("k", 3) ** 2 <= kw["o"])
    g = rng.standard_normal(ConvBlock(*_layers(**kw)).forward(x).shape)   # (other layers)
    want = _reference(_layers(**kw), x, g, input_grad)
    got = _fused(fused_layers, x, g, input_grad)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-10, atol=1e-12)
    if input_grad:
        np.testing.assert_allclose(got[1], want[1], rtol=1e-9, atol=1e-12)
    else:
        assert got[1] is None
    for name in ("W", "gamma", "beta"):
        np.testing.assert_allclose(got[2][name], want[2][name], rtol=1e-9, atol=1e-12, err_msg=name)
    # the conv bias cancels in batch norm: exactly zero here, rounding noise layer by layer
    assert not got[2]["b"].any() and np.abs(want[2]["b"]).max() < 1e-12
    for name in ("running_mean", "running_var"):
        np.testing.assert_allclose(got[3][name], want[3][name], rtol=1e-12, atol=1e-14)


def test_output_and_input_gradient_are_batch_last_views(rng):
    conv, bn, pool, relu = _layers(3, 6)
    block = ConvBlock(conv, bn, pool, relu)
    x = rng.standard_normal((4, 3, 8, 8))
    y = block.forward(x)
    assert y.shape == (4, 6, 4, 4) and batch_last(y)
    dx = block.backward(rng.standard_normal(y.shape))
    # (C, H, W, N) memory, or the interior of a padded (C, H + 2, W + 2, N) buffer: batch last
    assert dx.shape == x.shape and dx.strides[0] == dx.itemsize
    assert dx.strides[3] == 4 * dx.itemsize and dx.strides[2] in (8 * 4 * dx.itemsize, 10 * 4 * dx.itemsize)


def test_window_ties_send_the_gradient_to_the_first_maximum(rng):
    """A constant input makes every window's four values equal: MaxPool2D's rule (the first,
    in row-major order) must hold, so only offset (0, 0) of each window gets gradient."""
    for c, o in ((1, 12), (3, 4)):      # fold and general
        conv, bn, pool, relu = _layers(c, o, gamma=np.ones(o))
        bn.params["beta"][...] = 1.0    # positive outputs: ReLU passes every gradient
        x = np.full((2, c, 8, 8), 0.7)
        x[1] = -0.7                     # two distinct constant images: non-zero variance
        block = ConvBlock(conv, bn, pool, relu)
        y = block.forward(x, True)
        g = rng.standard_normal(y.shape)
        ref = _layers(c, o, gamma=np.ones(o))
        ref[1].params["beta"][...] = 1.0
        _, dx, grads, _ = _reference(ref, x, g)
        np.testing.assert_allclose(block.backward(g, True), dx, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(conv.grads["W"], grads["W"], rtol=1e-9, atol=1e-12)


class _BlockAsLayer:
    """A ConvBlock with the parameter dicts of one layer, for the numerical gradient check."""

    def __init__(self, block):
        self.block = block
        conv, bn = block.conv, block.bn
        self.params = {"W": conv.params["W"], "b": conv.params["b"],
                       "gamma": bn.params["gamma"], "beta": bn.params["beta"]}
        self.grads = {"W": conv.grads["W"], "b": conv.grads["b"],
                      "gamma": bn.grads["gamma"], "beta": bn.grads["beta"]}

    def forward(self, x, training=True):
        return self.block.forward(x, training)

    def backward(self, g):
        return self.block.backward(g, True)


def _gradcheck(block, x, rng):
    """Relative errors of the block's gradients against central differences of
    ``sum(block(x) * R)``; for the conv bias, the largest absolute gradient (numerical and
    analytic), both of which must be zero up to rounding."""
    layer = _BlockAsLayer(block)
    R = rng.standard_normal(layer.forward(x).shape)

    def loss():
        return float((layer.forward(x) * R).sum())

    layer.forward(x)
    analytic = {"x": np.array(layer.backward(R)), **{k: v.copy() for k, v in layer.grads.items()}}
    errors = {"x": relative_error(numerical_gradient(loss, x), analytic["x"])}
    for name in ("W", "gamma", "beta"):
        errors[name] = relative_error(numerical_gradient(loss, layer.params[name]), analytic[name])
    bias = max(np.abs(numerical_gradient(loss, layer.params["b"])).max(),
               np.abs(analytic["b"]).max())
    return errors, bias


@pytest.mark.parametrize("case", ["fold, pool", "general, pool", "fold, no pool", "general, no pool"])
def test_gradients(case, rng):
    shape, kw = CASES[case]
    x = rng.standard_normal(shape)
    errors, bias = _gradcheck(ConvBlock(*_layers(**kw)), x, rng)
    assert max(errors.values()) < 1e-6, errors
    assert bias < 1e-7


def _break_context(index, how):
    """A ConvBlock.backward that first spoils entry ``index`` of what forward kept."""
    real = ConvBlock.backward

    def backward(self, g, input_grad=True):
        ctx = list(self._ctx)
        ctx[index] = how(ctx[index])
        self._ctx = tuple(ctx)
        return real(self, g, input_grad)
    return backward


@pytest.mark.parametrize("case", ["fold, pool", "general, pool"])
@pytest.mark.parametrize("broken", ["route", "statistics term", "sign"])
def test_negative_controls_fail_the_check(case, broken, monkeypatch, rng):
    """Break one part of the block's backward: the gradient check must fail."""
    shape, kw = CASES[case]
    block = ConvBlock(*_layers(**kw, gamma=np.linspace(-1, 1.5, kw["o"])))
    if broken == "route":        # the gradient to every value of a window, not only its maximum
        def everywhere(self, g, ws, p):
            for Y_q, dA_q in zip(ws["Yq"], ws["dAq"], strict=True):
                dA_q[p] = g[p]
                yield Y_q[p], dA_q[p]
        monkeypatch.setattr(ConvBlock, "_routed", everywhere)
    elif broken == "statistics term":   # general: inv_std halved; fold: W2 @ S dropped from dW
        index, how = (3, np.zeros_like) if block.fold else (4, lambda a: a / 2)
        monkeypatch.setattr(ConvBlock, "backward", _break_context(index, how))
    elif block.fold:             # the fold needs no sign flip: spoil the kept gamma * inv_std
        monkeypatch.setattr(ConvBlock, "backward", _break_context(5, np.abs))
    else:                        # the sign flip of channels with gamma < 0 forgotten
        monkeypatch.setattr(np, "where", lambda cond, a, b: np.ones(cond.shape))
    errors, _ = _gradcheck(block, rng.standard_normal(shape), rng)
    assert max(errors.values()) > 1e-3, errors


def test_blocks_are_found_where_the_layers_allow():
    def found(layers, shape):
        return find_blocks(layers, Sequential(layers, input_shape=shape).output_shapes)

    assert found([Conv2D(1, 4, 3, padding=1), BatchNorm(4), ReLU(), Conv2D(4, 4, 3, padding=1),
                  BatchNorm(4), MaxPool2D(2), ReLU(), Flatten(), Dense(64, 10)], (1, 8, 8)) \
        == [(0, 3), (3, 7)]
    # pooling windows that do not tile the 7x7 map, or overlap: no pool block (ReLU is not next)
    assert found([Conv2D(1, 4, 3, padding=1), BatchNorm(4), MaxPool2D(2), ReLU(), Flatten(),
                  Dense(36, 10)], (1, 7, 7)) == []
    assert found([Conv2D(1, 4, 3, padding=1), BatchNorm(4), MaxPool2D(2, stride=1), ReLU(),
                  Flatten(), Dense(196, 10)], (1, 8, 8)) == []
    # another activation, a missing batch norm, batch norm after ReLU: no block
    assert found([Conv2D(1, 4, 3), BatchNorm(4), LeakyReLU(), Flatten(), Dense(144, 10)],
                 (1, 8, 8)) == []
    assert found([Conv2D(1, 4, 3), ReLU(), BatchNorm(4), Flatten(), Dense(144, 10)],
                 (1, 8, 8)) == []
    assert found([Conv2D(1, 4, 3), Dropout(0.1), BatchNorm(4), ReLU(), Flatten(), Dense(144, 10)],
                 (1, 8, 8)) == []


def _cnn(seed=0, dtype="float64", accelerate=True, relu_first=False):
    block2 = [ReLU(), MaxPool2D(2)] if relu_first else [MaxPool2D(2), ReLU()]
    layers = [Conv2D(1, 12, 3, padding=1), BatchNorm(12), ReLU(),                 # fold
              Conv2D(12, 8, 3, padding=1), BatchNorm(8), *block2,                 # general
              Flatten(), Dropout(0.2), Dense(128, 10)]
    return Sequential(layers, input_shape=(1, 8, 8), seed=seed, dtype=dtype, accelerate=accelerate)


@pytest.mark.parametrize("relu_first", [False, True])
@pytest.mark.parametrize("opt", [lambda: SGD(lr=0.05, momentum=0.9), lambda: Adam(lr=1e-2)])
def test_a_cnn_trains_to_the_same_weights_with_and_without_blocks(opt, relu_first, scaled):
    """Accelerated (two conv blocks; with ``relu_first`` the planner moves the pool before the
    ReLU to form the second) against the layers one by one."""
    X, y = scaled[0][:100].reshape(-1, 1, 8, 8), scaled[1][:100]
    runs = {}
    for enabled in (True, False):
        model = _cnn(accelerate=enabled, relu_first=relu_first)
        history = model.fit(X, y, epochs=3, batch_size=32, optimizer=opt())
        stages = planner.training_stages(model)
        assert [type(s).__name__ for s in stages][:2] == ["ConvBlock", "ConvBlock"]
        runs[enabled] = (model, history)
    (fused, hf), (plain, hp) = runs[True], runs[False]
    for (name, p, _), (_, q, _) in zip(fused.named_parameters(), plain.named_parameters(), strict=True):
        if name.endswith((".0.b", ".3.b")):
            continue  # conv biases before batch norm: their (zero) gradient differs by rounding
        np.testing.assert_allclose(p, q, rtol=1e-7, atol=1e-9, err_msg=name)
    np.testing.assert_allclose(hf["loss"], hp["loss"], rtol=1e-9)
    np.testing.assert_allclose(fused.predict_proba(X), plain.predict_proba(X), rtol=1e-6, atol=1e-9)


def test_float32_stays_float32(rng):
    conv, bn, pool, relu = (Conv2D(1, 12, 3, padding=1), BatchNorm(12), MaxPool2D(2), ReLU())
    gen = ConvBlock(Conv2D(12, 8, 3, padding=1), BatchNorm(8), None, ReLU())
    fold = ConvBlock(conv, bn, pool, relu)
    x = rng.standard_normal((4, 1, 8, 8)).astype(np.float32)
    y1 = fold.forward(x)
    y2 = gen.forward(y1)
    dx2 = gen.backward(np.ones(y2.shape, np.float32))
    dx1 = fold.backward(dx2, True)
    for a in (y1, y2, dx1, dx2, conv.grads["W"], bn.grads["gamma"], bn.state["running_var"]):
        assert a.dtype == np.float32


def test_batches_of_other_sizes_get_their_own_buffers(rng):
    kw = CASES["general, pool"][1]
    block = ConvBlock(*_layers(**kw))
    big = block.forward(rng.standard_normal((5, 3, 8, 8))).copy()
    block.forward(rng.standard_normal((2, 3, 8, 8)))            # a short last batch
    again = block.forward(np.zeros((5, 3, 8, 8)) + rng.standard_normal((5, 3, 8, 8)))
    assert again.shape == big.shape and len(block._workspace) == 2


def test_the_planner_puts_blocks_in_training_and_prediction_runs_the_layers(rng, scaled):
    model = _cnn(relu_first=True)
    stages = planner.training_stages(model)
    assert [type(s).__name__ for s in stages][:2] == ["ConvBlock", "ConvBlock"]
    X, y = scaled[0][:64].reshape(-1, 1, 8, 8), scaled[1][:64]
    model.fit(X, y, epochs=1, batch_size=32, optimizer=SGD(lr=0.01))
    assert model.layers[0].grads["W"].any()
    # prediction never touches the blocks' batch statistics
    p1 = model.predict_proba(X)
    assert np.allclose(p1, model.predict_proba(X))


def test_bad_input_gets_the_layers_errors(rng):
    """The block refuses what the layers refuse, with their messages."""
    from nnscratch.errors import InputError

    block = ConvBlock(*_layers(3, 6))
    with pytest.raises(InputError, match="expects 3 input channels"):
        block.forward(rng.standard_normal((2, 4, 8, 8)))
    with pytest.raises(InputError, match=r"\(N, C, H, W\) images"):
        block.forward(rng.standard_normal((2, 3, 8)))
    with pytest.raises(InputError, match="does not fit"):
        ConvBlock(*_layers(3, 6, k=5, padding=0)).forward(rng.standard_normal((2, 3, 4, 4)))
    one_value = ConvBlock(*_layers(2, 4, k=3, padding=0, pool=None))   # 1x1 map, batch of one
    with pytest.raises(InputError, match="more than 1 value per feature"):
        one_value.forward(rng.standard_normal((1, 2, 3, 3)))
    layers = [layer for layer in _layers(2, 4, k=3, padding=0, pool=None) if layer is not None]
    with pytest.raises(InputError, match="more than 1 value per feature"):
        out = rng.standard_normal((1, 2, 3, 3))
        for layer in layers:
            out = layer.forward(out, training=True)
