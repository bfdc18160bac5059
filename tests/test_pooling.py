"""Pooling, Flatten and 4-D BatchNorm (and the kernels FastMaxPool2D, FastBatchNorm): naive loop
references, gradient checks, PyTorch."""

from __future__ import annotations

import numpy as np
import pytest

from nnscratch import InputError
from nnscratch.accel.kernels import FastBatchNorm, FastMaxPool2D
from nnscratch.gradcheck import check_layer
from nnscratch.layers.normalization import BatchNorm
from nnscratch.layers.pooling import AvgPool2D, GlobalAvgPool2D, MaxPool2D
from nnscratch.layers.reshape import Flatten


def naive_pool(x, k, s, kind):
    """Loops over examples, channels and output pixels: the plain definition."""
    n, c, h, w = x.shape
    ho, wo = (h - k) // s + 1, (w - k) // s + 1
    y = np.zeros((n, c, ho, wo))
    for a in range(n):
        for ch in range(c):
            for i in range(ho):
                for j in range(wo):
                    win = x[a, ch, i * s:i * s + k, j * s:j * s + k]
                    y[a, ch, i, j] = win.max() if kind == "max" else win.mean()
    return y


def naive_pool_backward(x, g, k, s, kind):
    n, c, h, w = x.shape
    dx = np.zeros_like(x)
    for a in range(n):
        for ch in range(c):
            for i in range(g.shape[2]):
                for j in range(g.shape[3]):
                    win = x[a, ch, i * s:i * s + k, j * s:j * s + k]
                    if kind == "max":
                        r, q = np.unravel_index(np.argmax(win), win.shape)
                        dx[a, ch, i * s + r, j * s + q] += g[a, ch, i, j]
                    else:
                        dx[a, ch, i * s:i * s + k, j * s:j * s + k] += g[a, ch, i, j] / k**2
    return dx


CASES = [(2, None), (2, 1), (3, 2), (3, 1), (1, 1), (4, 3)]


@pytest.mark.parametrize("cls,kind", [(MaxPool2D, "max"), (AvgPool2D, "avg")])
@pytest.mark.parametrize("k,s", CASES)
def test_vectorised_equals_naive(cls, kind, k, s, rng):
    x = rng.standard_normal((2, 3, 9, 7))
    layer = cls(k, s)
    stride = k if s is None else s
    y = layer.forward(x, training=True)
    np.testing.assert_allclose(y, naive_pool(x, k, stride, kind), rtol=1e-10, atol=1e-12)
    g = rng.standard_normal(y.shape)
    np.testing.assert_allclose(layer.backward(g), naive_pool_backward(x, g, k, stride, kind),
                               rtol=1e-10, atol=1e-12)
    assert layer.output_shape((3, 9, 7)) == y.shape[1:]


