"""The training fast path of a ``Sequential`` made of ``Dense (ReLU Dense)*``: the bias trick.

The layer-by-layer path computes, for each Dense layer, ``Z = X @ W + b`` (two NumPy calls) and in
backward ``dW = X.T @ dZ`` and ``db = dZ.sum(axis=0)`` (two more). Appending a column of ones to
the layer's input folds the bias into the weights (the "bias trick")::

    [X, 1] @ [[W],      = X @ W + 1 b = X @ W + b         (one matrix product)
              [b]]

    [X, 1].T @ dZ       = [[X.T @ dZ],                     (one matrix product)
                           [dZ.sum(axis=0)]] = [[dW], [db]]

``[[W], [b]]`` is no copy: the model keeps every parameter in one flat buffer, each Dense layer's
``W`` (n_in * n_out numbers) directly followed by its ``b`` (n_out), which is exactly the
(n_in + 1, n_out) block ``[[W], [b]]`` in row-major order. The ones column is no copy either: each
ReLU writes its output straight into the left part of the next layer's ``[A, 1]`` buffer. Only
the network's input is copied once per batch into ``[X, 1]``.

The math is the same as the layers' own ``forward``/``backward`` (the tests check that both paths
give the same gradients); only the number of NumPy calls per step drops, from 12 to 9 for the
64-32-10 network, and the per-layer Python dispatch goes. Used by ``Sequential`` in training mode
when its layers have this shape; any other stack takes the layer-by-layer path.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .layers import Dense, Layer, ReLU


def applies(layers: Sequence[Layer]) -> bool:
    """True for ``Dense``, ``Dense ReLU Dense``, ``Dense ReLU Dense ReLU Dense``, ..."""
    return len(layers) % 2 == 1 and all(
        type(layer) is (Dense if i % 2 == 0 else ReLU) for i, layer in enumerate(layers))


class DenseReLUStack:
    """Forward and backward of ``Dense (ReLU Dense)*`` over blocks of the flat buffers.

    ``blocks[i]`` is the (params, grads) pair of 1-D views holding Dense layer i's ``W`` then
    ``b``. Buffers are kept per batch size; outputs are valid until the next call.
    """

    def __init__(self, dense_layers: Sequence[Dense],
                 blocks: Sequence[tuple[np.ndarray, np.ndarray]]) -> None:
        self.sizes = [(d.n_in, d.n_out) for d in dense_layers]
        # [[W], [b]] and [[dW], [db]] as (n_in + 1, n_out) views of the flat buffers
        shapes = [(n_in + 1, n_out) for n_in, n_out in self.sizes]
        self.Wb = [p.reshape(shape) for (p, _), shape in zip(blocks, shapes, strict=True)]
        self.dWb = [g.reshape(shape) for (_, g), shape in zip(blocks, shapes, strict=True)]
        self.dtype = self.Wb[0].dtype
        self._buffers: dict[int, tuple[list, list]] = {}

    def _make_buffers(self, m: int) -> tuple[list, list]:
        """Per-layer buffers for batches of ``m``, and the views the loops use, made once."""
        dt = self.dtype
        layers = []
        for i, ((n_in, n_out), Wb, dWb) in enumerate(zip(self.sizes, self.Wb, self.dWb, strict=True)):
            A1 = np.ones((m, n_in + 1), dt)   # [A, 1]: this layer's input and a column of ones
            A = A1[:, :-1]                    # A: where the previous ReLU writes
            Z = np.empty((m, n_out), dt)      # this layer's output
            dA = np.empty((m, n_in), dt)      # dL/dA
            mask = np.empty((m, n_in), dt)    # ReLU mask of the input (unused for layer 0)
            zeros = np.zeros((m, n_out), dt)  # for ReLU(Z) = max(Z, 0) of this layer's output
            layers.append((A1, A, Z, dA, mask, zeros, Wb, dWb, A1.T, Wb[:-1].T, i))
        # forward visits layers first to last, each writing ReLU(Z) into the next one's A
        forward = [(A1, Wb, Z, zeros, nxt[1]) for (A1, _, Z, _, _, zeros, Wb, *_), nxt in
                   zip(layers[:-1], layers[1:], strict=True)]
        bufs = self._buffers[m] = (layers, forward)
        return bufs

    def forward(self, x: np.ndarray) -> np.ndarray:
        layers, hidden = self._bufs = (self._buffers.get(x.shape[0])
                                       or self._make_buffers(x.shape[0]))
        np.copyto(layers[0][1], x)                       # [X, 1]
        for A1, Wb, Z, zeros, A_next in hidden:
            np.dot(A1, Wb, out=Z)                        # Z = [A, 1] @ [[W], [b]] = A @ W + b
            np.maximum(Z, zeros, out=A_next)             # next input: A = ReLU(Z), left of its ones
        A1, _, Z, *_ = layers[-1]
        np.dot(A1, self.Wb[-1], out=Z)                   # the logits
        return Z

    def backward(self, grad_y: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        g = grad_y
        for _, A, _, dA, mask, _, _, dWb, A1T, WT, i in reversed(self._bufs[0]):
            np.dot(A1T, g, out=dWb)                      # [[dW], [db]] = [A, 1].T @ dZ
            if i == 0:
                if not input_grad:
                    return None
                return np.dot(g, WT, out=dA)             # dX = dZ @ W.T
            np.dot(g, WT, out=dA)                        # dA = dZ @ W.T
            np.sign(A, out=mask)                         # ReLU backward: dZ = dA * (A > 0)
            np.multiply(dA, mask, out=dA)                #   (sign(A) is 1 where A > 0, else 0)
            g = dA
        return None  # unreachable: the loop returns at layer 0
