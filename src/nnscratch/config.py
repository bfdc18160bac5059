"""One registry from names (model files, TOML keys, CLI flags) to layers, losses, optimizers."""

from __future__ import annotations

from typing import Any

from .layers import GELU, BatchNorm, Dense, Dropout, Layer, LeakyReLU, ReLU, Sigmoid, Tanh
from .losses import MeanSquaredError, SoftmaxCrossEntropy
from .optim import SGD, Adam, AdamW, RMSprop

LAYERS: dict[str, type[Layer]] = {
    cls.__name__: cls for cls in (Dense, ReLU, LeakyReLU, Tanh, Sigmoid, GELU, Dropout,
                                 BatchNorm)}
LOSSES = {"softmax_cross_entropy": SoftmaxCrossEntropy, "mse": MeanSquaredError}
OPTIMIZERS = {"sgd": SGD, "rmsprop": RMSprop, "adam": Adam, "adamw": AdamW}


def layer_spec(layer: Layer) -> dict[str, Any]:
    """``{"type": name, "config": {...}}`` describing ``layer``."""
    name = type(layer).__name__
    if LAYERS.get(name) is not type(layer):
        raise ValueError(f"layer type {name} is not registered in nnscratch.config.LAYERS")
    return {"type": name, "config": layer.get_config()}


def build_layer(spec: Any) -> Layer:
    """Inverse of :func:`layer_spec`; raises ``ValueError`` naming what is wrong with ``spec``."""
    if not isinstance(spec, dict) or "type" not in spec:
        raise ValueError(f"a layer spec must be a dict with a 'type', got {spec!r}")
    cls = LAYERS.get(spec["type"])
    if cls is None:
        raise ValueError(f"unknown layer type {spec['type']!r}; known: {', '.join(LAYERS)}")
    cfg = spec.get("config", {})
    if not isinstance(cfg, dict):
        raise ValueError(f"layer config must be a dict, got {cfg!r}")
    try:
        return cls(**cfg)
    except TypeError as exc:
        raise ValueError(f"bad config for {spec['type']}: {exc}") from None
