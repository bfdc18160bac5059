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
from matplotlib.ticker import MaxNLocator

from . import metrics
from .io import atomic_write, write_text_atomic


def _save(fig: Figure, path: Path) -> None:
    with atomic_write(path, "wb") as f:   # a killed run never leaves half a picture
        fig.savefig(f, format=Path(path).suffix.lstrip(".") or "png", dpi=110, bbox_inches="tight")


def _epoch_axis(ax: Any) -> None:
    """Epochs are whole numbers: integer ticks only."""
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _interrupted_note(history: Mapping[str, Sequence[float]], planned: int | None) -> str:
    done = len(history["loss"])
    return f" (interrupted at epoch {done} of {planned})" if planned and done < planned else ""


def plot_training_loss(history: Mapping[str, Sequence[float]], path: Path, title: str = "Training loss"
                       ) -> None:
    """Loss per epoch (log scale), with validation loss when recorded."""
    fig = Figure(figsize=(7, 4))
    ax = fig.add_subplot()
    epochs = np.arange(1, len(history["loss"]) + 1)
    ax.plot(epochs, history["loss"], label="training loss")
    if "val_loss" in history:
        ax.plot(epochs, history["val_loss"], label="validation loss")
    if "val_loss" in history and title == "Training loss":
        title = "Training and validation loss"
    ax.set(xlabel="epoch", ylabel="cross-entropy loss", yscale="log", title=title)
    _epoch_axis(ax)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    _save(fig, path)


def plot_curves(history: Mapping[str, Sequence[float]], path: Path,
                train_note: str | None = None, suffix: str = "") -> None:
    """Loss (left) and accuracy (right) per epoch, with the validation curves when recorded.

    ``train_note`` says how the training accuracy was measured when that is not plain
    inference, e.g. ``"dropout and augmentation on"``: it is each batch's accuracy during its
    own training step."""
    fig = Figure(figsize=(11, 4), layout="constrained")
    epochs = np.arange(1, len(history["loss"]) + 1)
    has_val = "val_loss" in history
    for i, (key, label) in enumerate((("loss", "loss"), ("accuracy", "accuracy"))):
        ax = fig.add_subplot(1, 2, i + 1)
        train_label = f"training {label}"
        if train_note and key == "accuracy":
            train_label += f"\n(measured with {train_note})"
        ax.plot(epochs, history[key], label=train_label)
        if f"val_{key}" in history:
            ax.plot(epochs, history[f"val_{key}"], label=f"validation {label}")
        ax.set(xlabel="epoch", ylabel=label, yscale="log" if key == "loss" else "linear")
        _epoch_axis(ax)
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.suptitle(("Training and validation curves" if has_val else
                  "Training curves (no validation data)") + suffix)
    _save(fig, path)


def plot_learning_rate(history: Mapping[str, Sequence[float]], path: Path) -> None:
    fig = Figure(figsize=(7, 3))
    ax = fig.add_subplot()
    ax.plot(np.arange(1, len(history["lr"]) + 1), history["lr"])
    ax.set(xlabel="epoch", ylabel="learning rate", title="Learning-rate schedule")
    _epoch_axis(ax)
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
                cmap: str, cols: int = 8, colorbar: str | None = None) -> None:
    """A grid of images; with ``colorbar`` (its label) all share one symmetric colour scale."""
    n = len(images)
    rows = (n + cols - 1) // cols
    fig = Figure(figsize=(1.4 * cols, 1.5 * rows + 0.4), layout="constrained")
    limit = max((float(np.abs(im).max()) for im in images), default=1.0) or 1.0
    scale = {"vmin": -limit, "vmax": limit} if colorbar else {}
    axes, shown = [], None
    for i in range(n):
        ax = fig.add_subplot(rows, cols, i + 1)
        shown = ax.imshow(images[i], cmap=cmap, interpolation="nearest", **scale)
        ax.set_title(titles[i], fontsize=7)
        ax.axis("off")
        axes.append(ax)
    if colorbar and shown is not None:
        fig.colorbar(shown, ax=axes, label=colorbar, shrink=0.8)
    fig.suptitle(suptitle)
    _save(fig, path)


def plot_filters(W: np.ndarray, path: Path) -> None:
    """First-layer convolution filters ``W`` (O, C, kH, kW), input channel 0 of each."""
    _image_grid(W[:, 0], [f"filter {o}" for o in range(W.shape[0])], path,
                "First-layer filters (input channel 0)", cmap="RdBu_r", colorbar="weight")


