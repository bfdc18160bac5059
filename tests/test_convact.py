"""The fused training kernel of Conv2D -> activation -> [MaxPool2D | AvgPool2D]
(nnscratch.accel.convact) must give the numbers of the layers run one by one, over many shapes;
pass a numerical gradient check and fail it when its math is broken; and match exactly the layer
lists it can replace."""

from __future__ import annotations

import numpy as np
import pytest

from nnscratch.accel import convact
from nnscratch.accel.convact import ConvActBlock, build, match
from nnscratch.accel.layout import batch_last
from nnscratch.gradcheck import numerical_gradient, relative_error
from nnscratch.layers import (
    GELU,
    AvgPool2D,
    BatchNorm,
    Conv2D,
    Dense,
    Flatten,
    GlobalAvgPool2D,
    LeakyReLU,
    MaxPool2D,
    ReLU,
    Sigmoid,
    Tanh,
)

ACTS = {"ReLU": ReLU, "LeakyReLU": lambda: LeakyReLU(0.1), "LeakyReLU0": lambda: LeakyReLU(0.0),
        "LeakyReLU3": lambda: LeakyReLU(3.0), "Tanh": Tanh, "Sigmoid": Sigmoid}


def _cases(n_cases: int, seed: int):
    """Random block shapes that fit: (n, c, h, w, o, kernel, stride, padding, pool)."""
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < n_cases:
        k, s, p = int(rng.integers(1, 6)), int(rng.integers(1, 3)), int(rng.integers(0, 3))
        h, w = int(rng.integers(max(1, k - 2 * p), 12)), int(rng.integers(max(1, k - 2 * p), 12))
        n, c = int(rng.integers(1, 8)), int(rng.integers(1, 4))
        o = int(rng.choice([1, 3, 4, 10]))
        ho, wo = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
        if ho < 1 or wo < 1:
            continue
        kind = ["max", "avg", None][len(out) % 3]
        pool = None
        if kind:
            pk = int(rng.choice([2, 3]))
            ps = int(rng.choice([pk, pk, 1, 3]))      # tiling windows mostly; overlap; gaps
            if ho < pk or wo < pk:
                continue
            pool = (kind, pk, ps)
        out.append((n, c, h, w, o, k, s, p, pool))
    return out


CASES = _cases(90, 0)
# tiled 2x2 max pooling on a first layer (K <= O: the offset-major order), and odd sizes
CASES += [(5, 1, 8, 8, 10, 3, 1, 1, ("max", 2, 2)), (3, 1, 7, 9, 16, 3, 1, 1, ("max", 2, 2)),
          (2, 1, 12, 12, 9, 3, 2, 2, ("max", 3, 3)), (4, 2, 6, 6, 10, 2, 1, 0, ("max", 2, 2)),
          (1, 1, 9, 9, 4, 1, 1, 0, ("max", 3, 3)), (7, 3, 5, 5, 4, 1, 1, 2, ("max", 3, 3))]


def _layers(case, act: str, seed: int = 0):
    n, c, h, w, o, k, s, p, pool = case
    rng = np.random.default_rng(seed)
    conv = Conv2D(c, o, k, stride=s, padding=p, seed=seed, dtype="float64")
    conv.params["b"][...] = rng.standard_normal(o) * 0.5
    pl = None
    if pool:
        kind, pk, ps = pool
        pl = (MaxPool2D if kind == "max" else AvgPool2D)(pk, stride=ps)
    x = rng.standard_normal((n, c, h, w))
    return conv, ACTS[act](), pl, x, rng


def _reference(conv, act, pool, x, g, input_grad=True):
    layers = [la for la in (conv, act, pool) if la is not None]
    y = x
    for layer in layers:
        y = layer.forward(y, training=True)
    y = y.copy()
    for i in range(len(layers) - 1, -1, -1):
        g = layers[i].backward(g, input_grad or i > 0)
    return y, None if g is None else g.copy(), conv.grads["W"].copy(), conv.grads["b"].copy()


def _fused(conv, act, pool, x, g, input_grad=True):
    block = ConvActBlock(conv, act, pool)
    conv.grads["W"].fill(np.nan)
    conv.grads["b"].fill(np.nan)
    y = block.forward(x).copy()
    dx = block.backward(g, input_grad)
    return y, None if dx is None else dx.copy(), conv.grads["W"].copy(), conv.grads["b"].copy()


def _assert_same(ref, got, rtol=1e-10):
    names = ("y", "dx", "dW", "db")
    for name, a, b in zip(names, ref, got, strict=True):
        if a is None:
            assert b is None, name
            continue
        assert a.shape == b.shape, name
        scale = max(1.0, float(np.abs(a).max(initial=0)))
        np.testing.assert_allclose(b, a, rtol=rtol, atol=rtol * scale, err_msg=name)


