"""Numerical gradient checks by central differences, used by the tests and ``nnscratch gradcheck``.

For a scalar function ``f`` of an array ``a``, each entry is perturbed by ``+-eps``::

    df/da_i  ~=  (f(a + eps e_i) - f(a - eps e_i)) / (2 eps)        (error O(eps^2))

and compared with the analytic gradient by the relative error
``max |num - ana| / max(1e-12, max(|num|, |ana|))`` over the array. Run in float64: in float32
the rounding of ``f`` swamps the difference.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


def numerical_gradient(f: Callable[[], float], a: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central-difference gradient of ``f()`` with respect to ``a`` (perturbed in place, entry
    by entry; ``a`` may be any view, e.g. a transposed one)."""
    grad = np.zeros(a.shape, dtype=np.float64)
    for i in np.ndindex(*a.shape):
        old = a[i]
        a[i] = old + eps
        f_plus = f()
        a[i] = old - eps
        f_minus = f()
        a[i] = old
        grad[i] = (f_plus - f_minus) / (2 * eps)
    return grad


def relative_error(numeric: np.ndarray, analytic: np.ndarray) -> float:
    """Largest entry-wise difference, relative to the larger of the two gradients' magnitudes."""
    scale = max(1e-12, float(np.abs(numeric).max(initial=0)), float(np.abs(analytic).max(initial=0)))
    return float(np.abs(numeric - analytic).max(initial=0) / scale)


@dataclass
class GradCheckResult:
    errors: dict[str, float]  # name ("x", "W", "b", ...) -> relative error
    tol: float

    @property
    def ok(self) -> bool:
        return all(e <= self.tol for e in self.errors.values())

    def __str__(self) -> str:
        parts = ", ".join(f"{k}: {v:.2e}" for k, v in self.errors.items())
        return f"{'PASS' if self.ok else 'FAIL'} ({parts}; tol {self.tol:.0e})"


def check_layer(layer, x: np.ndarray, rng: np.random.Generator, tol: float = 1e-6,
                eps: float = 1e-6) -> GradCheckResult:
    """Check ``layer.backward`` against central differences of ``L = sum(forward(x) * R)``.

    ``R`` is a fixed random array, so ``dL/dy = R`` and every output entry matters. The layer and
    ``x`` must be float64.
    """
    x = np.array(x, dtype=np.float64)
    R = rng.standard_normal(layer.forward(x, training=True).shape)

    def loss() -> float:
        return float((layer.forward(x, training=True) * R).sum())

    layer.forward(x, training=True)
    grad_x = np.array(layer.backward(R))
    analytic = {"x": grad_x, **{k: np.array(g) for k, g in layer.grads.items()}}
    errors = {"x": relative_error(numerical_gradient(loss, x, eps), analytic["x"])}
    for name, p in layer.params.items():
        errors[name] = relative_error(numerical_gradient(loss, p, eps), analytic[name])
    return GradCheckResult(errors, tol)


def check_loss(loss, logits: np.ndarray, target: np.ndarray, tol: float = 1e-6,
               eps: float = 1e-6) -> GradCheckResult:
    """Check ``loss.backward()`` (and ``loss.gradient`` when present) against differences."""
    z = np.array(logits, dtype=np.float64)

    def f() -> float:
        return float(loss.forward(z, target))

    loss.forward(z, target)
    analytic = np.array(loss.backward())
    numeric = numerical_gradient(f, z, eps)
    errors = {"logits": relative_error(numeric, analytic)}
    if hasattr(loss, "gradient"):
        t = np.asarray(target)
        Y = t if t.ndim == 2 else np.eye(z.shape[1])[t]
        errors["logits (loss.gradient)"] = relative_error(numeric, np.array(loss.gradient(z, Y)))
        if type(loss).__name__ == "SoftmaxCrossEntropy":
            from .accel.losses import SoftmaxGradient

            errors["logits (accelerated)"] = relative_error(numeric,
                                                            np.array(SoftmaxGradient()(z, Y)))
    return GradCheckResult(errors, tol)
