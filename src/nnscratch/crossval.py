"""Stratified k-fold cross-validation of a training configuration (``nnscratch cv``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .config import build_optimizer, build_schedule
from .data import apply_preprocessing, load_dataset
from .io import atomic_write, write_text_atomic
from .losses import SoftmaxCrossEntropy
from .recipe import build_augment, build_model


def load_whole(name: str) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Every example of dataset ``name`` (its train and test parts) in raw pixels, and its info.

    For the digits this is scikit-learn's 1,797 images in their original order."""
    split = load_dataset(name)
    if name == "digits":
        from sklearn.datasets import load_digits

        X, y = load_digits(return_X_y=True)
        return X, y.astype(np.int64), split.info
    return (np.concatenate([split.X_train, split.X_test]),
            np.concatenate([split.y_train, split.y_test]), split.info)


def cross_validate(cfg: dict[str, Any], folds: int, out: Path,
                   verbose: bool = False, device: str = "cpu",
                   callbacks: list[Any] | None = None) -> dict[str, Any]:
    """Train ``cfg`` on each of ``folds`` stratified folds of the whole dataset ``cfg["dataset"]``.

    Each fold trains on the other folds and records the held-out fold's loss and accuracy every
    epoch. Writes ``cv.json`` (per fold and mean +- std accuracy) and ``cv_curves.png`` into
    ``out``; returns what ``cv.json`` holds. ``device``: where the models train (see
    :class:`~nnscratch.model.Sequential`). A signal handled by :mod:`nnscratch.interrupts`
    raises its ``TrainingInterrupted`` with the fold's number and model in ``run``.
    """
    from sklearn.model_selection import StratifiedKFold

    from .interrupts import TrainingInterrupted

    X_raw, y, info = load_whole(cfg["dataset"])
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=cfg["seed"])
    results, histories, X = [], [], None
    for k, (train, val) in enumerate(splitter.split(X_raw, y)):
        model = build_model(cfg, info, device=device)
        if X is None:
            X = apply_preprocessing(X_raw, model.preprocessing, model.dtype)
        try:
            h = model.fit(X[train], y[train], epochs=cfg["epochs"], batch_size=cfg["batch_size"],
                          optimizer=build_optimizer(cfg), loss=SoftmaxCrossEntropy(),
                          schedule=build_schedule(cfg), validation_data=(X[val], y[val]),
                          verbose=verbose, augment=build_augment(cfg, model, info),
                          callbacks=list(callbacks or []))
        except TrainingInterrupted as stop:
            stop.run.update(fold=k + 1, model=model)
            raise
        results.append({"fold": k + 1, "n_train": int(len(train)), "n_val": int(len(val)),
                        "val_accuracy": model.score(X[val], y[val]),
                        "val_loss": h["val_loss"][-1]})
        histories.append(h.history)
    accs = np.array([r["val_accuracy"] for r in results])
    summary = {"folds": results, "mean_accuracy": float(accs.mean()),
               "std_accuracy": float(accs.std(ddof=1)) if folds > 1 else 0.0,
               "config": cfg, "dataset": cfg["dataset"], "n_examples": int(len(y))}
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "cv.json", json.dumps(summary, indent=2) + "\n")
    _plot(histories, out / "cv_curves.png")
    return summary


def _plot(histories: list[dict[str, list[float]]], path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4), layout="constrained")
    for i, key in enumerate(("val_loss", "val_accuracy")):
        ax = fig.add_subplot(1, 2, i + 1)
        for k, h in enumerate(histories):
            ax.plot(np.arange(1, len(h[key]) + 1), h[key], label=f"fold {k + 1}")
        ax.set(xlabel="epoch", ylabel=key.replace("_", " "),
               yscale="log" if key == "val_loss" else "linear")
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.suptitle("Cross-validation: each fold's validation curves")
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=110)
