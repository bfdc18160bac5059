"""``nnscratch`` command line: train, evaluate, predict, cv, gradcheck, export, serve.

Every failure the user can cause (bad flag, bad file, bad data) ends with one line on stderr and a
non-zero exit status, never a traceback (``NNSCRATCH_DEBUG=1`` adds one, for bug reports).

Ctrl-C (SIGINT) or SIGTERM during ``train`` or ``cv`` stops after the current batch, writes a
checkpoint, prints one line and exits 130 or 143 (:mod:`nnscratch.interrupts`); a second one
exits at once. ``NNSCRATCH_PROGRESS=1`` prints ``epoch N done`` on stderr after each epoch.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from . import __version__, interrupts
from .backend import get_backend
from .callbacks import Callback, EarlyStopping, ModelCheckpoint, training_state
from .config import (
    ACTIVATIONS,
    OPTIMIZER_CHOICES,
    SCHEDULE_CHOICES,
    TRAIN_DEFAULTS,
    build_optimizer,
    build_schedule,
    load_toml,
    train_config,
)
from .data import DATASET_CHOICES, apply_preprocessing, input_format, load_dataset, load_inputs
from .data.inputs import IMAGE_SUFFIXES
from .errors import InputError, NNScratchError
from .layers import Conv2D
from .losses import SoftmaxCrossEntropy
from .model import Sequential, load_model
from .recipe import build_augment, build_model
from .training import History, restore_training_state

EXIT_ERROR = 1
EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors in one line (and the exit status 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _int_at_least(low: int):  # type: ignore[no-untyped-def]
    """An argparse type: an integer >= ``low``, with a message quoting the bad value."""
    what = "a positive integer" if low == 1 else f"an integer >= {low}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if value < low:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


_positive_int, _non_negative_int = _int_at_least(1), _int_at_least(0)


def _float_where(ok: Any, what: str):  # type: ignore[no-untyped-def]
    """An argparse type: a float for which ``ok(value)`` holds (NaN never does)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not ok(value):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


_fraction = _float_where(lambda v: 0 <= v < 1, "a number in [0, 1)")
_non_negative_float = _float_where(lambda v: 0 <= v < float("inf"), "a number >= 0")
_positive_float = _float_where(lambda v: 0 < v < float("inf"), "a finite positive number")


