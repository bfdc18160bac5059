"""Property tests of softmax and the fused loss (hypothesis)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from nnscratch.losses import SoftmaxCrossEntropy, log_softmax, softmax

logits = st.integers(1, 6).flatmap(lambda m: st.integers(2, 8).flatmap(
    lambda k: arrays(np.float64, (m, k), elements=st.floats(-1e4, 1e4))))


@given(logits)
@settings(max_examples=200, deadline=None)
def test_softmax_rows_sum_to_one_and_are_probabilities(z):
    p = softmax(z)
    assert np.all(np.isfinite(p)) and np.all(p >= 0) and np.all(p <= 1)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-12)


@given(logits, st.floats(-1e3, 1e3))
@settings(max_examples=200, deadline=None)
def test_softmax_is_shift_invariant(z, c):
    np.testing.assert_allclose(softmax(z + c), softmax(z), atol=1e-9)


@given(logits, st.data())
@settings(max_examples=200, deadline=None)
def test_loss_is_finite_non_negative_and_gradient_rows_sum_to_zero(z, data):
    y = np.array(data.draw(st.lists(st.integers(0, z.shape[1] - 1), min_size=z.shape[0],
                                    max_size=z.shape[0])))
    loss = SoftmaxCrossEntropy()
    value = loss.forward(z, y)
    assert np.isfinite(value) and value >= 0
    g = loss.backward()
    assert np.all(np.isfinite(g))
    np.testing.assert_allclose(g.sum(axis=1), 0.0, atol=1e-12)  # sum_j (P_ij - Y_ij) = 0
    np.testing.assert_allclose(loss.gradient(z, np.eye(z.shape[1])[y]), g, atol=1e-12)
    assert np.all(log_softmax(z) <= 1e-12)


def test_extreme_logits_do_not_overflow():
    z = np.array([[1000.0, 0.0, -1000.0]], dtype=np.float32)
    loss = SoftmaxCrossEntropy()
    assert loss.forward(z, np.array([2])) == np.float32(2000.0)
    assert loss.forward(z, np.array([0])) == 0.0
    assert np.isfinite(loss.gradient(z, np.eye(3, dtype=np.float32)[[2]])).all()


def test_fused_gradient_exact_when_rows_are_far_apart():
    """Rows whose maxima differ by far more than exp's range still get exact probabilities."""
    for dtype in (np.float32, np.float64):
        z = np.array([[0.0, 1.0, 2.0], [-500.0, -501.0, -499.0], [3000.0, 2999.0, 0.0]], dtype)
        Y = np.eye(3, dtype=dtype)[[2, 0, 1]]
        g = SoftmaxCrossEntropy().gradient(z, Y)
        expected = (softmax(z.astype(np.float64)) - Y) / 3
        assert np.all(np.isfinite(g))
        np.testing.assert_allclose(g, expected, atol=1e-7)


@pytest.mark.parametrize("low,high", [(-5, 5), (80, 100), (200, 300), (-100, -80), (-300, 300)])
def test_fused_gradient_float32_in_every_range(low, high):
    """No shift (small logits), one shift (large), row maxima (rows far apart): all exact."""
    rng = np.random.default_rng(0)
    z = rng.uniform(low, high, (16, 10)).astype(np.float32)
    Y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 16)]
    g = SoftmaxCrossEntropy().gradient(z, Y)
    expected = (softmax(z.astype(np.float64)) - Y) / 16
    np.testing.assert_allclose(g, expected, atol=2e-8)