@pytest.mark.parametrize("act", list(ACTS))
@pytest.mark.parametrize("case", CASES, ids=str)
def test_block_equals_layers(case, act):
    conv, a, pool, x, rng = _layers(case, act)
    y = a.forward(conv.forward(x, True), True)
    if pool is not None:
        y = pool.forward(y, True)
    g = rng.standard_normal(y.shape)
    ref = _reference(conv, a, pool, x, g)
    got = _fused(conv, a, pool, x, g)
    _assert_same(ref, got)


@pytest.mark.parametrize("act", ["ReLU", "Tanh"])
def test_outputs_are_batch_last_views_and_grad_layouts_accepted(act):
    case = (6, 2, 9, 9, 4, 3, 1, 1, ("max", 2, 2))
    conv, a, pool, x, rng = _layers(case, act)
    block = ConvActBlock(conv, a, pool)
    y = block.forward(x)
    assert y.shape == (6, 4, 4, 4) and batch_last(y)
    g = rng.standard_normal(y.shape)
    dx1 = block.backward(g, True).copy()                       # row-major gradient
    g_last = np.ascontiguousarray(g.transpose(1, 2, 3, 0)).transpose(3, 0, 1, 2)
    block.forward(x)
    dx2 = block.backward(g_last, True)                         # batch-last gradient
    np.testing.assert_array_equal(dx1, dx2)
    assert batch_last(dx2)


def test_bitwise_where_the_operations_are_the_same():
    """ReLU and max pooling: the forward values are the same operations (a maximum, the bias
    after, a maximum with 0), so the output is bitwise equal in the batch-last layout."""
    case = (8, 16, 10, 10, 32, 3, 1, 1, ("max", 2, 2))      # K = 144 >= 32: Conv2D batch-last
    conv, a, pool, x, rng = _layers(case, "ReLU")
    y = pool.forward(a.forward(conv.forward(x, True), True), True).copy()
    got = ConvActBlock(conv, a, pool).forward(x)
    np.testing.assert_array_equal(got, y)


def test_input_gradient_not_asked():
    case = (3, 2, 7, 7, 4, 3, 1, 1, ("max", 2, 2))
    conv, a, pool, x, rng = _layers(case, "ReLU")
    y = pool.forward(a.forward(conv.forward(x, True), True), True)
    g = rng.standard_normal(y.shape)
    ref = _reference(conv, a, pool, x, g, input_grad=False)
    got = _fused(conv, a, pool, x, g, input_grad=False)
    assert got[1] is None
    _assert_same(ref, got)


def test_float32_close_to_layers():
    case = (16, 3, 12, 12, 8, 3, 1, 1, ("max", 2, 2))
    conv, a, pool, x, rng = _layers(case, "LeakyReLU")
    conv32 = Conv2D(3, 8, 3, padding=1, dtype="float32")
    conv32.params["W"][...] = conv.params["W"]
    conv32.params["b"][...] = conv.params["b"]
    x = x.astype(np.float32)
    y = pool.forward(a.forward(conv32.forward(x, True), True), True)
    g = rng.standard_normal(y.shape).astype(np.float32)
    ref = _reference(conv32, a, pool, x, g)
    got = _fused(conv32, a, pool, x, g)
    for r, f in zip(ref, got, strict=True):
        assert f.dtype == np.float32
        np.testing.assert_allclose(f, r, rtol=1e-4, atol=1e-4 * max(1, np.abs(r).max()))


def test_prediction_runs_the_layers():
    case = (4, 1, 8, 8, 4, 3, 1, 1, ("avg", 2, 2))
    conv, a, pool, x, _ = _layers(case, "Sigmoid")
    expected = pool.forward(a.forward(conv.forward(x, False), False), False)
    np.testing.assert_array_equal(ConvActBlock(conv, a, pool).forward(x, training=False), expected)


# -- numerical gradients ---------------------------------------------------------------------
def _grad_errors(block, conv, x, r):
    """Relative errors of the block's dW, db, dx against central differences of sum(y * r)."""
    def loss() -> float:
        return float((block.forward(x) * r).sum())
    block.forward(x)
    dx = block.backward(r, True).copy()
    dW, db = conv.grads["W"].copy(), conv.grads["b"].copy()
    return {"W": relative_error(numerical_gradient(loss, conv.params["W"]), dW),
            "b": relative_error(numerical_gradient(loss, conv.params["b"]), db),
            "x": relative_error(numerical_gradient(loss, x), dx)}


@pytest.mark.parametrize("act", ["ReLU", "LeakyReLU", "Tanh", "Sigmoid"])
@pytest.mark.parametrize("pool", [None, ("max", 2, 2), ("avg", 2, 1), ("max", 3, 2)])
def test_numerical_gradient(act, pool):
    conv, a, pl, x, rng = _layers((2, 2, 7, 6, 3, 3, 2, 1, pool), act, seed=3)
    block = ConvActBlock(conv, a, pl)
    r = rng.standard_normal(block.forward(x).shape)
    errors = _grad_errors(block, conv, x, r)
    assert max(errors.values()) < 1e-6, errors


