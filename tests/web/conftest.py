"""The web tests share one real ``nnscratch serve`` process (see serve_helpers.py)."""

from __future__ import annotations

import httpx
import pytest
from serve_helpers import EPOCHS, start_server, stop_server


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """``nnscratch serve`` with the default models (short training), on 127.0.0.1."""
    base = tmp_path_factory.mktemp("serve")
    srv = start_server(["--cache", str(base / "cache"), "--epochs", str(EPOCHS)], base / "serve.log")
    yield srv
    stop_server(srv)


@pytest.fixture(scope="session")
def client(server):
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c
