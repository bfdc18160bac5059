"""One SGD step on a tiny network, worked by hand with every number in the comments."""

from __future__ import annotations

import numpy as np

from nnscratch import Sequential
from nnscratch.layers import Dense, ReLU
from nnscratch.losses import SoftmaxCrossEntropy
from nnscratch.optim import SGD


def test_one_sgd_step_by_hand():
    # Network 2-2-2: Dense(2, 2) -> ReLU -> Dense(2, 2), float64, one example x = [1, 2], label 0.
    model = Sequential([Dense(2, 2), ReLU(), Dense(2, 2)], dtype="float64", seed=0)
    d1, _, d2 = model.layers
    d1.params["W"][...] = [[0.5, -1.0],
                           [0.25, 0.5]]
    d1.params["b"][...] = [0.0, 0.5]
    d2.params["W"][...] = [[1.0, -1.0],
                           [2.0, 0.0]]
    d2.params["b"][...] = [0.0, 0.0]
    x = np.array([[1.0, 2.0]])
    y = np.array([0])

    # Forward
    # Z1 = x @ W1 + b1 = [1*0.5 + 2*0.25 + 0, 1*(-1) + 2*0.5 + 0.5] = [1.0, 0.5]
    # A1 = ReLU(Z1) = [1.0, 0.5]
    # Z2 = A1 @ W2 + b2 = [1*1 + 0.5*2, 1*(-1) + 0.5*0] = [2.0, -1.0]
    # P = softmax(Z2) = [e^2, e^-1] / (e^2 + e^-1) = [1/(1+e^-3), e^-3/(1+e^-3)]
    #   = [0.952574127, 0.047425873]
    # L = -log P[0] = log(1 + e^-3) = 0.048587352
    z = model.forward(x, training=True)
    np.testing.assert_allclose(z, [[2.0, -1.0]])
    loss = SoftmaxCrossEntropy()
    assert np.isclose(loss.forward(z, y), np.log1p(np.exp(-3.0)))
    assert np.isclose(loss.forward(z, y), 0.048587352)

    # Backward (m = 1)
    # dZ2 = P - Y = [0.952574127 - 1, 0.047425873 - 0] = [-0.047425873, 0.047425873]
    # dW2 = A1.T @ dZ2 = [[1.0 * -0.047425873, 1.0 * 0.047425873],
    #                     [0.5 * -0.047425873, 0.5 * 0.047425873]]
    #     = [[-0.047425873, 0.047425873], [-0.023712937, 0.023712937]]
    # db2 = dZ2 = [-0.047425873, 0.047425873]
    # dA1 = dZ2 @ W2.T = [-0.047425873*1 + 0.047425873*(-1), -0.047425873*2 + 0]
    #     = [-0.094851746, -0.094851746]
    # dZ1 = dA1 * (Z1 > 0) = [-0.094851746, -0.094851746]       (both units active)
    # dW1 = x.T @ dZ1 = [[1 * -0.094851746, 1 * -0.094851746],
    #                    [2 * -0.094851746, 2 * -0.094851746]]
    # db1 = dZ1 = [-0.094851746, -0.094851746]
    g = 0.047425873
    model.backward(loss.backward())
    np.testing.assert_allclose(d2.grads["W"], [[-g, g], [-g / 2, g / 2]], rtol=1e-7)
    np.testing.assert_allclose(d2.grads["b"], [-g, g], rtol=1e-7)
    np.testing.assert_allclose(d1.grads["W"], [[-2 * g, -2 * g], [-4 * g, -4 * g]], rtol=1e-7)
    np.testing.assert_allclose(d1.grads["b"], [-2 * g, -2 * g], rtol=1e-7)

    # SGD step with lr = 0.5: W <- W - 0.5 * dW
    # W1 = [[0.5 + 0.5*0.094851746, -1 + 0.5*0.094851746], [0.25 + 0.5*0.189703492, 0.5 + ...]]
    #    = [[0.547425873, -0.952574127], [0.344851746, 0.594851746]]
    # b1 = [0.047425873, 0.547425873]
    # W2 = [[1 + 0.023712937, -1 - 0.023712937], [2 + 0.011856468, -0.011856468]]
    #    = [[1.023712937, -1.023712937], [2.011856468, -0.011856468]]
    # b2 = [0.023712937, -0.023712937]
    opt = SGD(lr=0.5)
    opt.bind(model.parameters())
    opt.step()
    np.testing.assert_allclose(d1.params["W"], [[0.547425873, -0.952574127],
                                                [0.344851746, 0.594851746]], rtol=1e-7)
    np.testing.assert_allclose(d1.params["b"], [0.047425873, 0.547425873], rtol=1e-7)
    np.testing.assert_allclose(d2.params["W"], [[1.023712937, -1.023712937],
                                                [2.011856468, -0.011856468]], rtol=1e-7)
    np.testing.assert_allclose(d2.params["b"], [0.023712937, -0.023712937], rtol=1e-6)

    # The same step through the fit loop (one epoch of one example) lands on the same weights.
    again = Sequential([Dense(2, 2), ReLU(), Dense(2, 2)], dtype="float64", seed=0)
    a1, _, a2 = again.layers
    a1.params["W"][...] = [[0.5, -1.0], [0.25, 0.5]]
    a1.params["b"][...] = [0.0, 0.5]
    a2.params["W"][...] = [[1.0, -1.0], [2.0, 0.0]]
    a2.params["b"][...] = [0.0, 0.0]
    again.fit(x, y, epochs=1, batch_size=1, optimizer=SGD(lr=0.5))
    np.testing.assert_allclose(a1.params["W"], d1.params["W"], rtol=1e-12)
    np.testing.assert_allclose(a2.params["b"], d2.params["b"], rtol=1e-12)
