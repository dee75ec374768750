"""STAT notification: one JSON POST per configured hook, through the outbox (durable, retried, sent once)."""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from app.context import AppContext
from app.pipeline import destinations_for
from core.identifiers import FixedClock
from core.records import Priority, PriorityLevel
from pacs_bridge.loop import OutboxLoop
from store import outbox
from store.db import Database
from store.outbox import OutboxState
from tests.pacs_bridge.conftest import T0, Version, Versions, settings_with, store_versions


class Hook:
    """An HTTP endpoint that records JSON bodies and answers with ``status``."""

    def __init__(self, status: int = 200) -> None:
        self.bodies: list[dict[str, object]] = []
        self.status = status
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                hook.bodies.append(json.loads(self.rfile.read(length)))
                self.send_response(hook.status)
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def hooks() -> Iterator[tuple[Hook, Hook]]:
    pair = (Hook(), Hook(status=503))
    yield pair
    for h in pair:
        h.server.shutdown()


def _stat(v: Version) -> Version:
    return Version(
        dataclasses.replace(v.report, priority=Priority(PriorityLevel.STAT, "ST elevation in V2-V4")), v.artefacts
    )


def test_a_stat_draft_pages_each_hook_once_through_the_outbox(
    tmp_path: Path, versions: Versions, bridge_db: Database, hooks: tuple[Hook, Hook]
) -> None:
    ok, busy = hooks
    settings = settings_with(
        tmp_path,
        {
            "pager": {"type": "webhook", "url": ok.url, "artefacts": ["html"]},
            "ward": {"type": "webhook", "url": busy.url, "artefacts": ["html"], "base_delay_s": 10},
        },
    )
    ctx = AppContext.__new__(AppContext)
    ctx.settings = settings
    stat = _stat(versions.all[0])
    routine = versions.all[0].report
    assert destinations_for(ctx, routine.kind, routine) == {}  # a routine draft pages nobody
    routes = destinations_for(ctx, stat.report.kind, stat.report)
    assert routes == {"html": ["pager", "ward"]}
    store_versions(bridge_db, [stat], routes)
    loop = OutboxLoop(bridge_db, settings, FixedClock(T0))
    summary = loop.run_once()
    assert summary.delivered == 1 and summary.retried == 1
    assert loop.run_once().idle
    (body,) = ok.bodies
    assert body["study_instance_uid"] == versions.study.study_instance_uid
    assert body["priority"] == "stat" and body["reason"] == "ST elevation in V2-V4"
    assert body["report_version"] == 1 and body["link"]
    # the busy hook answered 503: retried after its backoff, then delivered once it answers
    busy.status = 200
    later = OutboxLoop(bridge_db, settings, FixedClock(T0 + timedelta(seconds=30))).run_once()
    assert later.delivered == 1
    assert len(busy.bodies) == 2 and len(ok.bodies) == 1
    with bridge_db.session() as s:
        assert {i.state for i in outbox.list_items(s)} == {OutboxState.DELIVERED}


def test_a_routine_version_queued_for_a_hook_anyway_is_not_sent(
    tmp_path: Path, versions: Versions, bridge_db: Database, hooks: tuple[Hook, Hook]
) -> None:
    ok, _ = hooks
    settings = settings_with(tmp_path, {"pager": {"type": "webhook", "url": ok.url}})
    store_versions(bridge_db, versions.all[:1], {"html": ["pager"]})  # a caller that did not filter by priority
    assert OutboxLoop(bridge_db, settings, FixedClock(T0)).run_once().skipped == 1
    assert ok.bodies == []
    with bridge_db.session() as s:
        (item,) = outbox.list_items(s)
    assert item.state is OutboxState.DEAD and "below stat" in (item.last_error or "")
