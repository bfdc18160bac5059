"""Fully connected (affine) layer."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..backend import resolve_dtype
from ..init import get_initializer
from ..validation import check_positive_int, check_seed
from .base import Layer


class Dense(Layer):
    r"""Affine map of each example (row) of ``X``.

    Shapes: ``X`` (m, n_in), ``W`` (n_in, n_out), ``b`` (n_out,), ``Z`` (m, n_out).

    Forward::

        Z = X @ W + b

    Backward, given ``dZ = dL/dZ`` of shape (m, n_out)::

        dW = X.T @ dZ          (n_in, n_out)
        db = dZ.sum(axis=0)    (n_out,)
        dX = dZ @ W.T          (m, n_in)

    Parameters
    ----------
    n_in, n_out : int
        Number of input and output features.
    init : str
        Weight initialiser: ``"he_normal"`` (default, for ReLU), ``"he_uniform"``,
        ``"glorot_normal"`` or ``"glorot_uniform"``. Biases start at zero.
    seed : int or None
        Seed for the initial draw when the layer is used on its own; a :class:`Sequential`
        redraws every layer from its own seeded generator.
    dtype : str
        ``"float32"`` (default) or ``"float64"``.
    """

    _positional = ("n_in", "n_out")

    def __init__(self, n_in: int, n_out: int, *, init: str = "he_normal",
                 seed: int | None = None, dtype: str = "float32") -> None:
        super().__init__()
        self.n_in = check_positive_int(n_in, "Dense n_in")
        self.n_out = check_positive_int(n_out, "Dense n_out")
        self.init = init
        self._init_fn = get_initializer(init)
        seed = check_seed(seed, "Dense seed")
        self.reset_parameters(np.random.default_rng(seed), resolve_dtype(dtype))

    def reset_parameters(self, rng: np.random.Generator, dtype: np.dtype) -> None:
        super().reset_parameters(rng, dtype)
        shape = (self.n_in, self.n_out)
        self.params = {
            "W": self._init_fn(rng, shape, self.n_in, self.n_out, dtype),
            "b": np.zeros(self.n_out, dtype=dtype),
        }
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        if tuple(input_shape) != (self.n_in,):
            raise ValueError(f"Dense expects {self.n_in} input features, got shape "
                             f"{tuple(input_shape)} (add a Flatten before it?)")
        return (self.n_out,)

    def get_config(self) -> dict[str, Any]:
        return {"n_in": self.n_in, "n_out": self.n_out, "init": self.init}

    def _make_workspace(self, m: int, dtype: np.dtype) -> tuple[np.ndarray, ...]:
        xp = self.xp
        ws = self._workspace[m] = (xp.empty((m, self.n_out), dtype),  # Z
                                   xp.empty((m, self.n_in), dtype),   # dX
                                   xp.ones(m, dtype))                 # for db = 1 @ dZ
        return ws

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        W = self.params["W"]
        if not training:
            return x @ W + self.params["b"]
        self._x = x  # backward needs X for dW
        ws = self._ws = self._workspace.get(x.shape[0]) or self._make_workspace(x.shape[0], W.dtype)
        z = ws[0]
        self.xp.dot(x, W, out=z)  # Z = X @ W   (dot: the cheapest call into BLAS for 2-D arrays)
        z += self.params["b"]    #     + b
        return z

    def backward(self, grad_y: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        _, dx, ones = self._ws
        xp = self.xp
        xp.dot(self._x.T, grad_y, out=self.grads["W"])  # dW = X.T @ dZ
        # db = dZ.sum(axis=0), written as the product 1 @ dZ: BLAS does it ~2.5x faster
        xp.dot(ones, grad_y, out=self.grads["b"])
        if not input_grad:
            return None
        xp.dot(grad_y, self.params["W"].T, out=dx)  # dX = dZ @ W.T
        return dx
