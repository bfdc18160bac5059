"""Fully connected (affine) layer."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..backend import resolve_dtype
from ..errors import InputError
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

    In training with acceleration on, ``nnscratch.accel.kernels.FastDense`` replaces it (the
    same products into kept buffers), and Dense-ReLU stacks run as one fused step
    (``nnscratch.accel.dense``).

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
        self.set_arrays({"W": self._init_fn(rng, shape, self.n_in, self.n_out, dtype),
                         "b": np.zeros(self.n_out, dtype=dtype)})

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        if tuple(input_shape) != (self.n_in,):
            raise ValueError(f"Dense expects {self.n_in} input features, got shape "
                             f"{tuple(input_shape)} (add a Flatten before it?)")
        return (self.n_out,)

    def get_config(self) -> dict[str, Any]:
        return {"n_in": self.n_in, "n_out": self.n_out, "init": self.init}

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        X = self._input(x, (2,), f"(m, {self.n_in})")
        if X.shape[1] != self.n_in:
            raise InputError(f"Dense expects (m, {self.n_in}) inputs, got shape {X.shape}")
        Z = X @ self.params["W"] + self.params["b"]
        if training:
            self._cache = X          # backward needs X for dW
        return Z

    def backward(self, grad_y: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        X = self._cached()
        dZ = self._grad(grad_y, (X.shape[0], self.n_out), X.dtype)
        self.grads["W"][...] = X.T @ dZ
        self.grads["b"][...] = dZ.sum(axis=0)
        if not input_grad:
            return None
        return dZ @ self.params["W"].T
