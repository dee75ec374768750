"""The API's cheap read paths: an audit row by one INSERT, a report's stored JSON as bytes (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import select

from core.errors import StoreError
from store import audit
from store.db import Database
from store.reports import save_report_version
from store.schema import AuditRow
from store.search import WouldWait, report_payload, report_payload_bytes
from tests.store.conftest import T0
from tests.store.reports_helpers import STUDY, full_report


def _append_and_read(db: Database) -> None:
    audit.append(db, actor="user:dr.a", action="report.view", study_uid=STUDY, detail="version 1 (json)", at=T0)
    audit.append(
        db, actor="user:dr.b", action="report.view", study_uid=STUDY, detail="v2", at=T0 + timedelta(1), origin="::1"
    )
    with db.session() as s:
        trail = audit.history(s, STUDY)
        assert [(e.actor, e.action, e.detail, e.origin, e.at) for e in trail] == [
            ("user:dr.a", "report.view", "version 1 (json)", None, T0),
            ("user:dr.b", "report.view", "v2", "::1", T0 + timedelta(1)),
        ]
        assert audit.open_by(s, [STUDY], T0) == {STUDY: "user:dr.b"}
        # the rows are ordinary audit rows: still append-only through the ORM
        row = s.scalars(select(AuditRow)).first()
        assert row is not None
    with pytest.raises(StoreError, match="append-only"), db.session() as s:
        row = s.scalars(select(AuditRow)).first()
        assert row is not None
        row.detail = "rewritten"
        s.flush()
    with pytest.raises(StoreError, match="non-empty actor"):
        audit.append(db, actor=" ", action="report.view", study_uid=STUDY, at=T0)
    with pytest.raises(StoreError, match="timezone-aware|aware"):
        audit.append(db, actor="user:x", action="report.view", study_uid=STUDY, at=T0.replace(tzinfo=None))


def _payloads(db: Database) -> None:
    with db.session() as s:
        save_report_version(s, full_report(1), [], {}, T0)
        save_report_version(s, full_report(2, signed=True), [], {}, T0)
    assert report_payload_bytes(db, "1.2.3") is None
    assert report_payload_bytes(db, STUDY, 3) is None
    for version in (None, 1, 2):
        found = report_payload_bytes(db, STUDY, version)
        assert found is not None and isinstance(found[1], bytes)
        with db.session(readonly=True) as s:
            parsed = report_payload(s, STUDY, version)
        assert parsed is not None
        assert found[0] == parsed[0] == (version or 2)
        assert json.loads(found[1]) == parsed[1]


def test_audit_append_sqlite(db):
    _append_and_read(db)


def test_audit_append_sqlite_memory():
    db = Database("sqlite://")
    db.migrate()
    try:
        _append_and_read(db)
    finally:
        db.dispose()


def test_payload_bytes_sqlite(db):
    _payloads(db)


def _group(db: Database) -> None:
    entries = [
        {"actor": f"user:u{i}", "action": "report.view", "study_uid": STUDY, "detail": f"v{i}", "at": T0}
        for i in range(5)
    ]
    audit.append_many(db, entries)
    with pytest.raises(StoreError, match="non-empty actor"):  # all or none: one bad entry, nothing written
        audit.append_many(db, [*entries, {"actor": "", "action": "report.view", "at": T0}])
    with db.session() as s:
        assert [e.detail for e in audit.history(s, STUDY)] == [f"v{i}" for i in range(5)]


def test_append_many_sqlite(db):
    _group(db)


def test_no_wait_read_sqlite(db):
    found = report_payload_bytes(db, STUDY, wait=False)
    assert found is None
    with db.sqlite_connection() as conn:  # the connection's busy timeout is restored for the next user
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 30_000


def test_fast_paths_postgresql(pg_db):
    _append_and_read(pg_db)
    _payloads(pg_db)
    with pytest.raises(WouldWait):
        report_payload_bytes(pg_db, STUDY, wait=False)


def test_append_many_postgresql(pg_db):
    _group(pg_db)
