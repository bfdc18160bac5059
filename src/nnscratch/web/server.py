"""Start-up of ``nnscratch serve``: load (or train) the models once, then run uvicorn."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from .models import ServedModel, default_cache_dir, default_served, load_served

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


def prepare(paths: list[Path], cache: Path | None = None, epochs: int | None = None,
            quiet: bool = False) -> list[ServedModel]:
    """The served models: the given files, or the default digits MLP and CNN (trained once
    into ``cache``, with ``epochs`` instead of their configs' if given)."""
    served = (load_served(paths) if paths
              else default_served(cache or default_cache_dir(), epochs, quiet))
    for m in served:   # first prediction outside the request path (the accelerated stages are made)
        h, w = m.input_hw
        m.predict(np.zeros((1, h * w)), feature_maps=True)
    return served


def serve(paths: list[Path], host: str = "127.0.0.1", port: int = 8000, cache: Path | None = None,
          epochs: int | None = None) -> int:
    import uvicorn

    from .app import create_app

    if host not in LOCAL_HOSTS:
        print(f"nnscratch serve: warning: listening on {host}, not only on this machine: anyone "
              "who can reach this port can use the models (there is no authentication)",
              file=sys.stderr, flush=True)
    served = prepare(paths, cache, epochs)
    app = create_app(served)
    shown = f"[{host}]" if ":" in host else host
    print(f"nnscratch serve: {', '.join(m.name for m in served)} at http://{shown}:{port}/ "
          "(Ctrl+C stops)", file=sys.stderr, flush=True)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                            server_header=False)
    server = uvicorn.Server(config)
    server.run()
    return 0 if server.started else 1
