"""Seeded random architectures for the interop tests (ONNX export, PyTorch state dicts).

``generate_architectures(seed, count)`` returns models with random weights, random biases and
random, non-trivial BatchNorm parameters and running statistics (``randomize``): MLPs and CNNs that
between them use every layer type, both GELU forms, non-square kernels, strides and paddings,
overlapping and non-overlapping pooling, and BatchNorm on rows and on images.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nnscratch import Sequential
from nnscratch.layers import (
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


def _activation(rng: np.random.Generator):
    k = int(rng.integers(6))
    return [ReLU(), LeakyReLU(float(rng.choice([0.01, 0.1, 0.3]))), Tanh(), Sigmoid(), GELU(),
            GELU("tanh")][k]


def _mlp(rng: np.random.Generator) -> tuple[list, tuple[int, ...]]:
    n_in = int(rng.integers(3, 70))
    layers, n = [], n_in
    for _ in range(int(rng.integers(1, 4))):
        h = int(rng.integers(2, 40))
        layers.append(Dense(n, h))
        if rng.random() < 0.5:
            layers.append(BatchNorm(h, eps=float(rng.choice([1e-5, 1e-3]))))
        layers.append(_activation(rng))
        if rng.random() < 0.4:
            layers.append(Dropout(float(rng.choice([0.1, 0.5]))))
        n = h
    layers.append(Dense(n, int(rng.integers(2, 11))))
    return layers, (n_in,)


def _cnn(rng: np.random.Generator) -> tuple[list, tuple[int, ...]]:
    c, h, w = int(rng.integers(1, 4)), int(rng.integers(6, 15)), int(rng.integers(6, 15))
    shape = (c, h, w)
    layers: list = []
    for _ in range(int(rng.integers(1, 4))):
        o = int(rng.integers(2, 9))
        kernel = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
        kernel = kernel if rng.random() < 0.3 else kernel[0]
        stride = int(rng.choice([1, 1, 2])) if rng.random() < 0.8 else (1, 2)
        padding = int(rng.integers(0, 2)) if rng.random() < 0.8 else (1, 0)
        conv = Conv2D(c, o, kernel, stride=stride, padding=padding)
        try:
            _, h2, w2 = conv.output_shape((c, h, w))
        except ValueError:   # the kernel does not fit what is left of the image
            break
        if h2 < 2 or w2 < 2:
            break
        layers.append(conv)
        c, h, w = o, h2, w2
        if rng.random() < 0.5:
            layers.append(BatchNorm(o, momentum=0.1, eps=float(rng.choice([1e-5, 1e-3]))))
        layers.append(_activation(rng))
        if rng.random() < 0.6:
            k = int(rng.integers(2, 4))
            s = int(rng.integers(1, k + 1))
            if h >= k and w >= k:
                pool = (MaxPool2D if rng.random() < 0.5 else AvgPool2D)(k, s)
                layers.append(pool)
                c, h, w = pool.output_shape((c, h, w))
    if not layers:
        layers.append(Conv2D(c, 3, 1))
        c = 3
    if rng.random() < 0.3:
        layers.append(GlobalAvgPool2D())
        n = c
    else:
        layers.append(Flatten())
        n = c * h * w
    if rng.random() < 0.4:
        layers.append(Dropout(0.3))
    if rng.random() < 0.5:
        hidden = int(rng.integers(4, 20))
        layers += [Dense(n, hidden)]
        if rng.random() < 0.5:
            layers.append(BatchNorm(hidden))
        layers.append(_activation(rng))
        n = hidden
    layers.append(Dense(n, int(rng.integers(2, 11))))
    return layers, shape


def randomize(model: Sequential, rng: np.random.Generator) -> Sequential:
    """Random biases, BatchNorm gammas and betas, and running statistics far from (0, 1)."""
    for layer in model.layers:
        for name, p in layer.params.items():
            if name in ("b", "beta"):
                layer.params[name] = rng.normal(0, 0.3, p.shape)
            elif name == "gamma":
                layer.params[name] = rng.uniform(0.5, 1.5, p.shape)
        for name, s in layer.state.items():
            layer.state[name] = (rng.uniform(0.2, 3.0, s.shape) if name == "running_var"
                                 else rng.normal(0, 0.5, s.shape))
    return model


@dataclass
class Arch:
    name: str
    model: Sequential

    def __repr__(self) -> str:
        return self.name


def generate_architectures(seed: int = 18, count: int = 24, dtype: str = "float32") -> list[Arch]:
    """``count`` random models (half MLPs, half CNNs) from ``seed``."""
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < count:
        layers, shape = (_cnn if len(out) % 2 else _mlp)(rng)
        model = Sequential(layers, input_shape=shape, seed=int(rng.integers(1000)), dtype=dtype)
        randomize(model, rng)
        kinds = "-".join(f"GELU[{layer.approximate}]" if isinstance(layer, GELU)
                         else type(layer).__name__ for layer in layers)
        out.append(Arch(f"{len(out):02d}:{shape}:{kinds}", model))
    return out
