"""Run state of ``mmdx batch``: one ``batch_runs`` row per run, one ``batch_items`` row per unit of work.

The state lives in the one mmdx database, so a run killed at any point is
resumed from it: an item is ``done`` only in the transaction that stores its
cohort row, hence no item is finished twice and no row is duplicated.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from core.errors import StoreError
from store.schema import BatchItemRow, BatchItemState, BatchRunRow


@dataclass(frozen=True, slots=True)
class NewItem:
    """An item as planned: ``key`` is unique within the run (a study UID, a file path, a report id)."""

    seq: int
    key: str
    kind: str
    source_path: str | None = None
    study_instance_uid: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    error: str | None = None  #: set for items known unusable when planned (broken files)

    def __post_init__(self) -> None:
        if self.seq < 0:
            raise StoreError(f"batch item seq must be >= 0, got {self.seq}")
        if not self.key:
            raise StoreError("batch item key is empty")


@dataclass(frozen=True, slots=True)
class ItemInfo:
    """An item read back for work or export."""

    id: int
    seq: int
    key: str
    kind: str
    source_path: str | None
    study_instance_uid: str | None
    meta: dict[str, Any]
    state: BatchItemState
    row: dict[str, Any] | None
    fhir: str | None
    error: str | None
    seconds: float | None


@dataclass(frozen=True, slots=True)
class RunInfo:
    id: str
    source: str
    out_dir: str
    options: dict[str, Any]
    state: str
    created_at: datetime
    finished_at: datetime | None


def _info(row: BatchItemRow) -> ItemInfo:
    return ItemInfo(
        row.id, row.seq, row.key, row.kind, row.source_path, row.study_instance_uid, dict(row.meta or {}),
        row.state, row.row, row.fhir, row.error, row.seconds,
    )  # fmt: skip


def _run_info(row: BatchRunRow) -> RunInfo:
    return RunInfo(row.id, row.source, row.out_dir, dict(row.options), row.state, row.created_at, row.finished_at)


def create_run(
    session: Session, run_id: str, source: str, out_dir: str, options: dict[str, Any], now: datetime
) -> RunInfo:
    row = BatchRunRow(
        id=run_id, source=source, out_dir=out_dir, options=options, state="running", created_at=now, updated_at=now
    )
    session.add(row)
    session.flush()
    return _run_info(row)


def get_run(session: Session, run_id: str) -> RunInfo | None:
    row = session.get(BatchRunRow, run_id)
    return None if row is None else _run_info(row)


def set_run_state(session: Session, run_id: str, state: str, now: datetime) -> None:
    row = session.get(BatchRunRow, run_id)
    if row is None:
        raise StoreError(f"batch run {run_id} does not exist")
    row.state = state
    row.updated_at = now
    row.finished_at = now if state == "finished" else None


def add_items(session: Session, run_id: str, items: Sequence[NewItem], now: datetime) -> int:
    """Add the planned items not yet in the run (by key); returns how many were new."""
    known = set(session.scalars(select(BatchItemRow.key).where(BatchItemRow.run_id == run_id)))
    added = 0
    for item in items:
        if item.key in known:
            continue
        known.add(item.key)
        failed = item.error is not None
        session.add(
            BatchItemRow(
                run_id=run_id,
                seq=item.seq,
                key=item.key,
                kind=item.kind,
                source_path=item.source_path,
                study_instance_uid=item.study_instance_uid,
                meta=item.meta,
                state=BatchItemState.FAILED if failed else BatchItemState.PENDING,
                attempts=0,
                error=item.error,
                finished_at=now if failed else None,
            )
        )
        added += 1
    session.flush()
    return added


def items(session: Session, run_id: str, state: BatchItemState | None = None) -> Iterator[ItemInfo]:
    """The run's items in ``seq`` order (optionally of one state)."""
    stmt = select(BatchItemRow).where(BatchItemRow.run_id == run_id)
    if state is not None:
        stmt = stmt.where(BatchItemRow.state == state)
    for row in session.scalars(stmt.order_by(BatchItemRow.seq)):
        yield _info(row)


def counts(session: Session, run_id: str) -> dict[BatchItemState, int]:
    rows = session.execute(
        select(BatchItemRow.state, func.count()).where(BatchItemRow.run_id == run_id).group_by(BatchItemRow.state)
    )
    out = dict.fromkeys(BatchItemState, 0)
    for state, n in rows:
        out[state] = n
    return out


def finish_item(
    session: Session,
    item_id: int,
    *,
    row: dict[str, Any] | None,
    fhir: str | None,
    error: str | None,
    seconds: float,
    now: datetime,
) -> bool:
    """Mark a pending item done (``row`` given) or failed (``error`` given), once; False if it was not pending."""
    if (row is None) == (error is None):
        raise StoreError(f"batch item {item_id}: exactly one of row and error must be given")
    state = BatchItemState.DONE if row is not None else BatchItemState.FAILED
    result = session.execute(
        update(BatchItemRow)
        .where(BatchItemRow.id == item_id, BatchItemRow.state == BatchItemState.PENDING)
        .values(
            state=state,
            row=row,
            fhir=fhir,
            error=error,
            seconds=seconds,
            finished_at=now,
            attempts=BatchItemRow.attempts + 1,
        )
    )
    return bool(getattr(result, "rowcount", 0))
