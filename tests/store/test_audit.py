"""Audit log: append-only."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from core.errors import StoreError
from store import audit
from store.schema import AuditRow
from tests.store.conftest import T0


def test_history_in_order_and_append_only(db):
    with db.session() as s:
        audit.record(
            s, actor="user:RAD-17", action="signed", study_uid="1.2.3", detail="v2 final", at=T0 + timedelta(1)
        )
        audit.record(s, actor="scp:CT1", action="received", study_uid="1.2.3", detail="12 instances", at=T0)
        audit.record(s, actor="system", action="started", study_uid=None, at=T0)
    with db.session() as s:
        hist = audit.history(s, "1.2.3")
        assert [(h.actor, h.action) for h in hist] == [("scp:CT1", "received"), ("user:RAD-17", "signed")]
        assert len(audit.recent(s)) == 3
    with pytest.raises(StoreError, match="append-only"), db.session() as s:
        row = s.scalars(select(AuditRow)).first()
        assert row is not None
        row.detail = "rewritten"
        s.flush()
    with pytest.raises(StoreError, match="append-only"), db.session() as s:
        s.delete(s.scalars(select(AuditRow)).first())
        s.flush()
    with db.session() as s:
        assert [h.detail for h in audit.history(s, "1.2.3")] == ["12 instances", "v2 final"]


def test_empty_actor_refused(db):
    with db.session() as s, pytest.raises(StoreError, match="non-empty actor"):
        audit.record(s, actor=" ", action="x", study_uid=None, at=T0)
