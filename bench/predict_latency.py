"""Latency of recognising ONE 8x8 digit through the Python API, and batch throughput.

The seed model (64-32-10 ReLU, float32) is trained briefly on the digits seed split (the weights
do not matter for speed; training makes the accuracy line a sanity check), then timed with
``timeit``:

- ``model.predict(x)`` for one digit given as shape (1, 64) and as shape (64,), float32, scaled
  to [0, 1] (the target: under 50 us, judged on the median of the repeats, both shapes);
- ``model.predict_proba(x)`` for the same two shapes;
- ``model.predict(X_test)`` on the 360 test images, reported as images per second;
- for reference only, the bare NumPy floor of the same forward pass (x @ W1 + b1, max(0, .),
  @ W2 + b2, argmax: 5 NumPy calls), to show how much the API's checks and dispatch cost.

Each case: ``timeit.Timer.autorange`` picks a loop count that lasts >= 0.2 s, then ``--repeat``
repeats of that many loops; the figures are per call, median and min over the repeats, in
microseconds. The environment is left as it is (no thread-count or OPENBLAS_* variable set).

Usage::

    python bench/predict_latency.py [--repeat 7] [--train-epochs 30] [--out ...]

The exit status is 0 whether or not the target is met (this is a report).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import timeit
from pathlib import Path

from _benchenv import environment, format_blas, write_result

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results" / "predict_latency.json"
TARGET_US = 50.0  # one digit through model.predict, median of the repeats
HIDDEN = 32


def measure(fn, repeat: int) -> dict:
    """Per-call seconds of ``fn()``: loops per repeat chosen by autorange, then ``repeat`` runs."""
    timer = timeit.Timer(fn)
    number, _ = timer.autorange()            # also warms up
    number = max(number, 10)
    times = [t / number for t in timer.repeat(repeat=repeat, number=number)]
    return {"loops": number, "repeat": repeat, "per_call_us": [t * 1e6 for t in times],
            "median_us": statistics.median(times) * 1e6, "min_us": min(times) * 1e6}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeat", type=int, default=7, help="timeit repeats per case (default 7)")
    p.add_argument("--train-epochs", type=int, default=30,
                   help="epochs of training before timing; 0 = fresh weights (default 30)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="result JSON file")
    args = p.parse_args(argv)
    if args.repeat < 1 or args.train_epochs < 0:
        p.error("--repeat must be >= 1 and --train-epochs >= 0")

    import numpy as np

    from nnscratch import Sequential
    from nnscratch.data import DIGITS_MAX, load_digits_split
    from nnscratch.layers import Dense, ReLU
    from nnscratch.losses import SoftmaxCrossEntropy
    from nnscratch.optim import SGD

    split = load_digits_split()
    X_train = (split.X_train / DIGITS_MAX).astype(np.float32)
    X_test = (split.X_test / DIGITS_MAX).astype(np.float32)
    model = Sequential([Dense(64, HIDDEN), ReLU(), Dense(HIDDEN, 10)], seed=0)
    if args.train_epochs:
        model.fit(X_train, split.y_train, epochs=args.train_epochs, batch_size=32,
                  optimizer=SGD(lr=0.1), loss=SoftmaxCrossEntropy())
    accuracy = model.score(X_test, split.y_test)
    env = environment()

    x2 = np.ascontiguousarray(X_test[:1])    # (1, 64) float32
    x1 = np.ascontiguousarray(X_test[0])     # (64,) float32
    assert x2.shape == (1, 64) and x1.shape == (64,) and x1.dtype == np.float32
    assert model.predict(x1)[0] == model.predict(x2)[0]

    W1, b1 = model.layers[0].params["W"], model.layers[0].params["b"]
    W2, b2 = model.layers[2].params["W"], model.layers[2].params["b"]
    assert W1.shape == (64, HIDDEN) and W2.shape == (HIDDEN, 10)  # Dense: Z = X @ W + b

    def numpy_floor():
        h = x2 @ W1
        h += b1
        np.maximum(h, 0, out=h)
        return (h @ W2 + b2).argmax(axis=1)

    assert numpy_floor()[0] == model.predict(x2)[0]

    predict, predict_proba = model.predict, model.predict_proba
    cases = [
        ("predict (1, 64)", lambda: predict(x2), 1),
        ("predict (64,)", lambda: predict(x1), 1),
        ("predict_proba (1, 64)", lambda: predict_proba(x2), 1),
        ("predict_proba (64,)", lambda: predict_proba(x1), 1),
        ("numpy floor (1, 64) [ref]", numpy_floor, 1),
        (f"predict batch ({len(X_test)}, 64)", lambda: predict(X_test), len(X_test)),
        (f"predict_proba batch ({len(X_test)}, 64)", lambda: predict_proba(X_test),
         len(X_test)),
    ]

    weights = f"trained {args.train_epochs} epochs" if args.train_epochs else "fresh weights"
    print(f"predict latency, seed model 64-{HIDDEN}-10 ReLU float32 ({weights}, "
          f"test accuracy {accuracy:.4f})")
    print(f"python {env['python']}, numpy {env['numpy']}, sklearn {env['sklearn']}, "
          f"{env['cpu_count']} CPUs ({env['cpu_model']}), "
          f"load {' '.join(f'{x:.2f}' for x in env['loadavg'] or [])}")
    print(f"BLAS: {format_blas(env['blas'])}")
    print(f"timeit: autorange loops (>= 0.2 s per repeat), {args.repeat} repeats; per call\n")
    header = f"{'case':<32}  {'loops':>7}  {'median us':>10}  {'min us':>9}  {'images/s':>10}"
    print(header)
    print("-" * len(header))
    results = {}
    for name, fn, n_images in cases:
        r = measure(fn, args.repeat)
        r["images"] = n_images
        r["images_per_s_median"] = n_images / (r["median_us"] * 1e-6)
        results[name] = r
        print(f"{name:<32}  {r['loops']:>7}  {r['median_us']:>10.2f}  {r['min_us']:>9.2f}  "
              f"{r['images_per_s_median']:>10,.0f}", flush=True)
    print("-" * len(header))

    judged = ["predict (1, 64)", "predict (64,)"]
    worst = max(results[k]["median_us"] for k in judged)
    passed = worst < TARGET_US
    verdict = "PASS" if passed else "FAIL"
    print(f"TARGET one digit through model.predict < {TARGET_US:g} us (median, both shapes): "
          f"{verdict} (worst median {worst:.2f} us)")

    result = {
        "benchmark": "predict_latency",
        "config": {"architecture": [64, HIDDEN, 10], "dtype": "float32",
                   "train_epochs": args.train_epochs, "test_accuracy": accuracy,
                   "repeat": args.repeat, "timer": "timeit autorange (>= 0.2 s) then repeat",
                   "input": "digits seed split test images, X/16, float32"},
        "environment": env,
        "cases": results,
        "target": {"predict_one_digit_median_us_below": TARGET_US, "judged_cases": judged,
                   "worst_median_us": worst, "passed": passed, "verdict": verdict},
    }
    write_result(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
