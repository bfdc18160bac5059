"""Batch-last images: (N, C, H, W) arrays laid out as (C, H, W, N) in memory (accel.layout).

A batch-last FastConv2D returns its training output in that order, and FastBatchNorm and
FastMaxPool2D keep it. Every result must be the same as with ordinary row-major arrays: these
tests run each kernel on both layouts of the same numbers (float64) and compare, check gradients
with batch-last inputs (kernels and plain layers), and train a conv net both ways.
"""

from __future__ import annotations

import numpy as np
import pytest

from nnscratch import Sequential
from nnscratch.accel.kernels import FastBatchNorm, FastConv2D, FastMaxPool2D
from nnscratch.accel.layout import batch_last
from nnscratch.gradcheck import check_layer
from nnscratch.layers import BatchNorm, Conv2D, Dense, Flatten, MaxPool2D, ReLU


def _bn(c: int, cls=BatchNorm) -> BatchNorm:
    """A float64 batch norm with non-trivial gamma and beta."""
    layer = cls(c)
    rng = np.random.default_rng(5)
    layer.reset_parameters(rng, np.dtype(np.float64))
    layer.params["gamma"][...] = rng.uniform(0.5, 2, c)
    layer.params["beta"][...] = rng.standard_normal(c)
    return layer


def _last(a: np.ndarray) -> np.ndarray:
    """The same (N, C, H, W) values, batch-last in memory."""
    out = np.ascontiguousarray(a.transpose(1, 2, 3, 0)).transpose(3, 0, 1, 2)
    assert batch_last(out) and np.array_equal(out, a)
    return out


def test_batch_last_detection():
    a = np.zeros((2, 3, 4, 5))
    assert not batch_last(a)
    assert batch_last(_last(a))
    assert not batch_last(a.transpose(0, 1, 3, 2))          # some other order
    assert not batch_last(np.zeros((1, 3, 4, 5)))            # N = 1: plain row-major as well
    assert not batch_last(np.zeros((2, 3)))


def _both_ways(make_layer, x, g):
    """(output, dx, grads) of fresh layers run on row-major and on batch-last copies of x, g."""
    results = []
    for xx, gg in ((x, g), (_last(x), _last(g))):
        layer = make_layer()
        y = layer.forward(xx, training=True).copy(order="K")     # (keeps the memory order)
        dx = layer.backward(gg).copy(order="K")
        results.append((y, dx, {k: v.copy() for k, v in layer.grads.items()}, layer))
    return results


