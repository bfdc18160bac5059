"""Float64 central-difference gradient checks of every layer and loss, with negative controls."""

from __future__ import annotations

import numpy as np
import pytest

from nnscratch.gradcheck import check_layer, check_loss
from nnscratch.layers import Dense, ReLU
from nnscratch.losses import MeanSquaredError, SoftmaxCrossEntropy, softmax, softmax_jacobian


@pytest.mark.parametrize("n_in,n_out,m", [(1, 1, 1), (5, 4, 3), (7, 2, 8), (3, 9, 1)])
@pytest.mark.parametrize("init", ["he_normal", "glorot_uniform"])
def test_dense_gradients(n_in, n_out, m, init, rng):
    layer = Dense(n_in, n_out, init=init, seed=3, dtype="float64")
    layer.params["b"][...] = rng.standard_normal(n_out)  # non-zero bias too
    result = check_layer(layer, rng.standard_normal((m, n_in)), rng)
    assert result.ok, str(result)
    assert set(result.errors) == {"x", "W", "b"}


def test_relu_gradients(rng):
    x = rng.standard_normal((6, 5))
    x[np.abs(x) < 1e-3] = 0.5  # keep away from the kink, where differences are meaningless
    result = check_layer(ReLU(), x, rng)
    assert result.ok, str(result)


def test_relu_gradient_at_zero_is_zero():
    relu = ReLU()
    relu.forward(np.array([[0.0, -1.0, 2.0]]), training=True)
    assert relu.backward(np.ones((1, 3))).tolist() == [[0.0, 0.0, 1.0]]


@pytest.mark.parametrize("m,k", [(1, 2), (4, 10), (7, 3)])
def test_softmax_cross_entropy_gradients(m, k, rng):
    logits = rng.standard_normal((m, k)) * 3
    assert check_loss(SoftmaxCrossEntropy(), logits, rng.integers(0, k, m)).ok
    soft = rng.dirichlet(np.ones(k), size=m)  # probability targets work too
    assert check_loss(SoftmaxCrossEntropy(), logits, soft).ok


def test_mse_gradients(rng):
    result = check_loss(MeanSquaredError(), rng.standard_normal((5, 3)), rng.integers(0, 3, 5))
    assert result.ok, str(result)


def test_fused_gradient_equals_softmax_jacobian_chain(rng):
    """dL/dz through the teaching Jacobian, J^T (dL/dp), equals the fused (P - Y) / m."""
    z = rng.standard_normal((4, 5))
    y = rng.integers(0, 5, 4)
    Y = np.eye(5)[y]
    P = softmax(z)
    dL_dp = -Y / P / z.shape[0]                    # L = -(1/m) sum Y log P
    chained = np.stack([softmax_jacobian(P[i]).T @ dL_dp[i] for i in range(4)])
    loss = SoftmaxCrossEntropy()
    loss.forward(z, y)
    np.testing.assert_allclose(loss.backward(), chained, atol=1e-12)
    np.testing.assert_allclose(loss.gradient(z, Y), chained, atol=1e-12)


class _WrongDense(Dense):
    """Negative control: a bias gradient that forgets one example."""

    def backward(self, grad_y, input_grad=True):
        dx = super().backward(grad_y, input_grad)
        self.grads["b"][...] = grad_y[1:].sum(axis=0)
        return dx


class _WrongReLU(ReLU):
    """Negative control: passes the gradient through everywhere (forgets the mask)."""

    def backward(self, grad_y, input_grad=True):
        return grad_y.copy()


class _WrongLoss(SoftmaxCrossEntropy):
    """Negative control: forgets to divide by the batch size."""

    def backward(self):
        return super().backward() * self._p.shape[0]

    def gradient(self, logits, Y):
        return super().gradient(logits, Y) * logits.shape[0]


def test_negative_controls_fail_the_check(rng):
    wrong_dense = check_layer(_WrongDense(4, 3, seed=0, dtype="float64"),
                              rng.standard_normal((5, 4)), rng)
    assert not wrong_dense.ok and wrong_dense.errors["b"] > 1e-2
    assert wrong_dense.errors["W"] < 1e-6  # only the broken part is flagged

    x = rng.standard_normal((4, 6))
    x[np.abs(x) < 1e-3] = 0.5
    assert not check_layer(_WrongReLU(), x, rng).ok
    assert not check_loss(_WrongLoss(), rng.standard_normal((4, 3)), rng.integers(0, 3, 4)).ok
