"""From a training configuration and a dataset to a model and its augmentation.

Used by the faces (``nnscratch train``, ``nnscratch cv``), so that a configuration means the same
network everywhere.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .config import build_layers
from .data import RandomShift, dataset_preprocessing
from .layers import AvgPool2D, Conv2D, Flatten, GlobalAvgPool2D, MaxPool2D
from .model import Sequential

_IMAGE_LAYERS = (Conv2D, MaxPool2D, AvgPool2D, GlobalAvgPool2D, Flatten)


def build_model(cfg: dict[str, Any], info: dict[str, Any], device: str = "cpu") -> Sequential:
    """The network ``cfg`` describes, for the dataset whose split ``info`` is given.

    Networks with image layers take (C, H, W) images; the others take flat rows of C*H*W pixels.
    The model records the dataset's preprocessing (pixel scale, picture format) and computes on
    ``device`` ("cpu", "cuda", "cuda:N").
    """
    shape = tuple(int(d) for d in info["input_shape"])
    n_classes = int(info["n_classes"])
    layers = build_layers(cfg, shape if cfg["arch"] == "cnn" else int(np.prod(shape)), n_classes)
    image = any(isinstance(layer, _IMAGE_LAYERS) for layer in layers)
    model = Sequential(layers, input_shape=shape if image else (int(np.prod(shape)),),
                       seed=cfg["seed"], dtype=cfg["dtype"], device=device,
                       accelerate=cfg.get("accelerate", True))
    if model.n_outputs != n_classes:
        raise ValueError(f"the network outputs {model.n_outputs} values per example but the "
                         f"dataset has {n_classes} classes")
    model.preprocessing = dataset_preprocessing(info)
    return model


def build_augment(cfg: dict[str, Any], model: Sequential, info: dict[str, Any]) -> Any:
    """Random shifts of up to ``cfg["augment"]`` pixels per training batch (``None`` if 0).

    Image models receive (m, C, H, W) batches; flat models get the shifted images as rows again.
    """
    if not cfg["augment"]:
        return None
    shift = RandomShift(tuple(int(d) for d in info["input_shape"]), cfg["augment"])
    if len(model.input_shape) > 1:
        return shift
    return lambda xb, rng: shift(xb, rng).reshape(len(xb), -1)
