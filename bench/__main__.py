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
    p.add_argument("--summary", action="store_true",
                   help="only summarise the existing results (table and summary.png)")
    args = p.parse_args(argv)
    if args.summary:
        summarize(HERE / "results")
        return 0
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
    summarize(HERE / "results")
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def _speedups(results: Path) -> list[tuple[str, float, float]]:
    """(what, nnscratch's speed-up over the peer, target speed-up) from the result files there."""
    import json

    def load(name: str) -> dict | None:
        path = results / f"{name}.json"
        return json.loads(path.read_text()) if path.is_file() else None

    rows = []
    if (r := load("seed_mlp")) is not None:
        rows.append(("seed MLP vs scikit-learn", r["median_ratio"], r["target"]["ratio_at_least"]))
        if r.get("torch_target"):
            rows.append(("seed MLP vs PyTorch", r["torch_target"]["median_ratio"],
                         r["torch_target"]["ratio_at_least"]))
    if (r := load("cnn_epoch")) is not None:
        for data, res in r["results"].items():
            rows.append((f"{data} CNN epoch vs PyTorch", 1 / res["median_ratio"], 1.0))
    if (r := load("mlp_mnist")) is not None:
        for peer, ratio in r["median_ratios"].items():
            rows.append((f"MLP 784-256-128-10 epoch vs {'scikit-learn' if peer == 'sklearn' else 'PyTorch'}",
                         ratio, 1.0))
    return rows


def summarize(results: Path) -> None:
    """Print nnscratch's speed-ups over the peers and plot them against the targets
    (``bench/results/summary.png``), from whatever result files exist."""
    rows = _speedups(results)
    if not rows:
        return
    print("\n=== summary: nnscratch's speed-up over each peer (median over rounds) ===")
    for what, speedup, target in rows:
        print(f"{what:>45}: {speedup:6.2f}x  (target >= {target:g}x: "
              f"{'PASS' if speedup >= target else 'FAIL'})")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 0.55 * len(rows) + 1.5), layout="constrained")
    ax = fig.add_subplot()
    ys = range(len(rows))
    ax.barh(ys, [r[1] for r in rows], color=["tab:green" if r[1] >= r[2] else "tab:red" for r in rows])
    ax.scatter([r[2] for r in rows], ys, marker="|", s=400, color="black", label="target", zorder=3)
    ax.set_yticks(list(ys), [r[0] for r in rows])
    ax.set_xscale("log")
    ax.axvline(1.0, color="grey", lw=0.8)
    ax.set_xlabel("speed-up of nnscratch over the peer (x, log scale; > 1: nnscratch faster)")
    ax.set_xlim(right=max(max(r[1] for r in rows), max(r[2] for r in rows)) * 3)  # legend room
    ax.legend(loc="lower right")
    fig.savefig(results / "summary.png", dpi=110)
    print(f"wrote {results / 'summary.png'}")


if __name__ == "__main__":
    sys.exit(main())
