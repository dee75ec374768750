"""The one writer of the index: received objects -> patients, studies, series, instances, conflicts.

Deduplication by SOP Instance UID: the same UID with the same content (digest) is a no-op
(:attr:`IndexResult.DUPLICATE`); the same UID with other bytes is a :attr:`IndexResult.CONFLICT`, recorded in
``instance_conflicts`` while the original stays indexed — a modality re-sending a corrected object under the
same UID is a fault a person has to look at, not something to overwrite.

A study's ``content_version`` identifies the set of its (SOP UID, content digest) pairs: it changes exactly when
the study's content changes, and a job is enqueued once per content version.  It is an additive multiset hash
(the sum modulo 2^256 of sha256 over each pair, as 64 hex digits): independent of arrival order like a hash over
the sorted pairs, but updated in O(1) per new instance instead of re-reading the whole study (a 3,000-slice CT
took 16 s of index time with the re-read, quadratic in the study size).

One algorithm (:meth:`IndexWriter._write`: look up held digests; compare or record a conflict; find or create
the study and series; insert the instances; fold them into the study's version with one conditional UPDATE)
runs over one set of SQLAlchemy Core statements, executed in one of two ways:

* :class:`_CoreSql`: through a ``Session``'s connection, any dialect (PostgreSQL; a folder import in the
  caller's unit of work; a new patient or study, which needs the ORM's patient matching);
* :class:`_SqliteSql`: the same statements compiled once for SQLite and run on the driver's own connection
  (:meth:`store.db.Database.sqlite_connection`), with the column types' bind processors, so the rows are the
  ones the Core path writes (a hypothesis test compares them).  The Storage SCP indexes each object in its own
  committed transaction before it may acknowledge it; through a session that costs 0.35-0.5 ms of Python per
  object (session, pool, events), against under 0.1 ms on the driver: a fifth of a C-STORE on loopback.

The study and series ids a writer has committed are kept on the writer (a receiver reads its study and series
once, not once per object).  A cached entry is only a guess: the study UPDATE is conditional on the cached id
and content version, and a row deleted since (retention) makes the unit fail and run again without the cache.
"""

from __future__ import annotations

import enum
import hashlib
import operator
import sqlite3
import threading
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

from sqlalchemy import Dialect, Table, bindparam, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.orm.util import identity_key
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.functions import FunctionElement

from core.errors import StoreError
from core.records import Instance, Series, Study
from store._checks import aware
from store.patients import get_or_create, upsert_patient
from store.schema import (
    Base,
    InstanceConflictRow,
    InstanceRow,
    SeriesRow,
    StudyRow,
)

if TYPE_CHECKING:
    from store.db import Database


class IndexResult(enum.Enum):
    """What the writer did with an object."""

    NEW = "new"  #: indexed; the study's content version changed
    DUPLICATE = "duplicate"  #: same SOP Instance UID and same bytes: nothing changed
    CONFLICT = "conflict"  #: same SOP Instance UID, different bytes: logged, original kept


@dataclass(frozen=True, slots=True)
class NewInstance:
    """One stored object to index (its file must already be durable at ``instance.path``).

    ``study`` and ``series`` are the object's records without children; ``size_bytes`` is read from
    ``instance.path`` when not given and the file exists.
    """

    study: Study
    series: Series
    instance: Instance
    size_bytes: int | None = None


# --------------------------------------------------------------------------- content version

_MOD = 1 << 256


def add_to_version(version: str, sop_instance_uid: str, content_digest: str) -> str:
    """Fold one (SOP UID, content digest) into a content version in O(1)."""
    item = int.from_bytes(hashlib.sha256(f"{sop_instance_uid}\x1f{content_digest}".encode()).digest(), "big")
    total = (int(version, 16) if version else 0) + item
    return f"{total % _MOD:064x}"


# --------------------------------------------------------------------------- the statements (one per rule)

