"""One object indexed per transaction, on SQLite's driver directly: the Storage SCP's hot path.

A receiver indexes every object in its own committed transaction before it
may acknowledge it.  Through a SQLAlchemy session that costs about 0.35-0.5 ms
of Python per object (session, connection, five compiled executions, events),
against under 0.1 ms for the same statements on the driver; on loopback that
difference is a fifth of a C-STORE.  So the common case (the study and series
are already indexed, the SOP Instance UID is new or an exact duplicate) runs
here as plain SQL on a SQLite connection outside the pool
(:meth:`store.db.Database.sqlite_connection`); everything else (a new study,
series or patient, a conflict, PostgreSQL) takes :func:`store.index.add_instance`,
the single source of those rules.  Values are converted with the column types'
own SQLite bind processors, so the rows are the ones the ORM path writes (a
hypothesis test compares them).
"""

from __future__ import annotations

import functools
import logging
import sqlite3
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Table

from core.errors import StoreError
from core.records import Instance, Series, Study
from store._checks import aware
from store.index import IndexResult, _add_to_version, _check_hierarchy, _instance_values, _naive, add_instance
from store.schema import InstanceRow, StudyRow

if TYPE_CHECKING:
    from store.db import Database

log = logging.getLogger(__name__)

# one statement for the three lookups (held instance's digest; the study; the series): each statement costs a
# round trip through the driver, which is most of what a one-row transaction costs
_SELECT_CONTEXT = (
    "SELECT (SELECT content_digest FROM instances WHERE sop_instance_uid = ?), "
    "(SELECT id FROM studies WHERE study_instance_uid = ?), "
    "(SELECT content_version FROM studies WHERE study_instance_uid = ?), "
    "(SELECT id FROM series WHERE series_instance_uid = ?), "
    "(SELECT study_id FROM series WHERE series_instance_uid = ?)"
)
# the same update as store.index._UPDATE_STUDY: fill what the study lacks, never overwrite; the instant
# strings are fixed-width ISO (the type's storage format), so MAX orders them as instants
_UPDATE_STUDY = (
    "UPDATE studies SET content_version = ?, last_received_at = MAX(last_received_at, ?), "
    "accession_number = COALESCE(accession_number, ?), study_datetime = COALESCE(study_datetime, ?), "
    "description = COALESCE(description, ?), referring_physician = COALESCE(referring_physician, ?) "
    "WHERE id = ?"
)


def _convert(value: datetime | None, processor: Any) -> Any:
    return processor(value) if processor is not None else value


@functools.cache
def _insert_sql(columns: tuple[str, ...]) -> str:
    return f"INSERT INTO instances ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"


class _FallBack(Exception):
    """The object needs the general path (new study/series, conflict)."""


class InstanceWriter:
    """Index objects one per transaction; thread-safe (each call takes a connection no other call holds).

    Parameters
    ----------
    db:
        The database; on anything but SQLite every call goes through :func:`store.index.add_instance`.
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        self.fast = db.is_sqlite and db.url.database not in (None, "", ":memory:")
        dialect = db.engine.dialect
        instances = cast(Table, InstanceRow.__table__)
        studies = cast(Table, StudyRow.__table__)
        self._instant = instances.c.received_at.type.dialect_impl(dialect).bind_processor(dialect)
        self._wall_clock = studies.c.study_datetime.type.dialect_impl(dialect).bind_processor(dialect)

    def add(
        self,
        *,
        study: Study,
        series: Series,
        instance: Instance,
        received_at: datetime,
        size_bytes: int | None = None,
    ) -> IndexResult:
        """What :func:`store.index.add_instance` does, committed; raises StoreError when the database refuses."""
        aware("add_instance received_at", received_at)
        _check_hierarchy(study, series, instance)
        if self.fast:
            try:
                return self._add_sqlite(study, series, instance, received_at, size_bytes)
            except _FallBack:
                pass
            except sqlite3.IntegrityError as exc:
                raise StoreError(
                    f"indexing instance {instance.sop_instance_uid} of study {study.study_instance_uid} failed: "
                    f"a database constraint was violated ({type(exc).__name__})"
                ) from None
            except sqlite3.Error as exc:
                uid = instance.sop_instance_uid
                raise StoreError(f"indexing instance {uid} failed: {type(exc).__name__}") from None
        with self.db.session() as session:
            return add_instance(
                session, study=study, series=series, instance=instance, received_at=received_at, size_bytes=size_bytes
            )

    def _add_sqlite(
        self, study: Study, series: Series, instance: Instance, received_at: datetime, size_bytes: int | None
    ) -> IndexResult:
        with self.db.sqlite_connection() as raw:
            cur = raw.cursor()
            cur.execute("BEGIN IMMEDIATE")  # the write lock first: what is read below stays true until COMMIT
            try:
                result = self._write(cur, study, series, instance, received_at, size_bytes)
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            cur.execute("COMMIT")
            return result

    def _write(
        self,
        cur: Any,
        study: Study,
        series: Series,
        instance: Instance,
        received_at: datetime,
        size_bytes: int | None,
    ) -> IndexResult:
        uid = instance.sop_instance_uid
        study_uid, series_uid = study.study_instance_uid, series.series_instance_uid
        held, study_id, version, series_id, parent = cur.execute(
            _SELECT_CONTEXT, (uid, study_uid, study_uid, series_uid, series_uid)
        ).fetchone()
        if held is not None:
            if held == instance.content_digest:
                return IndexResult.DUPLICATE
            raise _FallBack  # a conflict is recorded by the general path
        if study_id is None or series_id is None or parent != study_id:
            raise _FallBack  # new study or series (or one filed under another study: the general path says so)
        values = _instance_values(instance, series_id, size_bytes, received_at)
        at = values["received_at"] = _convert(received_at, self._instant)
        cur.execute(_insert_sql(tuple(values)), tuple(values.values()))
        cur.execute(
            _UPDATE_STUDY,
            (
                _add_to_version(version, uid, instance.content_digest),
                at,
                study.accession_number or None,
                _convert(_naive(study.study_datetime), self._wall_clock),
                study.description or None,
                study.referring_physician or None,
                study_id,
            ),
        )
        return IndexResult.NEW


__all__ = ["InstanceWriter"]
