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
        self.xp = dense_layers[0].xp    # the model's array module (NumPy or CuPy)
        self._plans: dict[int, tuple] = {}

    def _make_plan(self, m: int) -> tuple:
        """Buffers for batches of ``m`` and the per-layer argument tuples of the loops, made once."""
        dt, xp = self.dtype, self.xp
        layers = []
        for (n_in, n_out), Wb, dWb in zip(self.sizes, self.Wb, self.dWb, strict=True):
            A1 = xp.ones((m, n_in + 1), dt)   # [A, 1]: this layer's input and a column of ones
            layers.append({
                "A1": A1, "A": A1[:, :-1],    # A: the part the previous ReLU writes into
                "Z": xp.empty((m, n_out), dt),       # this layer's output
                "dA": xp.empty((m, n_in), dt),       # dL/dA
                "mask": xp.empty((m, n_in), dt),     # ReLU mask of A (unused for layer 0)
                "zeros": xp.zeros((m, n_out), dt),   # for ReLU(Z) = max(Z, 0)
                "Wb": Wb, "dWb": dWb, "A1T": A1.T, "WT": Wb[:-1].T})
        first, last = layers[0], layers[-1]
        hidden = [(L["A1"], L["Wb"], L["Z"], L["zeros"], nxt["A"])
                  for L, nxt in zip(layers[:-1], layers[1:], strict=True)]
        back = [(L["A1T"], L["dWb"], L["WT"], L["dA"], L["A"], L["mask"])
                for L in reversed(layers[1:])]
        plan = self._plans[m] = (first["A"], hidden, (last["A1"], last["Wb"], last["Z"]), back,
                                 (first["A1T"], first["dWb"], first["WT"], first["dA"]))
        return plan

    def forward(self, x: np.ndarray) -> np.ndarray:
        plan = self._plan = self._plans.get(x.shape[0]) or self._make_plan(x.shape[0])
        x_in, hidden, (A1, Wb, Z), _, _ = plan
        xp = self.xp
        xp.copyto(x_in, x)                               # [X, 1]
        for A1h, Wbh, Zh, zeros, A_next in hidden:
            xp.dot(A1h, Wbh, out=Zh)                     # Z = [A, 1] @ [[W], [b]] = A @ W + b
            xp.maximum(Zh, zeros, out=A_next)            # next input: A = ReLU(Z), left of its ones
        xp.dot(A1, Wb, out=Z)                            # the logits
        return Z

    def backward_params(self, grad_y: np.ndarray) -> None:
        """Fill the gradients of the parameters only (what a training step needs)."""
        g, xp = grad_y, self.xp
        for A1T, dWb, WT, dA, A, mask in self._plan[3]:
            xp.dot(A1T, g, out=dWb)                      # [[dW], [db]] = [A, 1].T @ dZ
            xp.dot(g, WT, out=dA)                        # dA = dZ @ W.T
            xp.sign(A, out=mask)                         # ReLU backward: dZ = dA * (A > 0)
            xp.multiply(dA, mask, out=dA)                #   (sign(A) is 1 where A > 0, else 0)
            g = dA
        A1T, dWb, _, _ = self._plan[4]
        xp.dot(A1T, g, out=dWb)                          # first layer: [[dW], [db]]

    def backward(self, grad_y: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        self.backward_params(grad_y)
        if not input_grad:
            return None
        # dX of the first layer needs the gradient that reached it: recompute it from its dZ
        _, _, WT, dA = self._plan[4]
        dZ = self._plan[3][-1][3] if self._plan[3] else grad_y
        return self.xp.dot(dZ, WT, out=dA)                    # dX = dZ @ W.T
