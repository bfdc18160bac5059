"""Every accelerated kernel (nnscratch.accel.kernels) against its plain layer, in float64.

The layers are the specification. For generated shapes (kernel sizes, strides, paddings, batch
sizes), row-major and batch-last inputs, and ties in max pooling, each kernel must give the
layer's forward output (training and prediction), all parameter gradients, the input gradient
and state: bit for bit where the order of operations is the same, else to rounding.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import nnscratch
from nnscratch.accel import kernels as K
from nnscratch.accel.layout import batch_last
from nnscratch.layers import (
    GELU,
    AvgPool2D,
    BatchNorm,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    GlobalAvgPool2D,
    MaxPool2D,
    ReLU,
)

RTOL, ATOL = 1e-11, 1e-12


def _last(a: np.ndarray) -> np.ndarray:
    """The same (N, C, H, W) values, batch-last in memory."""
    return np.ascontiguousarray(a.transpose(1, 2, 3, 0)).transpose(3, 0, 1, 2)


def _layout(a: np.ndarray, last: bool) -> np.ndarray:
    return _last(a) if last and a.ndim == 4 else a


def _randomise(layer, rng):
    for p in layer.params.values():
        p[...] = rng.standard_normal(p.shape)
    if isinstance(layer, BatchNorm):
        layer.params["gamma"][...] = rng.uniform(0.5, 2, layer.num_features) * rng.choice([-1, 1])


def _compare(make_layer, x, rng, exact=False, last=False, steps=2, views=False):
    """Run a fresh layer and its kernel (on a twin layer) side by side for ``steps`` training
    steps and one prediction, comparing everything."""
    layer, twin = make_layer(), make_layer()
    _randomise(layer, rng)
    for name, p in layer.params.items():
        twin.params[name] = p
    kernel = K.KERNELS[type(twin)](twin)
    check = (np.testing.assert_array_equal if exact
             else lambda a, b: np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL))
    for step in range(steps):
        xs = x * (1 + step)
        y_ref = layer.forward(xs, training=True)
        y = kernel.forward(_layout(xs, last), training=True)
        assert y.shape == y_ref.shape and y.dtype == y_ref.dtype
        check(y, y_ref)
        g = rng.standard_normal(y_ref.shape)
        dx_ref = layer.backward(g)
        dx = kernel.backward(_layout(g, last))
        check(dx, dx_ref)
        for name in layer.grads:
            check(twin.grads[name], layer.grads[name])
        for name in layer.state:
            check(twin.state[name], layer.state[name])
        assert kernel.backward(_layout(g, last), input_grad=False) is None
        for name in layer.grads:   # (grads are still filled without the input gradient)
            check(twin.grads[name], layer.grads[name])
    x_in = _layout(x, last)
    pred = kernel.forward(x_in, training=False)
    check(pred, layer.forward(x, training=False))
    again = kernel.forward(x_in, training=False)
    # fresh arrays (Dropout: x; Flatten (``views``): views of x, as the layer's own)
    assert (not np.shares_memory(pred, again) or pred is again is x
            or (views and np.shares_memory(pred, x_in)))


def _conv_cases(count):
    r = np.random.default_rng(7)
    for _ in range(count):
        kh, kw = (int(v) for v in r.integers(1, 5, 2))
        s = (int(r.choice([1, 2, 3])), int(r.choice([1, 2, 3])))
        p = (int(r.choice([0, 1, 2])), int(r.choice([0, 1, 2])))
        h = int(max(1, kh - 2 * p[0]) + r.integers(0, 6))
        w = int(max(1, kw - 2 * p[1]) + r.integers(0, 6))
        yield (int(r.integers(1, 5)), int(r.choice([1, 2, 5])), h, w, int(r.integers(1, 6)),
               (kh, kw), s, p)


CONV_CASES = [(2, 3, 7, 6, 4, 3, 1, 1), (4, 1, 8, 8, 6, 3, 1, 1), (3, 8, 6, 6, 5, 3, 1, 1),
              (2, 16, 5, 5, 4, (3, 2), 2, 0), *_conv_cases(14)]


@pytest.mark.parametrize("n,c,h,w,o,k,s,p", CONV_CASES)
@pytest.mark.parametrize("batch_first", [True, False], ids=["batch-first", "batch-last"])
@pytest.mark.parametrize("last", [False, True], ids=["row-major-in", "batch-last-in"])
def test_conv2d(n, c, h, w, o, k, s, p, batch_first, last, rng):
    def make():
        return Conv2D(c, o, k, s, p, dtype="float64")
    layer = make()
    kernel = K.FastConv2D(layer)
    assert kernel.batch_first == (c * layer.kernel_size[0] * layer.kernel_size[1] < 32)
    original = K.FastConv2D.__init__

    def forced(self, lay):
        original(self, lay)
        self.batch_first = batch_first
    K_cls = type("Forced", (K.FastConv2D,), {"__init__": forced})
    x = rng.standard_normal((n, c, h, w))
    saved = K.KERNELS[Conv2D]
    K.KERNELS[Conv2D] = K_cls
    try:
        _compare(make, x, rng, last=last)
    finally:
        K.KERNELS[Conv2D] = saved


@pytest.mark.parametrize("m,n_in,n_out", [(1, 1, 1), (4, 7, 5), (32, 64, 10), (9, 3, 17)])
def test_dense(m, n_in, n_out, rng):
    _compare(lambda: Dense(n_in, n_out, dtype="float64"), rng.standard_normal((m, n_in)), rng)


@pytest.mark.parametrize("shape", [(5,), (4, 7), (3, 2, 4, 5)])
@pytest.mark.parametrize("last", [False, True])
def test_relu_bit_for_bit(shape, last, rng):
    x = rng.standard_normal(shape)
    x.flat[::3] = 0.0                        # exact zeros: the derivative there is 0
    _compare(ReLU, x, rng, exact=True, last=last)


MAXPOOL = [(2, None), (2, 1), (3, 2), (3, 1), (1, 1), (4, 3), (2, 3)]


@pytest.mark.parametrize("k,s", MAXPOOL)
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("last", [False, True])
@pytest.mark.parametrize("shape", [(2, 3, 9, 7), (4, 2, 8, 8), (1, 1, 5, 6)])
def test_maxpool_bit_for_bit(k, s, ties, last, shape, rng):
    x = (rng.integers(-2, 3, shape).astype(np.float64) if ties   # many ties
         else rng.standard_normal(shape))
    _compare(lambda: MaxPool2D(k, s), x, rng, exact=True, last=last)


@pytest.mark.parametrize("shape", [(5, 3), (32, 10), (4, 3, 5, 6), (2, 8, 4, 4), (1, 2, 1, 3)])
@pytest.mark.parametrize("last", [False, True])
def test_batchnorm(shape, last, rng):
    x = rng.standard_normal(shape) * 3 + 1
    _compare(lambda: BatchNorm(shape[1], momentum=0.3, dtype="float64"), x, rng, last=last, steps=3)


@pytest.mark.parametrize("shape", [(4, 3, 5, 6), (1, 2, 1, 3), (2, 1, 1, 1), (64, 8, 7, 7)])
@pytest.mark.parametrize("last", [False, True])
def test_global_avg_pool(shape, last, rng):
    x = rng.standard_normal(shape) * 3 + 1
    _compare(GlobalAvgPool2D, x, rng, last=last, steps=2)


def test_global_avg_pool_sums_batch_last_maps_and_broadcasts_its_gradient(rng):
    """The batch-last path is taken (a product, not the layer's strided mean) and its gradient
    is a broadcast view, read-only, with the strides of batch-last maps; the values are the
    layer's (``_compare`` above), and a wrong share would show there."""
    x = _last(rng.standard_normal((5, 3, 4, 6)))
    kernel = K.FastGlobalAvgPool2D(GlobalAvgPool2D())
    y = kernel.forward(x, True)
    np.testing.assert_allclose(y, x.mean(axis=(2, 3)), rtol=1e-12)
    assert y.shape == (5, 3) and y.T.flags.c_contiguous        # the (C, N) sums, viewed
    g = rng.standard_normal((5, 3))
    dx = kernel.backward(g)
    assert dx.shape == x.shape and not dx.flags.writeable
    assert dx.strides[2:] == (0, 0) and dx.strides[0] == dx.itemsize     # batch-last, no copy
    np.testing.assert_array_equal(dx, np.broadcast_to(g[:, :, None, None] / 24, x.shape))
    with pytest.raises(nnscratch.InputError, match="GlobalAvgPool2D expects"):
        kernel.forward(np.ones((2, 3)), True)


@pytest.mark.parametrize("shape", [(4, 3, 5, 6), (1, 2, 3, 3), (5, 7), (3, 2, 4)])
@pytest.mark.parametrize("last", [False, True])
def test_flatten_bit_for_bit(shape, last, rng):
    _compare(Flatten, rng.standard_normal(shape), rng, exact=True, last=last, steps=2,
             views=True)


def test_flatten_and_dense_pass_batch_last_maps_without_a_copy(rng):
    """Batch-last maps flatten to a transposed view of their memory; Dense returns its input
    gradient in that order, and Flatten turns it back into batch-last maps, again a view. The
    numbers are the layers' (a planted transposition would fail the comparisons)."""
    mem = rng.standard_normal((3, 4, 5, 6))                    # (C, H, W, N)
    x = mem.transpose(3, 0, 1, 2)
    flat, dense = K.FastFlatten(Flatten()), K.FastDense(Dense(60, 7, dtype="float64"))
    layer_flat, layer_dense = Flatten(), Dense(60, 7, dtype="float64")
    for name, p in layer_dense.params.items():
        p[...] = rng.standard_normal(p.shape)
        dense.params[name][...] = p
    f = flat.forward(x, True)
    assert np.shares_memory(f, mem) and f.shape == (6, 60)
    np.testing.assert_array_equal(f, layer_flat.forward(x, True))
    z = dense.forward(f, True)
    np.testing.assert_allclose(z, layer_dense.forward(layer_flat.forward(x, True), True),
                               rtol=1e-12)
    g = rng.standard_normal(z.shape)
    dflat = dense.backward(g)
    assert dflat.T.flags.c_contiguous and not dflat.flags.c_contiguous
    ref = layer_dense.backward(g)
    np.testing.assert_allclose(dflat, ref, rtol=1e-12)
    for name in ("W", "b"):
        np.testing.assert_allclose(dense.grads[name], layer_dense.grads[name], rtol=1e-12)
    dx = flat.backward(dflat)
    assert batch_last(dx) and np.shares_memory(dx, dflat)
    np.testing.assert_array_equal(dx, layer_flat.backward(ref))


def _dropout_pair(p, seed):
    def make():
        layer = Dropout(p)
        layer.reset_parameters(np.random.default_rng(seed), np.dtype(np.float64))
        return layer
    return make


@pytest.mark.parametrize("p", [0.0, 0.2, 0.5])
@pytest.mark.parametrize("shape", [(6, 10), (3, 2, 4, 4)])
def test_dropout_bit_for_bit_same_draws(p, shape, rng):
    _compare(_dropout_pair(p, 11), rng.standard_normal(shape), rng, exact=True, steps=3)


def test_float32_kernels_match_float32_layers(rng):
    x = rng.standard_normal((4, 3, 8, 8)).astype(np.float32)
    for make in (lambda: Conv2D(3, 5, 3, padding=1, seed=0), lambda: BatchNorm(3),
                 lambda: MaxPool2D(2), ReLU):
        layer = make()
        kernel = K.KERNELS[type(layer)](make())
        for name, p in layer.params.items():
            kernel.params[name] = p
        y, yk = layer.forward(x, True), kernel.forward(x, True)
        assert yk.dtype == y.dtype == np.float32
        np.testing.assert_allclose(yk, y, rtol=1e-4, atol=1e-5)


def test_registry_is_for_exact_types():
    assert K.KERNELS == {Dense: K.FastDense, ReLU: K.FastReLU, Conv2D: K.FastConv2D,
                         MaxPool2D: K.FastMaxPool2D, BatchNorm: K.FastBatchNorm,
                         Dropout: K.FastDropout, GlobalAvgPool2D: K.FastGlobalAvgPool2D,
                         Flatten: K.FastFlatten}

    class MyReLU(ReLU):
        pass
    assert K.kernel_for(MyReLU()) is None
    assert isinstance(K.kernel_for(ReLU()), K.FastReLU)
    for layer in (AvgPool2D(2), GELU()):
        assert K.kernel_for(layer) is None
    assert repr(K.kernel_for(ReLU())) == "FastReLU(ReLU())"


def test_kernel_outputs_stay_batch_last_after_a_batch_last_conv(rng):
    conv = K.FastConv2D(Conv2D(8, 4, 3, padding=1, dtype="float64"))
    y = conv.forward(rng.standard_normal((3, 8, 5, 5)), training=True)
    assert batch_last(y)
    assert batch_last(K.FastBatchNorm(BatchNorm(4, dtype="float64")).forward(y, True))
    assert batch_last(K.FastMaxPool2D(MaxPool2D(2)).forward(y, True))


def test_alternating_batch_sizes_and_predictions_between_steps(rng):
    """Kept buffers are per shape; a prediction between forward and backward changes nothing."""
    layer, twin = Conv2D(3, 4, 3, padding=1, dtype="float64"), Conv2D(3, 4, 3, padding=1, dtype="float64")
    twin.params["W"] = layer.params["W"]
    kernel = K.FastConv2D(twin)
    for n in (4, 3, 4, 3):
        x, g = rng.standard_normal((n, 3, 6, 6)), rng.standard_normal((n, 4, 6, 6))
        y = kernel.forward(x, True).copy()
        kernel.forward(rng.standard_normal((2, 3, 6, 6)))
        np.testing.assert_allclose(y, layer.forward(x, True), rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(kernel.backward(g), layer.backward(g), rtol=RTOL, atol=ATOL)


SRC = Path(nnscratch.__file__).parent


@pytest.mark.parametrize("path", ["accel/kernels.py", "accel/im2col.py", "accel/convblock.py",
                                  "accel/convact.py", "accel/planner.py"])
def test_accelerated_code_uses_no_private_member_of_the_layers(path):
    """Kernels use the layers' public methods (or their own), never another file's private
    members: no ``layer._x``, ``conv._windows``, ``bn._update_running``, ..."""
    if not (SRC / path).exists():
        pytest.skip(f"{path} moved")
    text = (SRC / path).read_text()
    assert not re.findall(r"\b(?:layer|conv|bn|pool|relu|lay)\._\w+", text)
