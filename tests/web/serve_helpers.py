"""Start and stop a real ``nnscratch serve`` process (uvicorn) on 127.0.0.1.

The shared server's default models (the digits MLP and CNN) are trained at start-up into a
temporary cache with ``--epochs $NNSCRATCH_TEST_SERVE_EPOCHS`` (default 8) instead of the
configs' 100 and 60, so that start-up takes seconds.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

EPOCHS = int(os.environ.get("NNSCRATCH_TEST_SERVE_EPOCHS", "8"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    url: str
    process: subprocess.Popen
    cache: Path
    log: Path

    def model_file(self, name: str) -> Path:
        (path,) = self.cache.glob(f"{name}-*/model.safetensors")
        return path


def start_server(args: list[str], log: Path, timeout: float = 240.0) -> Server:
    """Start ``nnscratch serve ARGS --port P`` and wait until /healthz answers."""
    port = free_port()
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "nnscratch", "serve", *args, "--port", str(port)],
                                stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"nnscratch serve exited with {proc.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                cache = Path(args[args.index("--cache") + 1]) if "--cache" in args else Path()
                return Server(url, proc, cache, log)
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    pytest.fail(f"nnscratch serve did not answer within {timeout} s:\n{log.read_text()}")


def stop_server(server: Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(20)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()
