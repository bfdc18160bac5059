"""One registry from names (model files, TOML keys, CLI flags) to layers, losses, optimizers."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .layers import (
    GELU,
    AvgPool2D,
    BatchNorm,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    GlobalAvgPool2D,
    Layer,
    LeakyReLU,
    MaxPool2D,
    ReLU,
    Sigmoid,
    Tanh,
)
from .losses import MeanSquaredError, SoftmaxCrossEntropy
from .optim import SGD, Adam, AdamW, RMSprop
from .optim.schedules import CosineAnnealingLR, ExponentialLR, LinearWarmup, Schedule, StepLR

LAYERS: dict[str, type[Layer]] = {
    cls.__name__: cls for cls in (Dense, ReLU, LeakyReLU, Tanh, Sigmoid, GELU, Dropout,
                                 BatchNorm, Conv2D, MaxPool2D, AvgPool2D, GlobalAvgPool2D,
                                 Flatten)}
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


# -- training configuration: TOML keys and CLI flags -------------------------------------------
ACTIVATIONS = {"relu": ReLU, "leaky_relu": LeakyReLU, "tanh": Tanh, "sigmoid": Sigmoid,
               "gelu": GELU}
OPTIMIZER_CHOICES = ("sgd", "momentum", "nesterov", "rmsprop", "adam", "adamw")
SCHEDULE_CHOICES = ("constant", "step", "exponential", "cosine")

#: every key a config file (or the matching --flag) may set, with its default
TRAIN_DEFAULTS: dict[str, Any] = {
    "arch": "mlp", "channels": [32, 64], "augment": 0,
    "hidden": [32], "activation": "relu", "optimizer": "sgd", "lr": 0.1, "momentum": None,
    "weight_decay": None, "dropout": 0.0, "batch_norm": False, "schedule": "constant",
    "warmup": 0, "early_stopping": 0, "validation_split": 0.0, "checkpoint_every": 0,
    "clip_norm": None, "epochs": 1000, "batch_size": 32, "seed": 0, "dtype": "float32",
}


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


_CHECKS: dict[str, tuple[Any, str]] = {
    "arch": (lambda v: v in ("mlp", "cnn"), "'mlp' or 'cnn'"),
    "channels": (lambda v: isinstance(v, list) and v and all(_is_int(c) and c > 0 for c in v),
                 "a non-empty list of positive integers"),
    "augment": (lambda v: _is_int(v) and 0 <= v <= 3, "an integer 0..3 (max pixels of shift)"),
    "hidden": (lambda v: isinstance(v, list) and all(_is_int(h) and h > 0 for h in v),
               "a list of positive integers (empty: no hidden Dense layer)"),
    "activation": (lambda v: v in ACTIVATIONS, f"one of {', '.join(ACTIVATIONS)}"),
    "optimizer": (lambda v: v in OPTIMIZER_CHOICES, f"one of {', '.join(OPTIMIZER_CHOICES)}"),
    "lr": (lambda v: _is_num(v) and v > 0, "a number > 0"),
    "momentum": (lambda v: v is None or (_is_num(v) and 0 <= v < 1), "a number in [0, 1)"),
    "weight_decay": (lambda v: v is None or (_is_num(v) and v >= 0), "a number >= 0"),
    "dropout": (lambda v: _is_num(v) and 0 <= v < 1, "a probability in [0, 1)"),
    "batch_norm": (lambda v: isinstance(v, bool), "true or false"),
    "schedule": (lambda v: v in SCHEDULE_CHOICES, f"one of {', '.join(SCHEDULE_CHOICES)}"),
    "warmup": (lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    "early_stopping": (lambda v: _is_int(v) and v >= 0, "an integer >= 0 (0: off)"),
    "validation_split": (lambda v: _is_num(v) and 0 <= v < 1, "a fraction in [0, 1)"),
    "checkpoint_every": (lambda v: _is_int(v) and v >= 0, "an integer >= 0 (0: off)"),
    "clip_norm": (lambda v: v is None or (_is_num(v) and v > 0), "a number > 0"),
    "epochs": (lambda v: _is_int(v) and v > 0, "a positive integer"),
    "batch_size": (lambda v: _is_int(v) and v > 0, "a positive integer"),
    "seed": (lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    "dtype": (lambda v: v in ("float32", "float64"), "'float32' or 'float64'"),
}


def train_config(*layers_of_settings: dict[str, Any]) -> dict[str, Any]:
    """Defaults updated by each mapping in turn (a config file, then the flags), checked.

    Unknown keys and bad values raise ``ValueError`` naming the key and what it must be.
    """
    cfg = dict(TRAIN_DEFAULTS)
    for settings in layers_of_settings:
        for key, value in settings.items():
            if key not in TRAIN_DEFAULTS:
                raise ValueError(f"unknown setting {key!r}; known: {', '.join(TRAIN_DEFAULTS)}")
            cfg[key] = value
    for key, (ok, what) in _CHECKS.items():
        if not ok(cfg[key]):
            raise ValueError(f"setting {key!r} must be {what}, got {cfg[key]!r}")
    if not cfg["hidden"] and cfg["arch"] == "mlp":
        raise ValueError("setting 'hidden' must list at least one layer size for the mlp arch")
    if cfg["warmup"] >= cfg["epochs"]:
        raise ValueError(f"warmup ({cfg['warmup']}) must be shorter than epochs ({cfg['epochs']})")
    if cfg["early_stopping"] and not cfg["validation_split"]:
        cfg["validation_split"] = 0.1  # early stopping watches val_loss: hold out 10%
    return cfg


def load_toml(path: str) -> dict[str, Any]:
    """Read a config file; unreadable or invalid TOML raises ``ValueError`` naming the file."""
    import tomllib

    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ValueError(f"{path}: no such config file") from None
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not a valid TOML config ({exc})") from None
    return data


def build_layers(cfg: dict[str, Any], n_in: int | tuple[int, int, int],
                 n_out: int) -> list[Layer]:
    """The network a config describes, for inputs of ``n_in`` features (or shape (C, H, W)).

    ``mlp``: Dense [BatchNorm] activation [Dropout] per hidden size, then Dense to the outputs.
    ``cnn``: per entry of ``channels`` a 3x3 Conv2D (padding 1) [BatchNorm] activation, then
    2x2 max-pooling, Flatten [Dropout], then the ``mlp`` part on the flattened features.
    """
    act = ACTIVATIONS[cfg["activation"]]
    init = "he_normal" if cfg["activation"] in ("relu", "leaky_relu", "gelu") else "glorot_uniform"
    layers: list[Layer] = []
    if cfg["arch"] == "cnn":
        if isinstance(n_in, int):
            raise ValueError("the cnn architecture needs an image input shape (C, H, W)")
        c, h, w = n_in
        for ch in cfg["channels"]:
            layers.append(Conv2D(c, ch, 3, padding=1, init=init))
            if cfg["batch_norm"]:
                layers.append(BatchNorm(ch))
            layers.append(act())
            c = ch
        layers += [MaxPool2D(2), Flatten()]
        if cfg["dropout"]:
            layers.append(Dropout(cfg["dropout"]))
        n_in = c * (h // 2) * (w // 2)
    elif not isinstance(n_in, int):
        n_in = int(np.prod(n_in))
    for h in cfg["hidden"]:
        layers.append(Dense(n_in, h, init=init))
        if cfg["batch_norm"]:
            layers.append(BatchNorm(h))
        layers.append(act())
        if cfg["dropout"]:
            layers.append(Dropout(cfg["dropout"]))
        n_in = h
    layers.append(Dense(n_in, n_out, init=init))
    return layers


def build_optimizer(cfg: dict[str, Any]) -> Any:
    """The optimizer a config names. ``momentum`` is 0.9 for "momentum"/"nesterov" unless set;
    an unset ``weight_decay`` keeps each optimizer's own default (0, AdamW's 0.01)."""
    name, mu = cfg["optimizer"], cfg["momentum"]
    kw: dict[str, Any] = {"lr": cfg["lr"], "clip_norm": cfg["clip_norm"]}
    if cfg["weight_decay"] is not None:
        kw["weight_decay"] = cfg["weight_decay"]
    if name in ("momentum", "nesterov"):
        return SGD(momentum=0.9 if mu is None else mu, nesterov=name == "nesterov", **kw)
    if name in ("sgd", "rmsprop"):
        return (SGD if name == "sgd" else RMSprop)(momentum=mu or 0.0, **kw)
    return (Adam if name == "adam" else AdamW)(**kw)


def build_schedule(cfg: dict[str, Any]) -> Schedule | None:
    """``step``: x0.1 at 1/3 and 2/3 of the run; ``exponential``: x0.01 over the run;
    ``cosine``: to 0 at the end; ``warmup`` epochs of linear warm-up before any of them."""
    name, epochs, warm = cfg["schedule"], cfg["epochs"], cfg["warmup"]
    rest = epochs - warm
    main: Schedule | None = {
        "constant": None,
        "step": StepLR(max(1, rest // 3), 0.1),
        "exponential": ExponentialLR(0.01 ** (1 / rest)),
        "cosine": CosineAnnealingLR(rest),
    }[name]
    if warm:
        return LinearWarmup(warm, 0.1, then=main)
    return main
