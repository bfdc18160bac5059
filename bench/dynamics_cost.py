"""Cost of training dynamics (nnscratch.dynamics.TrainingDynamics) on the seed task: 7 alternating
pairs of 1000-epoch fits in one process, with and without the callback.

    python bench/dynamics_cost.py
"""

from __future__ import annotations

import statistics
import time

import nnscratch

nnscratch.enable_threads(quiet=True)   # as the nnscratch command does, before NumPy

import numpy as np  # noqa: E402

from nnscratch import Sequential  # noqa: E402
from nnscratch.data import load_digits_split  # noqa: E402
from nnscratch.dynamics import TrainingDynamics  # noqa: E402
from nnscratch.layers import Dense, ReLU  # noqa: E402
from nnscratch.losses import SoftmaxCrossEntropy  # noqa: E402
from nnscratch.optim import SGD  # noqa: E402


def run(X: np.ndarray, y: np.ndarray, dynamics: bool) -> float:
    model = Sequential([Dense(64, 32), ReLU(), Dense(32, 10)], seed=0)
    callbacks = [TrainingDynamics(X[:128], y[:128], SoftmaxCrossEntropy())] if dynamics else []
    start = time.perf_counter()
    model.fit(X, y, epochs=1000, batch_size=32, optimizer=SGD(lr=0.1), callbacks=callbacks)
    return time.perf_counter() - start


def main(pairs: int = 7) -> None:
    split = load_digits_split()
    X, y = (split.X_train / 16).astype(np.float32), split.y_train
    run(X, y, True), run(X, y, False)   # warm-up
    on, off = [], []
    for i in range(pairs):   # alternate which goes first
        if i % 2 == 0:
            on.append(run(X, y, True))
            off.append(run(X, y, False))
        else:
            off.append(run(X, y, False))
            on.append(run(X, y, True))
    ratios = [a / b for a, b in zip(on, off, strict=True)]
    print("with dynamics  s:", " ".join(f"{v:.3f}" for v in on))
    print("without        s:", " ".join(f"{v:.3f}" for v in off))
    print(f"ratio per pair: {' '.join(f'{r:.3f}' for r in ratios)}; "
          f"median {statistics.median(ratios):.3f}; fastest/fastest {min(on) / min(off):.3f}")


if __name__ == "__main__":
    main()
