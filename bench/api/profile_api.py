"""cProfile of mmdx's API in-process: where a worklist or report JSON request's CPU goes.

    .venv/bin/python bench/api/profile_api.py [--studies 200] [--requests 500] [--top 25]

Builds the same database as ``bench_api.py``, then calls the ASGI app directly on one event loop, N requests
per route, with FastAPI's thread-pool hop replaced by a direct call (so the profiler sees the endpoint's
work, which it would not in a worker thread); prints CPU ms per request (``time.process_time``, without the
profiler) and the profile's top functions by cumulative time.  No HTTP server: uvicorn's parsing is not in it.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).parent))

import asyncio  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
from typing import Any  # noqa: E402

import fastapi.dependencies.utils  # noqa: E402
import fastapi.routing  # noqa: E402
from apps import peer_app  # noqa: E402
from bench_api import build  # noqa: E402

from app.api.auth import Role, mint_token  # noqa: E402
from app.context import AppContext  # noqa: E402
from app.service import create_app  # noqa: E402


async def _inline(func: Any, *args: Any, **kwargs: Any) -> Any:
    return func(*args, **kwargs)


setattr(fastapi.routing, "run_in_threadpool", _inline)  # noqa: B010
setattr(fastapi.dependencies.utils, "run_in_threadpool", _inline)  # noqa: B010


def call(app: Any, path: str, token: str, out: list[bytes] | None = None) -> int:
    """One GET through the ASGI app; returns the status (and appends the body to ``out``)."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1"), (b"authorization", f"Bearer {token}".encode())],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    status = [0]

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status[0] = message["status"]
        elif out is not None:
            out.append(message.get("body", b""))

    LOOP.run_until_complete(app(scope, receive, send))
    return status[0]


LOOP = asyncio.new_event_loop()


def body(app: Any, path: str, token: str) -> bytes:
    out: list[bytes] = []
    assert call(app, path, token, out) == 200
    return b"".join(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--studies", type=int, default=200)
    ap.add_argument("--requests", type=int, default=500)
    ap.add_argument("--top", type=int, default=25)
    a = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="mmdx-prof-api-"))
    try:
        _, uid = build(root, a.studies)
        ctx = AppContext.create(None)
        token = mint_token(ctx.settings.auth, "bench", [Role.CLINICIAN], now=datetime.now(UTC), ttl_s=3600)
        app = create_app(ctx)
        (root / "peer.json").write_text(
            json.dumps(
                {
                    "worklist": json.loads(body(app, "/api/v1/worklist", token)),
                    "report": json.loads(body(app, f"/api/v1/studies/{uid}/reports/latest", token)),
                }
            )
        )
        os.environ["BENCH_PEER_JSON"] = str(root / "peer.json")
        peer = peer_app()
        for name, path in (("peer worklist", "/worklist"), ("peer report", "/report")):
            for _ in range(20):
                assert call(peer, path, "") == 200
            c0 = time.process_time()
            for _ in range(a.requests):
                call(peer, path, "")
            print(f"== {name}: {1000 * (time.process_time() - c0) / a.requests:.2f} ms CPU/request (unprofiled)")
        for name, url in (
            ("worklist", "/api/v1/worklist"),
            ("report", f"/api/v1/studies/{uid}/reports/latest"),
        ):
            for _ in range(20):  # warm
                assert call(app, url, token) == 200
            prof = cProfile.Profile()
            t0, c0 = time.perf_counter(), time.process_time()
            prof.enable()
            for _ in range(a.requests):
                call(app, url, token)
            prof.disable()
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            print(f"== {name}: {1000 * cpu / a.requests:.2f} ms CPU/request, {1000 * wall / a.requests:.2f} ms wall")
            # the same loop without the profiler, for the unprofiled CPU time
            c0 = time.process_time()
            for _ in range(a.requests):
                call(app, url, token)
            print(f"   unprofiled: {1000 * (time.process_time() - c0) / a.requests:.2f} ms CPU/request")
            pstats.Stats(prof).sort_stats("cumulative").print_stats(a.top)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
