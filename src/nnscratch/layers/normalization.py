"""Batch normalisation."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..backend import resolve_dtype
from ..errors import InputError
from ..validation import check_positive_float, check_positive_int
from .base import Layer


class BatchNorm(Layer):
    r"""Batch normalisation per feature of (N, F) inputs (PyTorch's ``BatchNorm1d``) or per
    channel of (N, C, H, W) images (``BatchNorm2d``: statistics over N, H and W).

    Training, over the ``n`` values of each feature in the batch (``n = N`` for (N, F), ``N*H*W``
    for images; ``mu``, ``var`` per feature, ``var`` biased)::

        mu = X.mean(over the batch axes),  var = X.var(over the batch axes)
        Xhat = (X - mu) / sqrt(var + eps)
        Y = gamma * Xhat + beta

        running_mean = (1 - momentum) * running_mean + momentum * mu
        running_var  = (1 - momentum) * running_var  + momentum * var * n / (n - 1)   (unbiased)

    Inference uses the running statistics instead of ``mu`` and ``var``.

    Backward (``dXhat = dY * gamma``)::

        dgamma = (dY * Xhat).sum(batch axes),  dbeta = dY.sum(batch axes)
        dX = (n * dXhat - dXhat.sum(batch axes) - Xhat * (dXhat * Xhat).sum(batch axes))
             / (n * sqrt(var + eps))

    ``params``: ``gamma`` (ones) and ``beta`` (zeros), shape (F,). ``state``: ``running_mean``
    (zeros) and ``running_var`` (ones): statistics, not parameters, so no optimizer touches them.
    ``dtype`` (keyword): ``"float32"`` (default) or ``"float64"`` when used on its own (a model
    sets its own). Training input with NaN or infinity is refused.

    In training with acceleration on, ``nnscratch.accel.kernels.FastBatchNorm`` replaces it on
    images (the same formulas with fewer passes over the data, with threads), and
    ``nnscratch.accel.convblock`` fuses it with the convolution before it and the pooling and
    ReLU after it.
    """

    _positional = ("num_features",)

    def __init__(self, num_features: int, momentum: float = 0.1, eps: float = 1e-5, *,
                 dtype: str = "float32") -> None:
        super().__init__()
        self.num_features = check_positive_int(num_features, "BatchNorm num_features")
        self.momentum = check_positive_float(momentum, "BatchNorm momentum", allow_zero=True)
        if self.momentum > 1:
            raise ValueError(f"BatchNorm momentum must be in [0, 1], got {momentum!r}")
        self.eps = check_positive_float(eps, "BatchNorm eps")
        self.reset_parameters(np.random.default_rng(0), resolve_dtype(dtype))

    def reset_parameters(self, rng: np.random.Generator, dtype: np.dtype) -> None:
        super().reset_parameters(rng, dtype)
        f = self.num_features
        self.set_arrays({"gamma": np.ones(f, dtype), "beta": np.zeros(f, dtype)},
                        {"running_mean": np.zeros(f, dtype), "running_var": np.ones(f, dtype)})

    def get_config(self) -> dict[str, Any]:
        return {"num_features": self.num_features, "momentum": self.momentum, "eps": self.eps}

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        if input_shape[0] != self.num_features:
            raise ValueError(f"BatchNorm expects {self.num_features} features or channels, "
                             f"got {input_shape[0]}")
        return input_shape

    def update_running(self, mu: np.ndarray, var: np.ndarray, n: int) -> None:
        """Fold one batch's ``mu`` and (biased) ``var`` of ``n`` values per feature into the
        running statistics (the formulas of the class docstring), in place."""
        m, st = self.momentum, self.state
        st["running_mean"][...] = (1 - m) * st["running_mean"] + m * mu.reshape(-1)
        st["running_var"][...] = (1 - m) * st["running_var"] + m * var.reshape(-1) * (n / (n - 1))

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        f = self.num_features
        X = self._input(x, (2, 4), f"(N, {f}) or (N, {f}, H, W)")
        if X.shape[1] != f:
            raise InputError(f"BatchNorm({f}) expects (N, {f}) or (N, {f}, H, W) inputs, got "
                             f"shape {X.shape}")
        axes = (0,) if X.ndim == 2 else (0, 2, 3)     # the batch axes: all but the features'
        shape = (1, f) + (1,) * (X.ndim - 2)          # per-feature arrays broadcast as this
        gamma, beta = self.params["gamma"].reshape(shape), self.params["beta"].reshape(shape)
        if not training:
            mean = self.state["running_mean"].reshape(shape)
            var = self.state["running_var"].reshape(shape)
            return gamma * (X - mean) / self.xp.sqrt(var + self.eps) + beta
        n = X.size // f  # values per feature (per channel)
        if n < 2:
            raise InputError("BatchNorm needs more than 1 value per feature in training")
        if not self.xp.isfinite(X).all():
            raise InputError("BatchNorm input contains NaN or infinity (the batch statistics "
                             "would be lost, and the running statistics with them)")
        mu = X.mean(axis=axes, keepdims=True)
        var = X.var(axis=axes, keepdims=True)
        inv_std = 1 / self.xp.sqrt(var + self.eps)
        Xhat = (X - mu) * inv_std
        self.update_running(mu, var, n)
        self._cache = (Xhat, inv_std, axes, shape)
        return gamma * Xhat + beta

    def backward(self, grad_y: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        Xhat, inv_std, axes, shape = self._cached()
        dY = self._grad(grad_y, Xhat.shape, Xhat.dtype)
        n = dY.size // self.num_features
        self.grads["gamma"][...] = (dY * Xhat).sum(axis=axes)
        self.grads["beta"][...] = dY.sum(axis=axes)
        if not input_grad:
            return None
        dXhat = dY * self.params["gamma"].reshape(shape)
        return (n * dXhat - dXhat.sum(axis=axes, keepdims=True)
                - Xhat * (dXhat * Xhat).sum(axis=axes, keepdims=True)) * (inv_std / n)
