"""Training speed on the seed task: nnscratch against scikit-learn's MLPClassifier and PyTorch.

All train the same network (64-32-10, ReLU, softmax cross-entropy) with the same plain
mini-batch SGD (batch 32, lr 0.1, no momentum, no L2, shuffled every epoch) for the same number of
epochs on the digits seed split (inputs scaled to [0, 1], float32 for all). PyTorch (when it is
installed; it is not a dependency) runs a plain CPU eager loop with 1 thread
(``torch.set_num_threads(1)``: as fast as 2 for this tiny net and far less noisy), shuffling
with a NumPy generator and slicing batches as nnscratch does.

A fourth run, ``floor``, is not a peer but a yardstick: the same training written as one bare
loop of the 12 calls of nnscratch's fused step (see ``run_floor``). nnscratch / floor says how
close the library comes to what NumPy itself allows on this machine.

Every timing runs in its own fresh subprocess (``--worker``): two OpenMP/BLAS runtimes warming up
in one process disturb each other, and a fresh process gives each contender the same start. Runs
alternate between the contenders (nnscratch, sklearn, nnscratch, sklearn, ...) so that a slow
spell of this shared machine hits both; the figure reported is the median over pairs of the
per-pair ratio sklearn seconds / nnscratch seconds. Only the ``fit`` call is timed (data loading,
model construction and scoring are not).

The environment is left as it is: no thread-count or OPENBLAS_* variable is set or changed.

Usage::

    python bench/seed_mlp.py [--pairs 3] [--epochs 1000] [--out bench/results/seed_mlp.json]

The exit status is 0 whether or not the target is met (this is a report); it is 1 only if a
worker fails.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _benchenv import (
    blas_info,
    environment,
    format_blas,
    nnscratch_worker,
    threads_info,
    torch_train,
    write_result,
)

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results" / "seed_mlp.json"
CONTENDERS = ("nnscratch", "floor", "sklearn", "torch", "reference")
TARGET_RATIO = 10.0  # nnscratch must be at least this many times faster than scikit-learn
TARGET_TORCH = 15.0  # ... and than PyTorch (issue 5)
BATCH_SIZE = 32
LR = 0.1
HIDDEN = 32
SEED = 0


# -- the workers (run in a child process each) -------------------------------------------------
def _data():
    import numpy as np

    from nnscratch.data import DIGITS_MAX, load_digits_split

    split = load_digits_split()
    X_train = (split.X_train / DIGITS_MAX).astype(np.float32)
    X_test = (split.X_test / DIGITS_MAX).astype(np.float32)
    return X_train, split.y_train, X_test, split.y_test


def run_reference(epochs: int) -> dict:
    """nnscratch in reference mode (``accelerate=False``): the layers' own code, no fast path;
    what the accelerated path buys (no target)."""
    return run_nnscratch(epochs, accelerate=False)


def run_nnscratch(epochs: int, accelerate: bool = True) -> dict:
    from nnscratch import Sequential
    from nnscratch.layers import Dense, ReLU
    from nnscratch.losses import SoftmaxCrossEntropy
    from nnscratch.optim import SGD

    X, y, X_test, y_test = _data()
    model = Sequential([Dense(64, HIDDEN), ReLU(), Dense(HIDDEN, 10)], seed=SEED,
                       accelerate=accelerate)
    optimizer, loss = SGD(lr=LR), SoftmaxCrossEntropy()
    c0, t0 = time.process_time(), time.perf_counter()
    history = model.fit(X, y, epochs=epochs, batch_size=BATCH_SIZE, optimizer=optimizer,
                        loss=loss)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    assert len(history) == epochs, f"nnscratch ran {len(history)} epochs, not {epochs}"
    return {"seconds": seconds, "cpu_seconds": cpu, "epochs": len(history),
            "steps": len(history) * math.ceil(X.shape[0] / BATCH_SIZE),
            "test_accuracy": model.score(X_test, y_test),
            "train_loss": history["loss"][-1], "dtype": str(model.dtype)}


def run_floor(epochs: int) -> dict:
    """Not a peer but a yardstick: the same training as nnscratch's fused epochs
    (``fastpath.SoftmaxEpochs._run_one_hidden_sgd``: examples as columns, 12 NumPy and BLAS
    calls per step, the SGD update inside two of the products) written as one bare loop,
    everything preallocated and bound to local names, outputs passed positionally as nnscratch
    does, no library around it: no epoch loss or accuracy, no History, no callbacks, no check of
    the logits' range. How close nnscratch comes to this is how close it comes to what NumPy
    allows on this machine."""
    import numpy as np
    from scipy.linalg.blas import get_blas_funcs

    X, y, X_test, y_test = _data()
    n, d = X.shape
    h, k, bs = HIDDEN, 10, BATCH_SIZE
    f32 = np.float32
    rng = np.random.default_rng(SEED)
    flat = np.zeros((d + 1) * h + (h + 1) * k, f32)   # [[W1], [b1]] then [[W2], [b2]]
    Wb1, Wb2 = flat[:(d + 1) * h].reshape(d + 1, h), flat[(d + 1) * h:].reshape(h + 1, k)
    Wb1[:d] = rng.standard_normal((d, h)) * np.sqrt(2 / d)
    Wb2[:h] = rng.standard_normal((h, k)) * np.sqrt(2 / h)
    F = d + 1 + k                                      # a column: [x, 1, one-hot / bs]
    XY = np.concatenate([X, np.ones((n, 1), f32), np.eye(k, dtype=f32)[y] / f32(bs)], axis=1)
    XYs = np.empty_like(XY)
    full, rest = divmod(n, bs)
    data = np.empty(n * F, f32)                        # batch after batch, each (F, m)
    batches, shared = [], {}
    for i in range(0, n, bs):
        m = min(bs, n - i)
        block = data[i * F:(i + m) * F].reshape(F, m)
        if m not in shared:
            HT = np.ones((h + 1, m), f32)               # [A, 1].T
            shared[m] = (np.empty((h, m), f32), HT, HT[:h], np.zeros((h, m), f32),
                         np.empty((k, m), f32), np.empty((k, m), f32), np.empty((k, m), f32),
                         np.full((k, k), m, f32), np.empty((h, m), f32), np.empty((h, m), f32))
        Z1T, HT, AT, zeros, ZT, E, S, M, dAT, mask = shared[m]
        batches.append((block[:d + 1], block[:d + 1].T, block[d + 1:], Z1T, HT, HT.T, AT, zeros,
                        ZT, E, E.T, S, M, dAT, dAT.T, mask))
    rest_Y = data[full * bs * F:].reshape(F, rest)[d + 1:] if rest else None
    gemm = get_blas_funcs("gemm", (flat,))            # C <- alpha * A @ B + beta * C
    # (np.dot without its __array_function__ dispatch, as nnscratch's Backend.dot)
    dot = getattr(np.dot, "_implementation", np.dot)
    maximum, exp, divide = np.maximum, np.exp, np.divide
    subtract, multiply, sign, take, copyto = np.subtract, np.multiply, np.sign, np.take, np.copyto
    Wb1T, Wb2T, W2 = Wb1.T, Wb2.T, Wb2[:h]
    alpha = -LR
    c0, t0 = time.process_time(), time.perf_counter()
    for _ in range(epochs):
        take(XY, rng.permutation(n), axis=0, out=XYs, mode="clip")     # shuffle
        copyto(data[:full * bs * F].reshape(full, F, bs),                # each batch transposed
               XYs[:full * bs].reshape(full, bs, F).transpose(0, 2, 1))
        if rest:
            copyto(data[full * bs * F:].reshape(F, rest), XYs[full * bs:].T)
            rest_Y *= f32(bs / rest)                                      # one-hot / m
        for XT1, X1, YT, Z1T, HT, H1, AT, zeros, ZT, E, ET, S, M, dAT, dZT, mask in batches:
            dot(Wb1T, XT1, Z1T)                  # Z1.T = [[W1], [b1]].T @ [X, 1].T
            maximum(Z1T, zeros, out=AT)          # A.T = ReLU(Z1.T), above HT's ones row
            dot(Wb2T, HT, ZT)                    # logits.T
            exp(ZT, E)                           # softmax, unshifted ...
            dot(M, E, S)                         # ... m * column sums
            divide(E, S, E)                      # P / m
            subtract(E, YT, E)                   # G = (P - Y) / m
            dot(W2, E, dAT)                      # dA.T = W2 @ G
            gemm(alpha, ET, H1, 1.0, Wb2T, 1, 0, 1)   # [[W2], [b2]] -= lr * [A, 1].T @ G.T
            sign(AT, mask)
            multiply(dAT, mask, dAT)             # dZ1.T
            gemm(alpha, dZT, X1, 1.0, Wb1T, 1, 0, 1)  # [[W1], [b1]] -= lr * [X, 1].T @ dZ1.T
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    Xt1 = np.concatenate([X_test, np.ones((len(X_test), 1), f32)], axis=1)
    Ht = np.concatenate([np.maximum(Xt1 @ Wb1, 0), np.ones((len(X_test), 1), f32)], axis=1)
    return {"seconds": seconds, "cpu_seconds": cpu, "epochs": epochs,
            "steps": epochs * math.ceil(n / bs),
            "test_accuracy": float(((Ht @ Wb2).argmax(1) == y_test).mean()), "dtype": "float32"}


def run_sklearn(epochs: int) -> dict:
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    X, y, X_test, y_test = _data()
    clf = MLPClassifier(
        hidden_layer_sizes=(HIDDEN,), activation="relu", solver="sgd", momentum=0.0,
        nesterovs_momentum=False, learning_rate="constant", learning_rate_init=LR,
        batch_size=BATCH_SIZE, alpha=0.0, early_stopping=False, max_iter=epochs, tol=0.0,
        n_iter_no_change=epochs + 1, shuffle=True, random_state=SEED)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        c0, t0 = time.process_time(), time.perf_counter()
        clf.fit(X, y)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    assert clf.n_iter_ == epochs, f"sklearn ran {clf.n_iter_} epochs, not {epochs}"
    return {"seconds": seconds, "cpu_seconds": cpu, "epochs": int(clf.n_iter_),
            "steps": int(clf.n_iter_) * math.ceil(X.shape[0] / BATCH_SIZE),
            "test_accuracy": float(clf.score(X_test, y_test)),
            "train_loss": float(clf.loss_), "dtype": str(clf.coefs_[0].dtype)}


def run_torch(epochs: int) -> dict:
    import numpy as np
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(SEED)
    X, y, X_test, y_test = _data()
    net = torch.nn.Sequential(torch.nn.Linear(64, HIDDEN), torch.nn.ReLU(), torch.nn.Linear(HIDDEN, 10))
    opt = torch.optim.SGD(net.parameters(), lr=LR)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    rng = np.random.default_rng(SEED)
    c0, t0 = time.process_time(), time.perf_counter()
    loss = torch_train(net, opt, Xt, yt, rng, epochs, BATCH_SIZE)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    with torch.no_grad():
        acc = float((net(torch.from_numpy(X_test)).argmax(1).numpy() == y_test).mean())
    return {"seconds": seconds, "cpu_seconds": cpu, "epochs": epochs,
            "steps": epochs * math.ceil(X.shape[0] / BATCH_SIZE), "test_accuracy": acc,
            "train_loss": float(loss), "dtype": "float32", "torch": torch.__version__}


def worker(name: str, epochs: int) -> None:
    result = {"nnscratch": run_nnscratch, "floor": run_floor, "sklearn": run_sklearn,
              "torch": run_torch, "reference": run_reference}[name](epochs)
    result["contender"] = name
    result["blas"], result["threads"] = blas_info(), threads_info()
    print(json.dumps(result))


def spawn(name: str, epochs: int) -> dict:
    """Run one timing in a fresh interpreter; the environment is passed through untouched."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", name,
           "--epochs", str(epochs)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"worker {name} failed (exit {proc.returncode}):\n{proc.stderr}")
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        raise RuntimeError(f"worker {name} printed no result:\n{proc.stdout}\n{proc.stderr}")
    return json.loads(lines[-1])


