"""One registry from names (model files, TOML keys, CLI flags) to layers, losses, optimizers."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .data.datasets import DATASET_CHOICES, check_dataset_name
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
    "dataset": "digits", "arch": "mlp", "layers": None, "channels": [32, 64], "pool": "last",
    "augment": 0,
    "hidden": [32], "activation": "relu", "optimizer": "sgd", "lr": 0.1, "momentum": None,
    "weight_decay": None, "dropout": 0.0, "batch_norm": False, "schedule": "constant",
    "warmup": 0, "early_stopping": 0, "validation_split": 0.0, "checkpoint_every": 0,
    "clip_norm": None, "epochs": 1000, "batch_size": 32, "seed": 0, "dtype": "float32",
    "accelerate": True,
}


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _is_dataset(v: Any) -> bool:
    try:
        check_dataset_name(v)
    except ValueError:
        return False
    return True


#: what ``arch = "cnn"`` means on each family of datasets: every key here that the config file
#: and the flags leave unset takes this value (digits: configs/digits_cnn.toml; MNIST-like 28x28
#: images: configs/mnist5k_cnn.toml; CIFAR-10: the same recipe with a third conv block)
CNN_DEFAULTS: dict[str, dict[str, Any]] = {
    "digits": {"channels": [32, 64], "pool": "last", "hidden": [], "batch_norm": True,
               "dropout": 0.3, "augment": 1, "optimizer": "adam", "lr": 0.001,
               "schedule": "cosine", "epochs": 60, "batch_size": 32},
    "mnist": {"channels": [32, 64], "pool": "each", "hidden": [128], "batch_norm": True,
              "dropout": 0.3, "augment": 2, "optimizer": "adam", "lr": 0.001,
              "schedule": "cosine", "epochs": 30, "batch_size": 64},
    "cifar10": {"channels": [32, 64, 128], "pool": "each", "hidden": [128], "batch_norm": True,
                "dropout": 0.3, "augment": 2, "optimizer": "adam", "lr": 0.001,
                "schedule": "cosine", "epochs": 30, "batch_size": 64},
}


def dataset_family(name: str) -> str:
    """``digits``, ``cifar10``, or ``mnist`` (mnist5k and IDX files): which CNN defaults apply."""
    return name if name == "digits" else "cifar10" if name.startswith("cifar10:") else "mnist"


def _is_layer_list(v: Any) -> bool:
    return v is None or (isinstance(v, list) and bool(v) and all(
        isinstance(spec, dict) and isinstance(spec.get("type"), str) for spec in v))


_CHECKS: dict[str, tuple[Any, str]] = {
    "dataset": (_is_dataset, "one of " + ", ".join(DATASET_CHOICES)),
    "arch": (lambda v: v in ("mlp", "cnn"), "'mlp' or 'cnn'"),
    "layers": (_is_layer_list, "a non-empty list of layer tables, each with a 'type' and "
               "optionally a 'config' table, e.g. {type = \"Dense\", config = {n_in = 64, n_out = 10}}"),
    "channels": (lambda v: isinstance(v, list) and v and all(_is_int(c) and c > 0 for c in v),
                 "a non-empty list of positive integers"),
    "pool": (lambda v: v in ("last", "each"), "'last' (one 2x2 max-pool after the conv layers) "
             "or 'each' (after every conv layer)"),
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
    "accelerate": (lambda v: isinstance(v, bool), "true or false"),
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
    cfg, given = dict(TRAIN_DEFAULTS), set()
    for settings in layers_of_settings:
        for key, value in settings.items():
            if key not in TRAIN_DEFAULTS:
                raise ValueError(f"unknown setting {key!r}; known: {', '.join(TRAIN_DEFAULTS)}")
            cfg[key] = value
            given.add(key)
    for key in ("dataset", "arch"):
        ok, what = _CHECKS[key]
        if not ok(cfg[key]):
            raise ValueError(f"setting {key!r} must be {what}, got {cfg[key]!r}")
    if cfg["arch"] == "cnn" and cfg["layers"] is None:
        for key, value in CNN_DEFAULTS[dataset_family(cfg["dataset"])].items():
            if key not in given:
                cfg[key] = value
    for key, (ok, what) in _CHECKS.items():
        if not ok(cfg[key]):
            raise ValueError(f"setting {key!r} must be {what}, got {cfg[key]!r}")
    if not cfg["hidden"] and cfg["arch"] == "mlp" and cfg["layers"] is None:
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

    ``layers``: exactly the layers listed (as in a model file), when the config gives them.
    ``mlp``: Dense [BatchNorm] activation [Dropout] per hidden size, then Dense to the outputs.
    ``cnn``: per entry of ``channels`` a 3x3 Conv2D (padding 1) [BatchNorm] activation, and a
    2x2 max-pool after each of them (``pool = "each"``) or once after the last
    (``pool = "last"``); then Flatten [Dropout], then the ``mlp`` part on the flattened features.
    """
    if cfg.get("layers") is not None:
        return [build_layer(spec) for spec in cfg["layers"]]
    act = ACTIVATIONS[cfg["activation"]]
    init = "he_normal" if cfg["activation"] in ("relu", "leaky_relu", "gelu") else "glorot_uniform"
    layers: list[Layer] = []
    if cfg["arch"] == "cnn":
        if isinstance(n_in, int):
            raise ValueError("the cnn architecture needs an image input shape (C, H, W)")
        c, h, w = n_in
        for i, ch in enumerate(cfg["channels"]):
            layers.append(Conv2D(c, ch, 3, padding=1, init=init))
            if cfg["batch_norm"]:
                layers.append(BatchNorm(ch))
            if cfg["pool"] == "each" or i == len(cfg["channels"]) - 1:
                layers += [act(), MaxPool2D(2)]
                h, w = h // 2, w // 2
            else:
                layers.append(act())
            c = ch
        if h < 1 or w < 1:
            raise ValueError(f"{len(cfg['channels'])} conv blocks, each pooled 2x2, shrink a "
                             f"{n_in[1]}x{n_in[2]} image to nothing; use fewer channels entries "
                             "or pool = 'last'")
        layers.append(Flatten())
        if cfg["dropout"]:
            layers.append(Dropout(cfg["dropout"]))
        n_in = c * h * w
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
