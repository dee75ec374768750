"""The outbox: one row per (artefact, destination), driven by the senders in ``pacs_bridge``.

States and the calls that move between them::

    pending --mark_awaiting_commitment--> awaiting_commitment
       |                                     |
       +-------------mark_delivered----------+--> delivered
       +---------mark_dead / mark_retry*-----+--> dead
       +--mark_skipped--> superseded
    mark_retry: back to pending with exponential backoff, or dead after the
    destination's ``max_attempts``.     retry_dead: dead -> pending (operator).
    mark_skipped: an unsent preliminary whose study already has a newer version
    for the same destination (policy ``skip_superseded``); terminal, and not a
    failure: never counted as dead, never re-queued by ``retry_all_dead``.

An item being sent stays ``pending`` under a lease (:func:`claim_due` moves its
``next_attempt_at`` past the send); there is no state between "claimed" and
"answered": a sender that dies there leaves it due again when the lease ends.

Order: for one study and destination, an item of version N is not due while
an item of an earlier version is still pending or awaiting commitment
(a final never overtakes its preliminary, an amended never its final).

``attempts`` counts tries to transmit: it goes up when an item leaves
``pending`` (delivered, awaiting commitment, or a failed try), not
again when a peer later refuses the commitment of an already counted try.
Nothing is marked delivered here unless the sender says the peer confirmed.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import CursorResult, Select, String, Subquery, and_, bindparam, case, func, select, type_coerce, update
from sqlalchemy.orm import Session, aliased

from core.errors import StoreError
from core.records import PriorityLevel, ReportStatus
from store._checks import aware
from store.schema import ArtefactRow, OutboxRow, OutboxState, ReportVersionRow

__all__ = [
    "OutboxItem",
    "OutboxState",
    "backoff_delay",
    "by_transaction",
    "claim_due",
    "commitment_overdue",
    "counts_by_state",
    "due",
    "get_item",
    "list_items",
    "mark_awaiting_commitment",
    "mark_dead",
    "mark_delivered",
    "mark_delivered_many",
    "mark_retry",
    "mark_skipped",
    "newest_version",
    "release",
    "retry_all_dead",
    "retry_dead",
]

#: States in which an item still holds back later versions for its study and destination.
OPEN_STATES = (OutboxState.PENDING, OutboxState.AWAITING_COMMITMENT)

DEFAULT_BASE_DELAY_S = 30.0
DEFAULT_MAX_DELAY_S = 3600.0


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """One delivery with everything a sender needs (file, hash, UIDs, where it goes)."""

    id: int
    destination: str
    state: OutboxState
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    transaction_uid: str | None
    updated_at: datetime
    artefact_id: int
    kind: str  #: sr, sc, pdf, fhir, oru, html
    path: Path
    sha256: str
    media_type: str
    sop_instance_uid: str | None
    study_uid: str
    report_version: int
    report_status: ReportStatus
    priority: PriorityLevel
    priority_reason: str


#: The columns an :class:`OutboxItem` is made of (not the report's JSON payload: a sender never needs it).  The
#: enum columns are read as their stored strings and converted here: SQLAlchemy's Enum result processing cost
#: more than the rest of a claimed row.
_COLUMNS = (
    OutboxRow.id,
    OutboxRow.destination,
    type_coerce(OutboxRow.state, String),
    OutboxRow.attempts,
    OutboxRow.next_attempt_at,
    OutboxRow.last_error,
    OutboxRow.transaction_uid,
    OutboxRow.updated_at,
    ArtefactRow.id,
    type_coerce(ArtefactRow.kind, String),
    ArtefactRow.path,
    ArtefactRow.sha256,
    ArtefactRow.media_type,
    ArtefactRow.sop_instance_uid,
    ReportVersionRow.study_instance_uid,
    ReportVersionRow.version,
    type_coerce(ReportVersionRow.status, String),
    ReportVersionRow.priority_level,
    ReportVersionRow.priority_reason,
)


def _select() -> Select[Any]:
    return (
        select(*_COLUMNS)  # type: ignore[return-value]
        .join(ArtefactRow, OutboxRow.artefact_id == ArtefactRow.id)
        .join(ReportVersionRow, ArtefactRow.report_version_id == ReportVersionRow.id)
    )


def _items(
    session: Session,
    stmt: Select[Any],
    params: dict[str, Any] | None = None,
    *,
    leased: tuple[datetime, datetime] | None = None,
) -> list[OutboxItem]:
    """The items of the rows ``stmt`` selects (:data:`_COLUMNS`); ``leased``: (until, now) for items leased since."""
    return [
        OutboxItem(
            id=row[0],
            destination=row[1],
            state=OutboxState(row[2]),
            attempts=row[3],
            next_attempt_at=row[4] if leased is None else leased[0],
            last_error=row[5],
            transaction_uid=row[6],
            updated_at=row[7] if leased is None else leased[1],
            artefact_id=row[8],
            kind=row[9],
            path=Path(row[10]),
            sha256=row[11],
            media_type=row[12],
            sop_instance_uid=row[13],
            study_uid=row[14],
            report_version=row[15],
            report_status=ReportStatus(row[16]),
            priority=PriorityLevel(row[17]),
            priority_reason=row[18],
        )
        for row in session.execute(stmt, params)
    ]


def backoff_delay(
    attempts: int, *, base_delay_s: float = DEFAULT_BASE_DELAY_S, max_delay_s: float = DEFAULT_MAX_DELAY_S
) -> float:
    """Seconds to wait after the ``attempts``-th failed try: base * 2^(attempts-1), capped."""
    if attempts < 1:
        return 0.0
    return float(min(max_delay_s, base_delay_s * 2.0 ** min(attempts - 1, 62)))


def _first_open() -> Subquery:
    """Per (study, destination): the lowest report version that still has an open item.

    Only items of that version are due: a final waits for its preliminary, an amended for its final.
    One grouped pass over the open items, joined to the candidates (not a subquery per candidate).
    """
    o2, a2, r2 = aliased(OutboxRow), aliased(ArtefactRow), aliased(ReportVersionRow)
    return (
        select(
            r2.study_instance_uid.label("study"),
            o2.destination.label("destination"),
            func.min(r2.version).label("version"),
        )
        .join(a2, o2.artefact_id == a2.id)
        .join(r2, a2.report_version_id == r2.id)
        .where(o2.state.in_(OPEN_STATES))
        .group_by(r2.study_instance_uid, o2.destination)
        .subquery("first_open")
    )


@functools.cache
def _due_statement(*, by_destination: bool, lock: bool) -> Select[Any]:
    """The due query, built once per shape: ``now`` and ``limit`` (and ``destinations``) are bound per call.

    Building it (aliases, a grouped subquery, joins) and computing its cache key cost more than running it
    on a few hundred open items; a sender claims a batch every pass.
    """
    first = _first_open()
    stmt = (
        _select()
        .join(
            first,
            and_(
                first.c.study == ReportVersionRow.study_instance_uid,
                first.c.destination == OutboxRow.destination,
                first.c.version == ReportVersionRow.version,
            ),
        )
        .where(OutboxRow.state == OutboxState.PENDING, OutboxRow.next_attempt_at <= bindparam("now"))
        .order_by(OutboxRow.next_attempt_at, OutboxRow.id)
        .limit(bindparam("limit"))
    )
    if by_destination:
        stmt = stmt.where(OutboxRow.destination.in_(bindparam("destinations", expanding=True)))
    if lock:
        stmt = stmt.with_for_update(skip_locked=True, of=OutboxRow)
    return stmt


def due(
    session: Session,
    now: datetime,
    limit: int = 100,
    *,
    destinations: Sequence[str] | None = None,
    lock: bool = False,
) -> list[OutboxItem]:
    """Pending items (first tries and retries) whose next attempt is due, earliest first.

    An item waits while an earlier version of its study has an open item for
    the same destination.  Does not lock: one sender process per database, or
    use :func:`claim_due`.
    """
    aware("due now", now)
    return _due(session, now, limit, destinations, lock=lock)


def _due(
    session: Session,
    now: datetime,
    limit: int,
    destinations: Sequence[str] | None,
    *,
    lock: bool,
    leased: tuple[datetime, datetime] | None = None,
) -> list[OutboxItem]:
    params: dict[str, Any] = {"now": now, "limit": limit}
    if destinations is not None:
        params["destinations"] = list(destinations)
    stmt = _due_statement(by_destination=destinations is not None, lock=lock)
    return _items(session, stmt, params, leased=leased)


#: Lease the claimed candidates: won only for those still pending and due (see :func:`claim_due`).
_LEASE = (
    update(OutboxRow)
    .where(
        OutboxRow.id.in_(bindparam("ids", expanding=True)),
        OutboxRow.state == OutboxState.PENDING,
        OutboxRow.next_attempt_at <= bindparam("now"),
    )
    .values(next_attempt_at=bindparam("until"), updated_at=bindparam("now"))
    .execution_options(synchronize_session=False)
)


def claim_due(
    session: Session,
    now: datetime,
    limit: int = 100,
    *,
    lease_s: float = 300.0,
    destinations: Sequence[str] | None = None,
) -> list[OutboxItem]:
    """Like :func:`due`, but leases the items so that concurrent senders never take the same one.

    Each item's ``next_attempt_at`` moves to ``now + lease_s`` by a
    conditional UPDATE (won only if nobody moved it first).  The sender then
    reports the outcome with a ``mark_*`` call; if it crashes, the item
    becomes due again when the lease runs out.
    """
    until = now + timedelta(seconds=lease_s)
    # the candidates' rows are locked while this transaction runs (SQLite: BEGIN IMMEDIATE holds the write lock;
    # PostgreSQL: FOR UPDATE SKIP LOCKED), and the UPDATE re-checks that each is still pending and due
    aware("claim now", now)
    candidates = _due(session, now, limit, destinations, lock=True, leased=(until, now))
    if not candidates:
        return []
    result = session.execute(_LEASE, {"ids": [i.id for i in candidates], "now": now, "until": until})
    assert isinstance(result, CursorResult)
    if result.rowcount == len(candidates):  # the usual case: every locked candidate is ours, as built
        return sorted(candidates, key=_send_order)
    items = _items(
        session,
        _select().where(
            OutboxRow.id.in_([i.id for i in candidates]),
            OutboxRow.state == OutboxState.PENDING,
            OutboxRow.next_attempt_at == until,
        ),
    )
    return sorted(items, key=_send_order)


def _send_order(item: OutboxItem) -> tuple[str, int, int]:
    """Claimed items go out study by study, versions in order."""
    return (item.study_uid, item.report_version, item.id)


def _row(session: Session, item_id: int, action: str, allowed: Sequence[OutboxState], now: datetime) -> OutboxRow:
    """Lock and return the item, refusing a transition from a state not in ``allowed``."""
    aware(f"outbox {action} now", now)
    row = session.get(OutboxRow, item_id, populate_existing=True, with_for_update=True)
    if row is None:
        raise StoreError(f"outbox item {item_id} does not exist")
    if row.state not in allowed:
        raise StoreError(
            f"cannot {action} outbox item {item_id} ({row.destination}): it is {row.state.value}, "
            f"expected {' or '.join(s.value for s in allowed)}"
        )
    return row


def _count_try(row: OutboxRow) -> None:
    if row.state is OutboxState.PENDING:
        row.attempts += 1


def release(session: Session, item_ids: Sequence[int], now: datetime) -> int:
    """Give back claimed items that were not sent (a sender stopping): due again now, not after the lease."""
    aware("outbox release now", now)
    if not item_ids:
        return 0
    result = session.execute(
        update(OutboxRow)
        .where(OutboxRow.id.in_(list(item_ids)), OutboxRow.state == OutboxState.PENDING)
        .values(next_attempt_at=now, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    assert isinstance(result, CursorResult)
    return int(result.rowcount)


def mark_awaiting_commitment(session: Session, item_id: int, transaction_uid: str, now: datetime) -> None:
    """A DICOM storage commitment was requested under ``transaction_uid``; wait for the N-EVENT-REPORT."""
    if not transaction_uid:
        raise StoreError(f"outbox item {item_id}: expected a storage commitment transaction UID")
    row = _row(session, item_id, "await commitment for", (OutboxState.PENDING,), now)
    _count_try(row)
    row.state = OutboxState.AWAITING_COMMITMENT
    row.transaction_uid = transaction_uid
    row.updated_at = now
    session.flush()


def mark_delivered(session: Session, item_id: int, now: datetime) -> None:
    """The peer confirmed (C-STORE success, STOW-RS 200, FHIR 2xx, MLLP AA, or storage commitment)."""
    row = _row(session, item_id, "mark delivered", OPEN_STATES, now)
    _count_try(row)
    row.state = OutboxState.DELIVERED
    row.last_error = None
    row.updated_at = now
    session.flush()


def mark_delivered_many(session: Session, item_ids: Sequence[int], now: datetime) -> int:
    """:func:`mark_delivered` for a batch in one statement; returns how many moved (others were not open)."""
    aware("outbox mark delivered now", now)
    if not item_ids:
        return 0
    result = session.execute(
        update(OutboxRow)
        .where(OutboxRow.id.in_(list(item_ids)), OutboxRow.state.in_(OPEN_STATES))
        .values(
            attempts=OutboxRow.attempts + case((OutboxRow.state == OutboxState.PENDING, 1), else_=0),
            state=OutboxState.DELIVERED,
            last_error=None,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    assert isinstance(result, CursorResult)
    return int(result.rowcount)


def mark_retry(
    session: Session,
    item_id: int,
    error: str,
    now: datetime,
    *,
    max_attempts: int = 10,
    base_delay_s: float = DEFAULT_BASE_DELAY_S,
    max_delay_s: float = DEFAULT_MAX_DELAY_S,
    jitter: float = 1.0,
) -> OutboxState:
    """A try failed: back to pending after an exponential backoff, or dead after ``max_attempts``.

    ``max_attempts`` is the destination's ``max_attempts`` from the config;
    ``error`` (PHI-free) is kept in ``last_error``; ``jitter`` scales the
    delay (the loop draws it around 1 so that retries of many items spread out).
    Returns the new state.
    """
    row = _row(session, item_id, "retry", OPEN_STATES, now)
    _count_try(row)
    row.last_error = error
    row.updated_at = now
    row.transaction_uid = None
    if row.attempts >= max_attempts:
        row.state = OutboxState.DEAD
        row.last_error = f"gave up after {row.attempts} attempts: {error}"
    else:
        row.state = OutboxState.PENDING
        row.next_attempt_at = now + timedelta(
            seconds=jitter * backoff_delay(row.attempts, base_delay_s=base_delay_s, max_delay_s=max_delay_s)
        )
    session.flush()
    return row.state


def mark_dead(session: Session, item_id: int, reason: str, now: datetime, *, tried: bool = False) -> None:
    """Give up on an item now (the peer refused it for good, or its destination was removed).

    ``tried``: this was a try to transmit (a refusal by the peer), counted in ``attempts``.
    """
    row = _row(session, item_id, "mark dead", OPEN_STATES, now)
    if tried:
        _count_try(row)
    row.state = OutboxState.DEAD
    row.last_error = reason
    row.updated_at = now
    session.flush()


def retry_dead(session: Session, item_id: int, now: datetime) -> None:
    """An operator's retry of a dead item: pending again, due now, attempts from zero."""
    row = _row(session, item_id, "retry a dead", (OutboxState.DEAD,), now)
    row.state = OutboxState.PENDING
    row.attempts = 0
    row.next_attempt_at = now
    row.updated_at = now
    session.flush()


