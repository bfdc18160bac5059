"""Batch normalisation."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InputError
from ..validation import check_positive_float, check_positive_int
from .base import Layer


class BatchNorm(Layer):
    r"""Batch normalisation of (N, F) inputs, per feature, as PyTorch's ``BatchNorm1d``.

    Training, over the batch of ``n`` rows (``mu``, ``var`` per feature; ``var`` biased)::

        mu = X.mean(axis=0),  var = X.var(axis=0)
        Xhat = (X - mu) / sqrt(var + eps)
        Y = gamma * Xhat + beta

        running_mean = (1 - momentum) * running_mean + momentum * mu
        running_var  = (1 - momentum) * running_var  + momentum * var * n / (n - 1)   (unbiased)

    Inference uses the running statistics instead of ``mu`` and ``var``.

    Backward (``dXhat = dY * gamma``)::

        dgamma = (dY * Xhat).sum(axis=0),  dbeta = dY.sum(axis=0)
        dX = (n * dXhat - dXhat.sum(axis=0) - Xhat * (dXhat * Xhat).sum(axis=0))
             / (n * sqrt(var + eps))

    ``params``: ``gamma`` (ones) and ``beta`` (zeros), shape (F,). ``state``: ``running_mean``
    (zeros) and ``running_var`` (ones): statistics, not parameters, so no optimizer touches them.
    """

    _positional = ("num_features",)

    def __init__(self, num_features: int, momentum: float = 0.1, eps: float = 1e-5) -> None:
        super().__init__()
        self.num_features = check_positive_int(num_features, "BatchNorm num_features")
        self.momentum = check_positive_float(momentum, "BatchNorm momentum", allow_zero=True)
        if self.momentum > 1:
            raise ValueError(f"BatchNorm momentum must be in [0, 1], got {momentum!r}")
        self.eps = check_positive_float(eps, "BatchNorm eps")
        self.reset_parameters(np.random.default_rng(0), np.dtype(np.float32))

    def reset_parameters(self, rng: np.random.Generator, dtype: np.dtype) -> None:
        super().reset_parameters(rng, dtype)
        f = self.num_features
        self.params = {"gamma": np.ones(f, dtype), "beta": np.zeros(f, dtype)}
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        self.state = {"running_mean": np.zeros(f, dtype), "running_var": np.ones(f, dtype)}

    def output_size(self, input_size: int) -> int:
        if input_size != self.num_features:
            raise ValueError(f"BatchNorm expects {self.num_features} features, got {input_size}")
        return input_size

    def get_config(self) -> dict[str, Any]:
        return {"num_features": self.num_features, "momentum": self.momentum, "eps": self.eps}

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        gamma, beta = self.params["gamma"], self.params["beta"]
        if not training:
            st = self.state
            return (x - st["running_mean"]) / np.sqrt(st["running_var"] + self.eps) * gamma + beta
        n = x.shape[0]
        if n < 2:
            raise InputError("BatchNorm needs more than 1 example per batch in training")
        mu = x.mean(axis=0)
        var = x.var(axis=0)
        inv_std = 1 / np.sqrt(var + self.eps)
        xhat = (x - mu) * inv_std
        self._xhat, self._inv_std = xhat, inv_std
        m = self.momentum
        self.state["running_mean"] *= 1 - m
        self.state["running_mean"] += m * mu
        self.state["running_var"] *= 1 - m
        self.state["running_var"] += m * var * (n / (n - 1))
        return gamma * xhat + beta

    def backward(self, grad_y: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        xhat, inv_std = self._xhat, self._inv_std
        self.grads["gamma"][...] = (grad_y * xhat).sum(axis=0)
        self.grads["beta"][...] = grad_y.sum(axis=0)
        if not input_grad:
            return None
        n = grad_y.shape[0]
        dxhat = grad_y * self.params["gamma"]
        return (n * dxhat - dxhat.sum(axis=0) - xhat * (dxhat * xhat).sum(axis=0)) * (inv_std / n)
