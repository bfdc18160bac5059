"""The run report: metrics.json, history.csv, classification report, confusion matrix, pictures.

Plots use ``matplotlib.figure.Figure`` directly (no pyplot, no global backend state), so writing a
report works headless and from threads.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from . import metrics
from .io import atomic_write, write_text_atomic


def _save(fig: Figure, path: Path) -> None:
    with atomic_write(path, "wb") as f:   # a killed run never leaves half a picture
        fig.savefig(f, format=Path(path).suffix.lstrip(".") or "png", dpi=110, bbox_inches="tight")


def plot_training_loss(history: Mapping[str, Sequence[float]], path: Path) -> None:
    """Loss per epoch (log scale), with validation loss when recorded."""
    fig = Figure(figsize=(7, 4))
    ax = fig.add_subplot()
    epochs = np.arange(1, len(history["loss"]) + 1)
    ax.plot(epochs, history["loss"], label="training loss")
    if "val_loss" in history:
        ax.plot(epochs, history["val_loss"], label="validation loss")
    ax.set(xlabel="epoch", ylabel="cross-entropy loss", yscale="log", title="Training loss")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    _save(fig, path)


def plot_curves(history: Mapping[str, Sequence[float]], path: Path) -> None:
    """Training and validation loss (left) and accuracy (right) on one figure."""
    fig = Figure(figsize=(11, 4), layout="constrained")
    epochs = np.arange(1, len(history["loss"]) + 1)
    for i, (key, label) in enumerate((("loss", "loss"), ("accuracy", "accuracy"))):
        ax = fig.add_subplot(1, 2, i + 1)
        ax.plot(epochs, history[key], label=f"training {label}")
        if f"val_{key}" in history:
            ax.plot(epochs, history[f"val_{key}"], label=f"validation {label}")
        ax.set(xlabel="epoch", ylabel=label, yscale="log" if key == "loss" else "linear")
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.suptitle("Training and validation curves")
    _save(fig, path)


def plot_learning_rate(history: Mapping[str, Sequence[float]], path: Path) -> None:
    fig = Figure(figsize=(7, 3))
    ax = fig.add_subplot()
    ax.plot(np.arange(1, len(history["lr"]) + 1), history["lr"])
    ax.set(xlabel="epoch", ylabel="learning rate", title="Learning-rate schedule")
    ax.grid(True, alpha=0.3)
    _save(fig, path)


def plot_weight_histograms(weights: Mapping[str, np.ndarray], path: Path) -> None:
    """A histogram of each weight matrix after training."""
    n = max(1, len(weights))
    fig = Figure(figsize=(4 * n, 3.4), layout="constrained")
    for i, (name, w) in enumerate(weights.items()):
        ax = fig.add_subplot(1, n, i + 1)
        ax.hist(np.ravel(w), bins=50, color="tab:blue")
        ax.set(title=f"{name} {tuple(w.shape)}", xlabel="weight")
    fig.suptitle("Weights after training")
    _save(fig, path)


def _image_grid(images: Sequence[np.ndarray], titles: list[str], path: Path, suptitle: str,
                cmap: str, cols: int = 8) -> None:
    n = len(images)
    rows = (n + cols - 1) // cols
    fig = Figure(figsize=(1.4 * cols, 1.5 * rows + 0.4), layout="constrained")
    for i in range(n):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.imshow(images[i], cmap=cmap, interpolation="nearest")
        ax.set_title(titles[i], fontsize=7)
        ax.axis("off")
    fig.suptitle(suptitle)
    _save(fig, path)


def plot_filters(W: np.ndarray, path: Path) -> None:
    """First-layer convolution filters ``W`` (O, C, kH, kW), input channel 0 of each."""
    _image_grid(W[:, 0], [f"filter {o}" for o in range(W.shape[0])], path,
                "First-layer filters", cmap="RdBu_r")


def plot_feature_maps(image: np.ndarray, maps: np.ndarray, path: Path) -> None:
    """One example (H, W) and the feature maps (O, H', W') the first conv layer makes of it."""
    _image_grid([image, *maps], ["input"] + [f"map {o}" for o in
                range(len(maps))], path, "Feature maps of one example (first conv layer)",
                cmap="viridis")


def plot_confusion_matrix(cm: np.ndarray, path: Path) -> None:
    fig = Figure(figsize=(6, 5))
    ax = fig.add_subplot()
    im = ax.imshow(cm, cmap="Blues")
    fig.colorbar(im, ax=ax)
    k = cm.shape[0]
    ax.set(xticks=range(k), yticks=range(k), xlabel="predicted", ylabel="true",
           title="Confusion matrix (test set)")
    for i in range(k):
        for j in range(k):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8,
                    color="white" if cm[i, j] > cm.max() / 2 else "black")
    _save(fig, path)


def _as_picture(row: np.ndarray, shape: Sequence[int] | None) -> np.ndarray:
    """A raw input row -> (H, W) grey levels, or (H, W, 3) RGB in [0, 1] for 3-channel images."""
    if shape is None:  # square single-channel images
        side = int(round(np.sqrt(row.size)))
        return row.reshape(side, side)
    c, h, w = shape
    if c == 3:
        img = row.reshape(3, h, w).transpose(1, 2, 0)
        return img / max(float(img.max()), 1e-12)
    return row.reshape(c, h, w)[0]


def _digit_grid(images: np.ndarray, titles: list[str], path: Path, suptitle: str,
                colors: list[str] | None = None, cols: int = 10,
                shape: Sequence[int] | None = None) -> None:
    n = max(1, len(images))
    rows = (n + cols - 1) // cols
    fig = Figure(figsize=(1.3 * cols, 1.5 * rows + 0.5))
    for i, (img, title) in enumerate(zip(images, titles, strict=True)):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.imshow(_as_picture(img, shape), cmap="gray_r", interpolation="nearest")
        ax.set_title(title, fontsize=8, color=(colors[i] if colors else "black"))
        ax.axis("off")
    fig.suptitle(suptitle)
    _save(fig, path)


def plot_sample_digits(X: np.ndarray, y: np.ndarray, path: Path, per_class: int = 2,
                       shape: Sequence[int] | None = None) -> None:
    """A few examples of every class (``shape``: one input's (C, H, W); default square grey)."""
    idx = [i for c in np.unique(y) for i in np.flatnonzero(y == c)[:per_class]]
    _digit_grid(X[idx], [f"label {y[i]}" for i in idx], path, "Sample images", shape=shape)


def plot_sample_predictions(X: np.ndarray, y_true: np.ndarray, proba: np.ndarray, path: Path,
                            n_correct: int = 10, n_wrong: int = 10,
                            shape: Sequence[int] | None = None) -> None:
    """Correct predictions (green) and wrong ones (red), each with its confidence."""
    pred = proba.argmax(axis=1)
    right, wrong = np.flatnonzero(pred == y_true)[:n_correct], np.flatnonzero(pred != y_true)[:n_wrong]
    idx = np.concatenate([right, wrong]).astype(int)
    titles = [f"pred {pred[i]} ({proba[i, pred[i]]:.0%})\ntrue {y_true[i]}" for i in idx]
    colors = ["green"] * len(right) + ["red"] * len(wrong)
    _digit_grid(X[idx], titles, path,
                f"Sample predictions: {len(right)} correct, {len(wrong)} wrong shown", colors,
                shape=shape)


def write_history_csv(history: Mapping[str, Sequence[float]], path: Path) -> None:
    keys = list(history)
    with atomic_write(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["epoch", *keys])
        for e in range(len(history[keys[0]])):
            w.writerow([e + 1, *(f"{history[k][e]:.8g}" for k in keys)])


def write_report(out: Path, *, history: Mapping[str, Sequence[float]], n_classes: int,
                 y_train: np.ndarray, pred_train: np.ndarray, y_test: np.ndarray,
                 proba_test: np.ndarray, X_test_raw: np.ndarray,
                 extra: Mapping[str, Any],
                 weights: Mapping[str, np.ndarray] | None = None,
                 conv: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
                 image_shape: Sequence[int] | None = None) -> dict[str, Any]:
    """Write every report file into ``out``; returns the metrics written to metrics.json.

    ``X_test_raw`` rows are pictures of ``image_shape`` (C, H, W) (default: square, grey)."""
    out.mkdir(parents=True, exist_ok=True)
    pred_test = proba_test.argmax(axis=1)
    cm = metrics.confusion_matrix(y_test, pred_test, n_classes)
    initial, final = float(history["loss"][0]), float(history["loss"][-1])
    result: dict[str, Any] = {
        "test_accuracy": metrics.accuracy(y_test, pred_test),
        "train_accuracy": metrics.accuracy(y_train, pred_train),
        "initial_loss": initial,
        "final_loss": final,
        "loss_reduction": 1.0 - final / initial if initial > 0 else 0.0,
        **extra,
        "per_class": metrics.per_class(y_test, pred_test, n_classes),
    }
    write_text_atomic(out / "metrics.json", json.dumps(result, indent=2) + "\n")
    write_history_csv(history, out / "history.csv")
    write_text_atomic(out / "classification_report.txt",
                      metrics.classification_report(y_test, pred_test, n_classes))
    with atomic_write(out / "confusion_matrix.csv", "w") as f:
        np.savetxt(f, cm, fmt="%d", delimiter=",",
                   header=",".join(f"pred_{c}" for c in range(n_classes)), comments="")
    plot_training_loss(history, out / "training_loss.png")
    plot_curves(history, out / "training_curves.png")
    if "lr" in history:
        plot_learning_rate(history, out / "learning_rate.png")
    if weights:
        plot_weight_histograms(weights, out / "weight_histograms.png")
    if conv is not None:  # (first-layer filters, one example image, its feature maps)
        plot_filters(conv[0], out / "filters.png")
        plot_feature_maps(conv[1], conv[2], out / "feature_maps.png")
    plot_confusion_matrix(cm, out / "confusion_matrix.png")
    plot_sample_digits(X_test_raw, y_test, out / "sample_digits.png", shape=image_shape)
    plot_sample_predictions(X_test_raw, y_test, proba_test, out / "sample_predictions.png",
                            shape=image_shape)
    return result
