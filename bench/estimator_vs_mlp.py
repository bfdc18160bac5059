"""NNClassifier against scikit-learn's MLPClassifier on the same settings (digits, 80/20 split):
test accuracy of each, and fit time as a ratio measured in one run (contenders alternate).

    python bench/estimator_vs_mlp.py [--rounds 5] [--epochs 200] [--dtype float64]

Same settings: one hidden layer of 64 ReLU units, Adam (lr 0.001, betas 0.9/0.999, eps 1e-8),
batch 32, every epoch run (MLPClassifier: tol=0 and n_iter_no_change=epochs, so it never stops
early), no L2 (alpha=0), shuffling, inputs scaled to [0, 1], one BLAS thread for both.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
import warnings

from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from threadpoolctl import threadpool_info, threadpool_limits

from nnscratch import NNClassifier


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    args = ap.parse_args()
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(args.dtype)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.2, stratify=y, random_state=42)
    make = {
        "nnscratch": lambda seed: NNClassifier(
            (64,), optimizer="adam", lr=0.001, epochs=args.epochs, batch_size=32,
            dtype=args.dtype, random_state=seed),
        "sklearn": lambda seed: MLPClassifier(
            (64,), solver="adam", learning_rate_init=0.001, max_iter=args.epochs, batch_size=32,
            alpha=0.0, tol=0.0, n_iter_no_change=args.epochs, random_state=seed),
    }
    times: dict[str, list[float]] = {k: [] for k in make}
    accs: dict[str, list[float]] = {k: [] for k in make}
    ratios = []
    with threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for r in range(args.rounds):
            order = list(make) if r % 2 == 0 else list(make)[::-1]
            for name in order:
                est = make[name](r)
                start = time.perf_counter()
                est.fit(Xtr, ytr)
                times[name].append(time.perf_counter() - start)
                accs[name].append(float(est.score(Xte, yte)))
            ratios.append(times["sklearn"][-1] / times["nnscratch"][-1])
    blas = [(i.get("internal_api"), i.get("version"), i.get("architecture")) for i in threadpool_info()]
    print(f"machine: {platform.processor() or platform.machine()}, BLAS {blas}")
    print(f"digits 80/20, hidden (64,), adam lr 0.001, batch 32, {args.epochs} epochs, {args.dtype}, "
          f"{args.rounds} rounds")
    for name in make:
        print(f"{name:10s} test accuracy {', '.join(f'{a:.4f}' for a in accs[name])} "
              f"(median {statistics.median(accs[name]):.4f}); fit seconds "
              f"{', '.join(f'{t:.2f}' for t in times[name])}")
    print(f"fit time ratio sklearn / nnscratch per round: {', '.join(f'{q:.2f}' for q in ratios)}; "
          f"median {statistics.median(ratios):.2f}x")


if __name__ == "__main__":
    main()