_INSTANCES = cast(Table, InstanceRow.__table__)
_STUDIES = cast(Table, StudyRow.__table__)
_SERIES = cast(Table, SeriesRow.__table__)
_CONFLICTS = cast(Table, InstanceConflictRow.__table__)

#: the content digest held for one SOP Instance UID
_HELD_ONE = select(_INSTANCES.c.content_digest).where(_INSTANCES.c.sop_instance_uid == bindparam("uid"))
#: the same for many (a folder import's chunk)
_HELD_MANY = select(_INSTANCES.c.sop_instance_uid, _INSTANCES.c.content_digest).where(
    _INSTANCES.c.sop_instance_uid.in_(bindparam("uids", expanding=True))
)
#: the study's id and content version, locked for the unit on PostgreSQL (SQLite's writer holds the file lock)
_SELECT_STUDY = (
    select(_STUDIES.c.id, _STUDIES.c.content_version)
    .where(_STUDIES.c.study_instance_uid == bindparam("uid"))
    .with_for_update()
)
_SELECT_SERIES = select(_SERIES.c.id, _SERIES.c.study_id).where(_SERIES.c.series_instance_uid == bindparam("uid"))
_FILLED = (
    "accession_number",
    "study_datetime",
    "description",
    "referring_physician",
    "study_id",
    "study_time",
    "utc_offset_minutes",
)


class _Later(FunctionElement[Any]):
    """The later of two instants: GREATEST on PostgreSQL, two-argument MAX on SQLite (fixed-width ISO text)."""

    name = "later"
    inherit_cache = True


@compiles(_Later)
def _later_default(element: _Later, compiler: Any, **kw: Any) -> str:
    return f"GREATEST({compiler.process(element.clauses, **kw)})"


@compiles(_Later, "sqlite")
def _later_sqlite(element: _Later, compiler: Any, **kw: Any) -> str:
    return f"MAX({compiler.process(element.clauses, **kw)})"


#: new objects in a study: the new version (conditional on the one read: a stale read changes no row), the
#: latest arrival (an earlier one never moves it back), and what the stored study lacks filled (COALESCE), never
#: overwritten
_UPDATE_STUDY = (
    update(_STUDIES)
    .where(_STUDIES.c.id == bindparam("sid"), _STUDIES.c.content_version == bindparam("old_version"))
    .values(
        content_version=bindparam("new_version"),
        last_received_at=_Later(_STUDIES.c.last_received_at, bindparam("at", type_=_STUDIES.c.last_received_at.type)),
        **{
            name: func.coalesce(_STUDIES.c[name], bindparam(f"fill_{name}", type_=_STUDIES.c[name].type))
            for name in _FILLED
        },
    )
)
_INSERT_CONFLICT = _CONFLICTS.insert()
_CONFLICT_COLUMNS = ("sop_instance_uid", "existing_digest", "new_digest", "new_path", "source", "at")
_INSTANCE_COLUMNS = (
    "sop_instance_uid",
    "series_id",
    "sop_class_uid",
    "transfer_syntax_uid",
    "path",
    "content_digest",
    "size_bytes",
    "instance_number",
    "number_of_frames",
    "rows",
    "columns",
    "source",
    "received_at",
)


def _insert_ignoring_duplicates(table: Table, dialect: str) -> Any:
    """INSERT that does nothing when a unique key already exists (SQLite and PostgreSQL: ON CONFLICT DO NOTHING)."""
    if dialect == "sqlite":
        return sqlite_insert(table).on_conflict_do_nothing()
    if dialect == "postgresql":
        return pg_insert(table).on_conflict_do_nothing()
    return None  # another dialect: a plain INSERT in a SAVEPOINT


