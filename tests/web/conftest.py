"""The web tests share one real ``nnscratch serve`` process (see serve_helpers.py).

``NNSCRATCH_TEST_SERVE_EPOCHS`` (default 8; 0: the configs' own 100 and 60) sets how long its
default models train; ``NNSCRATCH_TEST_SERVE_CACHE=DIR`` keeps them in DIR between runs.
"""

from __future__ import annotations

import os

import httpx
import pytest
from serve_helpers import EPOCHS, start_server, stop_server


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """``nnscratch serve`` with the default models (short training), on 127.0.0.1."""
    base = tmp_path_factory.mktemp("serve")
    cache = os.environ.get("NNSCRATCH_TEST_SERVE_CACHE") or str(base / "cache")
    srv = start_server(["--cache", cache] + (["--epochs", str(EPOCHS)] if EPOCHS else []),
                       base / "serve.log")
    yield srv
    stop_server(srv)


@pytest.fixture(scope="session")
def client(server):
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c
