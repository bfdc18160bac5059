"""Load test of ``nnscratch serve``: concurrent clients (asyncio + httpx) on 127.0.0.1.

    python bench/serve_load.py                       # starts `nnscratch serve` (default models)
    python bench/serve_load.py --url http://127.0.0.1:8000 --model digits-cnn --duration 30

A fixed set of requests (digits of the test split as raw pixels and as PNG pictures) is first sent
one at a time to record each answer; then ``--clients`` clients send them round-robin for
``--duration`` seconds. Reported: requests per second, p50/p99 latency, errors (non-200 answers
and failed requests) and mismatches (answers that differ from the one the same request got
alone). Exit status 1 if there was any error or mismatch. Only loopback URLs are accepted.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def requests_for(model: str, n: int = 16) -> list[dict]:
    """n bodies: half raw 8x8 pixels of test digits, half those digits drawn as PNG pictures."""
    from PIL import Image

    from nnscratch.data import load_digits_split

    X = load_digits_split().X_test
    bodies = []
    for i in range(n):
        digit = X[i].reshape(8, 8)
        if i % 2 == 0:
            bodies.append({"model": model, "pixels": digit.tolist()})
        else:   # a dark-on-light picture, 10x upscaled
            img = Image.fromarray((255 - digit * 15).astype(np.uint8))
            img = img.resize((80, 80), Image.Resampling.NEAREST)
            buf = io.BytesIO()
            img.save(buf, "PNG")
            bodies.append({"model": model, "image": base64.b64encode(buf.getvalue()).decode()})
    return bodies


async def run_load(url: str, bodies: list[dict], clients: int, duration: float) -> dict:
    import httpx

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as http:
        alone = []
        for b in bodies:   # each request on its own, one at a time
            r = await http.post("/api/predict", json=b)
            if r.status_code != 200:
                raise SystemExit(f"serve_load: a reference request failed: {r.status_code} {r.text}")
            alone.append(r.json())
        latencies: list[float] = []
        errors = mismatches = 0
        stop = time.perf_counter() + duration

        async def client(k: int) -> None:
            nonlocal errors, mismatches
            i = k
            while time.perf_counter() < stop:
                j = i % len(bodies)
                i += 1
                t0 = time.perf_counter()
                try:
                    r = await http.post("/api/predict", json=bodies[j])
                except httpx.HTTPError:
                    errors += 1
                    continue
                latencies.append(time.perf_counter() - t0)
                if r.status_code != 200:
                    errors += 1
                elif r.json() != alone[j]:
                    mismatches += 1

        start = time.perf_counter()
        await asyncio.gather(*(client(k) for k in range(clients)))
        elapsed = time.perf_counter() - start
    lat = np.array(latencies) * 1e3 if latencies else np.array([np.nan])
    return {"model": bodies[0]["model"], "clients": clients, "seconds": round(elapsed, 2),
            "requests": len(latencies), "requests_per_s": round(len(latencies) / elapsed, 1),
            "p50_ms": round(float(np.percentile(lat, 50)), 2),
            "p99_ms": round(float(np.percentile(lat, 99)), 2),
            "errors": errors, "mismatches": mismatches}


def start_serve(args: list[str], timeout: float = 600) -> tuple[subprocess.Popen, str]:
    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "nnscratch", "serve", *args, "--host", "127.0.0.1",
                             "--port", str(port)])
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"serve_load: nnscratch serve exited with {proc.returncode}")
        try:
            if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("serve_load: nnscratch serve did not start")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", help="a running server (loopback only); default: start one")
    p.add_argument("--serve-args", default="", help="arguments for the started server, e.g. "
                   "'--cache DIR --epochs 5' or model files")
    p.add_argument("--model", action="append", help="model name(s) to load (default: each served)")
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--duration", type=float, default=30.0, help="seconds per model (default 30)")
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args(argv)
    if args.clients < 1 or not 0 < args.duration <= 600:
        p.error("--clients >= 1 and 0 < --duration <= 600")
    proc = None
    if args.url:
        if urlparse(args.url).hostname not in LOOPBACK:
            p.error("--url must be on this machine (127.0.0.1)")
        url = args.url.rstrip("/")
    else:
        proc, url = start_serve(args.serve_args.split())
    try:
        import httpx

        names = args.model or [m["name"] for m in httpx.get(url + "/api/models").json()]
        results = []
        for name in names:
            r = asyncio.run(run_load(url, requests_for(name), args.clients, args.duration))
            results.append(r)
            print(f"{name}: {r['requests_per_s']} requests/s ({r['requests']} in {r['seconds']} s, "
                  f"{r['clients']} clients), p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, "
                  f"errors {r['errors']}, answers differing from the request alone {r['mismatches']}",
                  flush=True)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(30)
    info = {"machine": f"{os.cpu_count()} cores", "date": time.strftime("%Y-%m-%d %H:%M"),
            "results": results}
    if args.json:
        args.json.write_text(json.dumps(info, indent=2) + "\n")
    return 1 if any(r["errors"] or r["mismatches"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
