"""The audit log: append-only, who did what to which study, never PHI.

Rows are only ever inserted: the ORM refuses updates and deletes of
``AuditRow`` (see :mod:`store.schema`).  ``detail`` is free text for people;
callers put UIDs, versions, destinations and reasons in it, never patient
names or identifiers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session

from core.errors import StoreError
from store._checks import aware
from store.db import Database
from store.schema import AuditRow

__all__ = ["AuditEntry", "append", "append_many", "history", "open_by", "recent", "record", "search"]


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One audit line."""

    id: int
    at: datetime
    actor: str  #: "worker:<id>", "scp:<AE>", "user:<clinician id>", "system"
    action: str  #: short verb: "received", "analysed", "signed", "amended", "delivered"...
    study_uid: str | None
    detail: str
    origin: str | None = None  #: where from (the client address of an HTTP call)


def record(
    session: Session,
    *,
    actor: str,
    action: str,
    study_uid: str | None,
    detail: str = "",
    at: datetime,
    origin: str | None = None,
) -> int:
    """Append one entry in the caller's unit of work; returns its id."""
    _check(actor, action, at)
    row = AuditRow(
        at=at, actor=actor, action=action, study_instance_uid=study_uid, detail=detail, origin=(origin or None)
    )
    session.add(row)
    session.flush()
    return row.id


def _check(actor: str, action: str, at: datetime) -> None:
    aware("audit record at", at)
    if not actor.strip() or not action.strip():
        raise StoreError(f"audit entry: expected a non-empty actor and action, got {actor!r} / {action!r}")


def sqlite_file(db: Database) -> bool:
    """Whether ``db`` is a SQLite file (the one store :meth:`Database.sqlite_connection` serves)."""
    return db.is_sqlite and db.url.database not in (None, "", ":memory:")


_COLUMNS = ("at", "actor", "action", "study_instance_uid", "detail", "origin")


class _SqliteInsert:
    """The audit INSERT compiled once for SQLite's driver, with the column types' bind processors (same rows as
    the ORM writes: UTC timestamps as SQLite's DateTime text)."""

    def __init__(self, dialect: Dialect) -> None:
        compiled: Any = insert(AuditRow).compile(dialect=dialect, column_keys=list(_COLUMNS))
        names = tuple(compiled.positiontup)
        self.sql: str = str(compiled)
        self.names = names
        self.processors: tuple[Callable[[Any], Any] | None, ...] = tuple(
            compiled.binds[n].type.dialect_impl(dialect).bind_processor(dialect) for n in names
        )

    def args(self, values: dict[str, Any]) -> list[Any]:
        out = []
        for name, process in zip(self.names, self.processors, strict=True):
            value = values[name]
            out.append(process(value) if process is not None and value is not None else value)
        return out


_SQLITE_INSERT: dict[str, _SqliteInsert] = {}
#: One audit writer at a time per process: threads queue on this lock (woken at once) instead of in SQLite's
#: busy handler (which sleeps up to 100 ms between tries).
_WRITE = threading.Lock()


def append(
    db: Database,
    *,
    actor: str,
    action: str,
    study_uid: str | None,
    detail: str = "",
    at: datetime,
    origin: str | None = None,
) -> None:
    """Append one entry in its own transaction: what a read (a report view, a download) leaves behind.

    On a SQLite file it is one INSERT on an already-open connection (:meth:`Database.sqlite_connection`,
    autocommit, so the statement is its own transaction; WAL with ``synchronous=NORMAL``: no fsync per view),
    no ORM unit of work; other databases go through :func:`record` in a session.
    """
    _check(actor, action, at)
    values = {
        "at": at,
        "actor": actor,
        "action": action,
        "study_instance_uid": study_uid,
        "detail": detail,
        "origin": origin or None,
    }
    if sqlite_file(db):
        stmt = _SQLITE_INSERT.get("sqlite")
        if stmt is None:
            stmt = _SQLITE_INSERT["sqlite"] = _SqliteInsert(db.engine.dialect)
        with _WRITE, db.sqlite_connection() as conn:
            conn.execute(stmt.sql, stmt.args(values))
        return
    with _WRITE, db.session() as session:
        record(session, actor=actor, action=action, study_uid=study_uid, detail=detail, at=at, origin=origin)


def append_many(db: Database, entries: Sequence[Mapping[str, Any]]) -> None:
    """Append several entries (keyword arguments of :func:`append`) in one transaction: a group commit.

    Every entry is checked first; then on a SQLite file one ``executemany`` between ``BEGIN IMMEDIATE`` and
    ``COMMIT`` on an already-open connection, elsewhere :func:`record` for each in one session.  All or none.
    """
    rows: list[dict[str, Any]] = []
    for entry in entries:
        _check(entry["actor"], entry["action"], entry["at"])
        rows.append(
            {
                "at": entry["at"],
                "actor": entry["actor"],
                "action": entry["action"],
                "study_instance_uid": entry.get("study_uid"),
                "detail": entry.get("detail") or "",
                "origin": entry.get("origin") or None,
            }
        )
    if not rows:
        return
    if sqlite_file(db):
        stmt = _SQLITE_INSERT.get("sqlite")
        if stmt is None:
            stmt = _SQLITE_INSERT["sqlite"] = _SqliteInsert(db.engine.dialect)
        with _WRITE, db.sqlite_connection() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(stmt.sql, [stmt.args(r) for r in rows])
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return
    with _WRITE, db.session() as session:
        for r in rows:
            record(
                session,
                actor=r["actor"],
                action=r["action"],
                study_uid=r["study_instance_uid"],
                detail=r["detail"],
                at=r["at"],
                origin=r["origin"],
            )


def _entry(row: AuditRow) -> AuditEntry:
    return AuditEntry(row.id, row.at, row.actor, row.action, row.study_instance_uid, row.detail, row.origin)


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


def search(
    session: Session,
    *,
    actor: str | None = None,
    action: str | None = None,
    study_uid: str | None = None,
    since: datetime | None = None,
    limit: int = 100,
) -> list[AuditEntry]:
    """Entries matching every given filter, newest first (``action`` ending in ``.`` matches a prefix)."""
    stmt = select(AuditRow).order_by(AuditRow.at.desc(), AuditRow.id.desc()).limit(limit)
    if actor is not None:
        stmt = stmt.where(AuditRow.actor == actor)
    if action is not None:
        stmt = stmt.where(AuditRow.action.startswith(action) if action.endswith(".") else AuditRow.action == action)
    if study_uid is not None:
        stmt = stmt.where(AuditRow.study_instance_uid == study_uid)
    if since is not None:
        aware("audit search since", since)
        stmt = stmt.where(AuditRow.at >= since)
    return [_entry(r) for r in session.scalars(stmt)]


def open_by(
    session: Session, study_uids: Sequence[str], since: datetime, *, action: str = "report.view"
) -> dict[str, str]:
    """Study -> the actor who last opened it (``action``) at or after ``since``: "who has it open" on a worklist."""
    aware("audit open_by since", since)
    if not study_uids:
        return {}
    newest = (
        select(AuditRow.study_instance_uid, func.max(AuditRow.id).label("id"))
        .where(AuditRow.action == action, AuditRow.at >= since, AuditRow.study_instance_uid.in_(list(study_uids)))
        .group_by(AuditRow.study_instance_uid)
        .subquery()
    )
    rows = session.execute(select(AuditRow.study_instance_uid, AuditRow.actor).join(newest, AuditRow.id == newest.c.id))
    return {uid: actor for uid, actor in rows if uid is not None}
