"""Random shifts for small images, and the cnn architecture of the training config."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nnscratch.cli import main
from nnscratch.config import build_layers, train_config
from nnscratch.data import RandomShift
from nnscratch.layers import BatchNorm, Conv2D, Dense, Flatten, MaxPool2D


def test_each_image_is_shifted_by_at_most_max_shift_with_zero_fill():
    rng = np.random.default_rng(0)
    x = rng.uniform(1, 2, (200, 2, 5, 6)).astype(np.float32)
    out = RandomShift((2, 5, 6), max_shift=2)(x.reshape(200, -1), rng)
    assert out.shape == (200, 2, 5, 6) and out.dtype == np.float32
    seen = set()
    for a, b in zip(x, out, strict=True):
        found = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                 if np.array_equal(np.roll(np.pad(a, ((0, 0), (2, 2), (2, 2))), (dy, dx), (1, 2))
                                   [:, 2:7, 2:8], b)]
        assert found, "not a whole-pixel shift with zeros"
        seen.add(found[0])
    assert len(seen) == 25  # every offset in -2..2 x -2..2 occurs


def test_shifts_come_from_the_given_generator():
    x = np.ones((10, 16), dtype=np.float32)
    a = RandomShift((1, 4, 4))(x, np.random.default_rng(5))
    b = RandomShift((1, 4, 4))(x, np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError):
        RandomShift((4, 4))


def test_cnn_architecture_from_config():
    cfg = train_config({"arch": "cnn", "channels": [4, 8], "batch_norm": True, "hidden": [16]})
    layers = build_layers(cfg, (1, 8, 8), 10)
    kinds = [type(layer) for layer in layers]
    assert kinds[:3] == [Conv2D, BatchNorm, type(layers[2])] and Flatten in kinds
    assert MaxPool2D in kinds and kinds[-1] is Dense and layers[-1].n_in == 16
    with pytest.raises(ValueError, match="'arch'"):
        train_config({"arch": "transformer"})


def test_train_a_small_cnn_with_augmentation_from_the_cli(tmp_path):
    out = tmp_path / "cnn"
    assert main(["train", "--arch", "cnn", "--channels", "8", "--hidden", "16", "--augment", "1",
                 "--optimizer", "adam", "--lr", "0.003", "--epochs", "3", "--out", str(out),
                 "--quiet"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["config"]["arch"] == "cnn" and m["config"]["augment"] == 1
    assert m["test_accuracy"] > 0.5  # a plumbing test: 3 epochs, far above chance (0.1)
    from nnscratch import load_model

    assert load_model(out / "model.safetensors").input_shape == (1, 8, 8)
    assert (out / "filters.png").exists() and (out / "feature_maps.png").exists()
