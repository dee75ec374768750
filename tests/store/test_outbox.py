"""Outbox state machine, backoff, dead letters, leases."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from core.errors import StoreError
from store import outbox
from store.db import Database
from store.outbox import OutboxState, backoff_delay
from store.reports import ArtefactRecord, save_report_version
from tests.store.conftest import T0, sha
from tests.store.reports_helpers import full_report


def _one_item(db: Database, routes: dict[str, list[str]] | None = None) -> int:
    art = ArtefactRecord("sr", Path("/out/sr.dcm"), sha("sr"), "application/dicom", "1.2.9.1")
    with db.session() as s:
        save_report_version(s, full_report(1), [art], routes or {"sr": ["pacs"]}, T0)
        (item,) = outbox.due(s, T0, 10)
    return item.id


def _get(db: Database, item_id: int) -> outbox.OutboxItem:
    with db.session() as s:
        item = outbox.get_item(s, item_id)
    assert item is not None
    return item


def test_backoff_is_exponential_and_capped():
    assert [backoff_delay(n, base_delay_s=10, max_delay_s=100) for n in range(0, 7)] == [0, 10, 20, 40, 80, 100, 100]
    assert backoff_delay(10_000) == 3600.0


def test_retry_backoff_then_dead_after_max_attempts(db):
    item_id = _one_item(db)
    now = T0
    for attempt in range(1, 4):
        with db.session() as s:
            assert [i.id for i in outbox.due(s, now, 10)] == [item_id]
            state = outbox.mark_retry(s, item_id, "association rejected", now, max_attempts=4, base_delay_s=10)
        assert state is OutboxState.PENDING
        item = _get(db, item_id)
        delay = timedelta(seconds=10 * 2 ** (attempt - 1))
        assert item.attempts == attempt and item.next_attempt_at == now + delay
        assert item.last_error == "association rejected"
        with db.session() as s:  # not due before the backoff ends
            assert outbox.due(s, now + delay - timedelta(microseconds=1), 10) == []
        now = now + delay
    with db.session() as s:
        assert outbox.mark_retry(s, item_id, "timeout", now, max_attempts=4) is OutboxState.DEAD
    item = _get(db, item_id)
    assert item.state is OutboxState.DEAD and item.attempts == 4
    assert item.last_error == "gave up after 4 attempts: timeout"
    with db.session() as s:
        assert outbox.due(s, now + timedelta(days=30), 10) == []
        with pytest.raises(StoreError, match=f"cannot retry outbox item {item_id} \\(pacs\\): it is dead"):
            outbox.mark_retry(s, item_id, "again", now)
        outbox.retry_dead(s, item_id, now)
    item = _get(db, item_id)
    assert item.state is OutboxState.PENDING and item.attempts == 0 and item.next_attempt_at == now


def test_delivered_is_terminal(db):
    item_id = _one_item(db)
    with db.session() as s:
        outbox.mark_delivered(s, item_id, T0 + timedelta(seconds=1))
        assert outbox.due(s, T0 + timedelta(hours=1), 10) == []
    item = _get(db, item_id)
    assert item.state is OutboxState.DELIVERED and item.attempts == 1
    with db.session() as s, pytest.raises(StoreError, match="it is delivered, expected pending or awaiting_commitment"):
        outbox.mark_retry(s, item_id, "late timeout", T0)


def test_storage_commitment_flow(db):
    item_id = _one_item(db)
    with db.session() as s:
        outbox.mark_awaiting_commitment(s, item_id, "1.2.99.7", T0 + timedelta(seconds=1))
    with db.session() as s:
        assert outbox.due(s, T0 + timedelta(hours=1), 10) == []  # stored, waiting for the PACS's report
        assert [i.id for i in outbox.by_transaction(s, "1.2.99.7")] == [item_id]
        assert outbox.commitment_overdue(s, T0) == []
        assert [i.id for i in outbox.commitment_overdue(s, T0 + timedelta(minutes=5))] == [item_id]
        # peer answered with a failure for this instance: back to pending, the try was already counted
        assert (
            outbox.mark_retry(s, item_id, "commitment failed: 0x0110", T0 + timedelta(minutes=1)) is OutboxState.PENDING
        )
    item = _get(db, item_id)
    assert item.attempts == 1 and item.transaction_uid is None
    with db.session() as s:
        outbox.mark_awaiting_commitment(s, item_id, "1.2.99.8", T0 + timedelta(minutes=2))
        outbox.mark_delivered(s, item_id, T0 + timedelta(minutes=3))
    assert _get(db, item_id).attempts == 2


def test_mark_dead_and_counts(db):
    art = [
        ArtefactRecord("sr", Path("/out/sr.dcm"), sha("sr"), "application/dicom"),
        ArtefactRecord("oru", Path("/out/r.hl7"), sha("oru"), "application/hl7-v2"),
    ]
    with db.session() as s:
        save_report_version(s, full_report(1), art, {"sr": ["pacs"], "oru": ["ris"]}, T0)
        items = {i.destination: i.id for i in outbox.due(s, T0, 10)}
        outbox.mark_dead(s, items["ris"], "destination removed from config", T0)
        outbox.mark_awaiting_commitment(s, items["pacs"], "1.2.99.9", T0)
        counts = outbox.counts_by_state(s)
        dead = outbox.list_items(s, state=OutboxState.DEAD)
    assert counts[OutboxState.DEAD] == 1 and counts[OutboxState.AWAITING_COMMITMENT] == 1
    assert counts[OutboxState.PENDING] == 0 and counts[OutboxState.SUPERSEDED] == 0
    assert len(counts) == len(OutboxState)
    assert [(d.destination, d.last_error) for d in dead] == [("ris", "destination removed from config")]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_claim_due_leases_items_once(backend: str, request: pytest.FixtureRequest) -> None:
    db: Database = request.getfixturevalue("db" if backend == "sqlite" else "pg_db")
    item_id = _one_item(db)
    with db.session() as s:
        first = outbox.claim_due(s, T0, 10, lease_s=60)
    with db.session() as s:
        second = outbox.claim_due(s, T0 + timedelta(seconds=1), 10, lease_s=60)
    assert [i.id for i in first] == [item_id] and second == []
    with db.session() as s:  # the sender crashed: the lease runs out, the item is due again
        assert [i.id for i in outbox.claim_due(s, T0 + timedelta(seconds=61), 10)] == [item_id]
    with db.session() as s:  # the built-once statement, by destination
        later = T0 + timedelta(seconds=400)
        assert outbox.claim_due(s, later, 10, destinations=["elsewhere"]) == []
        assert [i.id for i in outbox.claim_due(s, later, 10, destinations=["pacs", "x"])] == [item_id]


def test_unknown_item(db):
    with db.session() as s, pytest.raises(StoreError, match="outbox item 999 does not exist"):
        outbox.mark_delivered(s, 999, T0)


def test_a_superseded_preliminary_is_its_own_terminal_state_never_retried_as_dead(db):
    art = ArtefactRecord("sr", Path("/out/sr.dcm"), sha("sr"), "application/dicom", "1.2.9.1")
    art2 = ArtefactRecord("sr", Path("/out/sr2.dcm"), sha("sr2"), "application/dicom", "1.2.9.2")
    with db.session() as s:
        save_report_version(s, full_report(1), [art], {"sr": ["pacs"]}, T0)
        save_report_version(s, full_report(2, signed=True), [art2], {"sr": ["pacs"]}, T0)
        (first,) = outbox.due(s, T0, 10)  # version 2 waits behind version 1
        assert first.report_version == 1
        outbox.mark_skipped(s, first.id, 2, T0)
    item = _get(db, first.id)
    assert item.state is OutboxState.SUPERSEDED
    assert item.attempts == 0 and item.last_error == "skipped: superseded by version 2 before it was sent"
    with db.session() as s:
        # not open: the final is due now; not dead: neither counted nor re-queued as a dead letter
        assert [i.report_version for i in outbox.due(s, T0, 10)] == [2]
        counts = outbox.counts_by_state(s)
        assert counts[OutboxState.SUPERSEDED] == 1 and counts[OutboxState.DEAD] == 0
        assert outbox.retry_all_dead(s, T0) == 0
        with pytest.raises(StoreError, match="it is superseded, expected dead"):
            outbox.retry_dead(s, first.id, T0)
    assert _get(db, first.id).state is OutboxState.SUPERSEDED
