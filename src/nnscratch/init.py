"""Weight initialisers. Each draws from an explicit ``numpy.random.Generator``.

For a layer with ``fan_in`` inputs and ``fan_out`` outputs:

- He (Kaiming) normal:    W ~ N(0, 2 / fan_in)                       (for ReLU)
- He uniform:             W ~ U(-a, a),  a = sqrt(6 / fan_in)
- Glorot (Xavier) normal: W ~ N(0, 2 / (fan_in + fan_out))           (for tanh / sigmoid)
- Glorot uniform:         W ~ U(-a, a),  a = sqrt(6 / (fan_in + fan_out))

He keeps the variance of ReLU activations constant from layer to layer; Glorot balances the
forward and backward variances for symmetric activations.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Initializer = Callable[[np.random.Generator, tuple[int, ...], int, int, np.dtype], np.ndarray]


def he_normal(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int, fan_out: int,
              dtype: np.dtype) -> np.ndarray:
    return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(dtype)


def he_uniform(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int, fan_out: int,
               dtype: np.dtype) -> np.ndarray:
    a = np.sqrt(6.0 / fan_in)
    return rng.uniform(-a, a, shape).astype(dtype)


def glorot_normal(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int, fan_out: int,
                  dtype: np.dtype) -> np.ndarray:
    return (rng.standard_normal(shape) * np.sqrt(2.0 / (fan_in + fan_out))).astype(dtype)


def glorot_uniform(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int, fan_out: int,
                   dtype: np.dtype) -> np.ndarray:
    a = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-a, a, shape).astype(dtype)


INITIALIZERS: dict[str, Initializer] = {
    "he_normal": he_normal,
    "he_uniform": he_uniform,
    "glorot_normal": glorot_normal,
    "glorot_uniform": glorot_uniform,
}


def get_initializer(name: str) -> Initializer:
    """Look an initialiser up by name; unknown names raise ``ValueError`` listing the choices."""
    try:
        return INITIALIZERS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown initializer {name!r}; choose one of {', '.join(INITIALIZERS)}"
        ) from None
