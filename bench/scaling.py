"""How nnscratch's training cost scales: seconds per epoch against the number of examples, the
hidden width and the batch size (log-log plot), and the peak memory (RSS) of training against the
number of epochs.

The network is an MLP 784-H-10 (ReLU, SGD lr 0.01) on mnist5k's 4,000 training images, repeated
(with fresh shuffles) to make larger sets; defaults: 4,000 examples, H = 256, batch 64. Each point
is the median of ``--repeat`` epochs after one warm-up epoch, in one process. The peak RSS is
measured in a fresh process per epoch count (``resource.getrusage``): it must not grow with the
number of epochs (no per-epoch leak; the history holds a few floats per epoch).

Usage::

    python bench/scaling.py [--repeat 3]

Writes ``bench/results/scaling.json`` and ``bench/results/scaling.png``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from _benchenv import environment, epoch_clock, format_blas, spawn_worker, write_result

HERE = Path(__file__).resolve().parent
EXAMPLES = (500, 1000, 2000, 4000, 8000, 16000)
WIDTHS = (32, 64, 128, 256, 512, 1024)
BATCHES = (8, 16, 32, 64, 128, 256, 512)
EPOCH_COUNTS = (1, 5, 20)


def _data(n: int):
    import numpy as np

    from nnscratch.data import load_dataset

    split = load_dataset("mnist5k")
    X, y = (split.X_train / 255).astype(np.float32), split.y_train
    reps = -(-n // len(X))
    rng = np.random.default_rng(0)
    idx = np.concatenate([rng.permutation(len(X)) for _ in range(reps)])[:n]
    return X[idx], y[idx]


def epoch_seconds(n: int, width: int, batch: int, repeat: int) -> float:
    from nnscratch import Sequential
    from nnscratch.layers import Dense, ReLU
    from nnscratch.losses import SoftmaxCrossEntropy
    from nnscratch.optim import SGD

    X, y = _data(n)
    times: list[float] = []
    model = Sequential([Dense(784, width), ReLU(), Dense(width, 10)], seed=0)
    model.fit(X, y, epochs=repeat + 1, batch_size=batch, optimizer=SGD(lr=0.01),
              loss=SoftmaxCrossEntropy(), callbacks=[epoch_clock(times)])
    return statistics.median(times[1:])


def rss_worker(epochs: int) -> dict:
    import resource

    from nnscratch import Sequential
    from nnscratch.layers import Dense, ReLU
    from nnscratch.losses import SoftmaxCrossEntropy
    from nnscratch.optim import SGD

    X, y = _data(4000)
    model = Sequential([Dense(784, 256), ReLU(), Dense(256, 10)], seed=0)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    model.fit(X, y, epochs=epochs, batch_size=64, optimizer=SGD(lr=0.01), loss=SoftmaxCrossEntropy())
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"epochs": epochs, "peak_rss_mib_before_fit": before / 1024, "peak_rss_mib": after / 1024}


def _slope(xs, ys) -> float:
    import numpy as np

    return float(np.polyfit(np.log(xs), np.log(ys), 1)[0])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--out", type=Path, default=HERE / "results" / "scaling.json")
    p.add_argument("--rss-worker", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.rss_worker:
        import json

        print(json.dumps(rss_worker(args.rss_worker)))
        return 0
    env = environment()
    print(f"BLAS: {format_blas(env['blas'])}")
    sweeps = {
        "examples": [(n, epoch_seconds(n, 256, 64, args.repeat)) for n in EXAMPLES],
        "width": [(w, epoch_seconds(4000, w, 64, args.repeat)) for w in WIDTHS],
        "batch_size": [(b, epoch_seconds(4000, 256, b, args.repeat)) for b in BATCHES],
    }
    for name, points in sweeps.items():
        print(f"{name:>10}: " + ", ".join(f"{x}: {s:.3f}s" for x, s in points)
              + f"   log-log slope {_slope(*zip(*points, strict=True)):.2f}")
    rss = [spawn_worker(__file__, "--rss-worker", str(e)) for e in EPOCH_COUNTS]
    for r in rss:
        print(f"peak RSS after {r['epochs']:>3} epochs: {r['peak_rss_mib']:.1f} MiB")
    growth = rss[-1]["peak_rss_mib"] - rss[0]["peak_rss_mib"]
    slope_n = _slope(*zip(*sweeps["examples"], strict=True))
    print(f"cost vs examples: slope {slope_n:.2f} (linear = 1.00); peak RSS grows "
          f"{growth:+.1f} MiB from {EPOCH_COUNTS[0]} to {EPOCH_COUNTS[-1]} epochs")
    _plot(sweeps, args.out.with_suffix(".png"))
    write_result(args.out, {"benchmark": "scaling", "environment": env, "sweeps": sweeps,
                            "slopes": {k: _slope(*zip(*v, strict=True)) for k, v in sweeps.items()},
                            "rss": rss, "rss_growth_mib": growth})
    return 0


def _plot(sweeps: dict, path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13, 4), layout="constrained")
    labels = {"examples": "training examples", "width": "hidden width H",
              "batch_size": "batch size"}
    for i, (name, points) in enumerate(sweeps.items()):
        ax = fig.add_subplot(1, 3, i + 1)
        xs, ys = zip(*points, strict=True)
        ax.loglog(xs, ys, "o-")
        ax.set(xlabel=labels[name], ylabel="seconds per epoch",
               title=f"log-log slope {_slope(xs, ys):.2f}")
        ax.grid(True, which="both", alpha=0.3)
    fig.suptitle("nnscratch training cost, MLP 784-H-10 on mnist5k (SGD)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
