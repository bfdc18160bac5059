"""Optional: the same numbers as PyTorch for layers and losses (skipped without torch)."""

from __future__ import annotations

import numpy as np
import pytest

from nnscratch.layers import GELU, Dense, LeakyReLU, ReLU, Sigmoid, Tanh
from nnscratch.losses import SoftmaxCrossEntropy

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("ours,theirs", [
    (ReLU(), lambda: torch.nn.ReLU()), (LeakyReLU(0.2), lambda: torch.nn.LeakyReLU(0.2)),
    (Tanh(), lambda: torch.nn.Tanh()), (Sigmoid(), lambda: torch.nn.Sigmoid()),
    (GELU(), lambda: torch.nn.GELU()), (GELU("tanh"), lambda: torch.nn.GELU("tanh")),
], ids=lambda x: repr(x) if not callable(x) else "")
def test_activations_forward_and_backward(ours, theirs, rng):
    x = rng.standard_normal((6, 5)) * 3
    g = rng.standard_normal((6, 5))
    tx = torch.tensor(x, requires_grad=True)
    ty = theirs()(tx)
    ty.backward(torch.tensor(g))
    np.testing.assert_allclose(ours.forward(x, training=True), ty.detach().numpy(), rtol=1e-12,
                               atol=1e-14)
    np.testing.assert_allclose(ours.backward(g), tx.grad.numpy(), rtol=1e-12, atol=1e-14)


def test_dense_matches_linear(rng):
    layer = Dense(5, 3, seed=0, dtype="float64")
    x, g = rng.standard_normal((4, 5)), rng.standard_normal((4, 3))
    lin = torch.nn.Linear(5, 3).double()
    with torch.no_grad():  # torch stores W as (out, in): ours is its transpose
        lin.weight.copy_(torch.tensor(layer.params["W"].T))
        lin.bias.copy_(torch.tensor(layer.params["b"]))
    tx = torch.tensor(x, requires_grad=True)
    lin(tx).backward(torch.tensor(g))
    np.testing.assert_allclose(layer.forward(x, training=True), lin(tx).detach().numpy())
    np.testing.assert_allclose(layer.backward(g), tx.grad.numpy())
    np.testing.assert_allclose(layer.grads["W"], lin.weight.grad.numpy().T)
    np.testing.assert_allclose(layer.grads["b"], lin.bias.grad.numpy())


def test_softmax_cross_entropy_matches_cross_entropy_loss(rng):
    z, y = rng.standard_normal((7, 4)) * 5, rng.integers(0, 4, 7)
    tz = torch.tensor(z, requires_grad=True)
    tl = torch.nn.functional.cross_entropy(tz, torch.tensor(y))
    tl.backward()
    loss = SoftmaxCrossEntropy()
    assert loss.forward(z, y) == pytest.approx(tl.item(), rel=1e-12)
    np.testing.assert_allclose(loss.backward(), tz.grad.numpy(), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(loss.gradient(z, np.eye(4)[y]), tz.grad.numpy(), rtol=1e-10,
                               atol=1e-15)
