"""Hyper-parameter sweeps (``nnscratch sweep``): k-fold cross-validation of many training
settings with :class:`~nnscratch.estimator.NNClassifier`, on local joblib processes or on a Dask
cluster through joblib's ``dask`` backend.

A grid file uses the config file's keys (:data:`nnscratch.config.TRAIN_DEFAULTS`): a list is a set
of values to sweep (``lr = [0.1, 0.01]``), a scalar is fixed (``epochs = 50``). For keys whose
value is itself a list (``hidden``, ``channels``, ``layers``) a list of lists is swept
(``hidden = [[32], [64, 32]]``) and a plain list is fixed (``hidden = [64]``).

Every (setting, fold) pair is one task. Each task builds its estimator from the setting, seeds it
with the setting's ``seed``, limits BLAS to one thread and scores the held-out fold, so a task
computes the same numbers wherever it runs: local processes and a Dask cluster give identical
results. ``sweep.csv`` is rewritten after each finished setting, so an interrupted sweep keeps
what it finished.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .config import TRAIN_DEFAULTS, build_layers, load_toml, train_config
from .errors import InputError

LIST_KEYS = ("hidden", "channels", "layers")
SEARCHES = ("grid", "random", "halving")
HALVING_FACTOR = 3


def read_grid(path: str) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    """(fixed settings, swept settings: key -> list of values) of a grid file."""
    data = load_toml(path)
    fixed, swept = {}, {}
    for key, value in data.items():
        if key not in TRAIN_DEFAULTS:
            raise InputError(f"{path}: unknown setting {key!r}; known: {', '.join(TRAIN_DEFAULTS)}")
        if key in ("checkpoint_every",):
            raise InputError(f"{path}: {key!r} cannot be swept or set in a sweep")
        is_set = isinstance(value, list) and (
            key not in LIST_KEYS or (bool(value) and all(isinstance(v, list) for v in value)))
        if is_set:
            if not value:
                raise InputError(f"{path}: {key!r} lists no values to sweep")
            swept[key] = value
        else:
            fixed[key] = value
    return fixed, swept


def settings_of(fixed: dict[str, Any], swept: dict[str, list[Any]], search: str, n_iter: int | None,
                seed: int = 0) -> list[dict[str, Any]]:
    """The swept settings to try: every combination (grid), or ``n_iter`` of them drawn without
    replacement (random, halving; all of them when n_iter is None or larger)."""
    keys = list(swept)
    combos = [dict(zip(keys, values, strict=True))
              for values in itertools.product(*(swept[k] for k in keys))]
    if search != "grid" and n_iter is not None and n_iter < len(combos):
        rng = np.random.default_rng(seed)
        combos = [combos[i] for i in sorted(rng.choice(len(combos), n_iter, replace=False))]
    for combo in combos:   # every setting checked before any work is done
        try:
            train_config(fixed, combo)
        except ValueError as exc:
            raise InputError(f"setting {combo}: {exc}") from None
    return combos


def estimator_params(cfg: dict[str, Any], info: dict[str, Any]) -> dict[str, Any]:
    """:class:`~nnscratch.estimator.NNClassifier` parameters that train the network ``nnscratch
    train`` builds from ``cfg`` on the dataset ``info`` describes (the same layers, optimizer,
    schedule, augmentation and seed)."""
    from .config import layer_spec
    from .estimator import KEY_TO_PARAM

    params = {param: cfg[key] for key, param in KEY_TO_PARAM.items()
              if key not in ("layers", "hidden", "validation_split")}
    params["validation_fraction"] = cfg["validation_split"] or 0.1
    shape = tuple(int(d) for d in info["input_shape"])
    params["input_shape"] = shape
    params["hidden_layer_sizes"] = tuple(cfg["hidden"])
    if cfg["layers"] is not None:   # the whole network is given: all but its output layer
        params["layers"], params["hidden_layer_sizes"] = list(cfg["layers"][:-1]), ()
    elif cfg["arch"] == "cnn":      # the conv part of build_layers; the estimator adds the rest
        body = build_layers({**cfg, "hidden": []}, shape, int(info["n_classes"]))[:-1]
        params["layers"] = [layer_spec(layer) for layer in body]
    return params


def fit_fold(params: dict[str, Any], X: np.ndarray, y: np.ndarray, train: np.ndarray,
             test: np.ndarray) -> tuple[float, float]:
    """Fit an NNClassifier with ``params`` on ``X[train]``; (accuracy on ``X[test]``, seconds).
    BLAS runs on one thread, so the numbers do not depend on where this runs."""
    from threadpoolctl import threadpool_limits

    from .estimator import NNClassifier

    with threadpool_limits(1):
        est = NNClassifier(**params)
        start = time.perf_counter()
        est.fit(X[train], y[train])
        seconds = time.perf_counter() - start
        return float(est.score(X[test], y[test])), seconds


def command_line(cfg: dict[str, Any], keys: list[str], config_path: Path | None) -> str:
    """A ``nnscratch train`` command line that trains ``cfg`` (its ``keys``)."""
    parts = ["nnscratch", "train"]
    if config_path is not None:
        parts += ["--config", str(config_path)]
    for key in keys:
        value = cfg[key]
        flag = "--" + key.replace("_", "-")
        if key == "layers" or value is None:
            continue
        if isinstance(value, bool):
            parts.append(flag if value else "--no-" + key.replace("_", "-"))
        elif isinstance(value, list):
            parts += [flag, *(str(v) for v in value)]
        elif key in ("early_stopping",) and value == 0:
            continue
        else:
            parts += [flag, str(value)]
    return " ".join(parts)


def toml_value(value: Any) -> str:
    """``value`` (numbers, strings, booleans, lists, tables) written as TOML."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)   # a JSON string is a TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise InputError(f"cannot write {value!r} as TOML")