def test_numerical_gradient_negative_control(monkeypatch):
    """The same check fails when the block's activation derivative is wrong (taken as 1)."""
    conv, a, pl, x, rng = _layers((2, 2, 7, 6, 3, 3, 1, 1, ("max", 2, 2)), "Tanh", seed=3)
    block = ConvActBlock(conv, a, pl)
    r = rng.standard_normal(block.forward(x).shape)

    def wrong(a_, grad, out, t, mask):
        np.copyto(out, grad)
    monkeypatch.setattr(block, "_act_grad", wrong)
    errors = _grad_errors(block, conv, x, r)
    assert errors["W"] > 1e-2 and errors["x"] > 1e-2, errors


# -- match -----------------------------------------------------------------------------------
def _shapes(layers, shape):
    out = []
    for layer in layers:
        shape = tuple(layer.output_shape(shape))
        out.append(shape)
    return out


@pytest.mark.parametrize("act", [ReLU, LeakyReLU, Tanh, Sigmoid])
@pytest.mark.parametrize("pool", [MaxPool2D, AvgPool2D, None])
def test_match_accepts(act, pool):
    head = [Flatten(), Dense(4 * 16 if pool else 4 * 64, 10)]
    layers = [Conv2D(1, 4, 3, padding=1), act()] + ([pool(2)] if pool else []) + head
    shapes = _shapes(layers, (1, 8, 8))
    assert match(layers, 0, shapes) == (3 if pool else 2)
    assert match(layers, 1, shapes) is None


def test_match_rejects():
    def m(layers, i=0):
        return match(layers, i, _shapes(layers, (1, 8, 8)))
    conv = lambda: Conv2D(1, 4, 3, padding=1)  # noqa: E731
    assert m([conv(), BatchNorm(4), ReLU(), Flatten(), Dense(256, 10)]) is None   # batch norm
    assert m([conv(), GELU(), Flatten(), Dense(256, 10)]) is None                 # not monotone
    assert m([conv(), AvgPool2D(2), ReLU(), Flatten(), Dense(64, 10)]) is None    # avg first
    assert m([conv(), MaxPool2D(2), GELU(), Flatten(), Dense(64, 10)]) is None
    assert m([conv(), Flatten(), Dense(256, 10)]) is None
    assert m([conv()]) is None
    assert m([Flatten(), Dense(64, 10), ReLU(), Dense(10, 10)]) is None           # Dense-ReLU
    # a global pooling head is not part of the block
    layers = [conv(), ReLU(), GlobalAvgPool2D(), Dense(4, 10)]
    assert m(layers) == 2
    # subclasses may change the math: not matched

    class MyReLU(ReLU):
        pass
    assert m([conv(), MyReLU(), Flatten(), Dense(256, 10)]) is None
    # the second conv of a stack
    layers = [conv(), ReLU(), MaxPool2D(2), Conv2D(4, 8, 3), Tanh(), Flatten(), Dense(32, 10)]
    assert m(layers) == 3 and m(layers, 3) == 5 and m(layers, 1) is None


@pytest.mark.parametrize("act", ["ReLU", "Tanh"])
def test_max_pool_first_is_the_same_block(act):
    """Conv2D -> MaxPool2D -> activation (the planner's reordered form) is matched, and the
    block built from it equals those layers one by one."""
    case = (3, 2, 9, 7, 4, 3, 1, 1, ("max", 2, 2))
    conv, a, pool, x, rng = _layers(case, act)
    layers = [conv, pool, a, Flatten(), Dense(4 * 4 * 3, 10)]
    assert match(layers, 0, _shapes(layers, (2, 9, 7))) == 3
    block = build(layers[:3])
    assert block.act is a and block.pool is pool
    y = a.forward(pool.forward(conv.forward(x, True), True), True).copy()
    g = rng.standard_normal(y.shape)
    dx = conv.backward(pool.backward(a.backward(g, True), True), True).copy()
    dW, db = conv.grads["W"].copy(), conv.grads["b"].copy()
    _assert_same((y, dx, dW, db), _fused(conv, a, pool, x, g))


def test_rejects_other_layers():
    with pytest.raises(ValueError, match="fuses"):
        ConvActBlock(Conv2D(1, 2, 3), GELU())
    with pytest.raises(ValueError, match="pools"):
        ConvActBlock(Conv2D(1, 2, 3), ReLU(), GlobalAvgPool2D())
    assert convact.ACTIVATIONS == (ReLU, LeakyReLU, Tanh, Sigmoid)