def plot_feature_maps(image: np.ndarray, maps: np.ndarray, path: Path) -> None:
    """One example (H, W) and the feature maps (O, H', W') the first conv layer makes of it."""
    _image_grid([image, *maps], ["input"] + [f"map {o}" for o in
                range(len(maps))], path, "Feature maps of one example (first conv layer)",
                cmap="viridis")


def plot_dynamics(record: Mapping[str, Any], path: Path) -> None:
    """The training dynamics of :class:`nnscratch.dynamics.TrainingDynamics`: gradient norms,
    update-to-weight ratios and dead ReLUs per epoch (top), weight histograms over time, one
    panel per layer (bottom, darker = later)."""
    from matplotlib import colormaps

    layers = list(record["grad_norm"])
    n = max(1, len(layers))
    fig = Figure(figsize=(max(12, 3.2 * n), 7.5), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[1, 1])
    axes = top.subplots(1, 3)
    epochs = record["epochs"]
    for key, ax, title, log in (("grad_norm", axes[0], "gradient norm ||dL/dW|| (probe batch)", True),
                                ("update_ratio", axes[1], "update / weight ||dW|| / ||W|| per epoch",
                                 True),
                                ("dead_relu", axes[2], "dead ReLU units (fraction)", False)):
        for name, values in record[key].items():
            if values:
                ax.plot(epochs[-len(values):], values, label=name)
        ax.set(xlabel="epoch", title=title, yscale="log" if log else "linear")
        if not log:
            ax.set_ylim(-0.02, 1.02)
        _epoch_axis(ax)
        ax.grid(True, alpha=0.3)
        if record[key]:
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, "no ReLU layers", ha="center", va="center", transform=ax.transAxes)
    cmap = colormaps["viridis_r"]
    hax = bottom.subplots(1, n, squeeze=False)[0]
    for ax, name in zip(hax, layers, strict=False):
        hists = record["histograms"][name]
        last = max(1, max((h["epoch"] for h in hists), default=1))
        for h in hists:
            edges = np.asarray(h["edges"])
            ax.stairs(h["counts"], edges, color=cmap(0.15 + 0.85 * h["epoch"] / last),
                      label=f"epoch {h['epoch']}")
        ax.set(title=f"weights of {name}", xlabel="weight")
        ax.legend(fontsize=6)
    fig.suptitle("Training dynamics per layer")
    _save(fig, path)


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
                 image_shape: Sequence[int] | None = None,
                 dynamics: Mapping[str, Any] | None = None,
                 train_note: str | None = None,
                 planned_epochs: int | None = None) -> dict[str, Any]:
    """Write every report file into ``out``; returns the metrics written to metrics.json.

    ``X_test_raw`` rows are pictures of ``image_shape`` (C, H, W) (default: square, grey).
    ``dynamics`` is a :class:`nnscratch.dynamics.TrainingDynamics` record (``dynamics.png``
    and metrics.json's ``dynamics``); ``train_note`` how the training accuracy was measured;
    ``planned_epochs`` the run's planned length (a shorter history is marked interrupted)."""
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
    suffix = _interrupted_note(history, planned_epochs)
    if suffix:
        result["interrupted_at_epoch"] = len(history["loss"])
    if dynamics is not None:
        result["dynamics"] = dict(dynamics)
    write_text_atomic(out / "metrics.json", json.dumps(result, indent=2) + "\n")
    write_history_csv(history, out / "history.csv")
    write_text_atomic(out / "classification_report.txt",
                      metrics.classification_report(y_test, pred_test, n_classes))
    with atomic_write(out / "confusion_matrix.csv", "w") as f:
        np.savetxt(f, cm, fmt="%d", delimiter=",",
                   header=",".join(f"pred_{c}" for c in range(n_classes)), comments="")
    plot_training_loss(history, out / "training_loss.png",
                       ("Training loss" if "val_loss" not in history
                        else "Training and validation loss") + suffix)
    plot_curves(history, out / "training_curves.png", train_note, suffix)
    if "lr" in history and len(set(history["lr"])) > 1:   # no chart for a constant rate
        plot_learning_rate(history, out / "learning_rate.png")
    if dynamics is not None and dynamics.get("epochs"):
        plot_dynamics(dynamics, out / "dynamics.png")
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
