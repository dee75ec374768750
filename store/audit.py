"""The audit log: append-only, who did what to which study, never PHI.

Rows are only ever inserted: the ORM refuses updates and deletes of
``AuditRow`` (see :mod:`store.schema`).  ``detail`` is free text for people;
callers put UIDs, versions, destinations and reasons in it, never patient
names or identifiers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.errors import StoreError
from store._checks import aware
from store.schema import AuditRow

__all__ = ["AuditEntry", "history", "recent", "record"]


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One audit line."""

    id: int
    at: datetime
    actor: str  #: "worker:<id>", "scp:<AE>", "user:<clinician id>", "system"
    action: str  #: short verb: "received", "analysed", "signed", "amended", "delivered"...
    study_uid: str | None
    detail: str


def record(session: Session, *, actor: str, action: str, study_uid: str | None, detail: str = "", at: datetime) -> int:
    """Append one entry in the caller's unit of work; returns its id."""
    aware("audit record at", at)
    if not actor.strip() or not action.strip():
        raise StoreError(f"audit entry: expected a non-empty actor and action, got {actor!r} / {action!r}")
    row = AuditRow(at=at, actor=actor, action=action, study_instance_uid=study_uid, detail=detail)
    session.add(row)
    session.flush()
    return row.id


def _entry(row: AuditRow) -> AuditEntry:
    return AuditEntry(row.id, row.at, row.actor, row.action, row.study_instance_uid, row.detail)


def history(session: Session, study_uid: str) -> list[AuditEntry]:
    """A study's audit trail, oldest first."""
    rows = session.scalars(
        select(AuditRow).where(AuditRow.study_instance_uid == study_uid).order_by(AuditRow.at, AuditRow.id)
    )
    return [_entry(r) for r in rows]


def recent(session: Session, *, limit: int = 100) -> list[AuditEntry]:
    """The newest entries across all studies, newest first."""
    rows = session.scalars(select(AuditRow).order_by(AuditRow.at.desc(), AuditRow.id.desc()).limit(limit))
    return [_entry(r) for r in rows]
