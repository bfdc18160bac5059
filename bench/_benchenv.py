"""What every benchmark result records about the machine it ran on.

Imported by the scripts in this folder (run as ``python bench/<script>.py``, which puts this
folder on ``sys.path``).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _git_state() -> dict:
    def git(*args: str) -> str | None:
        try:
            r = subprocess.run(["git", *args], cwd=HERE, capture_output=True, text=True,
                               timeout=10, check=False)
        except (OSError, subprocess.SubprocessError):
            return None
        return r.stdout.strip() if r.returncode == 0 else None

    status = git("status", "--porcelain", "--untracked-files=no")
    diff = git("diff", "HEAD", "--", "src")
    return {"commit": git("rev-parse", "HEAD"),
            "dirty": None if status is None else bool(status),
            # identifies uncommitted changes to the package source that were benchmarked
            "src_diff_sha1": hashlib.sha1(diff.encode()).hexdigest() if diff else None}


def threads_info() -> dict:
    """How this process splits element-wise work (``nnscratch.accel.threads``, if nnscratch is
    imported) and the OpenBLAS idle-thread timeout it loaded with."""
    import sys

    info: dict = {"OPENBLAS_THREAD_TIMEOUT": os.environ.get("OPENBLAS_THREAD_TIMEOUT")}
    threads = sys.modules.get("nnscratch.accel.threads")
    if threads is not None:
        count, why = threads.default_threads()
        info.update(nnscratch_threads=threads.THREADS or count, why=why,
                    short_timeout=threads.SHORT_TIMEOUT)
    return info


def nnscratch_worker() -> None:
    """What the ``nnscratch`` command does first, for a benchmark worker about to time
    nnscratch: :func:`nnscratch.enable_threads` (before NumPy loads). Peers' workers never call
    it, and :func:`spawn_worker` keeps the variable it sets from their processes."""
    import nnscratch

    nnscratch.enable_threads(quiet=True)
    # ``import nnscratch`` stays light: the training code (nnscratch.accel) loads at the first
    # fit. Load it here, before any clock starts, as each peer's worker imports its library
    # before timing: otherwise a timed fit includes that load (30-60 ms where the modules are
    # compiled at import, as in an editable install with PYTHONDONTWRITEBYTECODE set).
    import nnscratch.accel.planner  # noqa: F401


def blas_info() -> list[dict]:
    """What threadpoolctl sees in this process (call after numpy/sklearn are imported)."""
    from threadpoolctl import threadpool_info

    keep = ("user_api", "internal_api", "prefix", "version", "architecture", "threading_layer",
            "num_threads")
    libs = [{k: lib.get(k) for k in keep} | {"file": os.path.basename(lib.get("filepath", ""))}
            for lib in threadpool_info()]
    return sorted(libs, key=lambda b: (b["user_api"] or "", b["file"]))


def environment() -> dict:
    """Python, NumPy, scikit-learn and BLAS versions, CPU count and model, load, git state."""
    import numpy
    import sklearn

    import nnscratch

    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        affinity = None
    return {
        "timestamp_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "numpy": numpy.__version__,
        "sklearn": sklearn.__version__,
        "nnscratch": nnscratch.__version__,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": affinity,
        "cpu_model": _cpu_model(),
        "loadavg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "blas": blas_info(),
        "env_vars": {k: v for k, v in os.environ.items()
                     if k.startswith(("OPENBLAS", "OMP_", "MKL_", "GOTO", "BLIS", "VECLIB"))},
        "git": _git_state(),
    }


def write_result(path: Path, result: dict) -> None:
    """Write a benchmark's result JSON (creating its folder) and say where."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {path}")


def format_blas(blas: list[dict]) -> str:
    return "; ".join(f"{b['internal_api']} {b['version']} ({b['prefix']}, "
                     f"{b['architecture'] or '-'}, {b['num_threads']} threads)" for b in blas)


