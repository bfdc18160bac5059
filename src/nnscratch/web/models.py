"""The models ``nnscratch serve`` serves: loaded once at start-up, chosen by name, never by path.

Given model files, each is named after its file's stem (made unique: ``model``, ``model-2``). Given
none, the digits MLP and the digits CNN (the settings of ``configs/digits_mlp.toml`` and
``configs/digits_cnn.toml``, seed 0) are trained at start-up through the same code as
``nnscratch train``, into run folders under a cache folder, and loaded from there next time.

Prediction goes through the package's one image path (:func:`nnscratch.data.inputs.picture_to_input`,
:func:`nnscratch.data.as_rows`, :func:`nnscratch.data.apply_preprocessing`), as ``nnscratch
predict`` does, so a picture gets the same answer from both.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..data import apply_preprocessing, as_rows, input_format
from ..data.inputs import picture_to_input
from ..errors import InputError
from ..model import Sequential, load_model

#: the settings of configs/digits_mlp.toml and configs/digits_cnn.toml (a test keeps them equal),
#: written here because the configs folder is not part of the installed package
DEFAULT_SETTINGS: dict[str, dict[str, Any]] = {
    "digits-mlp": {"hidden": [256, 128], "activation": "relu", "dropout": 0.2, "optimizer": "adam",
                   "lr": 0.001, "schedule": "cosine", "epochs": 100, "batch_size": 32},
    "digits-cnn": {"arch": "cnn", "channels": [32, 64], "batch_norm": True, "dropout": 0.3,
                   "hidden": [], "augment": 1, "optimizer": "adam", "lr": 0.001,
                   "schedule": "cosine", "epochs": 60, "batch_size": 32},
}


def default_cache_dir() -> Path:
    """``$NNSCRATCH_CACHE/serve``, else ``$XDG_CACHE_HOME/nnscratch/serve``, else ``~/.cache/...``."""
    if os.environ.get("NNSCRATCH_CACHE"):
        return Path(os.environ["NNSCRATCH_CACHE"]) / "serve"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "nnscratch" / "serve"


@dataclass
class ServedModel:
    """One model as served: its name, the model, and what its run report says about it."""

    name: str
    model: Sequential
    path: Path
    report: dict[str, Any] = field(default_factory=dict)   # test_accuracy, confusion_matrix, ...

    def __post_init__(self) -> None:
        self.kind, self.shape, self.raw_max = input_format(self.model.preprocessing)
        c, h, w = self.shape
        if c != 1 or h * w != self.model.n_features_in:
            raise InputError(f"{self.path}: serve takes models of single-channel pictures; this "
                             f"one takes {self.model.n_features_in} inputs of shape {self.shape}")
        self.first_conv = _first_conv_block(self.model)

    @property
    def input_hw(self) -> tuple[int, int]:
        return self.shape[1], self.shape[2]

    def describe(self) -> dict[str, Any]:
        """The entry of GET /api/models."""
        config = (self.model.metadata.get("config") or {}) if isinstance(self.model.metadata, dict) else {}
        return {"name": self.name, "input_shape": list(self.input_hw),
                "input_format": self.kind, "raw_max": self.raw_max,
                "n_classes": int(self.model.n_outputs),
                "architecture": "cnn" if self.first_conv is not None else "mlp",
                "dataset": str(config.get("dataset", "digits")) if isinstance(config, dict) else None,
                "n_params": int(self.model.n_params),
                "test_accuracy": self.report.get("test_accuracy"),
                "confusion_matrix": self.report.get("confusion_matrix"),
                "report": self.report.get("note"),
                "feature_maps": self.first_conv is not None}

    # -- the image path: the same calls as `nnscratch predict` --------------------------------
    def raw_from_picture(self, picture: Any) -> np.ndarray:
        """A PIL image -> one raw row (1, H*W) in the dataset's scale, as ``nnscratch predict``
        reads a picture file (``load_inputs``)."""
        return as_rows(picture_to_input(picture, self.model.preprocessing), "image", self.shape,
                       self.raw_max)

    def raw_from_pixels(self, pixels: Any) -> np.ndarray:
        """A 2-D array of the model's input size in the dataset's raw scale -> one raw row."""
        h, w = self.input_hw
        if len(pixels) != h or any(len(row) != w for row in pixels):
            got = f"{len(pixels)} rows of {sorted({len(row) for row in pixels})} values"
            raise InputError(f"pixels: expected a {h}x{w} array for model {self.name!r}, got {got}")
        arr = np.asarray(pixels, dtype=np.float64)
        if arr.shape != (h, w):
            raise InputError(f"pixels: expected a {h}x{w} array for model {self.name!r}, got "
                             f"shape {arr.shape}")
        return as_rows(arr, "pixels", self.shape, self.raw_max)

    def predict(self, raw: np.ndarray, feature_maps: bool = False) -> dict[str, Any]:
        """The answer of POST /api/predict for one raw row."""
        X = apply_preprocessing(raw, self.model.preprocessing)   # exactly as cmd_predict
        proba = self.model.predict_proba(X)[0]
        seen = X if self.model.preprocessing.get("scale") is not None else raw / self.raw_max
        h, w = self.input_hw
        answer: dict[str, Any] = {
            "model": self.name, "digit": int(np.argmax(proba)),
            "probabilities": [float(p) for p in proba],
            "input": np.clip(seen.reshape(h, w), 0.0, 1.0).tolist()}
        if feature_maps:
            answer["feature_maps"] = self.feature_maps(X) if self.first_conv is not None else None
        return answer

    def feature_maps(self, X: np.ndarray) -> list[Any]:
        """The first conv block's output (conv and the shape-keeping layers after it: batch
        norm, activation) for one preprocessed row: (channels, H', W')."""
        model = self.model
        h = model.backend.asarray(np.asarray(X, dtype=model.dtype).reshape(1, *model.input_shape))
        for layer in model.layers[:self.first_conv]:
            h = layer.forward(h, False)    # prediction: changes nothing in the layer
        maps = np.asarray(model.backend.to_numpy(h[0]), dtype=np.float64)
        return np.round(maps, 5).tolist()


def _first_conv_block(model: Sequential) -> int | None:
    """The end (exclusive) of the first conv block, or None for a model without Conv2D."""
    from ..layers import Conv2D

    convs = [i for i, layer in enumerate(model.layers) if isinstance(layer, Conv2D)]
    if not convs:
        return None
    i = end = convs[0]
    end += 1
    while (end < len(model.layers) and not isinstance(model.layers[end], Conv2D)
           and model.output_shapes[end] == model.output_shapes[i]):
        end += 1
    return end


def read_run_report(model_path: Path) -> dict[str, Any]:
    """test_accuracy and confusion matrix from the run folder holding ``model_path`` (the
    metrics.json and confusion_matrix.csv that ``nnscratch train`` writes beside the model)."""
    folder = model_path.parent
    metrics_file, cm_file = folder / "metrics.json", folder / "confusion_matrix.csv"
    if not metrics_file.is_file():
        return {"note": f"no run report beside {model_path.name} (no metrics.json in {folder})"}
    report: dict[str, Any] = {"note": f"run report in {folder}"}
    try:
        metrics = json.loads(metrics_file.read_text())
        acc = metrics.get("test_accuracy")
        report["test_accuracy"] = float(acc) if isinstance(acc, int | float) else None
        if cm_file.is_file():
            cm = np.loadtxt(cm_file, delimiter=",", skiprows=1, dtype=np.int64, ndmin=2)
            report["confusion_matrix"] = cm.tolist()
    except (OSError, ValueError) as exc:
        report["note"] = f"unreadable run report in {folder} ({type(exc).__name__})"
    return report


def unique_names(paths: list[Path]) -> list[str]:
    """Each file's stem, made unique with -2, -3, ... in the order given."""
    names: list[str] = []
    for p in paths:
        name, k = p.stem, 2
        while name in names:
            name, k = f"{p.stem}-{k}", k + 1
        names.append(name)
    return names


