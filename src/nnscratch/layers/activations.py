"""Element-wise activations.

``ReLU`` has an accelerated kernel (``nnscratch.accel.kernels.FastReLU``); the others have none of
their own, and ``nnscratch.accel.convact`` fuses them (and ReLU) with a convolution before them
in training with acceleration on.
"""

from __future__ import annotations

import math

import numpy as np

from .base import Layer


class ReLU(Layer):
    r"""Rectified linear unit, applied element-wise to an array of any shape.

    Forward::

        A = max(Z, 0)

    Backward::

        dZ = dA * (Z > 0)        (the derivative at exactly 0 is taken as 0, as in PyTorch)

    In training with acceleration on, ``nnscratch.accel.kernels.FastReLU`` replaces it (the same
    numbers into kept buffers), and ``nnscratch.accel.convblock`` fuses it with a convolution,
    batch norm and pooling before it.
    """

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        Z = self._input(x)
        if training:
            self._cache = Z
        return self.xp.maximum(Z, 0)

    def backward(self, grad_y: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        Z = self._cached()
        dA = self._grad(grad_y, Z.shape, Z.dtype)
        if not input_grad:
            return None
        return dA * (Z > 0)


class _Elementwise(Layer):
    """Shared plumbing of element-wise activations: ``A = f(Z)``, ``dZ = dA * f'(Z)``.

    Subclasses define ``_f(z)`` and ``_df(z, a)`` (the derivative, from the input ``z`` and/or
    the output ``a``, whichever is cheaper). Training mode caches both.
    """

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        z = self._input(x)
        a = self._f(z)
        if training:
            self._cache = (z, a)
        return a

    def backward(self, grad_y: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        z, a = self._cached()
        dA = self._grad(grad_y, z.shape, z.dtype)
        if not input_grad:
            return None
        return dA * self._df(z, a)

    def _f(self, z: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _df(self, z: np.ndarray, a: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class LeakyReLU(_Elementwise):
    r"""``A = Z`` where ``Z > 0``, else ``negative_slope * Z`` (PyTorch's ``LeakyReLU``).

    ``dZ = dA`` where ``Z > 0``, else ``negative_slope * dA``.
    """

    _positional = ("negative_slope",)

    def __init__(self, negative_slope: float = 0.01) -> None:
        super().__init__()
        ok = (isinstance(negative_slope, (int, float)) and not isinstance(negative_slope, bool)
              and np.isfinite(negative_slope) and negative_slope >= 0)
        if not ok:
            raise ValueError(f"LeakyReLU negative_slope must be a finite number >= 0, "
                             f"got {negative_slope!r}")
        self.negative_slope = float(negative_slope)

    def get_config(self) -> dict:
        return {"negative_slope": self.negative_slope}

    def _f(self, z: np.ndarray) -> np.ndarray:
        return self.xp.where(z > 0, z, z * z.dtype.type(self.negative_slope))

    def _df(self, z: np.ndarray, a: np.ndarray) -> np.ndarray:
        return self.xp.where(z > 0, z.dtype.type(1), z.dtype.type(self.negative_slope))


class Tanh(_Elementwise):
    r"""``A = tanh(Z)``; ``dZ = dA * (1 - A**2)``."""

    def _f(self, z: np.ndarray) -> np.ndarray:
        return self.xp.tanh(z)

    def _df(self, z: np.ndarray, a: np.ndarray) -> np.ndarray:
        return 1 - a * a


class Sigmoid(_Elementwise):
    r"""``A = 1 / (1 + exp(-Z))``; ``dZ = dA * A * (1 - A)``.

    Computed as ``exp(min(Z, 0)) / (1 + exp(-|Z|))``, which never overflows.
    """

    def _f(self, z: np.ndarray) -> np.ndarray:
        xp = self.xp
        e = xp.exp(-xp.abs(z))
        return xp.where(z >= 0, 1, e) / (1 + e)

    def _df(self, z: np.ndarray, a: np.ndarray) -> np.ndarray:
        return a * (1 - a)


class GELU(_Elementwise):
    r"""Gaussian error linear unit, PyTorch's ``GELU``.

    ``approximate="none"`` (default)::

        A = Z * Phi(Z),  Phi(Z) = (1 + erf(Z / sqrt(2))) / 2      (the normal CDF)
        dZ = dA * (Phi(Z) + Z * phi(Z)),  phi(Z) = exp(-Z**2 / 2) / sqrt(2 pi)

    ``approximate="tanh"``::

        u = sqrt(2 / pi) * (Z + 0.044715 Z**3),  A = Z * (1 + tanh(u)) / 2
        dZ = dA * ((1 + tanh(u)) / 2 + Z * (1 - tanh(u)**2) * sqrt(2 / pi) * (1 + 3 * 0.044715 Z**2) / 2)
    """

    # Python floats, not NumPy float64 scalars: those would make float32 inputs compute in float64
    _C = math.sqrt(2.0 / math.pi)
    _SQRT2, _SQRT2PI = math.sqrt(2.0), math.sqrt(2.0 * math.pi)

    def __init__(self, approximate: str = "none") -> None:
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GELU approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def get_config(self) -> dict:
        return {"approximate": self.approximate}

    def _f(self, z: np.ndarray) -> np.ndarray:
        if self.approximate == "tanh":
            t = self.xp.tanh(self._C * (z + 0.044715 * z**3))
            return (0.5 * z * (1 + t)).astype(z.dtype, copy=False)
        erf = self.backend.erf  # scipy.special.erf, or CuPy's on a GPU
        return (0.5 * z * (1 + erf(z / self._SQRT2))).astype(z.dtype, copy=False)

    def _df(self, z: np.ndarray, a: np.ndarray) -> np.ndarray:
        if self.approximate == "tanh":
            t = self.xp.tanh(self._C * (z + 0.044715 * z**3))
            d = 0.5 * (1 + t) + 0.5 * z * (1 - t * t) * self._C * (1 + 3 * 0.044715 * z**2)
        else:
            erf = self.backend.erf
            d = 0.5 * (1 + erf(z / self._SQRT2)) + z * self.xp.exp(-0.5 * z * z) / self._SQRT2PI
        return d.astype(z.dtype, copy=False)