def _add_training_flags(t: argparse.ArgumentParser) -> None:
    """The settings shared by ``train`` and ``cv`` (see :data:`nnscratch.config.TRAIN_DEFAULTS`)."""
    t.add_argument("--config", type=Path, help="TOML file of settings (flags override it)")
    t.add_argument("--dataset", metavar="NAME",
                   help=f"one of {', '.join(DATASET_CHOICES)} (default digits; mnist5k needs "
                   "pip install 'nnscratch[mnist]'; idx:/cifar10: read files you already have)")
    t.add_argument("--epochs", type=_positive_int, help="default 1000")
    t.add_argument("--batch-size", type=_positive_int, help="default 32")
    t.add_argument("--arch", choices=["mlp", "cnn"],
                   help="network family (default mlp); cnn: a conv net suited to the dataset, "
                   "whose settings the other flags override")
    t.add_argument("--channels", type=_positive_int, nargs="+", metavar="C",
                   help="cnn: channels of each 3x3 conv layer (default 32 64)")
    t.add_argument("--pool", choices=["last", "each"],
                   help="cnn: a 2x2 max-pool after the last conv layer or after each one")
    t.add_argument("--augment", type=_int_at_least(0), metavar="PIXELS",
                   help="random shifts of up to PIXELS during training (0: off)")
    t.add_argument("--hidden", type=_positive_int, nargs="+", metavar="N",
                   help="hidden layer sizes, e.g. --hidden 256 128 64 (default 32)")
    t.add_argument("--activation", choices=list(ACTIVATIONS), help="default relu")
    t.add_argument("--optimizer", choices=OPTIMIZER_CHOICES, help="default sgd")
    t.add_argument("--lr", type=_positive_float, help="learning rate (default 0.1)")
    t.add_argument("--momentum", type=_fraction, help="default 0.9 for momentum/nesterov, else 0")
    t.add_argument("--weight-decay", type=_non_negative_float,
                   help="L2 (decoupled for adamw); default: the optimizer's (0, adamw 0.01)")
    t.add_argument("--clip-norm", type=_positive_float, help="clip the global gradient norm")
    t.add_argument("--dropout", type=_fraction, help="dropout probability after each hidden layer")
    t.add_argument("--batch-norm", action=argparse.BooleanOptionalAction, default=None,
                   help="batch norm after each hidden Dense layer")
    t.add_argument("--schedule", choices=SCHEDULE_CHOICES, help="learning-rate schedule")
    t.add_argument("--warmup", type=_non_negative_int, help="epochs of linear warm-up")
    t.add_argument("--early-stopping", type=_positive_int, metavar="PATIENCE",
                   help="stop when val_loss has not improved for PATIENCE epochs")
    t.add_argument("--validation-split", type=_fraction, help="fraction held out for validation")
    t.add_argument("--checkpoint-every", type=_positive_int, metavar="N",
                   help="save RUN_DIR/checkpoints/epochNNNN.safetensors every N epochs")
    t.add_argument("--seed", type=_non_negative_int, help="weights and shuffling (default 0)")
    t.add_argument("--dtype", choices=["float32", "float64"])
    t.add_argument("--accelerate", action=argparse.BooleanOptionalAction, default=None,
                   help="train through nnscratch.accel's fast kernels (default); "
                        "--no-accelerate runs only the layers' own code")
    t.add_argument("--device", default="cpu", metavar="DEVICE",
                   help="cpu (default), or cuda / cuda:N to compute on a GPU with CuPy "
                   "(pip install 'nnscratch[cuda]')")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="nnscratch", description="Neural networks from scratch in NumPy.")
    parser.add_argument("--version", action="version", version=f"nnscratch {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    t = sub.add_parser("train", help="train a model and write its run report",
                       description="Train a classifier (default: the seed 64-32-10 network on "
                       "the 8x8 digits, SGD lr 0.1, batch 32, 1000 epochs) and write a run folder "
                       "with the model and its report. Settings come from the defaults, then "
                       "--config FILE.toml (the same keys, with underscores), then the flags.")
    _add_training_flags(t)
    t.add_argument("--out", type=Path, default=None, help="run folder (default runs/<timestamp>)")
    t.add_argument("--resume", type=Path, metavar="RUN_DIR",
                   help="continue RUN_DIR from its latest checkpoint to its planned epochs")
    t.add_argument("--quiet", action="store_true", help="no progress bar, no summary")
    t.add_argument("--dynamics", action=argparse.BooleanOptionalAction, default=True,
                   help="record gradient norms, update/weight ratios, dead ReLUs and weight "
                   "histograms per layer and epoch (dynamics.png, metrics.json; default on)")

    e = sub.add_parser("evaluate", help="accuracy and classification report on the test split")
    e.add_argument("model", type=Path, help="a model.safetensors written by train")
    e.add_argument("--dataset", metavar="NAME", help="the test split of this dataset instead of "
                   "the one the model was trained on (e.g. idx:DIR after moving the files)")

    p = sub.add_parser("predict", help="predict classes of arrays or pictures",
                       description="INPUT: .npy/.csv/.txt holding inputs in the model's dataset "
                       "format (digits: 8x8 or 64 values in 0..16; MNIST: 28x28 or 784 values in "
                       "0..255), or a picture (PNG/JPEG, any size; digits on a dark or light "
                       "background are brought to the dataset's format as it was made).")
    p.add_argument("model", type=Path, metavar="[MODEL]",
                   help="a model.safetensors written by train; left out, the newest "
                   "runs/*/model.safetensors is used (and named)")
    p.add_argument("inputs", nargs="*", metavar="INPUT")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    c = sub.add_parser("cv", help="stratified k-fold cross-validation of a configuration",
                       description="Train the configuration (same settings as train) on k "
                       "stratified folds of the whole dataset (train and test parts); print "
                       "per-fold and mean "
                       "+- std validation accuracy; write cv.json and cv_curves.png.")
    c.add_argument("--folds", type=_int_at_least(2), default=5, help="default 5")
    _add_training_flags(c)
    c.add_argument("--out", type=Path, default=None, help="report folder (default runs/cv-<time>)")
    c.add_argument("--quiet", action="store_true", help="no progress bar")

    s = sub.add_parser("sweep", help="cross-validate a grid of training settings (local or Dask)",
                       description="Cross-validate every setting of a grid file (the config "
                       "file's keys: a list is a set of values to sweep, e.g. lr = [0.1, 0.01] "
                       "or hidden = [[32], [64, 32]]; a scalar is fixed) with k stratified folds "
                       "of the whole dataset; write sweep.csv and sweep.png and print the best "
                       "setting as a nnscratch train command. Runs on local processes, or on a "
                       "Dask cluster with --scheduler.")
    s.add_argument("--grid", type=Path, required=True, metavar="FILE.toml")
    s.add_argument("--folds", type=_int_at_least(2), default=5, help="default 5")
    s.add_argument("--search", choices=["grid", "random", "halving"], default="grid",
                   help="every setting (default), --n-iter random ones, or successive halving "
                   "over epochs (a third of the settings go on, with 3x the epochs, each round)")
    s.add_argument("--n-iter", type=_positive_int, metavar="N",
                   help="random/halving: how many settings to draw (default: all)")
    s.add_argument("--jobs", type=_positive_int, default=None, metavar="N",
                   help="local worker processes (default: one per CPU core)")
    s.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                   help="run on this Dask scheduler's workers (pip install 'nnscratch[dask]')")
    s.add_argument("--scheduler-timeout", type=_positive_float, default=20.0, metavar="SECONDS",
                   help="how long to try to reach --scheduler before giving up (default 20)")
    s.add_argument("--out", type=Path, default=None, help="results folder (default "
                   "runs/<timestamp>)")
    s.add_argument("--quiet", action="store_true", help="no progress bar")

    g = sub.add_parser("gradcheck", help="check every layer's and loss's gradients numerically",
                       description="Compare each layer's and loss's backward pass with central "
                       "differences, (f(a + eps) - f(a - eps)) / (2 eps), in float64: every layer "
                       "of nnscratch.layers and every loss. PASS when the largest relative error "
                       "is at most the tolerance.")
    g.add_argument("--verbose", action="store_true",
                   help="print a few entries of each gradient: numeric next to analytic")
    _add_export_parser(sub)
    _add_serve_parser(sub)
    return parser


