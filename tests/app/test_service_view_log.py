"""Report views' audit rows are group-committed by one thread; each request returns once its row is written."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from app.api.view_log import ViewLog
from core.errors import StoreError
from store import audit
from store.db import Database

UID = "1.2.826.0.1.3680043.10.999.5"
T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def test_concurrent_views_are_all_committed_before_they_return(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'mmdx.db'}")
    db.migrate()
    log = ViewLog(db)

    async def view(i: int) -> int:
        await log.write(actor=f"user:u{i}", action="report.view", study_uid=UID, detail=f"v{i}", at=T0, origin="::1")
        with db.session(readonly=True) as s:  # written when the call returns
            return sum(1 for e in audit.history(s, UID) if e.actor == f"user:u{i}")

    async def main() -> list[int]:
        return list(await asyncio.gather(*(view(i) for i in range(40))))

    try:
        assert asyncio.run(main()) == [1] * 40
        with db.session(readonly=True) as s:
            trail = audit.history(s, UID)
        assert len(trail) == 40 and {e.origin for e in trail} == {"::1"}

        async def bad() -> None:
            await log.write(actor=" ", action="report.view", study_uid=UID, detail="", at=T0, origin=None)

        with pytest.raises(StoreError, match="non-empty actor"):
            asyncio.run(bad())
    finally:
        db.dispose()