# -- the driver ----------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pairs", type=int, default=3, help="alternating runs of each (default 3)")
    p.add_argument("--epochs", type=int, default=1000, help="epochs per fit (default 1000)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="result JSON file")
    p.add_argument("--reference", action="store_true",
                   help="also time nnscratch with accelerate=False (reference mode)")
    p.add_argument("--worker", choices=CONTENDERS, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.pairs < 1 or args.epochs < 1:
        p.error("--pairs and --epochs must be >= 1")
    if args.worker:
        if args.worker in ("nnscratch", "floor", "reference"):   # (as the nnscratch command does first)
            nnscratch_worker()
        worker(args.worker, args.epochs)
        return 0

    env = environment()
    n_train = len(_data()[1])  # 1437
    steps = args.epochs * math.ceil(n_train / BATCH_SIZE)
    print(f"seed MLP 64-{HIDDEN}-10 ReLU, digits seed split, {args.epochs} epochs x "
          f"{math.ceil(n_train / BATCH_SIZE)} batches of {BATCH_SIZE} = {steps:,} SGD steps "
          f"(lr {LR}), float32")
    print(f"python {env['python']}, numpy {env['numpy']}, sklearn {env['sklearn']}, "
          f"{env['cpu_count']} CPUs ({env['cpu_model']}), "
          f"load {' '.join(f'{x:.2f}' for x in env['loadavg'] or [])}")
    print(f"BLAS: {format_blas(env['blas'])}")
    print(f"each timing = fit() only, in a fresh subprocess; {args.pairs} alternating pairs\n")

    import importlib.util

    contenders = [c for c in CONTENDERS if (c != "torch" or importlib.util.find_spec("torch"))
                  and (c != "reference" or args.reference)]
    if "torch" not in contenders:
        print("(PyTorch is not installed: the torch contender is skipped)")
    pairs = []
    header = (f"{'pair':>4}  {'nnscratch s':>11}  {'floor s':>7}  {'nnscratch/floor':>15}  "
              f"{'sklearn s':>9}  {'sklearn/nnscratch':>17}"
              + (f"  {'torch s':>8}  {'torch/nnscratch':>15}" if "torch" in contenders else "")
              + (f"  {'reference s':>11}  {'ref/nnscratch':>13}" if args.reference else ""))
    print(header)
    print("-" * len(header))
    try:
        for i in range(args.pairs):
            run = {name: spawn(name, args.epochs) for name in contenders}  # in CONTENDERS order
            ratio = run["sklearn"]["seconds"] / run["nnscratch"]["seconds"]
            floor_ratio = run["nnscratch"]["seconds"] / run["floor"]["seconds"]
            pair = {"pair": i + 1, **run, "ratio": ratio, "floor_ratio": floor_ratio}
            line = (f"{i + 1:>4}  {run['nnscratch']['seconds']:>11.3f}  "
                    f"{run['floor']['seconds']:>7.3f}  {floor_ratio:>14.2f}x  "
                    f"{run['sklearn']['seconds']:>9.3f}  {ratio:>16.2f}x")
            if "torch" in run:
                pair["torch_ratio"] = run["torch"]["seconds"] / run["nnscratch"]["seconds"]
                line += f"  {run['torch']['seconds']:>8.3f}  {pair['torch_ratio']:>14.2f}x"
            if "reference" in run:
                pair["reference_ratio"] = run["reference"]["seconds"] / run["nnscratch"]["seconds"]
                line += f"  {run['reference']['seconds']:>11.3f}  {pair['reference_ratio']:>12.2f}x"
            pairs.append(pair)
            print(line, flush=True)
    except RuntimeError as exc:
        print(f"\nERROR: {exc}", file=sys.stderr)
        return 1

    median_ratio = statistics.median(pr["ratio"] for pr in pairs)
    # informational: CPU time of the child (all its threads); less disturbed by preemption on a
    # shared machine, but not the figure judged
    for pr in pairs:
        pr["cpu_ratio"] = pr["sklearn"]["cpu_seconds"] / pr["nnscratch"]["cpu_seconds"]
    median_cpu_ratio = statistics.median(pr["cpu_ratio"] for pr in pairs)
    summary = {}
    for name in contenders:
        runs = [pr[name] for pr in pairs]
        sec = statistics.median(r["seconds"] for r in runs)
        summary[name] = {
            "median_seconds": sec,
            "min_seconds": min(r["seconds"] for r in runs),
            "median_cpu_seconds": statistics.median(r["cpu_seconds"] for r in runs),
            "steps": runs[0]["steps"],
            "median_us_per_step": sec / runs[0]["steps"] * 1e6,
            "test_accuracy": [r["test_accuracy"] for r in runs],
            "dtype": runs[0]["dtype"],
        }
    passed = median_ratio >= TARGET_RATIO
    print("-" * len(header))
    print(f"median ratio sklearn/nnscratch: {median_ratio:.2f}x  "
          f"(min {min(pr['ratio'] for pr in pairs):.2f}x, "
          f"max {max(pr['ratio'] for pr in pairs):.2f}x)")
    print(f"(for reference, median ratio of process CPU times: {median_cpu_ratio:.2f}x)")
    median_floor = statistics.median(pr["floor_ratio"] for pr in pairs)
    print(f"median nnscratch/floor (a bare NumPy loop of the same step): {median_floor:.2f}x")
    for name in contenders:
        s = summary[name]
        acc = sorted(set(round(a, 4) for a in s["test_accuracy"]))
        print(f"{name:>9}: {s['median_us_per_step']:7.1f} us/step (median {s['median_seconds']:.3f}"
              f" s / {s['steps']:,} steps; cpu {s['median_cpu_seconds']:.3f} s), "
              f"{s['dtype']}, test accuracy {', '.join(f'{a:.4f}' for a in acc)}")
    default_config = args.epochs == 1000
    verdict = "PASS" if passed else "FAIL"
    note = "" if default_config else "  (non-default --epochs: indicative only)"
    print(f"\nTARGET sklearn/nnscratch >= {TARGET_RATIO:g}x: {verdict} "
          f"(median {median_ratio:.2f}x){note}")
    torch_target = None
    if "torch" in contenders:
        median_torch = statistics.median(pr["torch_ratio"] for pr in pairs)
        torch_verdict = "PASS" if median_torch >= TARGET_TORCH else "FAIL"
        torch_target = {"ratio_at_least": TARGET_TORCH, "median_ratio": median_torch,
                        "verdict": torch_verdict}
        print(f"TARGET torch/nnscratch >= {TARGET_TORCH:g}x: {torch_verdict} "
              f"(median {median_torch:.2f}x){note}")

    reference = None
    if args.reference:
        median_ref = statistics.median(pr["reference_ratio"] for pr in pairs)
        reference = {"median_ratio": median_ref}
        print(f"reference mode (accelerate=False) / accelerated: {median_ref:.2f}x (no target)")

    worker_blas = {json.dumps(pr[n]["blas"], sort_keys=True) for pr in pairs for n in contenders}
    result = {
        "benchmark": "seed_mlp",
        "config": {"architecture": [64, HIDDEN, 10], "activation": "relu",
                   "loss": "softmax cross-entropy", "optimizer": f"SGD(lr={LR}), no momentum",
                   "batch_size": BATCH_SIZE, "epochs": args.epochs, "pairs": args.pairs,
                   "seed": SEED, "dtype": "float32", "data": "digits seed split, X/16",
                   "order": "in turn nnscratch, floor, sklearn, torch per pair; fresh subprocess each",
                   "timed": "fit() call only"},
        "environment": env,
        "worker_blas_consistent": len(worker_blas) == 1,
        "pairs": pairs,
        "summary": summary,
        "median_ratio": median_ratio,
        "median_cpu_ratio": median_cpu_ratio,
        "median_floor_ratio": median_floor,
        "target": {"ratio_at_least": TARGET_RATIO, "passed": passed, "verdict": verdict,
                   "default_config": default_config},
        "torch_target": torch_target,
        "reference": reference,
        "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE"),
    }
    write_result(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
