"""Run the benchmarks: ``python -m bench [NAME ...]`` (default: all, in the order below).

Each benchmark is also a script (``python bench/NAME.py --help``) with its own options; this
runner uses their defaults. Results go to ``bench/results/NAME.json`` (and ``.png`` plots).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARKS = {
    "seed_mlp": "seed MLP 64-32-10 training: vs scikit-learn and PyTorch (targets 10x, 15x)",
    "cnn_epoch": "shipped conv nets, seconds per epoch vs PyTorch (target <= 1.0)",
    "mlp_mnist": "MLP 784-256-128-10 Adam on mnist5k, per epoch vs scikit-learn and PyTorch",
    "inference": "batch images/s and one-image latency, MLPs and CNNs, vs PyTorch",
    "scaling": "seconds per epoch vs examples, width, batch size (log-log); peak RSS vs epochs",
    "predict_latency": "one 8x8 digit through model.predict (target < 50 us)",
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0],
                                epilog="\n".join(f"{k}: {v}" for k, v in BENCHMARKS.items()),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("names", nargs="*", metavar="NAME", help="benchmarks to run (default: all)")
    args = p.parse_args(argv)
    unknown = [n for n in args.names if n not in BENCHMARKS]
    if unknown:
        p.error(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    failed = []
    for name in args.names or list(BENCHMARKS):
        print(f"\n=== {name}: {BENCHMARKS[name]} ===", flush=True)
        # each benchmark in its own interpreter, as its workers are
        code = subprocess.run([sys.executable, str(HERE / f"{name}.py")], check=False).returncode
        if code:
            failed.append(name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