def mark_skipped(session: Session, item_id: int, newer_version: int, now: datetime) -> None:
    """Skip an unsent item whose study has a newer version for the same destination (policy: skip_superseded).

    Its own terminal state, not ``dead``: nothing failed, and re-queueing dead items must not send a superseded draft.
    """
    row = _row(session, item_id, "skip", (OutboxState.PENDING,), now)
    row.state = OutboxState.SUPERSEDED
    row.last_error = f"skipped: superseded by version {newer_version} before it was sent"
    row.updated_at = now
    session.flush()


def newest_version(session: Session, study_uid: str, destination: str) -> int | None:
    """The newest report version of a study that has an item for ``destination`` (None: none)."""
    newest = session.scalar(
        select(func.max(ReportVersionRow.version))
        .join(ArtefactRow, ArtefactRow.report_version_id == ReportVersionRow.id)
        .join(OutboxRow, OutboxRow.artefact_id == ArtefactRow.id)
        .where(ReportVersionRow.study_instance_uid == study_uid, OutboxRow.destination == destination)
    )
    return None if newest is None else int(newest)


def retry_all_dead(session: Session, now: datetime, *, destination: str | None = None) -> int:
    """An operator's retry of every dead item (of one destination); returns how many."""
    stmt = select(OutboxRow.id).where(OutboxRow.state == OutboxState.DEAD)
    if destination is not None:
        stmt = stmt.where(OutboxRow.destination == destination)
    ids = list(session.scalars(stmt))
    for item_id in ids:
        retry_dead(session, item_id, now)
    return len(ids)