def _instance_values(item: NewInstance, series_id: int, received_at: datetime) -> dict[str, Any]:
    instance, size_bytes = item.instance, item.size_bytes
    if size_bytes is None:
        try:
            size_bytes = Path(instance.path).stat().st_size
        except OSError:
            size_bytes = None
    return {
        "sop_instance_uid": instance.sop_instance_uid,
        "series_id": series_id,
        "sop_class_uid": instance.sop_class_uid,
        "transfer_syntax_uid": instance.transfer_syntax_uid,
        "path": str(instance.path),
        "content_digest": instance.content_digest,
        "size_bytes": size_bytes,
        "instance_number": instance.instance_number,
        "number_of_frames": instance.number_of_frames,
        "rows": instance.rows,
        "columns": instance.columns,
        "source": instance.source,
        "received_at": received_at,
    }


def _naive(value: datetime | None) -> datetime | None:
    """DICOM study date/time is local wall-clock time: stored without a zone."""
    return value.replace(tzinfo=None) if value is not None and value.tzinfo is not None else value


def _offset_minutes(value: datetime | None) -> int | None:
    """The UTC offset a source stated for its wall-clock time (kept beside the naive value), else None."""
    offset = value.utcoffset() if value is not None else None
    return None if offset is None else int(offset.total_seconds() // 60)


def _check_hierarchy(study: Study, series: Series, instance: Instance) -> None:
    if series.study_instance_uid != study.study_instance_uid:
        raise StoreError(
            f"series {series.series_instance_uid} names study {series.study_instance_uid}, "
            f"expected {study.study_instance_uid}"
        )
    if instance.series_instance_uid != series.series_instance_uid:
        raise StoreError(
            f"instance {instance.sop_instance_uid} names series {instance.series_instance_uid}, "
            f"expected {series.series_instance_uid}"
        )
    if instance.study_instance_uid != study.study_instance_uid:
        raise StoreError(
            f"instance {instance.sop_instance_uid} names study {instance.study_instance_uid}, "
            f"expected {study.study_instance_uid}"
        )


# --------------------------------------------------------------------------- the two ways to execute them


@dataclass(slots=True)
class _StudyState:
    id: int
    content_version: str


class _FallBack(Exception):
    """The SQLite fast path cannot do this unit (a new study or series): run it through a session."""


class _Stale(Exception):
    """A cached study or series row was deleted or replaced since it was cached: run the unit again without."""


class _Sql(Protocol):
    """The statements above, executed on one connection inside the writer's (or the caller's) transaction."""

    def held(self, uids: Collection[str]) -> dict[str, str]: ...
    def study(self, uid: str) -> _StudyState | None: ...
    def create_study(self, study: Study, at: datetime) -> _StudyState: ...
    def series(self, uid: str) -> tuple[int, int] | None: ...
    def create_series(self, series: Series, study_id: int) -> None: ...
    def insert_instances(self, rows: list[dict[str, Any]]) -> set[str]: ...
    def update_study(self, params: dict[str, Any]) -> int: ...
    def record_conflict(self, params: dict[str, Any]) -> None: ...


class _CoreSql:
    """Through a Session's connection (any dialect); new patients and studies through the ORM."""

    def __init__(self, session: Session) -> None:
        session.flush()  # Core statements do not autoflush pending ORM changes
        self.session = session
        self.conn = session.connection()
        self.dialect = self.conn.dialect.name

    def held(self, uids: Collection[str]) -> dict[str, str]:
        if len(uids) == 1:
            (uid,) = uids
            digest = self.conn.execute(_HELD_ONE, {"uid": uid}).scalar()
            return {} if digest is None else {uid: digest}
        return {u: d for u, d in self.conn.execute(_HELD_MANY, {"uids": list(uids)}).all()}

    def study(self, uid: str) -> _StudyState | None:
        found = self.conn.execute(_SELECT_STUDY, {"uid": uid}).first()
        return None if found is None else _StudyState(found.id, found.content_version)

    def create_study(self, study: Study, at: datetime) -> _StudyState:
        session = self.session

        def find() -> StudyRow | None:
            return session.scalars(
                select(StudyRow).where(StudyRow.study_instance_uid == study.study_instance_uid)
            ).one_or_none()

        def create() -> StudyRow:
            return StudyRow(
                study_instance_uid=study.study_instance_uid,
                patient=upsert_patient(session, study.patient, at),
                accession_number=study.accession_number,
                study_datetime=_naive(study.study_datetime),
                description=study.description,
                referring_physician=study.referring_physician,
                study_id=study.study_id,
                study_time=study.study_time_dicom,
                utc_offset_minutes=_offset_minutes(study.study_datetime),
                first_received_at=at,
                last_received_at=at,
                content_version="",
            )

        get_or_create(session, find, create)
        session.flush()
        state = self.study(study.study_instance_uid)
        if state is None:
            raise StoreError(f"study {study.study_instance_uid} vanished while it was being indexed")
        return state

    def series(self, uid: str) -> tuple[int, int] | None:
        found = self.conn.execute(_SELECT_SERIES, {"uid": uid}).first()
        return None if found is None else (int(found.id), int(found.study_id))

    def create_series(self, series: Series, study_id: int) -> None:
        values = {
            "series_instance_uid": series.series_instance_uid,
            "study_id": study_id,
            "modality": series.modality,
            "series_number": series.series_number,
            "description": series.description,
            "body_part": series.body_part,
        }
        stmt = _insert_ignoring_duplicates(_SERIES, self.dialect)
        if stmt is None:
            self._insert_in_savepoint(_SERIES, values)
        else:
            self.conn.execute(stmt, values)
        self._expire(StudyRow, study_id)  # its ``series`` collection grew

    def insert_instances(self, rows: list[dict[str, Any]]) -> set[str]:
        stmt = _insert_ignoring_duplicates(_INSTANCES, self.dialect)
        if stmt is None:
            inserted = {str(r["sop_instance_uid"]) for r in rows if self._insert_in_savepoint(_INSTANCES, r)}
        else:
            result = self.conn.execute(stmt.returning(_INSTANCES.c.sop_instance_uid), rows)
            inserted = set(result.scalars().all())
        for series_id in {r["series_id"] for r in rows}:
            self._expire(SeriesRow, series_id)  # its ``instances`` collection grew
        return inserted

    def update_study(self, params: dict[str, Any]) -> int:
        count = self.conn.execute(_UPDATE_STUDY, params).rowcount
        self._expire(StudyRow, params["sid"])
        return int(count)

    def record_conflict(self, params: dict[str, Any]) -> None:
        self.conn.execute(_INSERT_CONFLICT, params)

    def _insert_in_savepoint(self, table: Table, values: Mapping[str, object]) -> bool:
        try:
            with self.conn.begin_nested():
                self.conn.execute(table.insert(), values)
        except IntegrityError:
            return False
        return True

    def _expire(self, cls: type[Base], row_id: int) -> None:
        """A row changed by a Core statement: an ORM object of it (if loaded) re-reads itself."""
        if self.session.identity_map:
            obj = self.session.identity_map.get(identity_key(cls, (row_id,)))
            if obj is not None:
                self.session.expire(obj)


def _remember_last(process: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """A bind processor that converts the object it converted last for free (an object's instant: INSERT, UPDATE)."""
    cell: list[tuple[Any, Any]] = [(object(), None)]

    def run(value: Any) -> Any:
        last = cell[0]  # one tuple read and one written: threads see a matching pair
        if last[0] is value:
            return last[1]
        out = process(value)
        cell[0] = (value, out)
        return out

    return run


class _Compiled:
    """A statement compiled for SQLite's driver: its SQL, and its parameters in order, converted by the column types."""

    __slots__ = ("convert", "get", "sql")

    def __init__(
        self,
        stmt: ClauseElement,
        dialect: Dialect,
        columns: Sequence[str] | None = None,
        shared: dict[tuple[type, str], Callable[[Any], Any] | None] | None = None,
    ) -> None:
        compiled: Any = stmt.compile(dialect=dialect, column_keys=list(columns) if columns else None)
        names = tuple(compiled.positiontup)
        shared = {} if shared is None else shared
        processors = []
        for n in names:
            kind = compiled.binds[n].type
            key = (type(kind), repr(kind))
            if key not in shared:
                process = kind.dialect_impl(dialect).bind_processor(dialect)
                shared[key] = None if process is None else _remember_last(process)
            processors.append(shared[key])
        self.sql: str = str(compiled)
        self.get = operator.itemgetter(*names) if len(names) > 1 else lambda params: (params[names[0]],)
        self.convert = tuple((k, p) for k, p in enumerate(processors) if p is not None)

    def args(self, params: Mapping[str, Any]) -> tuple[Any, ...] | list[Any]:
        values = self.get(params)
        if not self.convert:
            return values
        out = list(values)
        for k, process in self.convert:
            if out[k] is not None:
                out[k] = process(out[k])
        return out


@dataclass(frozen=True, slots=True)
class _SqliteStatements:
    held: _Compiled
    study: _Compiled
    series: _Compiled
    insert_instance: _Compiled
    update_study: _Compiled
    conflict: _Compiled

    @classmethod
    def of(cls, dialect: Dialect) -> _SqliteStatements:
        shared: dict[tuple[type, str], Callable[[Any], Any] | None] = {}  # one processor per column type
        insert = _insert_ignoring_duplicates(_INSTANCES, "sqlite")
        return cls(
            held=_Compiled(_HELD_ONE, dialect, shared=shared),
            study=_Compiled(_SELECT_STUDY, dialect, shared=shared),
            series=_Compiled(_SELECT_SERIES, dialect, shared=shared),
            insert_instance=_Compiled(insert, dialect, _INSTANCE_COLUMNS, shared=shared),
            update_study=_Compiled(_UPDATE_STUDY, dialect, shared=shared),
            conflict=_Compiled(_INSERT_CONFLICT, dialect, _CONFLICT_COLUMNS, shared=shared),
        )


class _SqliteSql:
    """The same statements on SQLite's driver, inside ``BEGIN IMMEDIATE`` (the write lock taken first)."""

    def __init__(self, cursor: sqlite3.Cursor, statements: _SqliteStatements) -> None:
        self.cur = cursor
        self.s = statements

    def _run(self, stmt: _Compiled, params: Mapping[str, Any]) -> sqlite3.Cursor:
        return self.cur.execute(stmt.sql, stmt.args(params))

    def held(self, uids: Collection[str]) -> dict[str, str]:
        found = {}
        for uid in uids:
            row = self._run(self.s.held, {"uid": uid}).fetchone()
            if row is not None:
                found[uid] = row[0]
        return found

    def study(self, uid: str) -> _StudyState | None:
        row = self._run(self.s.study, {"uid": uid}).fetchone()
        return None if row is None else _StudyState(row[0], row[1])

    def create_study(self, study: Study, at: datetime) -> _StudyState:
        raise _FallBack  # patient matching is the ORM's

    def series(self, uid: str) -> tuple[int, int] | None:
        row = self._run(self.s.series, {"uid": uid}).fetchone()
        return None if row is None else (row[0], row[1])

    def create_series(self, series: Series, study_id: int) -> None:
        raise _FallBack

    def insert_instances(self, rows: list[dict[str, Any]]) -> set[str]:
        return {str(r["sop_instance_uid"]) for r in rows if self._run(self.s.insert_instance, r).rowcount}

    def update_study(self, params: dict[str, Any]) -> int:
        return self._run(self.s.update_study, params).rowcount

    def record_conflict(self, params: dict[str, Any]) -> None:
        self._run(self.s.conflict, params)


# --------------------------------------------------------------------------- the writer


@dataclass(slots=True)
class _Unit:
    """The study and series rows one transaction has read or written (published to the writer on commit)."""

    studies: dict[str, _StudyState] = field(default_factory=dict)
    series: dict[str, tuple[int, int]] = field(default_factory=dict)  #: series UID -> (id, study id)
    cached: bool = False  #: an entry came from the writer's cache of earlier transactions


_CACHE_MAX = 10_000  #: entries kept per map; a full map is cleared (a miss costs two SELECTs)


class IndexWriter:
    """Index received objects; thread-safe (each call uses a connection or session no other call holds).

    ``db`` is needed by :meth:`add` (its own transaction); :meth:`add_to` writes in the caller's session.
    """

    def __init__(self, db: Database | None = None) -> None:
        self.db = db
        self.fast = db is not None and db.is_sqlite and db.url.database not in (None, "", ":memory:")
        self._sqlite = _SqliteStatements.of(db.engine.dialect) if db is not None and self.fast else None
        self._lock = threading.Lock()
        self._studies: dict[str, _StudyState] = {}  #: committed by this writer (a guess, checked on use)
        self._series: dict[str, tuple[int, int]] = {}

    def add(
        self,
        *,
        study: Study,
        series: Series,
        instance: Instance,
        received_at: datetime,
        size_bytes: int | None = None,
    ) -> IndexResult:
        """Index one object in its own committed transaction (a receiver, before it acknowledges the object).

        Raises StoreError when the records do not fit together or the database refuses.
        """
        aware("add_instance received_at", received_at)
        _check_hierarchy(study, series, instance)
        if self.db is None:
            raise StoreError("IndexWriter.add needs the database it commits to (IndexWriter(db))")
        item = NewInstance(study, series, instance, size_bytes)
        for use_cache in (True, False):
            try:
                try:
                    if self.fast:
                        try:
                            return self._add_sqlite(item, received_at, use_cache)
                        except _FallBack:
                            pass
                    return self._add_session(item, received_at, use_cache)
                except (IntegrityError, sqlite3.IntegrityError) as exc:
                    if not use_cache:
                        raise _constraint_error(f"instance {instance.sop_instance_uid}", study, exc) from None
                    raise _Stale from None  # e.g. a cached series id whose study retention deleted
            except _Stale:
                if not use_cache:
                    raise StoreError(f"study {study.study_instance_uid} changed while it was indexed") from None
                with self._lock:
                    self._studies.clear()
                    self._series.clear()
            except sqlite3.Error as exc:
                raise StoreError(
                    f"indexing instance {instance.sop_instance_uid} failed: {type(exc).__name__}"
                ) from None
        raise AssertionError("unreachable")

    def add_to(self, session: Session, items: Sequence[NewInstance], *, received_at: datetime) -> list[IndexResult]:
        """Index objects in the caller's unit of work (committing is the caller's); one result per item.

        Per 500 objects, one SELECT finds what is already indexed and one multi-row INSERT adds the rest; each
        study's content version is folded in Python and written once.  The same object twice in ``items`` is a
        DUPLICATE the second time (a CONFLICT when the bytes differ).
        """
        aware("add_instances received_at", received_at)
        for it in items:
            _check_hierarchy(it.study, it.series, it.instance)
        sql = _CoreSql(session)
        unit = _Unit()  # the caller may roll back: nothing read here is kept after the call
        results: list[IndexResult] = []
        try:
            for start in range(0, len(items), _BULK):
                results += self._write(sql, items[start : start + _BULK], received_at, unit)
        except IntegrityError as exc:
            what = f"instance {items[0].instance.sop_instance_uid}" if len(items) == 1 else f"{len(items)} instances"
            raise _constraint_error(what, items[0].study if len(items) == 1 else None, exc) from None
        except _Stale:
            raise StoreError("a study changed while its instances were indexed") from None
        return results

    # ---------------------------------------------------------------- one object, one transaction

    def _add_sqlite(self, item: NewInstance, at: datetime, use_cache: bool) -> IndexResult:
        assert self.db is not None and self._sqlite is not None
        unit = _Unit(cached=use_cache)
        with self.db.sqlite_connection() as raw:
            cur = raw.cursor()
            cur.execute("BEGIN IMMEDIATE")  # the write lock first: what is read below stays true until COMMIT
            try:
                (result,) = self._write(_SqliteSql(cur, self._sqlite), (item,), at, unit)
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            cur.execute("COMMIT")
        self._publish(unit)
        return result

    def _add_session(self, item: NewInstance, at: datetime, use_cache: bool) -> IndexResult:
        assert self.db is not None
        unit = _Unit(cached=use_cache)
        with self.db.session() as session:
            (result,) = self._write(_CoreSql(session), (item,), at, unit)
        self._publish(unit)
        return result

    def _publish(self, unit: _Unit) -> None:
        """After a commit: the rows this unit read or wrote are known to exist (until retention deletes them)."""
        with self._lock:
            if len(self._studies) + len(unit.studies) > _CACHE_MAX:
                self._studies.clear()
            if len(self._series) + len(unit.series) > _CACHE_MAX:
                self._series.clear()
            self._studies.update(unit.studies)
            self._series.update(unit.series)

    # ---------------------------------------------------------------- the algorithm

    def _write(self, sql: _Sql, items: Sequence[NewInstance], at: datetime, unit: _Unit) -> list[IndexResult]:
        held = sql.held({it.instance.sop_instance_uid for it in items})
        results: list[IndexResult | None] = [None] * len(items)
        fresh: list[tuple[int, _StudyState, int]] = []
        for k, it in enumerate(items):
            inst = it.instance
            prior = held.get(inst.sop_instance_uid)
            if prior is not None:
                results[k] = _compare(sql, prior, inst, at)
                continue
            held[inst.sop_instance_uid] = inst.content_digest  # a second copy later in the batch compares to this
            state, series_id = self._ids(sql, it.study, it.series, at, unit)
            fresh.append((k, state, series_id))
        if fresh:
            inserted = sql.insert_instances([_instance_values(items[k], sid, at) for k, _, sid in fresh])
            per_study: dict[int, tuple[_StudyState, list[Study], list[tuple[str, str]]]] = {}
            for k, state, _ in fresh:
                inst = items[k].instance
                if inst.sop_instance_uid not in inserted:  # another process indexed it after the SELECT
                    raced = sql.held((inst.sop_instance_uid,)).get(inst.sop_instance_uid)
                    if raced is None:
                        raise StoreError(f"instance {inst.sop_instance_uid} could not be inserted nor found")
                    results[k] = _compare(sql, raced, inst, at)
                    continue
                entry = per_study.setdefault(state.id, (state, [], []))
                entry[1].append(items[k].study)
                entry[2].append((inst.sop_instance_uid, inst.content_digest))
                results[k] = IndexResult.NEW
            for state, studies, pairs in per_study.values():
                _bump_study(sql, state, studies, pairs, at)
        return [r for r in results if r is not None]

    def _ids(self, sql: _Sql, study: Study, series: Series, at: datetime, unit: _Unit) -> tuple[_StudyState, int]:
        """The study's state and the series row id: this unit's, the writer's cache, else read (created if new)."""
        study_uid, series_uid = study.study_instance_uid, series.series_instance_uid
        state = unit.studies.get(study_uid)
        if state is None:
            known = self._studies.get(study_uid) if unit.cached else None
            if known is not None:  # a copy: the writer's entry changes only when this unit commits
                state = _StudyState(known.id, known.content_version)
            else:
                state = sql.study(study_uid) or sql.create_study(study, at)
            unit.studies[study_uid] = state
        ids = unit.series.get(series_uid) or (self._series.get(series_uid) if unit.cached else None)
        if ids is None or ids[1] != state.id:
            ids = sql.series(series_uid)
            if ids is None:
                sql.create_series(series, state.id)
                ids = sql.series(series_uid)
                if ids is None:
                    raise StoreError(f"series {series_uid} could not be inserted nor found")
            if ids[1] != state.id:
                if unit.cached:
                    raise _Stale  # the cached study may be the stale one: ask again without the cache
                raise StoreError(f"series {series_uid} is already indexed under another study, not under {study_uid}")
            unit.series[series_uid] = ids
        return state, ids[0]


#: Objects per SELECT / multi-row INSERT in :meth:`IndexWriter.add_to` (well under SQLite's 32766 parameters).
_BULK = 500


def _compare(sql: _Sql, held_digest: str, instance: Instance, at: datetime) -> IndexResult:
    if held_digest == instance.content_digest:
        return IndexResult.DUPLICATE
    sql.record_conflict(
        {
            "sop_instance_uid": instance.sop_instance_uid,
            "existing_digest": held_digest,
            "new_digest": instance.content_digest,
            "new_path": str(instance.path),
            "source": instance.source,
            "at": at,
        }
    )
    return IndexResult.CONFLICT


def _bump_study(
    sql: _Sql, state: _StudyState, studies: Sequence[Study], pairs: Iterable[tuple[str, str]], at: datetime
) -> None:
    """Fold new (SOP UID, content digest) pairs into the study's content version, conditional on the version read.

    ``studies``: the study records the objects came with; a value the stored study lacks is filled from the
    first that has it.
    """

    def fill(name: str) -> Any:
        if len(studies) == 1:  # one object (a receiver): no search
            return getattr(studies[0], name) or None
        return next((v for v in (getattr(x, name) for x in studies) if v), None)

    params: dict[str, Any] = {
        "at": at,
        "fill_accession_number": fill("accession_number"),
        "fill_study_datetime": _naive(fill("study_datetime")),
        "fill_description": fill("description"),
        "fill_referring_physician": fill("referring_physician"),
        "fill_study_id": fill("study_id"),
        "fill_study_time": fill("study_time_dicom"),
        "fill_utc_offset_minutes": _offset_minutes(fill("study_datetime")),
    }
    uid = studies[0].study_instance_uid
    for _attempt in range(3):
        version = state.content_version
        for sop_uid, digest in pairs:
            version = add_to_version(version, sop_uid, digest)
        params.update(sid=state.id, old_version=state.content_version, new_version=version)
        if sql.update_study(params) == 1:
            state.content_version = version
            return
        fresh = sql.study(uid)  # the version read was stale (another writer): read it again under the lock
        if fresh is None or fresh.id != state.id:
            raise _Stale  # the study was deleted (or deleted and indexed again) since it was cached
        state.content_version = fresh.content_version
    raise StoreError(f"study {uid} changed while its instances were indexed")


def _constraint_error(what: str, study: Study | None, exc: BaseException) -> StoreError:
    # The driver's message can quote the offending values (PostgreSQL: "Key (value, issuer)=(...)"), i.e. patient
    # identifiers: name the object and the constraint class only.
    where = f" of study {study.study_instance_uid}" if study is not None else ""
    orig = getattr(exc, "orig", exc)
    return StoreError(f"indexing {what}{where} failed: a database constraint was violated ({type(orig).__name__})")


# --------------------------------------------------------------------------- for code that holds a session


def add_instance(
    session: Session,
    *,
    study: Study,
    series: Series,
    instance: Instance,
    received_at: datetime,
    size_bytes: int | None = None,
) -> IndexResult:
    """:meth:`IndexWriter.add_to` for one object, in the caller's session (NEW, DUPLICATE or CONFLICT)."""
    aware("add_instance received_at", received_at)
    (result,) = IndexWriter().add_to(
        session, (NewInstance(study, series, instance, size_bytes),), received_at=received_at
    )
    return result


def add_instances(session: Session, items: Sequence[NewInstance], *, received_at: datetime) -> list[IndexResult]:
    """:meth:`IndexWriter.add_to` in the caller's session."""
    return IndexWriter().add_to(session, items, received_at=received_at)


__all__ = ["IndexResult", "IndexWriter", "NewInstance", "add_instance", "add_instances", "add_to_version"]
