"""Inference speed: images per second of batch prediction and the latency of one image, for the
seed MLP (digits), the MLP 784-256-128-10 (mnist5k) and the shipped conv nets, against the same
networks in PyTorch (CPU, eager, ``torch.no_grad()``, 2 threads) when it is installed.

Weights are freshly initialised (they do not change the speed). Per case, ``timeit`` with a loop
count chosen by ``autorange``, ``--repeat`` repeats, median per call. nnscratch is timed through
the public API (``model.predict``), which checks its input; PyTorch through ``net(x).argmax(1)``.
Each contender runs in its own process.

Usage::

    python bench/inference.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import timeit
from pathlib import Path

from _benchenv import (
    blas_info,
    environment,
    format_blas,
    nnscratch_worker,
    spawn_worker,
    threads_info,
    torch_info,
    torch_twin,
    write_result,
)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CASES = ("seed_mlp", "mnist_mlp", "digits_cnn", "mnist5k_cnn")


def _model(case: str):
    import numpy as np

    from nnscratch import Sequential
    from nnscratch.config import load_toml, train_config
    from nnscratch.data import apply_preprocessing, load_dataset
    from nnscratch.layers import Dense, ReLU
    from nnscratch.recipe import build_model

    if case == "seed_mlp":
        split = load_dataset("digits")
        model = Sequential([Dense(64, 32), ReLU(), Dense(32, 10)], seed=0)
        X = (split.X_test / 16).astype(np.float32)
    elif case == "mnist_mlp":
        split = load_dataset("mnist5k")
        model = Sequential([Dense(784, 256), ReLU(), Dense(256, 128), ReLU(), Dense(128, 10)], seed=0)
        X = (split.X_test / 255).astype(np.float32)
    else:
        cfg = train_config(load_toml(str(ROOT / "configs" / f"{case}.toml")))
        split = load_dataset(cfg["dataset"])
        model = build_model(cfg, split.info)
        X = apply_preprocessing(split.X_test, model.preprocessing, np.float32)
    return model, X


def _time(fn, repeat: int) -> float:
    timer = timeit.Timer(fn)
    number, _ = timer.autorange()
    return statistics.median(t / number for t in timer.repeat(repeat=repeat, number=number))


def _case(contender: str, case: str, repeat: int) -> dict:
    import numpy as np

    model, X = _model(case)
    if contender == "nnscratch":
        def batch():
            return model.predict(X)

        def one():
            return model.predict(X[:1])
    else:
        import torch

        torch.set_num_threads(2)
        net = torch_twin(model).eval()
        xt = torch.from_numpy(np.ascontiguousarray(X).reshape(len(X), *model.input_shape))

        def batch():
            with torch.no_grad():
                return net(xt).argmax(1).numpy()

        def one():
            with torch.no_grad():
                return net(xt[:1]).argmax(1).numpy()

    t_batch, t_one = _time(batch, repeat), _time(one, repeat)
    return {"n_images": len(X), "images_per_second": len(X) / t_batch, "one_image_us": t_one * 1e6}


def worker(contender: str, repeat: int) -> dict:
    return {case: _case(contender, case, repeat) for case in CASES}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--out", type=Path, default=HERE / "results" / "inference.json")
    p.add_argument("--worker", choices=["nnscratch", "torch"], help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        if args.worker in ("nnscratch", "floor"):   # (as the nnscratch command does first)
            nnscratch_worker()
        import json

        r = worker(args.worker, args.repeat)
        print(json.dumps({"cases": r, "blas": blas_info(), "threads": threads_info(),
                          "torch": torch_info() if args.worker == "torch" else None}))
        return 0
    env = environment()
    print(f"BLAS: {format_blas(env['blas'])}")
    runs = {"nnscratch": spawn_worker(__file__, "--worker", "nnscratch", "--repeat", str(args.repeat))}
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        print("(PyTorch is not installed: only nnscratch is measured)")
    else:
        runs["torch"] = spawn_worker(__file__, "--worker", "torch", "--repeat", str(args.repeat))
    print(f"{'case':>12}  {'nnscratch img/s':>15}  {'1 image us':>10}  {'torch img/s':>11}  "
          f"{'1 image us':>10}")
    for case in CASES:
        a = runs["nnscratch"]["cases"][case]
        b = runs.get("torch", {}).get("cases", {}).get(case)
        tail = f"  {b['images_per_second']:>11.0f}  {b['one_image_us']:>10.1f}" if b else ""
        print(f"{case:>12}  {a['images_per_second']:>15.0f}  {a['one_image_us']:>10.1f}{tail}")
    write_result(args.out, {"benchmark": "inference", "environment": env, "runs": runs})
    return 0


if __name__ == "__main__":
    sys.exit(main())