def _add_serve_parser(sub: Any) -> None:
    s = sub.add_parser("serve", help="the draw-a-digit page and its JSON API",
                       description="Serve the models (default: the digits MLP and CNN, trained at "
                       "the first start-up into a cache folder) on a web page where you draw a "
                       "digit, and a JSON API (/api/models, /api/predict, /openapi.json).")
    s.add_argument("models", type=Path, nargs="*", metavar="MODEL.safetensors")
    s.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1 (this machine only)")
    s.add_argument("--port", type=_int_at_least(0), default=8000, help="default 8000")
    s.add_argument("--cache", type=Path, metavar="DIR", help="where the default models are "
                   "trained and kept (default $NNSCRATCH_CACHE/serve or ~/.cache/nnscratch/serve)")
    s.add_argument("--epochs", type=_positive_int, help="train the default models for N epochs "
                   "instead of their configs' 100 and 60 (quick start-ups, tests)")


def cmd_serve(args: argparse.Namespace) -> int:
    if args.models and (args.cache or args.epochs):
        raise InputError("--cache and --epochs are for the default models; give no model files")
    from .web.server import serve

    return serve(args.models, host=args.host, port=args.port, cache=args.cache, epochs=args.epochs)


def _run_dir(out: Path | None) -> Path:
    if out is not None:
        return out
    base = Path("runs") / datetime.now().strftime("%Y%m%d-%H%M%S")
    path, i = base, 1
    while path.exists():
        path, i = Path(f"{base}-{i}"), i + 1
    return path


def _blas_info() -> list[dict[str, Any]]:
    from threadpoolctl import threadpool_info

    keys = ("internal_api", "version", "num_threads", "architecture", "threading_layer")
    return [{k: lib.get(k) for k in keys} for lib in threadpool_info()]


def cmd_train(args: argparse.Namespace) -> int:
    get_backend(args.device)  # an unusable device fails before any work is done
    if args.resume is not None:
        return _resume(args)
    out = _run_dir(args.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out}: exists and is not a directory")
    cfg = _settings(args)
    split = load_dataset(cfg["dataset"])
    model = build_model(cfg, split.info, device=args.device)
    model.metadata = {"split": split.info, "config": cfg}
    return _train_and_report(out, cfg, model, build_optimizer(cfg), build_schedule(cfg), split,
                             quiet=args.quiet, dynamics=args.dynamics)


