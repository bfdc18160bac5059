"""Numerical gradient checks by central differences, used by the tests and ``nnscratch gradcheck``.

For a scalar function ``f`` of an array ``a``, each entry is perturbed by ``+-eps``::

    df/da_i  ~=  (f(a + eps e_i) - f(a - eps e_i)) / (2 eps)        (error O(eps^2))

and compared with the analytic gradient by the relative error
``max |num - ana| / max(1e-12, max(|num|, |ana|))`` over the array. Run in float64: in float32
the rounding of ``f`` swamps the difference.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

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
    # name -> a few (index, numeric, analytic) entries, for a learner to follow the check
    samples: dict[str, list[tuple[tuple[int, ...], float, float]]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(e <= self.tol for e in self.errors.values())

    def __str__(self) -> str:
        parts = ", ".join(f"{k}: {v:.2e}" for k, v in self.errors.items())
        return f"{'PASS' if self.ok else 'FAIL'} ({parts}; tol {self.tol:.0e})"


def _samples(numeric: np.ndarray, analytic: np.ndarray, n: int = 3
             ) -> list[tuple[tuple[int, ...], float, float]]:
    """The first, the middle and the last entry (or fewer): index, numeric, analytic."""
    flat = sorted({0, numeric.size // 2, numeric.size - 1})[:n]
    return [(tuple(int(i) for i in np.unravel_index(k, numeric.shape)),
             float(numeric.flat[k]), float(analytic.flat[k])) for k in flat]


def check_layer(layer, x: np.ndarray, rng: np.random.Generator, tol: float = 1e-6,
                eps: float = 1e-6, before: Callable[[], None] | None = None) -> GradCheckResult:
    """Check ``layer.backward`` against central differences of ``L = sum(forward(x) * R)``.

    ``R`` is a fixed random array, so ``dL/dy = R`` and every output entry matters. The layer and
    ``x`` must be float64. ``before()``, if given, runs before every forward pass (e.g. to reseed
    dropout, so that every pass draws the same mask).
    """
    x = np.array(x, dtype=np.float64)

    def forward() -> np.ndarray:
        if before is not None:
            before()
        return layer.forward(x, training=True)

    R = rng.standard_normal(forward().shape)

    def loss() -> float:
        return float((forward() * R).sum())

    forward()
    grad_x = np.array(layer.backward(R))
    analytic = {"x": grad_x, **{k: np.array(g) for k, g in layer.grads.items()}}
    numeric = {"x": numerical_gradient(loss, x, eps)}
    for name, p in layer.params.items():
        numeric[name] = numerical_gradient(loss, p, eps)
    errors = {k: relative_error(numeric[k], analytic[k]) for k in numeric}
    return GradCheckResult(errors, tol, {k: _samples(numeric[k], analytic[k]) for k in numeric})


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
    samples = {"logits": _samples(numeric, analytic)}
    if hasattr(loss, "gradient"):
        t = np.asarray(target)
        Y = t if t.ndim == 2 else np.eye(z.shape[1])[t]
        errors["logits (loss.gradient)"] = relative_error(numeric, np.array(loss.gradient(z, Y)))
        if type(loss).__name__ == "SoftmaxCrossEntropy":
            from .accel.losses import SoftmaxGradient

            errors["logits (accelerated)"] = relative_error(numeric,
                                                            np.array(SoftmaxGradient()(z, Y)))
    return GradCheckResult(errors, tol, samples)


def _away_from_kinks(x: np.ndarray) -> np.ndarray:
    """ReLU-like layers have a kink at 0 where differences mean nothing: move inputs off it."""
    x = x.copy()
    x[np.abs(x) < 1e-2] = 0.5
    return x


def catalogue(rng: np.random.Generator) -> list[tuple[str, Any, np.ndarray, Any]]:
    """Every layer of :mod:`nnscratch.layers` in float64, with an input and an optional
    ``before`` hook: ``(name, layer, x, before)``. ``tests/test_gradcheck_cli.py`` checks that
    no layer class is missing from it."""
    from .layers import (
        GELU,
        AvgPool2D,
        BatchNorm,
        Conv2D,
        Dense,
        Dropout,
        Flatten,
        GlobalAvgPool2D,
        LeakyReLU,
        MaxPool2D,
        ReLU,
        Sigmoid,
        Tanh,
    )

    f64 = np.dtype("float64")
    rows = lambda: rng.standard_normal((4, 5))  # noqa: E731
    images = lambda: rng.standard_normal((2, 2, 6, 6))  # noqa: E731
    dense = Dense(5, 4, seed=0, dtype="float64")
    dense.params["b"][...] = rng.standard_normal(4)
    conv = Conv2D(2, 3, 3, stride=2, padding=1, seed=0, dtype="float64")
    conv.params["b"][...] = rng.standard_normal(3)
    bn_rows, bn_images = BatchNorm(5, dtype="float64"), BatchNorm(2, dtype="float64")
    for bn in (bn_rows, bn_images):
        bn.params["gamma"][...] = rng.uniform(0.5, 1.5, bn.num_features)
        bn.params["beta"][...] = rng.standard_normal(bn.num_features)
    dropout = Dropout(0.3)
    return [
        ("Dense(5, 4)", dense, rows(), None),
        ("ReLU()", ReLU(), _away_from_kinks(rows()), None),
        ("LeakyReLU(0.1)", LeakyReLU(0.1), _away_from_kinks(rows()), None),
        ("Tanh()", Tanh(), rows(), None),
        ("Sigmoid()", Sigmoid(), rows(), None),
        ("GELU()", GELU(), rows(), None),
        ("GELU('tanh')", GELU("tanh"), rows(), None),
        ("Dropout(0.3)", dropout, rows(),
         lambda: dropout.reset_parameters(np.random.default_rng(7), f64)),  # one fixed mask
        ("BatchNorm(5), rows", bn_rows, rows(), None),
        ("BatchNorm(2), images", bn_images, images(), None),
        ("Conv2D(2, 3, 3, s=2, p=1)", conv, images(), None),
        ("MaxPool2D(2)", MaxPool2D(2), images(), None),
        ("AvgPool2D(2)", AvgPool2D(2), images(), None),
        ("GlobalAvgPool2D()", GlobalAvgPool2D(), images(), None),
        ("Flatten()", Flatten(), images(), None),
    ]


def check_all(seed: int = 0) -> dict[str, GradCheckResult]:
    """Check every layer (:func:`catalogue`) and every loss (softmax cross-entropy with class
    and probability targets, mean squared error) in float64; ``name -> result``."""
    from .losses import MeanSquaredError, SoftmaxCrossEntropy

    rng = np.random.default_rng(seed)
    results = {name: check_layer(layer, x, rng, before=before)
               for name, layer, x, before in catalogue(rng)}
    logits = rng.standard_normal((4, 6)) * 2
    results["SoftmaxCrossEntropy(), labels"] = check_loss(SoftmaxCrossEntropy(), logits,
                                                          rng.integers(0, 6, 4))
    results["SoftmaxCrossEntropy(), probabilities"] = check_loss(
        SoftmaxCrossEntropy(), logits, rng.dirichlet(np.ones(6), size=4))
    results["MeanSquaredError()"] = check_loss(MeanSquaredError(), rng.standard_normal((4, 3)),
                                               rng.standard_normal((4, 3)))
    return results
