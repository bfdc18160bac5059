"""ONNX export figures (issue 18): the architectures exported and checked against onnxruntime
(max abs difference), export time and file size of each shipped config, and onnxruntime's
inference throughput against nnscratch's on the digits CNN.

1. ``check``: the 24 generated architectures of ``tests/archgen.py`` (random weights, random
   running statistics) and every ``configs/*.toml`` (plus the seed config, random weights): each
   exported, ``onnx.checker.check_model(full_check=True)``, and the largest absolute difference
   between onnxruntime's and nnscratch's probabilities and logits over 64 random inputs.
2. ``export``: seconds of ``model.to_onnx(path)`` (median of 5 after a first call, reported
   separately; onnx is already imported by step 1) and the file's size, per shipped config.
3. ``throughput``: ``configs/digits_cnn.toml`` (fresh weights: they do not change the speed), the
   360 test digits as one batch: images per second of ``model.predict_proba`` and of
   onnxruntime's ``session.run`` (2 intra-op threads, the exported file with probabilities),
   each in its own process, ``timeit`` with ``autorange``, median of ``--repeat``. One run.

Usage::

    python bench/onnx_export.py [--repeat 7]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import timeit
from pathlib import Path

from _benchenv import environment, format_blas, nnscratch_worker, spawn_worker, write_result

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CONFIGS = [None, *sorted(p for p in (ROOT / "configs").glob("*.toml")
                         if not p.name.startswith("sweep_"))]   # (sweep grids are not train configs)


def _config_model(path):
    from nnscratch.config import load_toml, train_config
    from nnscratch.data import load_dataset
    from nnscratch.recipe import build_model

    cfg = train_config(load_toml(str(path)) if path else {})
    if cfg["dataset"] == "digits":
        info = load_dataset("digits").info
    else:   # the shape is all the export needs: no download
        info = {"dataset": cfg["dataset"], "input_shape": [1, 28, 28], "n_classes": 10,
                "raw_max": 255.0}
    return build_model(cfg, info)


def check() -> list[dict]:
    import numpy as np
    import onnxruntime as ort

    sys.path.insert(0, str(ROOT / "tests"))
    from archgen import generate_architectures, randomize

    from nnscratch.interop import to_onnx_model

    cases = [(a.name, a.model) for a in generate_architectures(seed=18, count=24)]
    rng = np.random.default_rng(0)
    cases += [(f"config:{p.stem if p else 'seed'}", randomize(_config_model(p), rng))
              for p in CONFIGS]
    rows = []
    for name, model in cases:
        proto = to_onnx_model(model, probabilities=True)   # check_model(full_check=True) inside
        sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
        X = rng.normal(0, 1, (64, *model.input_shape)).astype(np.float32)
        logits, proba = sess.run(None, {"input": X})
        rows.append({"architecture": name,
                     "max_abs_diff_proba": float(np.abs(proba - model.predict_proba(X)).max()),
                     "max_abs_diff_logits": float(np.abs(logits - model.decision_function(X)).max())})
    return rows


def export_times() -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for path in CONFIGS:
            model = _config_model(path)
            out = Path(tmp) / "m.onnx"
            start = time.perf_counter()
            model.to_onnx(out, probabilities=True)
            first = time.perf_counter() - start
            times = []
            for _ in range(5):
                start = time.perf_counter()
                model.to_onnx(out, probabilities=True)
                times.append(time.perf_counter() - start)
            rows.append({"config": path.name if path else "seed config (no file)",
                         "n_params": model.n_params, "bytes": out.stat().st_size,
                         "safetensors_bytes": _saved_size(model, tmp),
                         "first_export_s": first, "export_s": statistics.median(times)})
    return rows


def _saved_size(model, tmp) -> int:
    p = Path(tmp) / "m.safetensors"
    model.save(p)
    return p.stat().st_size


def throughput(contender: str, repeat: int) -> dict:
    import numpy as np

    from nnscratch.data import apply_preprocessing, load_dataset

    model = _config_model(ROOT / "configs" / "digits_cnn.toml")
    split = load_dataset("digits")
    X = apply_preprocessing(split.X_test, model.preprocessing, np.float32).reshape(-1, 1, 8, 8)
    if contender == "nnscratch":
        def batch():
            return model.predict_proba(X)
    else:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 2
        with tempfile.TemporaryDirectory() as tmp:
            path = model.to_onnx(Path(tmp) / "m.onnx", probabilities=True)
            sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

        def batch():
            return sess.run(["probabilities"], {"input": X})[0]
    timer = timeit.Timer(batch)
    number, _ = timer.autorange()
    t = statistics.median(s / number for s in timer.repeat(repeat=repeat, number=number))
    return {"n_images": len(X), "images_per_second": len(X) / t}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument("--out", type=Path, default=HERE / "results" / "onnx_export.json")
    p.add_argument("--worker", choices=["nnscratch", "onnxruntime"], help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        if args.worker == "nnscratch":
            nnscratch_worker()
        import json

        print(json.dumps(throughput(args.worker, args.repeat)))
        return 0
    env = environment()
    print(f"BLAS: {format_blas(env['blas'])}")
    rows = check()
    print(f"{'architecture':<100} {'max|dp|':>9} {'max|dz|':>9}")
    for r in rows:
        print(f"{r['architecture']:<100} {r['max_abs_diff_proba']:9.2e} {r['max_abs_diff_logits']:9.2e}")
    print(f"{len(rows)} exported and checked; largest difference in probabilities "
          f"{max(r['max_abs_diff_proba'] for r in rows):.2e}")
    exports = export_times()
    print(f"\n{'config':<24} {'params':>8} {'onnx bytes':>11} {'safetensors':>11} {'export ms':>9} "
          f"{'first ms':>9}")
    for r in exports:
        print(f"{r['config']:<24} {r['n_params']:>8,} {r['bytes']:>11,} {r['safetensors_bytes']:>11,} "
              f"{r['export_s'] * 1e3:>9.1f} {r['first_export_s'] * 1e3:>9.1f}")
    runs = {w: spawn_worker(__file__, "--worker", w, "--repeat", str(args.repeat))
            for w in ("nnscratch", "onnxruntime")}
    a, b = runs["nnscratch"]["images_per_second"], runs["onnxruntime"]["images_per_second"]
    print(f"\ndigits CNN, 360 test digits per call: nnscratch {a:,.0f} img/s, onnxruntime "
          f"{b:,.0f} img/s: onnxruntime / nnscratch = {b / a:.2f}")
    write_result(args.out, {"benchmark": "onnx_export", "environment": env, "check": rows,
                            "export": exports, "throughput": runs, "ratio_ort_over_nnscratch": b / a})
    return 0


if __name__ == "__main__":
    sys.exit(main())
