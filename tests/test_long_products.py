"""Products over a long axis by chunks (accel.blas): the same values as one product, and the
conv kernels that use them (a first layer's ``W @ col`` and ``dZ @ col.T``) still equal the
layers with the chunks on. The tests shrink the thresholds so that small shapes take the chunked
path, and check that it was taken."""

from __future__ import annotations

import numpy as np
import pytest

from nnscratch.accel import blas, threads
from nnscratch.backend import get_backend

CPU = get_backend("cpu")


@pytest.fixture
def small_chunks(monkeypatch):
    """Chunks for products over 24 or more columns, of 3 to 8 columns each; the split on two
    threads (as after ``enable_threads``)."""
    monkeypatch.setattr(blas, "LONG_AXIS", 24)
    monkeypatch.setattr(blas, "CHUNK_MIN", 3)
    monkeypatch.setattr(blas, "CHUNK_MAX", 8)
    monkeypatch.setattr(threads, "THREADS", 2)


def test_long_chunks_only_for_long_axes_small_sides_and_the_cpu():
    assert blas.long_chunks(50176, 10, 16, CPU) == 50176 // 784      # the longest divisor
    assert 50176 % blas.long_chunks(50176, 26, 16, CPU) == 0
    chunk = 50176 // blas.long_chunks(50176, 26, 16, CPU)
    assert blas.CHUNK_MIN <= chunk and 26 * 16 * chunk <= blas.CHUNK_WORK
    assert blas.long_chunks(4096, 10, 16, CPU) is None               # short: one call
    assert blas.long_chunks(50176, 145, 32, CPU) is None             # a second layer: one call
    assert blas.long_chunks(65537, 10, 16, CPU) is None              # prime: no chunk divides it

    class GPU:
        xp = object()
    assert blas.long_chunks(50176, 10, 16, GPU) is None


@pytest.mark.parametrize("threads_", [1, 2])
def test_chunked_products_equal_one_product(threads_, small_chunks, monkeypatch, rng):
    monkeypatch.setattr(threads, "THREADS", threads_)
    a, b = rng.standard_normal((5, 48)), rng.standard_normal((3, 48))
    w = rng.standard_normal((4, 5))
    chunks = blas.long_chunks(48, 5, 3, CPU)
    assert chunks == 6                                                # 8 columns each
    out, parts = np.full((5, 3), np.nan), np.empty((chunks, 5, 3))
    blas.dot_t_by_chunks(a, b, out, chunks, parts, threads.split)
    np.testing.assert_allclose(out, a @ b.T, rtol=1e-12, atol=1e-12)
    y = np.full((4, 48), np.nan)
    blas.dot_by_chunks(w, a, y, chunks, threads.split)
    np.testing.assert_allclose(y, w @ a, rtol=1e-12, atol=1e-12)
    # negative control: the products of the chunks alone are not the result
    assert not np.allclose(parts[0], a @ b.T)
    # without chunks: one product, the same values
    blas.dot_t_by_chunks(a, b, out, None, None, threads.split)
    np.testing.assert_array_equal(out, np.dot(a, b.T))
    blas.dot_by_chunks(w, a, y, None, threads.split)
    np.testing.assert_array_equal(y, np.dot(w, a))


def test_conv_act_block_with_chunks_equals_the_layers(small_chunks):
    import test_convact as tc

    for act in ("ReLU", "Tanh"):
        # (the second case: K = 9 <= 12 channels, its columns stored window offset first)
        for case in ((3, 1, 8, 8, 5, 3, 1, 1, ("max", 2, 2)), (3, 1, 8, 8, 12, 3, 1, 1, ("max", 2, 2)),
                     (2, 1, 9, 9, 4, 5, 1, 2, ("avg", 2, 2)), (4, 1, 6, 6, 6, 3, 1, 1, None)):
            conv, a, pool, x, rng = tc._layers(case, act)
            y = a.forward(conv.forward(x, True), True)
            if pool is not None:
                y = pool.forward(y, True)
            g = rng.standard_normal(y.shape)
            ref = tc._reference(conv, a, pool, x, g)
            block = tc.ConvActBlock(conv, a, pool)
            conv.grads["W"].fill(np.nan)
            out = block.forward(x).copy()
            dx = block.backward(g).copy()
            assert block._ws["chunks"], case                            # the chunked path ran
            assert block._ws["offset_major"] == (case[4] == 12), case
            tc._assert_same(ref, (out, dx, conv.grads["W"].copy(), conv.grads["b"].copy()))


CONVBLOCK_CASES = {   # (input shape, block arguments): fold where C*k*k <= O
    "fold, pool": ((5, 1, 8, 8), dict(c=1, o=12)),
    "fold, no pool": ((4, 1, 6, 6), dict(c=1, o=12, pool=None)),
    "general, pool": ((5, 2, 8, 8), dict(c=2, o=6)),          # K = 18 > 6: no fold
}


@pytest.mark.parametrize("case", list(CONVBLOCK_CASES))
def test_conv_block_with_chunks_equals_the_layers(case, small_chunks, rng):
    import test_convblock as tb

    shape, kw = CONVBLOCK_CASES[case]
    x = rng.standard_normal(shape) * 2 + 0.5
    layers = tb._layers(**kw)
    block = tb.ConvBlock(*layers)
    g = rng.standard_normal(tb.ConvBlock(*tb._layers(**kw)).forward(x).shape)
    want = tb._reference(tb._layers(**kw), x, g)
    y = block.forward(x).copy()
    dx = block.backward(g).copy()
    assert block._ctx[0]["chunks"] and block.fold == case.startswith("fold")   # the path ran
    np.testing.assert_allclose(y, want[0], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dx, want[1], rtol=1e-9, atol=1e-12)
    for name in ("W", "gamma", "beta"):
        got = (layers[0] if name == "W" else layers[1]).grads[name]
        np.testing.assert_allclose(got, want[2][name], rtol=1e-9, atol=1e-12, err_msg=name)


def test_fast_conv2d_with_chunks_equals_the_layer(small_chunks, rng):
    from nnscratch.accel.kernels import FastConv2D
    from nnscratch.layers import Conv2D

    # (4 channels of 3x3: K = 36 keeps the batch-last layout, whose products these are)
    layer, twin = (Conv2D(4, 6, 3, padding=1, seed=0, dtype="float64") for _ in range(2))
    kernel = FastConv2D(twin)
    assert not kernel.batch_first
    x = rng.standard_normal((3, 4, 5, 6))
    y = kernel.forward(x, training=True)
    assert kernel._ws["chunks"]                                        # the chunked path ran
    np.testing.assert_allclose(y, layer.forward(x, training=True), rtol=1e-12, atol=1e-12)
    g = rng.standard_normal(y.shape)
    np.testing.assert_allclose(kernel.backward(g), layer.backward(g), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(twin.grads["W"], layer.grads["W"], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(kernel.forward(x, training=False), layer.forward(x, False),
                               rtol=1e-12, atol=1e-12)