@pytest.mark.parametrize("k,s", CASES)
def test_max_pool_kernel_equals_naive(k, s, rng):
    x = rng.standard_normal((2, 3, 9, 7))
    kernel = FastMaxPool2D(MaxPool2D(k, s))
    stride = k if s is None else s
    y = kernel.forward(x, training=True)
    np.testing.assert_array_equal(y, naive_pool(x, k, stride, "max"))
    np.testing.assert_array_equal(kernel.forward(x), y)
    g = rng.standard_normal(y.shape)
    np.testing.assert_allclose(kernel.backward(g), naive_pool_backward(x, g, k, stride, "max"),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("impl", ["layer", "kernel"])
@pytest.mark.parametrize("k,s", [(2, None), (3, 1), (2, 1)])
def test_max_pool_ties_go_to_the_first_maximum(k, s, rng, impl):
    # after a ReLU many windows are all zeros: the gradient must go to one position only, the
    # first in row-major order (as PyTorch), not to every tied position
    x = np.maximum(rng.integers(-2, 2, size=(3, 2, 8, 8)), 0).astype(np.float64)
    layer = MaxPool2D(k, s) if impl == "layer" else FastMaxPool2D(MaxPool2D(k, s))
    y = layer.forward(x, training=True)
    g = rng.standard_normal(y.shape)
    dx = layer.backward(g)
    stride = k if s is None else s
    np.testing.assert_allclose(dx, naive_pool_backward(x, g, k, stride, "max"), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx.sum(), g.sum())  # no gradient duplicated or lost
    torch = pytest.importorskip("torch")
    tx = torch.tensor(x, requires_grad=True)
    torch.nn.MaxPool2d(k, s)(tx).backward(torch.tensor(g))
    np.testing.assert_allclose(dx, tx.grad.numpy(), atol=1e-12)


@pytest.mark.parametrize("layer", [MaxPool2D(2), MaxPool2D(3, 1), AvgPool2D(2), AvgPool2D(3, 2),
                                   GlobalAvgPool2D(), Flatten()], ids=repr)
def test_gradients_float64(layer, rng):
    result = check_layer(layer, rng.standard_normal((2, 3, 6, 6)), rng)
    assert result.ok, str(result)


@pytest.mark.parametrize("impl", ["layer", "kernel"])
@pytest.mark.parametrize("n", [2, 5])
def test_batchnorm_4d_gradients(n, rng, impl):
    layer = BatchNorm(3)
    layer.reset_parameters(rng, np.dtype(np.float64))
    layer.params["gamma"][...] = rng.uniform(0.5, 2, 3)
    layer.params["beta"][...] = rng.standard_normal(3)
    run = layer if impl == "layer" else FastBatchNorm(layer)
    result = check_layer(run, rng.standard_normal((n, 3, 4, 5)) * 2 + 1, rng, tol=1e-5)
    assert result.ok, str(result)


def test_shapes_and_bad_input(rng):
    x = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
    assert Flatten().forward(x).shape == (2, 48) and Flatten().output_shape((3, 4, 4)) == (48,)
    assert GlobalAvgPool2D().forward(x).shape == (2, 3) and GlobalAvgPool2D().forward(x).dtype == np.float32
    assert MaxPool2D(2).forward(x).dtype == np.float32
    with pytest.raises(InputError, match="does not fit"):
        MaxPool2D(5).forward(x)
    with pytest.raises(InputError, match=r"\(N, C, H, W\)"):
        AvgPool2D(2).forward(x[0])
    with pytest.raises(ValueError):
        MaxPool2D(0)
    with pytest.raises(InputError, match="expects"):
        BatchNorm(4).forward(x, training=True)


def test_against_pytorch(rng):
    torch = pytest.importorskip("torch")
    x, k = rng.standard_normal((2, 3, 8, 7)), 3
    for ours, theirs in [(MaxPool2D(k, 2), torch.nn.MaxPool2d(k, 2)),
                         (AvgPool2D(k, 2), torch.nn.AvgPool2d(k, 2)),
                         (BatchNorm(3), torch.nn.BatchNorm2d(3).double())]:
        if isinstance(ours, BatchNorm):
            ours.reset_parameters(rng, np.dtype(np.float64))
        tx = torch.tensor(x, requires_grad=True)
        ty = theirs(tx)
        g = rng.standard_normal(tuple(ty.shape))
        ty.backward(torch.tensor(g))
        np.testing.assert_allclose(ours.forward(x, training=True), ty.detach().numpy(), atol=1e-12)
        np.testing.assert_allclose(ours.backward(g), tx.grad.numpy(), atol=1e-12)
        if isinstance(ours, BatchNorm):
            np.testing.assert_allclose(ours.state["running_var"], theirs.running_var.numpy(),
                                       atol=1e-12)


@pytest.mark.parametrize("act", ["ReLU", "LeakyReLU", "Tanh", "Sigmoid"])
def test_max_pool_commutes_with_monotonic_activations(act, rng):
    # build_layers puts MaxPool2D before a non-decreasing activation (cheaper): the function and
    # the input gradient must be those of the usual order, ties at zero included
    from nnscratch import layers as L

    x = rng.standard_normal((3, 2, 6, 6))
    x[0, 0, :2, :2] = 0.0       # a window of ties
    x[1] = -np.abs(x[1])        # windows all <= 0: ReLU sends no gradient
    g = rng.standard_normal((3, 2, 3, 3))
    usual = [getattr(L, act)(), MaxPool2D(2)]
    swapped = [MaxPool2D(2), getattr(L, act)()]
    outs, grads = [], []
    for stack in (usual, swapped):
        h = x
        for layer in stack:
            h = layer.forward(h, training=True)
        d = g
        for layer in reversed(stack):
            d = layer.backward(d)
        outs.append(h.copy())
        grads.append(d.copy())
    np.testing.assert_array_equal(outs[0], outs[1])
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-12, atol=1e-15)


def test_build_layers_writes_the_natural_order_and_the_planner_swaps():
    """Configs build Conv [BN] act MaxPool; the accelerated plan runs the pool first where the
    activation is non-decreasing (accel.planner.reorder)."""
    from nnscratch.accel.planner import reorder
    from nnscratch.config import build_layers, train_config

    def names(**kw):
        cfg = train_config({"arch": "cnn", "dataset": "mnist5k", **kw})
        return [type(layer).__name__ for layer in build_layers(cfg, (1, 28, 28), 10)]

    assert names()[:4] == ["Conv2D", "BatchNorm", "ReLU", "MaxPool2D"]
    assert names(activation="gelu")[:4] == ["Conv2D", "BatchNorm", "GELU", "MaxPool2D"]

    def reordered(**kw):
        cfg = train_config({"arch": "cnn", "dataset": "mnist5k", **kw})
        return [type(layer).__name__ for layer in reorder(build_layers(cfg, (1, 28, 28), 10))]

    assert reordered()[:4] == ["Conv2D", "BatchNorm", "MaxPool2D", "ReLU"]
    assert reordered(activation="gelu")[:4] == ["Conv2D", "BatchNorm", "GELU", "MaxPool2D"]
