"""Batch normalisation."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InputError
from ..validation import check_positive_float, check_positive_int
from .base import Layer, batch_last


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

    def get_config(self) -> dict[str, Any]:
        return {"num_features": self.num_features, "momentum": self.momentum, "eps": self.eps}

    def _axes(self, x: np.ndarray) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Reduction axes and the broadcast shape of per-feature arrays, for (N, F) or (N, C, H, W)."""
        if x.ndim == 2 and x.shape[1] == self.num_features:
            return (0,), (1, self.num_features)
        if x.ndim == 4 and x.shape[1] == self.num_features:
            return (0, 2, 3), (1, self.num_features, 1, 1)
        raise InputError(f"BatchNorm({self.num_features}) expects (N, {self.num_features}) or "
                         f"(N, {self.num_features}, H, W) inputs, got shape {x.shape}")

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        axes, shape = self._axes(x)
        if not training:
            # (X - running_mean) / sqrt(running_var + eps) * gamma + beta, as one multiply and one
            # add per value: X * a + (beta - running_mean * a) with a = gamma / sqrt(var + eps)
            st, xp = self.state, self.xp
            a = self.params["gamma"] / xp.sqrt(st["running_var"] + self.eps)
            a, shift = a.reshape(shape), (self.params["beta"] - st["running_mean"] * a).reshape(shape)
            y = xp.empty_like(x, dtype=xp.result_type(x.dtype, a.dtype))  # (x's memory order)

            def affine(p: slice) -> None:   # (each part of the features in its own thread)
                xp.multiply(x[:, p], a[:, p], out=y[:, p])
                y[:, p] += shift[:, p]
            self.backend.parallel(affine, x.shape[1], 3 * x.size)
            return y
        n = x.size // self.num_features  # values per feature (per channel)
        if n < 2:
            raise InputError("BatchNorm needs more than 1 value per feature in training")
        if x.ndim == 4:
            return self._forward_images(x, n)
        mu = x.mean(axis=axes, keepdims=True)
        var = x.var(axis=axes, keepdims=True)
        inv_std = 1 / self.xp.sqrt(var + self.eps)
        xhat = (x - mu) * inv_std
        self._xhat, self._inv_std, self._axes_shape = xhat, inv_std, (axes, shape)
        self._update_running(mu, var, n)
        return self.params["gamma"].reshape(shape) * xhat + self.params["beta"].reshape(shape)

    def _update_running(self, mu: np.ndarray, var: np.ndarray, n: int) -> None:
        m = self.momentum
        self.state["running_mean"] *= 1 - m
        self.state["running_mean"] += m * mu.reshape(-1)
        self.state["running_var"] *= 1 - m
        self.state["running_var"] += m * var.reshape(-1) * (n / (n - 1))

    # -- (N, C, H, W) in training: the same formulas, arranged for speed ----------------------------
    # Each pass over a (N, C, H, W) array costs about as much as the arithmetic, so the formulas
    # are arranged to pass over the data as few times as possible:
    # - per-channel sums over N, H and W are one matrix-vector product of the (N*C, H*W) view with
    #   a vector of ones, then a sum over N (NumPy's reduction over the axes (0, 2, 3) of a 4-D
    #   array is several times slower);
    # - sums of products (the variance, and dgamma) are row-wise dot products (einsum), which make
    #   no temporary array;
    # - Xhat is never stored: with Xc = X - mu, Xhat = Xc * inv_std, and
    #   Y = gamma * Xhat + beta = a * Xc + beta with a = gamma * inv_std.
    # - a batch-last input (a (N, C, H, W) view of (C, H, W, N) memory, as a batch-last Conv2D
    #   returns; see layers.base) is worked on as (C, H*W*N): each channel one contiguous row,
    #   and the outputs keep that memory order. Any other input is worked on as (N, C, H*W).
    #   Per-channel arrays broadcast as [:, None] against either.
    def _channel_sum(self, a: np.ndarray, ws: dict[str, np.ndarray]) -> np.ndarray:
        """``a.sum(axis=(0, 2, 3))`` for ``a`` viewed as (N, C, H*W) or (C, H*W*N)."""
        if a.ndim == 2:
            return a @ ws["ones"]
        nb, c, hw = a.shape
        return (a.reshape(nb * c, hw) @ ws["ones"]).reshape(nb, c).sum(axis=0)

    def _channel_dot(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """``(a * b).sum(axis=(0, 2, 3))`` for (N, C, H*W) or (C, H*W*N) arrays, without a
        temporary."""
        if a.ndim == 2:
            return self.xp.einsum("ij,ij->i", a, b)
        nb, c, hw = a.shape
        return self.xp.einsum("ij,ij->i", a.reshape(nb * c, hw), b.reshape(nb * c, hw)).reshape(
            nb, c).sum(axis=0)

    @staticmethod
    def _rows(x: np.ndarray, last: bool) -> np.ndarray:
        """The working view of (N, C, H, W) ``x``: (C, H*W*N) if batch-last, else (N, C, H*W)
        (a copy where ``x`` is in neither order)."""
        nb, c, h, w = x.shape
        return x.transpose(1, 2, 3, 0).reshape(c, -1) if last else x.reshape(nb, c, h * w)

    @staticmethod
    def _images(a: np.ndarray, shape: tuple[int, ...], last: bool) -> np.ndarray:
        """A working array back as (N, C, H, W), a view in its own memory order."""
        nb, c, h, w = shape
        return a.reshape(c, h, w, nb).transpose(3, 0, 1, 2) if last else a.reshape(shape)

    def _forward_images(self, x: np.ndarray, n: int) -> np.ndarray:
        nb, c, h, w = x.shape
        xp, last = self.xp, batch_last(x)
        ws = self._workspace.get((x.shape, last))
        if ws is None:
            rows = (c, h * w * nb) if last else (nb, c, h * w)
            ws = self._workspace[x.shape, last] = {
                **{k: xp.empty(rows, x.dtype) for k in ("xc", "y", "tmp", "dx")},
                "ones": xp.ones(rows[-1], x.dtype), "last": last}
        x3, xc, y = self._rows(x, last), ws["xc"], ws["y"]
        mu = self._channel_sum(x3, ws) / n
        xp.subtract(x3, mu[:, None], out=xc)                   # Xc = X - mu
        var = self._channel_dot(xc, xc) / n                    # mean of Xc**2
        inv_std = 1 / xp.sqrt(var + self.eps)
        xp.multiply(xc, (self.params["gamma"] * inv_std)[:, None], out=y)
        y += self.params["beta"][:, None]                      # Y = gamma * Xc * inv_std + beta
        self._update_running(mu, var, n)
        self._ws, self._n, self._inv_std = ws, n, inv_std
        return self._images(y, x.shape, last)

    def _backward_images(self, grad_y: np.ndarray, input_grad: bool) -> np.ndarray | None:
        # dbeta = sum(dY), dgamma = sum(dY * Xhat) = inv_std * sum(dY * Xc), and with
        # dXhat = gamma * dY the sums in dX are gamma * dbeta and gamma * dgamma, so
        #   dX = a * (dY - dbeta / n - Xhat * dgamma / n),  a = gamma * inv_std
        #      = a * dY + k * Xc + c,   k = -a * inv_std * dgamma / n,  c = -a * dbeta / n
        ws, n, inv_std = self._ws, self._n, self._inv_std
        xc, tmp, dx, last = ws["xc"], ws["tmp"], ws["dx"], ws["last"]
        g3 = self._rows(grad_y, last)
        dbeta = self._channel_sum(g3, ws)
        dgamma = self._channel_dot(g3, xc) * inv_std
        self.grads["beta"][...] = dbeta
        self.grads["gamma"][...] = dgamma
        if not input_grad:
            return None
        a = self.params["gamma"] * inv_std
        self.xp.multiply(g3, a[:, None], out=dx)
        self.xp.multiply(xc, (-a * inv_std * dgamma / n)[:, None], out=tmp)
        dx += tmp
        dx += (-a * dbeta / n)[:, None]
        return self._images(dx, grad_y.shape, last)

    def backward(self, grad_y: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        if grad_y.ndim == 4:
            return self._backward_images(grad_y, input_grad)
        xhat, inv_std, (axes, shape) = self._xhat, self._inv_std, self._axes_shape
        self.grads["gamma"][...] = (grad_y * xhat).sum(axis=axes)
        self.grads["beta"][...] = grad_y.sum(axis=axes)
        if not input_grad:
            return None
        n = grad_y.size // self.num_features
        dxhat = grad_y * self.params["gamma"].reshape(shape)
        return (n * dxhat - dxhat.sum(axis=axes, keepdims=True)
                - xhat * (dxhat * xhat).sum(axis=axes, keepdims=True)) * (inv_std / n)

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        if input_shape[0] != self.num_features:
            raise ValueError(f"BatchNorm expects {self.num_features} features or channels, "
                             f"got {input_shape[0]}")
        return input_shape