def get_item(session: Session, item_id: int) -> OutboxItem | None:
    """One outbox item (None when it does not exist)."""
    items = _items(session, _select().where(OutboxRow.id == item_id))
    return items[0] if items else None


def by_transaction(session: Session, transaction_uid: str) -> list[OutboxItem]:
    """The items a storage commitment transaction covers (to settle them on its N-EVENT-REPORT)."""
    return _items(session, _select().where(OutboxRow.transaction_uid == transaction_uid).order_by(OutboxRow.id))


def commitment_overdue(session: Session, older_than: datetime) -> list[OutboxItem]:
    """Items still awaiting storage commitment that were last updated at or before ``older_than``."""
    stmt = (
        _select()
        .where(OutboxRow.state == OutboxState.AWAITING_COMMITMENT, OutboxRow.updated_at <= older_than)
        .order_by(OutboxRow.updated_at, OutboxRow.id)
    )
    return _items(session, stmt)


def list_items(
    session: Session,
    *,
    state: OutboxState | None = None,
    study_uid: str | None = None,
    destination: str | None = None,
    limit: int | None = None,
) -> list[OutboxItem]:
    """Outbox items, newest first, filtered by state / study / destination."""
    stmt = _select().order_by(OutboxRow.id.desc())
    if state is not None:
        stmt = stmt.where(OutboxRow.state == state)
    if study_uid is not None:
        stmt = stmt.where(ReportVersionRow.study_instance_uid == study_uid)
    if destination is not None:
        stmt = stmt.where(OutboxRow.destination == destination)
    if limit is not None:
        stmt = stmt.limit(limit)
    return _items(session, stmt)


def counts_by_state(session: Session) -> dict[OutboxState, int]:
    """How many items are in each state (every state present, zero when none)."""
    counts = dict.fromkeys(OutboxState, 0)
    for state, n in session.execute(select(OutboxRow.state, func.count(OutboxRow.id)).group_by(OutboxRow.state)):
        counts[state] = int(n)
    return counts
