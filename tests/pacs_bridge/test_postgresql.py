"""The outbox loop on PostgreSQL: claims locked with SKIP LOCKED, order per study kept."""

from __future__ import annotations

import threading
from pathlib import Path

from core.identifiers import FixedClock
from pacs_bridge.loop import OutboxLoop
from store import outbox
from store.db import Database
from store.outbox import OutboxState
from tests.pacs_bridge.conftest import T0, Versions, settings_with, store_versions
from tests.store.conftest import pg_db, pg_url  # noqa: F401  (fixtures)


def test_concurrent_claims_never_share_an_item_and_versions_stay_in_order(
    tmp_path: Path,
    versions: Versions,
    pg_db: Database,  # noqa: F811
) -> None:
    store_versions(pg_db, versions.all[:2], {"sr": ["a"], "oru": ["a"], "fhir": ["a"], "pdf": ["a"]})
    got: list[list[int]] = []
    barrier = threading.Barrier(4)

    def claim() -> None:
        with pg_db.session() as s:
            barrier.wait()
            got.append([i.id for i in outbox.claim_due(s, T0, 2, lease_s=60)])

    threads = [threading.Thread(target=claim) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    claimed = [i for ids in got for i in ids]
    assert len(claimed) == len(set(claimed)) == 4  # only version 1's four items are due; nobody shares one
    with pg_db.session() as s:
        assert {i.report_version for i in outbox.list_items(s) if i.id in claimed} == {1}
    settings = settings_with(tmp_path, {"a": {"type": "folder", "path": tmp_path / "a", "skip_superseded": False}})
    loop = OutboxLoop(pg_db, settings, FixedClock(T0.replace(hour=T0.hour + 1)))
    while not loop.run_once().idle:
        pass
    with pg_db.session() as s:
        assert {i.state for i in outbox.list_items(s)} == {OutboxState.DELIVERED}