def _resume(args: argparse.Namespace) -> int:
    """Continue RUN_DIR from its latest checkpoint, in place, to the epochs it was started with."""
    # (--accelerate / --no-accelerate may be given: it changes how fast, not what is computed)
    given = [k for k in TRAIN_DEFAULTS if getattr(args, k, None) is not None and k != "accelerate"]
    if given or args.config or args.out:
        raise InputError("--resume continues a run with its own settings; give no other "
                         f"settings (got {', '.join(given) or '--config/--out'})")
    run = Path(args.resume)
    ckpts = sorted((run / "checkpoints").glob("epoch*.safetensors"))
    if not ckpts:
        raise InputError(f"--resume {run}: no checkpoints in {run / 'checkpoints'} "
                         "(train with --checkpoint-every N)")
    model = load_model(ckpts[-1], device=args.device)
    cfg = model.metadata.get("config")
    if not isinstance(cfg, dict):
        raise InputError(f"{ckpts[-1]}: not a resumable checkpoint (no run config)")
    cfg = train_config(cfg)
    if args.accelerate is not None:
        cfg["accelerate"] = args.accelerate
    model.accelerate = bool(cfg.get("accelerate", True))   # (the run's own setting by default)
    optimizer, schedule = build_optimizer(cfg), build_schedule(cfg)
    callbacks = _callbacks(run, cfg)
    try:
        epoch, history = restore_training_state(model, optimizer, schedule, callbacks)
    except ValueError as exc:
        raise InputError(f"{ckpts[-1]}: {exc}") from None
    if not args.quiet:
        print(f"resuming {run} at epoch {epoch} of {cfg['epochs']}")
    split = load_dataset(cfg["dataset"])
    return _train_and_report(run, cfg, model, optimizer, schedule, split, quiet=args.quiet,
                             initial_epoch=epoch, history=history, callbacks=callbacks,
                             dynamics=args.dynamics)


class _EpochTrace(Callback):
    """``epoch N done`` on stderr after each epoch (``NNSCRATCH_PROGRESS=1``; for scripts and
    the interrupt tests)."""

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        print(f"epoch {epoch} done", file=sys.stderr, flush=True)


def _callbacks(out: Path, cfg: dict[str, Any]) -> list[Any]:
    """The run's callbacks, in an order a resumed run rebuilds exactly (their state is matched
    by position in the checkpoint)."""
    callbacks: list[Any] = []
    if cfg["early_stopping"]:
        callbacks.append(EarlyStopping("val_loss", patience=cfg["early_stopping"]))
    if cfg["checkpoint_every"]:
        callbacks.append(ModelCheckpoint(str(out / "checkpoints" / "epoch{epoch:04d}.safetensors"),
                                         every=cfg["checkpoint_every"], training_state=True))
    if os.environ.get("NNSCRATCH_PROGRESS"):
        callbacks.append(_EpochTrace())
    return callbacks


def _save_interrupted(out: Path, model: Sequential, stop: interrupts.TrainingInterrupted,
                      name: str = "epoch{epoch:04d}.safetensors") -> Path:
    """The checkpoint of an interrupted run: the state at the end of its last whole epoch."""
    done = stop.epoch - 1
    path = out / "checkpoints" / name.format(epoch=done)
    model.save(path, training_state=training_state(stop.run, done))
    return path