def _format(value: Any) -> str:
    if isinstance(value, list):
        return " ".join(str(v) for v in value) if all(not isinstance(v, dict) for v in value) \
            else str(len(value)) + " layers"
    return str(value)


class Sweep:
    """One sweep: the settings, the folds, the tasks and what has come back."""

    def __init__(self, fixed: dict[str, Any], swept: dict[str, list[Any]], combos: list[dict[str, Any]],
                 folds: int, X: np.ndarray, y: np.ndarray, info: dict[str, Any]) -> None:
        from sklearn.model_selection import StratifiedKFold

        self.fixed, self.swept, self.combos, self.folds = fixed, swept, combos, folds
        self.X, self.y, self.info = X, y, info
        seed = train_config(fixed)["seed"]
        self.splits = list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(X, y))
        #: setting index -> {"accuracy": [...], "seconds": [...], "epochs": int, "round": int}
        self.results: dict[int, dict[str, Any]] = {}

    def config(self, i: int, epochs: int | None = None) -> dict[str, Any]:
        extra = {} if epochs is None else {"epochs": epochs}
        return train_config(self.fixed, self.combos[i], extra)

    def tasks(self, indices: list[int], epochs: int | None) -> list[tuple[int, int, dict[str, Any]]]:
        return [(i, k, estimator_params(self.config(i, epochs), self.info))
                for i in indices for k in range(self.folds)]

    def run_round(self, run: Callable[[list[Any]], Iterator[Any]], indices: list[int],
                  epochs: int | None, round_: int, on_setting: Callable[[], None],
                  on_task: Callable[[], None]) -> None:
        tasks = self.tasks(indices, epochs)
        pending = {i: [] for i in indices}
        for (i, k, _), (acc, seconds) in run(tasks):
            pending[i].append((k, acc, seconds))
            on_task()
            if len(pending[i]) == self.folds:
                got = sorted(pending.pop(i))
                self.results[i] = {"accuracy": [a for _, a, _ in got],
                                   "seconds": [s for _, _, s in got],
                                   "epochs": self.config(i, epochs)["epochs"], "round": round_}
                on_setting()

    def rows(self) -> list[dict[str, Any]]:
        """One row per finished setting, in the order of the settings."""
        rows = []
        for i in sorted(self.results):
            r = self.results[i]
            acc = np.array(r["accuracy"])
            row = {k: _format(self.combos[i][k]) for k in self.swept}
            if "round" in r and r["round"] is not None:
                row.update({"epochs": r["epochs"], "round": r["round"]})
            row.update({"mean_accuracy": round(float(acc.mean()), 6),
                        "std_accuracy": round(float(acc.std(ddof=1)) if len(acc) > 1 else 0.0, 6),
                        "fit_seconds": round(float(np.mean(r["seconds"])), 4)})
            rows.append(row)
        return rows

    def best(self) -> int | None:
        """The setting with the highest mean accuracy (halving: among those of the last round
        reached; ties: the first)."""
        if not self.results:
            return None
        last = max(r["round"] or 0 for r in self.results.values())
        cands = [i for i, r in self.results.items() if (r["round"] or 0) == last]
        return max(sorted(cands), key=lambda i: float(np.mean(self.results[i]["accuracy"])))


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        if rows:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    tmp.replace(path)