def spawn_worker(script: str, *args: str) -> dict:
    """Run ``python SCRIPT --worker ... ARGS`` in a fresh interpreter (the environment passed
    through as the user set it) and return the JSON object its last ``{...}`` line prints."""
    import sys

    cmd = [sys.executable, str(Path(script).resolve()), *args]
    env = dict(os.environ)
    threads = sys.modules.get("nnscratch.accel.threads")
    if threads is not None and threads.SET_BY_NNSCRATCH:
        # set by nnscratch.enable_threads() in this process: not for the peers' processes
        env.pop("OPENBLAS_THREAD_TIMEOUT", None)
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"worker {' '.join(args)} failed (exit {proc.returncode}):\n"
                           f"{proc.stderr[-3000:]}")
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        raise RuntimeError(f"worker {' '.join(args)} printed no result:\n{proc.stdout}\n"
                           f"{proc.stderr[-3000:]}")
    return json.loads(lines[-1])


def torch_info() -> dict | None:
    """PyTorch's version and thread count, if it is installed (benchmarks only)."""
    try:
        import torch
    except ImportError:
        return None
    return {"torch": torch.__version__, "num_threads": torch.get_num_threads(),
            "num_interop_threads": torch.get_num_interop_threads()}


def torch_train(net, optimizer, X, y, rng, epochs: int, batch_size: int):  # type: ignore[no-untyped-def]
    """The PyTorch contender's eager training loop: each epoch, shuffle tensors ``X``, ``y`` (on
    their device) with NumPy generator ``rng`` and take one cross-entropy step per batch slice,
    as nnscratch's fit loop does. Returns the last batch's loss."""
    import torch

    loss_fn = torch.nn.CrossEntropyLoss()
    for _ in range(epochs):
        order = torch.from_numpy(rng.permutation(len(X))).to(X.device)
        Xs, ys = X[order], y[order]
        for i in range(0, len(X), batch_size):
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(net(Xs[i:i + batch_size]), ys[i:i + batch_size])
            loss.backward()
            optimizer.step()
    return float(loss.detach())


def torch_twin(model):  # type: ignore[no-untyped-def]
    """The same network as an nnscratch ``Sequential``, as a ``torch.nn.Sequential`` (fresh
    weights; for timing). Raises ``ValueError`` for a layer without a twin here."""
    import torch

    layers: list = []
    for layer in model.layers:
        name, c = type(layer).__name__, layer.get_config()
        if name == "Conv2D":
            layers.append(torch.nn.Conv2d(c["in_channels"], c["out_channels"], c["kernel_size"],
                                          c["stride"], c["padding"]))
        elif name == "BatchNorm":  # 1d after Flatten, 2d on images
            flat = any(isinstance(t, torch.nn.Flatten) for t in layers)
            layers.append((torch.nn.BatchNorm1d if flat else torch.nn.BatchNorm2d)(c["num_features"]))
        elif name == "ReLU":
            layers.append(torch.nn.ReLU())
        elif name == "MaxPool2D":
            layers.append(torch.nn.MaxPool2d(c["kernel_size"], c["stride"]))
        elif name == "Flatten":
            layers.append(torch.nn.Flatten())
        elif name == "Dropout":
            layers.append(torch.nn.Dropout(c["p"]))
        elif name == "Dense":
            layers.append(torch.nn.Linear(c["n_in"], c["n_out"]))
        else:
            raise ValueError(f"no PyTorch twin for {name}")
    return torch.nn.Sequential(*layers)


def epoch_clock(times: list):  # type: ignore[no-untyped-def]
    """An nnscratch callback appending each epoch's wall time (end to end) to ``times``."""
    import time

    from nnscratch.callbacks import Callback

    class EpochClock(Callback):
        def on_train_begin(self, epochs: int) -> None:
            self.last = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: dict) -> None:
            now = time.perf_counter()
            times.append(now - self.last)
            self.last = now

    return EpochClock()