def _train_and_report(out: Path, cfg: dict[str, Any], model: Sequential, optimizer: Any,
                      schedule: Any, split: Any, quiet: bool, initial_epoch: int = 0,
                      history: History | None = None, callbacks: list[Any] | None = None,
                      dynamics: bool = True) -> int:
    X_train = apply_preprocessing(split.X_train, model.preprocessing, model.dtype)
    X_test = apply_preprocessing(split.X_test, model.preprocessing, model.dtype)
    if callbacks is None:
        callbacks = _callbacks(out, cfg)
    watcher = None
    if dynamics:   # a callback between epochs, last (the others' checkpointed positions stay):
        from .dynamics import TrainingDynamics  # the training path, accelerated or not, is kept

        watcher = TrainingDynamics(X_train[:128], split.y_train[:128], SoftmaxCrossEntropy())
        callbacks = [*callbacks, watcher]
    if cfg["checkpoint_every"]:
        (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with interrupts.handle_signals():
        try:
            history = model.fit(X_train, split.y_train, epochs=cfg["epochs"],
                                batch_size=cfg["batch_size"], optimizer=optimizer,
                                loss=SoftmaxCrossEntropy(), schedule=schedule,
                                validation_split=float(cfg["validation_split"]),
                                callbacks=callbacks, verbose=not quiet,
                                initial_epoch=initial_epoch, history=history,
                                augment=build_augment(cfg, model, split.info))
        except interrupts.TrainingInterrupted as stop:   # Ctrl-C or SIGTERM: keep the run
            _save_interrupted(out, model, stop)
            print(f"interrupted at epoch {stop.epoch}; resume with: nnscratch train --resume "
                  f"{out}", file=sys.stderr, flush=True)
            return interrupts.exit_status(stop.signum)
    seconds = time.perf_counter() - start
    out.mkdir(parents=True, exist_ok=True)  # only now: a failed run leaves no empty folder
    model.save(out / "model.safetensors")  # first, so a failing plot never loses the model
    extra = {"epochs": len(history), "train_seconds": round(seconds, 4), "seed": cfg["seed"],
             "config": cfg, "split": split.info, "blas": _blas_info(),
             "nnscratch_version": __version__, "device": model.device}
    if initial_epoch:
        extra["resumed_at_epoch"] = initial_epoch
    noted = [what for what, on in (("dropout", any(type(la).__name__ == "Dropout"
                                                   for la in model.layers)),
                                   ("augmentation", bool(cfg.get("augment")))) if on]
    try:
        result = _write_report(out, model, history, split, X_train, X_test, extra,
                               watcher.record if watcher else None,
                               " and ".join(noted) + " on" if noted else None, cfg["epochs"])
    except KeyboardInterrupt:   # the model is saved; say that the report is not complete
        (out / "REPORT_INCOMPLETE.txt").write_text(
            "The run report was cut short by Ctrl-C while it was being written: some files of "
            "this folder are missing or partial. The model (model.safetensors) is complete.\n")
        print(f"nnscratch train: interrupted while writing the report; the model is saved in "
              f"{out / 'model.safetensors'}, the report is incomplete "
              f"(see {out / 'REPORT_INCOMPLETE.txt'})", file=sys.stderr)
        return 130
    (out / "REPORT_INCOMPLETE.txt").unlink(missing_ok=True)
    if not quiet:
        print(f"test accuracy {result['test_accuracy']:.4f}, train accuracy "
              f"{result['train_accuracy']:.4f}, loss {result['initial_loss']:.4f} -> "
              f"{result['final_loss']:.6f} ({result['loss_reduction']:.2%} lower), "
              f"{seconds:.2f} s for {len(history) - initial_epoch} epochs")
        print(f"run folder: {out}")
    return 0


def _write_report(out: Path, model: Sequential, history: History, split: Any,
                  X_train: np.ndarray, X_test: np.ndarray, extra: dict[str, Any],
                  dynamics: Any, train_note: str | None, planned: int) -> dict[str, Any]:
    from .report import write_report  # matplotlib: imported only when a report is written

    return write_report(out, history=history.history, n_classes=model.n_outputs,
                        y_train=split.y_train, image_shape=split.info.get("input_shape"),
                        pred_train=model.predict(X_train), y_test=split.y_test,
                        proba_test=model.predict_proba(X_test), X_test_raw=split.X_test,
                        extra=extra, weights={name: model.backend.to_numpy(p)
                                              for name, p, _ in model.named_parameters()
                                              if name.endswith(".W")},
                        conv=_first_conv_pictures(model, X_test[0]), dynamics=dynamics,
                        train_note=train_note, planned_epochs=planned)


def _first_conv_pictures(model: Sequential, x: np.ndarray) -> Any:
    """(filters, the example as an image, the first conv block's feature maps), for CNNs."""
    convs = [i for i, layer in enumerate(model.layers) if isinstance(layer, Conv2D)]
    if not convs:
        return None
    i = convs[0]
    h = np.asarray(x, dtype=model.dtype).reshape(1, *model.input_shape)
    image = h[0, 0]
    end = i + 1  # the block: the conv layer and the shape-keeping layers after it (BN, ReLU)
    while (end < len(model.layers) and not isinstance(model.layers[end], Conv2D)
           and model.output_shapes[end] == model.output_shapes[i]):
        end += 1
    h = model.backend.asarray(h)
    for layer in model.layers[:end]:
        h = layer.forward(h, False)
    to_numpy = model.backend.to_numpy
    return to_numpy(model.layers[i].params["W"]), image, to_numpy(h[0])


def _test_split_of(model: Sequential, path: Path, dataset: str | None) -> tuple[np.ndarray, np.ndarray]:
    """The preprocessed test split of ``dataset`` (default: the one the model was trained on)."""
    info = model.metadata.get("split") or {}
    name = dataset or info.get("dataset", "digits")
    if not isinstance(name, str):
        raise InputError(f"{path}: invalid dataset name in the model header")
    split = load_dataset(name)
    n_features = int(np.prod(split.info["input_shape"]))
    if n_features != model.n_features_in:
        raise InputError(f"{path}: the model takes {model.n_features_in} inputs but the "
                         f"{name} images have {n_features}; give --dataset the model's dataset")
    if int(split.info["n_classes"]) > model.n_outputs:
        raise InputError(f"{path}: the model predicts {model.n_outputs} classes but {name} has "
                         f"{split.info['n_classes']}")
    return apply_preprocessing(split.X_test, model.preprocessing, model.dtype), split.y_test


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .metrics import classification_report

    model = load_model(args.model)
    X_test, y_test = _test_split_of(model, args.model, args.dataset)
    pred = model.predict(X_test)
    print(f"test accuracy: {float((pred == y_test).mean()):.4f} ({int((pred == y_test).sum())}"
          f"/{len(y_test)})")
    print(classification_report(y_test, pred, model.n_outputs))
    return 0


def _ascii_picture(row: np.ndarray, shape: tuple[int, int, int], raw_max: float) -> list[str]:
    """A single-channel input drawn in characters (28x28 halved to 14x14); none for colour."""
    c, h, w = shape
    if c != 1 or h > 32 or w > 32:
        return []
    img = row.reshape(h, w) / raw_max
    if h > 16:  # average 2x2 blocks so MNIST digits fit in 14 lines
        img = img[:h // 2 * 2, :w // 2 * 2].reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
    shades = " .:-=+*#%@"
    levels = np.clip((img * (len(shades) - 1)).round().astype(int), 0, len(shades) - 1)
    return ["  " + "".join(shades[v] * 2 for v in line) for line in levels]


def _newest_run_model() -> Path:
    """The model of the most recently written run under ./runs (for ``predict`` without one)."""
    found = sorted(Path("runs").glob("*/model.safetensors"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise InputError("no model given and none in ./runs (train one: nnscratch train, or "
                         "name it: nnscratch predict MODEL INPUT ...)")
    return found[-1]


def _is_model_file(path: Path) -> bool:
    return path.suffix.lower() == ".safetensors"


def cmd_predict(args: argparse.Namespace) -> int:
    if not _is_model_file(args.model):   # no model given: every argument is an input
        args.inputs, args.model = [str(args.model), *args.inputs], _newest_run_model()
        print(f"nnscratch predict: using the newest run's model, {args.model}", file=sys.stderr)
    elif not args.inputs:
        raise InputError("no INPUT given (nnscratch predict [MODEL] INPUT ...)")
    model = load_model(args.model)
    if not model.preprocessing:
        print(f"nnscratch predict: note: {args.model} records no preprocessing; its inputs are "
              "read as 8x8 digits and fed to it unscaled (0..16)", file=sys.stderr)
    raw, names = load_inputs(args.inputs, model.preprocessing)
    if raw.shape[1] != model.n_features_in:
        raise InputError(f"{args.model}: expects {model.n_features_in} features per input, "
                         f"the inputs have {raw.shape[1]}")
    # (after the inputs have loaded: an error stays the one line it is)
    pictures = any(Path(name).suffix.lower() in IMAGE_SUFFIXES for name in args.inputs)
    if pictures and input_format(model.preprocessing)[0] == "digits8x8":
        print(f"nnscratch predict: note: {args.model} is an 8x8 digits model: it knows the "
              "blocky, centred digits of its dataset and often misreads photos and drawings. "
              "For your own pictures, use a model trained on MNIST: nnscratch train --config "
              "configs/mnist5k_cnn.toml (needs pip install 'nnscratch[mnist]')", file=sys.stderr)
    proba = model.predict_proba(apply_preprocessing(raw, model.preprocessing))
    results = []
    for name, p in zip(names, proba, strict=True):
        top = np.argsort(-p, kind="stable")[:3]
        results.append({"input": name, "prediction": int(top[0]),
                        "top3": [{"label": int(k), "probability": float(p[k])} for k in top],
                        "probabilities": [float(v) for v in p]})
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    kind, shape, raw_max = input_format(model.preprocessing)
    noun = "digit" if kind in ("digits8x8", "mnist28x28") else "class"
    for r, row in zip(results, raw, strict=True):
        top3 = ", ".join(f"{t['label']}: {t['probability']:.1%}" for t in r["top3"])
        print(f"{r['input']}: predicted {noun} {r['prediction']}   (top 3: {top3})")
        lines = _ascii_picture(row, shape, raw_max)
        if lines:
            print("\n".join(lines))
    return 0


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    flags = {k: getattr(args, k) for k in TRAIN_DEFAULTS if getattr(args, k, None) is not None}
    return train_config(load_toml(str(args.config)) if args.config else {}, flags)


def cmd_cv(args: argparse.Namespace) -> int:
    from .crossval import cross_validate

    get_backend(args.device)
    cfg = _settings(args)
    out = args.out or Path("runs") / datetime.now().strftime("cv-%Y%m%d-%H%M%S")
    callbacks = [_EpochTrace()] if os.environ.get("NNSCRATCH_PROGRESS") else []
    with interrupts.handle_signals():
        try:
            summary = cross_validate(cfg, args.folds, out, verbose=not args.quiet,
                                     device=args.device, callbacks=callbacks)
        except interrupts.TrainingInterrupted as stop:
            fold = stop.run["fold"]
            path = _save_interrupted(out, stop.run["model"], stop,
                                     f"fold{fold}-epoch{{epoch:04d}}.safetensors")
            print(f"interrupted at epoch {stop.epoch} of fold {fold}; its checkpoint is {path} "
                  "(cv does not resume: run it again)", file=sys.stderr, flush=True)
            return interrupts.exit_status(stop.signum)
    for r in summary["folds"]:
        print(f"fold {r['fold']}: validation accuracy {r['val_accuracy']:.4f} "
              f"({r['n_val']} examples)")
    print(f"{args.folds}-fold CV accuracy: {summary['mean_accuracy']:.4f} +- "
          f"{summary['std_accuracy']:.4f} (mean +- std); report in {out}")
    return 0


def cmd_gradcheck(args: argparse.Namespace) -> int:
    from .gradcheck import check_all

    checks = check_all()
    for name, result in checks.items():
        print(f"{name:38s} {result}")
        if args.verbose:
            for array, entries in result.samples.items():
                for index, numeric, analytic in entries:
                    print(f"    d/d{array}{list(index)}: numeric {numeric: .10f}  "
                          f"analytic {analytic: .10f}  difference {numeric - analytic: .1e}")
    failed = [name for name, r in checks.items() if not r.ok]
    print(f"{len(checks) - len(failed)} of {len(checks)} checks passed"
          + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 0 if not failed else EXIT_ERROR


def _add_export_parser(sub: Any) -> None:
    x = sub.add_parser("export", help="export a model to ONNX (pip install 'nnscratch[onnx]')",
                       description="Write MODEL as an ONNX file (opset 17): input 'input' of "
                       "shape (batch, *input_shape), output 'logits' (and 'probabilities'). "
                       "See docs/interop.md.")
    x.add_argument("model", type=Path, help="a model.safetensors written by train")
    x.add_argument("--onnx", type=Path, required=True, metavar="OUT.onnx", help="file to write")
    x.add_argument("--probabilities", action="store_true",
                   help="add an output 'probabilities' (softmax of the logits)")
    x.add_argument("--raw-pixels", action="store_true", help="take raw pixels (0..16 digits, "
                   "0..255 MNIST): the model's preprocessing becomes the first node")
    x.add_argument("--flat-input", action="store_true",
                   help="image models: take rows of C*H*W values instead of (C, H, W) images")


def cmd_export(args: argparse.Namespace) -> int:
    from .interop.onnx_export import require_onnx

    require_onnx()  # without the extra: one line saying what to install, before any work
    model = load_model(args.model)
    path = model.to_onnx(args.onnx, probabilities=args.probabilities,
                         raw_pixels=args.raw_pixels, flat_input=args.flat_input)
    outputs = "logits, probabilities" if args.probabilities else "logits"
    shape = (model.n_features_in,) if args.flat_input else model.input_shape
    print(f"wrote {path} ({path.stat().st_size:,} bytes): input 'input' (batch, "
          f"{', '.join(map(str, shape))}){' raw pixels' if args.raw_pixels else ''}, "
          f"outputs {outputs}")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    import os

    from . import sweep as sw
    from .crossval import load_whole
    from .data import dataset_preprocessing

    fixed, swept = sw.read_grid(str(args.grid))
    combos = sw.settings_of(fixed, swept, args.search, args.n_iter)
    out = _run_dir(args.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out}: exists and is not a directory")
    client = (sw.dask_client(args.scheduler, args.scheduler_timeout) if args.scheduler
              else None)
    try:
        cfg0 = train_config(fixed)
        X_raw, y, info = load_whole(cfg0["dataset"])
        dtype = np.dtype(cfg0["dtype"])
        X = apply_preprocessing(X_raw, dataset_preprocessing(info), dtype)
        X = np.ascontiguousarray(X.reshape(len(X), -1))
        sweep = sw.Sweep(fixed, swept, combos, args.folds, X, y, info)
        run = sw.make_runner(X, y, sweep.splits, args.jobs or os.cpu_count() or 1, client)
        where = args.scheduler or f"{args.jobs or os.cpu_count()} local processes"
        if not args.quiet:
            print(f"sweep: {len(combos)} settings x {args.folds} folds ({args.search}) on {where}")
        start = time.perf_counter()
        finished = sw.run_sweep(sweep, run, args.search, out, progress=not args.quiet)
        seconds = time.perf_counter() - start
    finally:
        if client is not None:
            client.close()
    if not finished:
        print(f"nnscratch sweep: interrupted; {len(sweep.results)} of {len(combos)} settings "
              f"finished, saved in {out / 'sweep.csv'}", file=sys.stderr)
        return 130
    best = sweep.best()
    cfg = sweep.config(best)
    keys = [k for k in TRAIN_DEFAULTS if k in fixed or k in swept]
    if "layers" in keys:   # no flag for a layer list: the best setting as a config file
        cmd = sw.command_line(cfg, [k for k in keys if k != "layers"], out / "best.toml")
        (out / "best.toml").write_text("layers = " + sw.toml_value(cfg["layers"]) + "\n")
    else:
        cmd = sw.command_line(cfg, keys, None)
    r = sweep.results[best]
    print(f"best: mean accuracy {np.mean(r['accuracy']):.4f} +- "
          f"{np.std(r['accuracy'], ddof=1):.4f} over {args.folds} folds "
          f"({seconds:.1f} s for the sweep); results in {out}")
    print(cmd)
    return 0


COMMANDS = {"export": cmd_export, "train": cmd_train, "evaluate": cmd_evaluate, "predict": cmd_predict,
            "cv": cmd_cv, "sweep": cmd_sweep, "gradcheck": cmd_gradcheck,
            "serve": cmd_serve}


def _unknown_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace,
                       extra: list[str]) -> NoReturn:
    """Unrecognised arguments: name them, suggest the closest flag of the subcommand, and point
    to the subcommand's --help (argparse alone points to the top-level one)."""
    import difflib

    prog, flags = parser.prog, []
    if args.command is not None:
        for action in parser._subparsers._group_actions:   # the subcommands' parsers
            sub = action.choices.get(args.command)
            if sub is not None:
                prog = sub.prog
                flags = [o for a in sub._actions for o in a.option_strings if o.startswith("--")]
    parts: list[str] = []
    for i, token in enumerate(extra):
        if not token.startswith("-") and i and extra[i - 1].startswith("--"):
            continue   # the value of the unknown flag just named
        hint = ""
        if token.startswith("-"):
            close = difflib.get_close_matches(token.split("=")[0], flags, n=1, cutoff=0.5)
            hint = f" (did you mean {close[0]}?)" if close else ""
        parts.append(f"{token}{hint}")
    parser.exit(EXIT_USAGE, f"{prog}: error: unrecognized arguments: {', '.join(parts)} "
                f"(see {prog} --help)\n")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        _unknown_arguments(parser, args, extra)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    debug = bool(os.environ.get("NNSCRATCH_DEBUG"))
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print("nnscratch: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into e.g. `head`, which stopped reading
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (NNScratchError, ValueError, OSError) as exc:
        if debug:   # NNSCRATCH_DEBUG=1: the traceback, for bug reports
            import traceback

            traceback.print_exc()
        msg = " ".join(str(exc).split()) or type(exc).__name__
        print(f"nnscratch {args.command}: error: {msg}", file=sys.stderr)
        return EXIT_ERROR
    except MemoryError:
        if debug:
            import traceback

            traceback.print_exc()
        print(f"nnscratch {args.command}: error: not enough memory (a smaller model or batch?)",
              file=sys.stderr)
        return EXIT_ERROR
    except Exception as exc:  # a bug of ours: still one line, never a traceback for the user
        if debug:
            import traceback

            traceback.print_exc()
        msg = " ".join(str(exc).split())
        print(f"nnscratch {args.command}: internal error: {type(exc).__name__}: {msg} "
              "(please report it)", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