def plot(rows: list[dict[str, Any]], keys: list[str], path: Path, title: str) -> None:
    """The settings ranked by mean accuracy, with +- one standard deviation as error bars."""
    from matplotlib.figure import Figure  # (Agg: no display needed)

    ranked = sorted(rows, key=lambda r: -r["mean_accuracy"])
    labels = [", ".join(f"{k}={r[k]}" for k in keys) or "fixed" for r in ranked]
    if ranked and "round" in ranked[0]:
        labels = [f"{lab} ({r['epochs']} epochs)" for lab, r in zip(labels, ranked, strict=True)]
    fig = Figure(figsize=(9, 1.2 + 0.32 * max(1, len(ranked))), layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    pos = np.arange(len(ranked))[::-1]
    ax.errorbar([r["mean_accuracy"] for r in ranked], pos,
                xerr=[r["std_accuracy"] for r in ranked], fmt="o", capsize=3)
    ax.set_yticks(pos, labels, fontsize=8)
    ax.set(xlabel="cross-validated accuracy (mean +- std over folds)", title=title)
    ax.grid(True, axis="x", alpha=0.3)
    fig.savefig(path, dpi=110)


def dask_client(address: str, timeout: float = 20.0) -> Any:
    """A ``distributed.Client`` connected to ``address``; InputError when Dask is missing or the
    scheduler does not answer within ``timeout`` seconds."""
    try:
        from distributed import Client
    except ImportError:
        raise InputError("--scheduler needs Dask: pip install 'nnscratch[dask]'") from None
    try:
        return Client(address, timeout=f"{timeout}s")
    except (OSError, TimeoutError, ValueError) as exc:
        raise InputError(f"--scheduler {address}: cannot connect ({exc})") from None


def make_runner(X: np.ndarray, y: np.ndarray, splits: list[Any], n_jobs: int,
                client: Any) -> Callable[[list[Any]], Iterator[Any]]:
    """``run(tasks)``: (task, (accuracy, seconds)) pairs as tasks finish, on joblib's processes
    (``n_jobs``) or, with a Dask ``client``, on its workers (X and y scattered once)."""
    from joblib import Parallel, delayed, parallel_config

    def run(tasks: list[Any]) -> Iterator[Any]:
        def job(task: Any) -> Any:
            i, k, params = task
            train, test = splits[k]
            return delayed(_tagged)((i, k), params, X, y, train, test)

        if client is not None:
            cfg = parallel_config(backend="dask", scatter=[X, y], n_jobs=-1)
        else:
            cfg = parallel_config(backend="loky", n_jobs=n_jobs)
        with cfg:
            par = Parallel(return_as="generator_unordered")
            by_key = {task[:2]: task for task in tasks}
            for key, result in par(job(t) for t in tasks):
                yield by_key[key], result

    return run


def _tagged(key: tuple[int, int], params: dict[str, Any], X: np.ndarray, y: np.ndarray,
            train: np.ndarray, test: np.ndarray) -> tuple[tuple[int, int], tuple[float, float]]:
    return key, fit_fold(params, X, y, train, test)


def run_sweep(sweep: Sweep, run: Callable[[list[Any]], Iterator[Any]], search: str, out: Path,
              progress: bool) -> bool:
    """Run every round of ``sweep``; write ``sweep.csv`` after each finished setting. Returns
    False when interrupted (Ctrl-C), with the finished settings written."""
    from tqdm import tqdm

    out.mkdir(parents=True, exist_ok=True)
    keys = list(sweep.swept)
    n = len(sweep.combos)
    if search == "halving":
        max_epochs = sweep.config(0)["epochs"]
        rounds = max(1, math.ceil(math.log(n, HALVING_FACTOR))) if n > 1 else 1
        schedule = [max(1, max_epochs // HALVING_FACTOR ** (rounds - 1 - r)) for r in range(rounds)]
        total = sum(math.ceil(n / HALVING_FACTOR ** r) for r in range(rounds)) * sweep.folds
    else:
        schedule, total = [None], n * sweep.folds
    bar = tqdm(total=total, unit="fit", disable=not (progress and sys.stderr.isatty()),
               desc="sweep")

    def on_setting() -> None:
        write_csv(sweep.rows(), out / "sweep.csv")

    try:
        alive = list(range(n))
        for r, epochs in enumerate(schedule):
            sweep.run_round(run, alive, epochs, r if search == "halving" else None,
                            on_setting, lambda: bar.update(1))
            if r + 1 < len(schedule):   # keep the best third for the next round
                keep = math.ceil(len(alive) / HALVING_FACTOR)
                alive = sorted(sorted(alive, key=lambda i: -float(np.mean(
                    sweep.results[i]["accuracy"])))[:keep])
    except KeyboardInterrupt:
        bar.close()
        rows = sweep.rows()
        write_csv(rows, out / "sweep.csv")
        if rows:
            plot(rows, keys, out / "sweep.png", "sweep (interrupted)")
        return False
    bar.close()
    rows = sweep.rows()
    write_csv(rows, out / "sweep.csv")
    plot(rows, keys, out / "sweep.png",
         f"{search} search, {sweep.folds}-fold CV on {sweep.info.get('dataset', '')}")
    return True
