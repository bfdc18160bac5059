"""Where an epoch of a shipped conv net goes: seconds per epoch spent in each layer's forward and
backward, the loss gradient, the optimizer step and the augmentation.

Every layer's (or accelerated kernel's, see ``nnscratch.accel``) ``forward``/``backward`` (and the
loss, optimizer and augmentation) is wrapped with a timer for the run, so the figures include
the timers' own small cost; "other" is the rest of the fit loop (shuffling, the epoch's loss and
accuracy). Not a comparison with a peer, and not part of ``python -m bench``: a tool for
deciding what to make faster.

Usage::

    python bench/layer_profile.py [--data digits|mnist5k] [--epochs 2] [--device cpu]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = {"digits": ROOT / "configs" / "digits_cnn.toml",
           "mnist5k": ROOT / "configs" / "mnist5k_cnn.toml"}


def _timed(fn, key, totals):
    def wrapper(*args, **kwargs):
        t0 = time.perf_counter()
        result = fn(*args, **kwargs)
        totals[key] += time.perf_counter() - t0
        return result
    return wrapper


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", choices=list(CONFIGS), default="mnist5k")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)

    __import__("nnscratch").enable_threads(quiet=True)   # before NumPy, as the nnscratch command
    import numpy as np

    from nnscratch.config import build_optimizer, load_toml, train_config
    from nnscratch.data import apply_preprocessing, load_dataset
    from nnscratch.losses import SoftmaxCrossEntropy
    from nnscratch.recipe import build_augment, build_model

    cfg = train_config(load_toml(str(CONFIGS[args.data])))
    split = load_dataset(cfg["dataset"])
    model = build_model(cfg, split.info, device=args.device)
    X = apply_preprocessing(split.X_train, model.preprocessing, np.float32)
    totals: dict[object, float] = defaultdict(float)
    # the stages accelerated training runs (nnscratch.accel.planner), the ones fit will use
    stages = model._accel_stages("training")
    for i, stage in enumerate(stages):
        stage.forward = _timed(stage.forward, (i, "forward"), totals)
        stage.backward = _timed(stage.backward, (i, "backward"), totals)
    optimizer, loss = build_optimizer(cfg), SoftmaxCrossEntropy()
    optimizer.step = _timed(optimizer.step, "optimizer step", totals)
    loss.gradient = _timed(loss.gradient, "loss gradient", totals)
    augment = build_augment(cfg, model, split.info)
    if augment is not None:
        augment = _timed(augment, "augmentation", totals)

    t0 = time.perf_counter()
    model.fit(X, split.y_train, epochs=args.epochs, batch_size=cfg["batch_size"],
              optimizer=optimizer, loss=loss, augment=augment)
    epoch = (time.perf_counter() - t0) / args.epochs
    print(f"{args.data} ({CONFIGS[args.data].name}), {args.epochs} epochs on {model.device}: "
          f"{epoch:.3f} s per epoch")
    rows = [(f"({k[0]}) {stages[k[0]]!r}"[:56] + f" {k[1]}" if isinstance(k, tuple) else str(k),
             v / args.epochs) for k, v in totals.items()]
    rows.append(("other (shuffling, epoch loss and accuracy, loop)",
                 epoch - sum(v for _, v in rows)))
    for name, sec in sorted(rows, key=lambda r: -r[1]):
        print(f"  {name:<62} {sec * 1000:8.1f} ms  {sec / epoch:6.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
