"""The two ASGI apps ``bench_api.py`` puts under wrk: mmdx's service, and a minimal FastAPI app (the peer).

Both are built by uvicorn ``--factory`` in their own process; settings come from the environment
(``MMDX_*`` for mmdx, ``BENCH_PEER_JSON`` for the peer's documents).
"""

from __future__ import annotations

import json
import os
from typing import Any

from fastapi import FastAPI


def mmdx_app() -> FastAPI:
    from app.context import AppContext
    from app.service import create_app, settle_heap

    app = create_app(AppContext.create(None))
    settle_heap()  # as mmdx serve does
    return app


def peer_app() -> FastAPI:
    """Returns documents of the same size as mmdx's answers, with no auth, no database."""
    with open(os.environ["BENCH_PEER_JSON"], encoding="utf-8") as f:
        docs: dict[str, Any] = json.load(f)
    app = FastAPI()

    @app.get("/worklist")
    def worklist() -> Any:
        return docs["worklist"]

    @app.get("/report")
    def report() -> Any:
        return docs["report"]

    return app
