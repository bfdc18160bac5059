"""Element-wise activations."""

from __future__ import annotations

import numpy as np

from .base import Layer


class ReLU(Layer):
    r"""Rectified linear unit, applied element-wise to an array of any shape.

    Forward::

        A = max(Z, 0)

    Backward::

        dZ = dA * (Z > 0)        (the derivative at exactly 0 is taken as 0, as in PyTorch)

    Since ``A > 0`` exactly where ``Z > 0``, the mask is taken from the cached output ``A``.
    """

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        if not training:
            return np.maximum(x, 0)
        ws = self._ws = self._workspace.get(x.shape) or self._make_workspace(x)
        # A = max(Z, 0), against an array of zeros: a Python 0 would be converted at every call,
        # which costs more than the maximum itself at this size
        np.maximum(x, ws[3], out=ws[0])
        return ws[0]

    def _make_workspace(self, x: np.ndarray) -> tuple[np.ndarray, ...]:
        ws = self._workspace[x.shape] = (np.empty_like(x), np.empty_like(x), np.empty_like(x),
                                         np.zeros_like(x))
        return ws  # A, mask, dZ, zeros

    def backward(self, grad_y: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        if not input_grad:
            return None
        a, mask, dx, _ = self._ws
        # Plain form: dx = grad_y * (a > 0). sign(a) is 1 where a > 0 and 0 where a == 0 (a >= 0),
        # and a float mask multiplies faster than a boolean one.
        np.sign(a, out=mask)
        np.multiply(grad_y, mask, out=dx)
        return dx