def load_served(paths: list[Path]) -> list[ServedModel]:
    """Load each model file once (with its run report, if it sits in a run folder)."""
    served = []
    for name, path in zip(unique_names(paths), paths, strict=True):
        served.append(ServedModel(name, load_model(path), path, read_run_report(path)))
    return served


def default_models(cache: Path, epochs: int | None = None, quiet: bool = False) -> list[Path]:
    """The digits MLP and CNN: trained into ``cache`` (run folders, as ``nnscratch train``
    writes them) unless a previous start-up left them there. ``epochs`` shortens training (tests)."""
    from ..config import build_optimizer, build_schedule, train_config
    from ..data import load_dataset
    from ..recipe import build_model

    paths = []
    for name, settings in DEFAULT_SETTINGS.items():
        cfg = train_config(settings, {"seed": 0} | ({"epochs": epochs} if epochs else {}))
        key = hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:12]
        run = cache / f"{name}-{key}"
        path = run / "model.safetensors"
        if path.is_file() and (run / "metrics.json").is_file():
            if not quiet:
                print(f"nnscratch serve: {name}: loading {path}", file=sys.stderr, flush=True)
        else:
            if not quiet:
                print(f"nnscratch serve: {name}: training {cfg['epochs']} epochs into {run} "
                      "(once; later start-ups load it)", file=sys.stderr, flush=True)
            from ..cli import _train_and_report  # the very code of `nnscratch train`

            split = load_dataset(cfg["dataset"])
            model = build_model(cfg, split.info)
            model.metadata = {"split": split.info, "config": cfg}
            partial = cache / f".{run.name}.{os.getpid()}"   # renamed once complete
            if _train_and_report(partial, cfg, model, build_optimizer(cfg), build_schedule(cfg),
                                 split, quiet=quiet) != 0:
                raise KeyboardInterrupt
            try:
                partial.replace(run)
            except OSError:   # another start-up finished first: use its run folder
                import shutil

                shutil.rmtree(partial, ignore_errors=True)
        paths.append(path)
    return paths


def default_served(cache: Path, epochs: int | None = None, quiet: bool = False) -> list[ServedModel]:
    paths = default_models(cache, epochs, quiet)
    return [ServedModel(name, load_model(p), p, read_run_report(p))
            for name, p in zip(DEFAULT_SETTINGS, paths, strict=True)]