@pytest.mark.parametrize("shape", [(4, 3, 5, 6), (2, 8, 4, 4)])
def test_batchnorm_batch_last_equals_row_major(shape, rng):
    x, g = rng.standard_normal(shape) * 3 + 1, rng.standard_normal(shape)
    (ya, dxa, ga, la), (yb, dxb, gb, lb) = _both_ways(lambda: FastBatchNorm(_bn(shape[1])), x, g)
    assert batch_last(yb) and batch_last(dxb)            # the memory order is kept
    np.testing.assert_allclose(yb, ya, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dxb, dxa, rtol=1e-10, atol=1e-12)
    for k in ga:
        np.testing.assert_allclose(gb[k], ga[k], rtol=1e-10, atol=1e-12)
    for k in la.state:
        np.testing.assert_allclose(lb.state[k], la.state[k], rtol=1e-12)
    # a row-major gradient into a batch-last layer (what Flatten's backward hands back) is fine
    lc = FastBatchNorm(_bn(shape[1]))
    lc.forward(_last(x), training=True)
    np.testing.assert_allclose(lc.backward(g), dxa, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("k,s", [(2, 2), (3, 2), (2, 1)])
def test_maxpool_batch_last_equals_row_major_with_ties(k, s, rng):
    x = rng.integers(-2, 3, (3, 4, 7, 7)).astype(np.float64)   # many ties
    g = rng.standard_normal((3, 4, (7 - k) // s + 1, (7 - k) // s + 1))
    (ya, dxa, _, _), (yb, dxb, _, _) = _both_ways(lambda: FastMaxPool2D(MaxPool2D(k, s)), x, g)
    assert batch_last(yb) and batch_last(dxb)
    np.testing.assert_array_equal(yb, ya)
    np.testing.assert_array_equal(dxb, dxa)


def test_conv_training_output_is_a_batch_last_view_of_the_same_values(rng):
    conv = FastConv2D(Conv2D(8, 5, 3, padding=1, seed=0, dtype="float64"))   # K = 72: batch-last
    assert not conv.batch_first
    conv.params["b"][...] = rng.standard_normal(5)
    x = rng.standard_normal((4, 8, 6, 6))
    y_pred = conv.forward(x)                      # prediction: a fresh row-major array
    y = conv.forward(x, training=True)
    assert batch_last(y) and not batch_last(y_pred)
    np.testing.assert_allclose(y, y_pred, rtol=1e-12, atol=1e-12)
    g = rng.standard_normal(y.shape)
    dx_row = conv.backward(g).copy()
    grads_row = {k: v.copy() for k, v in conv.grads.items()}
    conv.forward(x, training=True)
    np.testing.assert_allclose(conv.backward(_last(g)), dx_row, rtol=1e-12, atol=1e-12)
    for k, v in grads_row.items():
        np.testing.assert_allclose(conv.grads[k], v, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("make", [lambda: _bn(3), lambda: MaxPool2D(2), lambda: FastBatchNorm(_bn(3)),
                                  lambda: FastMaxPool2D(MaxPool2D(2))],
                         ids=["batchnorm", "maxpool", "FastBatchNorm", "FastMaxPool2D"])
def test_gradients_with_batch_last_inputs(make, rng):
    x = _last(rng.standard_normal((4, 3, 6, 6)))
    assert batch_last(np.array(x, dtype=np.float64))     # check_layer keeps the layout
    result = check_layer(make(), x, rng, tol=1e-5)
    assert result.ok, str(result)


def test_negative_control_a_layout_mixup_fails_the_gradient_check(rng):
    class WrongRows(FastBatchNorm):
        @staticmethod
        def _rows(x, last):   # forgets to move the batch axis: channels mixed with examples
            nb, c, h, w = x.shape
            return np.ascontiguousarray(x).reshape(c, -1) if last else x.reshape(nb, c, h * w)

    x = _last(rng.standard_normal((4, 3, 6, 6)))
    assert not check_layer(WrongRows(_bn(3)), x, rng, tol=1e-5).ok
    assert check_layer(FastBatchNorm(_bn(3)), x, rng, tol=1e-5).ok


def _cnn():
    return Sequential([Conv2D(1, 4, 3, padding=1), BatchNorm(4), ReLU(),
                       Conv2D(4, 8, 3, padding=1), BatchNorm(8), MaxPool2D(2), ReLU(),
                       Flatten(), Dense(8 * 4 * 4, 3)],
                      input_shape=(1, 8, 8), seed=0, dtype="float64")


def _chain(stages, x, g):
    """Outputs and input gradient of ``stages`` (layers or kernels) run one after the other."""
    for stage in stages:
        x = stage.forward(x, training=True)
    out = x.copy()
    for stage in reversed(stages):
        g = stage.backward(g)
    return out, np.array(g)


def test_a_conv_net_of_kernels_in_batch_last_memory_equals_the_plain_layers(rng):
    """The whole chain (conv -> batch norm -> pool -> ReLU -> flatten -> dense, and back) of
    kernels, batch-last from the second conv on, gives the plain layers' numbers."""
    from nnscratch.accel.kernels import kernel_for

    x, g = rng.random((6, 1, 8, 8)), rng.standard_normal((6, 3))
    model = _cnn()
    for layer in model.layers:
        for p in layer.params.values():
            p[...] = rng.standard_normal(p.shape) * 0.5
    kernels = [kernel_for(layer) or layer for layer in model.layers]
    assert not kernels[3].batch_first
    plain_out, plain_dx = _chain(model.layers, x, g)
    plain_grads = model.parameters()[0][1].copy()
    out, dx = _chain(kernels, x, g)
    np.testing.assert_allclose(out, plain_out, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dx, plain_dx, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(model.parameters()[0][1], plain_grads, rtol=1e-9, atol=1e-12)


def test_flatten_hands_on_row_major_rows(rng):
    """After a batch-last image, Flatten returns row-major rows (Dropout and Dense are fastest on
    those) with the same values as flattening the row-major image; row-major input is not copied."""
    x = rng.standard_normal((4, 3, 2, 2))
    out = Flatten().forward(_last(x), training=True)
    assert out.flags.c_contiguous
    np.testing.assert_array_equal(out, x.reshape(4, -1))
    assert np.shares_memory(Flatten().forward(x, training=True), x)
