"""The index of received objects: patients, studies, series, instances, quarantine.

Every function takes a SQLAlchemy ``Session`` (from :meth:`store.db.Database.session`)
and leaves committing to it, so that callers can combine several calls in
one unit of work.  Records in and out are ``core`` records, never rows.

Deduplication by SOP Instance UID: the same UID with the same content (digest)
is a no-op (:attr:`IndexResult.DUPLICATE`); the same UID with other bytes is
a :attr:`IndexResult.CONFLICT`, recorded in ``instance_conflicts`` while the
original stays indexed — a modality re-sending a corrected object under the
same UID is a fault a person has to look at, not something to overwrite.

A study's ``content_version`` identifies the set of its (SOP UID, content digest)
pairs: it changes exactly when the study's content changes, and a job is
enqueued once per content version.  It is an additive multiset hash (the sum
modulo 2^256 of sha256 over each pair, as 64 hex digits): independent of
arrival order like a hash over the sorted pairs, but updated in O(1) per new
instance instead of re-reading the whole study (a 3,000-slice CT took 16 s of
index time with the re-read, quadratic in the study size).
"""

from __future__ import annotations

import enum
import hashlib
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar, cast

from sqlalchemy import Table, and_, bindparam, event, exists, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload
from sqlalchemy.orm.util import identity_key

from core.errors import StoreError
from core.records import Instance, Patient, PatientIdentifier, Series, Sex, Study
from store._checks import aware
from store.schema import (
    Base,
    InstanceConflictRow,
    InstanceRow,
    JobRow,
    PatientIdentifierRow,
    PatientRow,
    QuarantineRow,
    SeriesRow,
    StudyRow,
)

_Row = TypeVar("_Row", bound=Base)


class IndexResult(enum.Enum):
    """What :func:`add_instance` did with an object."""

    NEW = "new"  #: indexed; the study's content version changed
    DUPLICATE = "duplicate"  #: same SOP Instance UID and same bytes: nothing changed
    CONFLICT = "conflict"  #: same SOP Instance UID, different bytes: logged, original kept


@dataclass(frozen=True, slots=True)
class QuarantineEntry:
    """An input that was not indexed, and why (the reason never holds PHI)."""

    id: int
    path: Path
    reason: str
    source: str
    received_at: datetime
    sha256: str | None = None
    study_instance_uid: str | None = None


@dataclass(frozen=True, slots=True)
class ConflictEntry:
    """A rejected object whose SOP Instance UID was already indexed with other bytes."""

    id: int
    sop_instance_uid: str
    existing_digest: str
    new_digest: str
    new_path: Path
    source: str
    at: datetime


# --------------------------------------------------------------------------- helpers


def _get_or_create(session: Session, query: Callable[[], _Row | None], create: Callable[[], _Row]) -> _Row:
    """Return the row ``query`` finds, or insert the one ``create`` builds.

    The insert runs in a SAVEPOINT: when another process inserted the same
    unique key in between (PostgreSQL, READ COMMITTED), the insert is undone
    and the other process's row is returned instead of failing the whole unit.
    """
    row = query()
    if row is not None:
        return row
    try:
        with session.begin_nested():
            row = create()
            session.add(row)
    except IntegrityError:
        found = query()
        if found is None:
            raise
        return found
    return row


_MOD = 1 << 256


def _item_digest(sop_instance_uid: str, content_digest: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{sop_instance_uid}\x1f{content_digest}".encode()).digest(), "big")


def _add_to_version(version: str, sop_instance_uid: str, content_digest: str) -> str:
    """Fold one (SOP UID, content digest) into a content version in O(1)."""
    total = (int(version, 16) if version else 0) + _item_digest(sop_instance_uid, content_digest)
    return f"{total % _MOD:064x}"


def recompute_content_version(session: Session, uid: str) -> str:
    """The content version computed from scratch over the study's instances (to check the stored one)."""
    pairs = session.execute(
        select(InstanceRow.sop_instance_uid, InstanceRow.content_digest)
        .join(SeriesRow, InstanceRow.series_id == SeriesRow.id)
        .join(StudyRow, SeriesRow.study_id == StudyRow.id)
        .where(StudyRow.study_instance_uid == uid)
    ).all()
    version = ""
    for sop_uid, digest in pairs:
        version = _add_to_version(version, sop_uid, digest)
    return version


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


def _find_patient(session: Session, patient: Patient) -> PatientRow | None:
    for ident in patient.identifiers:
        row = session.scalars(
            select(PatientRow)
            .join(PatientIdentifierRow, PatientIdentifierRow.patient_id == PatientRow.id)
            .where(PatientIdentifierRow.value == ident.value, PatientIdentifierRow.issuer == (ident.issuer or ""))
        ).first()
        if row is not None:
            return row
    return None


def _upsert_patient(session: Session, patient: Patient, now: datetime) -> PatientRow:
    """Match on (identifier, issuer); fill demographics the stored patient lacks; add new identifiers."""

    def create() -> PatientRow:
        row = PatientRow(
            name=patient.name,
            sex=patient.sex,
            birth_date=patient.birth_date,
            age_years=patient.age_years,
            created_at=now,
        )
        seen: set[tuple[str, str]] = set()
        for ident in patient.identifiers:
            key = (ident.value, ident.issuer or "")
            if key not in seen:
                seen.add(key)
                row.identifiers.append(PatientIdentifierRow(value=key[0], issuer=key[1]))
        return row

    if not patient.identifiers:
        row = create()  # nothing to match on: an anonymous patient of its own
        session.add(row)
        return row
    row = _get_or_create(session, lambda: _find_patient(session, patient), create)
    if row.name is None and patient.name:
        row.name = patient.name
    if row.birth_date is None and patient.birth_date is not None:
        row.birth_date = patient.birth_date
    if row.sex is Sex.UNKNOWN and patient.sex is not Sex.UNKNOWN:
        row.sex = patient.sex
    if row.age_years is None and patient.age_years is not None:
        row.age_years = patient.age_years
    known = {(i.value, i.issuer) for i in row.identifiers}
    for ident in patient.identifiers:
        key = (ident.value, ident.issuer or "")
        if key in known:
            continue
        known.add(key)
        taken = session.scalars(
            select(PatientIdentifierRow).where(
                PatientIdentifierRow.value == key[0], PatientIdentifierRow.issuer == key[1]
            )
        ).first()
        if taken is None:  # an identifier already held by another patient is not moved over
            row.identifiers.append(PatientIdentifierRow(value=key[0], issuer=key[1]))
    return row


def _naive(value: datetime | None) -> datetime | None:
    """DICOM study date/time is local wall-clock time: stored without a zone."""
    return value.replace(tzinfo=None) if value is not None and value.tzinfo is not None else value


def _offset_minutes(value: datetime | None) -> int | None:
    """The UTC offset a source stated for its wall-clock time (kept beside the naive value), else None."""
    offset = value.utcoffset() if value is not None else None
    return None if offset is None else int(offset.total_seconds() // 60)


def _with_offset(value: datetime | None, minutes: int | None) -> datetime | None:
    if value is None or minutes is None:
        return value
    return value.replace(tzinfo=timezone(timedelta(minutes=minutes)))


# --------------------------------------------------------------------------- public API


def add_instance(
    session: Session,
    *,
    study: Study,
    series: Series,
    instance: Instance,
    received_at: datetime,
    size_bytes: int | None = None,
) -> IndexResult:
    """Index one stored object (its file must already be durable at ``instance.path``).

    Parameters
    ----------
    study, series:
        The object's study and series as core records; their ``series`` /
        ``instances`` children are ignored (pass them without children).
    instance:
        The object: UIDs, path, content digest, source.
    received_at:
        When it arrived (timezone-aware); moves the study's ``last_received_at``
        forward, which decides when the study counts as stable.
    size_bytes:
        File size; read from ``instance.path`` when not given and the file exists.

    Returns
    -------
    IndexResult
        NEW, DUPLICATE (no-op) or CONFLICT (logged in ``instance_conflicts``, original kept).
    """
    aware("add_instance received_at", received_at)
    _check_hierarchy(study, series, instance)
    try:
        return _add_instance(session, study, series, instance, received_at, size_bytes)
    except IntegrityError as exc:
        # The driver's message can quote the offending values (PostgreSQL: "Key (value, issuer)=(...)"),
        # i.e. patient identifiers: name the object and the constraint class only.
        raise StoreError(
            f"indexing instance {instance.sop_instance_uid} of study {study.study_instance_uid} failed: "
            f"a database constraint was violated ({type(exc.orig).__name__})"
        ) from None


# Per-transaction cache of the rows add_instance touches: a batch of objects of one study (a folder import,
# group-committed C-STOREs) reads its study and series once, not once per object.  It lives in
# ``session.info`` keyed by the root transaction, so it never outlives the transaction that read it; the study
# UPDATE is conditional on the cached content version, so a stale entry is detected and re-read.
_CACHE_KEY = "mmdx_index_cache"


@dataclass(slots=True)
class _StudyState:
    id: int
    content_version: str
    last_received_at: datetime


#: Committed entries of the per-transaction caches, shared by the sessions of one engine (one per process):
#: a receiver indexing one object per transaction reads its study and series once, not once per object.
#: Entries are published only after a commit (a rolled-back row is never cached); rows are never deleted and a
#: series never changes study, and the study's cached state is checked by the conditional UPDATE as above.
_SHARED: weakref.WeakKeyDictionary[Any, tuple[dict[str, _StudyState], dict[str, tuple[int, int]]]] = (
    weakref.WeakKeyDictionary()
)
_SHARED_MAX = 10_000  #: entries kept per map; a full map is cleared (a cache miss costs two SELECTs)


def _shared(session: Session) -> tuple[dict[str, _StudyState], dict[str, tuple[int, int]]]:
    bind = session.get_bind()
    engine = getattr(bind, "engine", bind)
    entry = _SHARED.get(engine)
    if entry is None:
        entry = _SHARED.setdefault(engine, ({}, {}))
    return entry


@event.listens_for(Session, "after_commit")
def _publish(session: Session) -> None:
    entry = session.info.get(_CACHE_KEY)
    if entry is None or entry[0] is None:
        return
    studies, series_ids = _shared(session)
    for shared, local in ((studies, entry[1]), (series_ids, entry[2])):
        if len(shared) + len(local) > _SHARED_MAX:
            shared.clear()
        shared.update(local)
    session.info.pop(_CACHE_KEY, None)


def _cache(session: Session) -> tuple[dict[str, _StudyState], dict[str, tuple[int, int]]]:
    txn = session.get_transaction()
    entry = session.info.get(_CACHE_KEY)
    if entry is None or entry[0] is not txn or session.in_nested_transaction():
        entry = (txn, {}, {})
        # inside a savepoint the entries may be rolled back: start empty and keep nothing for the outer unit
        session.info[_CACHE_KEY] = (None, {}, {}) if session.in_nested_transaction() else entry
    return entry[1], entry[2]


_INSERT_IGNORE: dict[tuple[str, str], Any] = {}


def _insert_ignoring_duplicates(session: Session, table: Table, values: dict[str, object]) -> bool:
    """INSERT that does nothing when a unique key already exists; True when the row was inserted.

    The statements are built once per dialect and table (their compiled form is cached) and take
    the values as parameters.
    """
    conn = session.connection()
    dialect = conn.dialect.name
    if dialect not in ("sqlite", "postgresql"):
        try:
            with conn.begin_nested():
                conn.execute(table.insert(), values)
        except IntegrityError:
            return False
        return True
    stmt = _INSERT_IGNORE.get((dialect, table.name))
    if stmt is None:
        if dialect == "sqlite":
            stmt = sqlite_insert(table).on_conflict_do_nothing()
        else:  # psycopg reports no rowcount here: ask for the inserted key instead
            stmt = pg_insert(table).on_conflict_do_nothing().returning(table.c.id)
        _INSERT_IGNORE[(dialect, table.name)] = stmt
    result = conn.execute(stmt, values)
    return bool(result.rowcount) if dialect == "sqlite" else result.first() is not None


def _expire_loaded(session: Session, cls: type[Base], row_id: int) -> None:
    """Rows changed by Core statements: make an ORM object of the same row (if loaded) re-read itself."""
    if not session.identity_map:
        return
    obj = session.identity_map.get(identity_key(cls, (row_id,)))
    if obj is not None:
        session.expire(obj)


_INSTANCES = cast(Table, InstanceRow.__table__)
_STUDIES = cast(Table, StudyRow.__table__)
_SERIES = cast(Table, SeriesRow.__table__)
_CONFLICTS = cast(Table, InstanceConflictRow.__table__)
_SELECT_INSTANCE = select(_INSTANCES.c.content_digest).where(_INSTANCES.c.sop_instance_uid == bindparam("uid"))
_SELECT_STUDY = (
    select(_STUDIES.c.id, _STUDIES.c.content_version, _STUDIES.c.last_received_at)
    .where(_STUDIES.c.study_instance_uid == bindparam("uid"))
    .with_for_update()
)
# fills what the stored study lacks (COALESCE), never overwrites; conditional on the version read before
_UPDATE_STUDY = (
    update(_STUDIES)
    .where(_STUDIES.c.id == bindparam("sid"), _STUDIES.c.content_version == bindparam("old_version"))
    .values(
        content_version=bindparam("new_version"),
        last_received_at=bindparam("last", type_=_STUDIES.c.last_received_at.type),
        **{
            name: func.coalesce(_STUDIES.c[name], bindparam(f"fill_{name}", type_=_STUDIES.c[name].type))
            for name in (
                "accession_number",
                "study_datetime",
                "description",
                "referring_physician",
                "study_id",
                "study_time",
                "utc_offset_minutes",
            )
        },
    )
)
_SELECT_SERIES = select(_SERIES.c.id, _SERIES.c.study_id).where(_SERIES.c.series_instance_uid == bindparam("uid"))


def _record_conflict_core(session: Session, existing_digest: str, instance: Instance, at: datetime) -> IndexResult:
    session.connection().execute(
        _CONFLICTS.insert().values(
            sop_instance_uid=instance.sop_instance_uid,
            existing_digest=existing_digest,
            new_digest=instance.content_digest,
            new_path=str(instance.path),
            source=instance.source,
            at=at,
        )
    )
    return IndexResult.CONFLICT


def _locked_study(session: Session, study: Study, received_at: datetime) -> _StudyState:
    """The study's row, locked for this transaction (PostgreSQL; SQLite holds the write lock); created if new."""
    conn = session.connection()
    found = conn.execute(_SELECT_STUDY, {"uid": study.study_instance_uid}).first()
    if found is None:

        def find_study() -> StudyRow | None:
            return session.scalars(
                select(StudyRow).where(StudyRow.study_instance_uid == study.study_instance_uid)
            ).one_or_none()

        def create_study() -> StudyRow:
            return StudyRow(
                study_instance_uid=study.study_instance_uid,
                patient=_upsert_patient(session, study.patient, received_at),
                accession_number=study.accession_number,
                study_datetime=_naive(study.study_datetime),
                description=study.description,
                referring_physician=study.referring_physician,
                study_id=study.study_id,
                study_time=study.study_time_dicom,
                utc_offset_minutes=_offset_minutes(study.study_datetime),
                first_received_at=received_at,
                last_received_at=received_at,
                content_version="",
            )

        _get_or_create(session, find_study, create_study)
        session.flush()
        found = conn.execute(_SELECT_STUDY, {"uid": study.study_instance_uid}).first()
        if found is None:
            raise StoreError(f"study {study.study_instance_uid} vanished while it was being indexed")
    return _StudyState(found.id, found.content_version, found.last_received_at)


def _series_id(session: Session, series: Series, study: Study, study_id: int) -> int:
    conn = session.connection()
    found = conn.execute(_SELECT_SERIES, {"uid": series.series_instance_uid}).first()
    if found is None:
        _insert_ignoring_duplicates(
            session,
            _SERIES,
            {
                "series_instance_uid": series.series_instance_uid,
                "study_id": study_id,
                "modality": series.modality,
                "series_number": series.series_number,
                "description": series.description,
                "body_part": series.body_part,
            },
        )
        _expire_loaded(session, StudyRow, study_id)  # its ``series`` collection grew
        found = conn.execute(_SELECT_SERIES, {"uid": series.series_instance_uid}).one()
    if found.study_id != study_id:
        raise StoreError(
            f"series {series.series_instance_uid} is already indexed under another study, "
            f"not under {study.study_instance_uid}"
        )
    return int(found.id)


def _ids_for(session: Session, study: Study, series: Series, received_at: datetime) -> tuple[_StudyState, int]:
    """The study's state (cached, else read and locked, created if new) and the series row id."""
    studies, series_ids = _cache(session)
    shared_studies, shared_series = _shared(session)
    state = studies.get(study.study_instance_uid)
    if state is None:
        known = shared_studies.get(study.study_instance_uid)
        if known is not None:  # a copy: this transaction's changes are published only when it commits
            state = _StudyState(known.id, known.content_version, known.last_received_at)
        else:
            state = _locked_study(session, study, received_at)
        studies[study.study_instance_uid] = state
    cached_series = series_ids.get(series.series_instance_uid) or shared_series.get(series.series_instance_uid)
    if cached_series is not None and cached_series[1] == state.id:
        series_id = cached_series[0]
    else:
        series_id = _series_id(session, series, study, state.id)
        series_ids[series.series_instance_uid] = (series_id, state.id)
    return state, series_id


def _instance_values(
    instance: Instance, series_id: int, size_bytes: int | None, received_at: datetime
) -> dict[str, Any]:
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


def _bump_study(
    session: Session, state: _StudyState, studies: Sequence[Study], pairs: Sequence[tuple[str, str]], at: datetime
) -> None:
    """Fold new (SOP UID, content digest) pairs into the study's content version, conditional on the version read.

    ``studies``: the study records the objects came with; a value the stored study lacks is filled from the
    first that has it.
    """
    study = studies[0]

    def fill(name: str) -> Any:
        return next((v for v in (getattr(x, name) for x in studies) if v), None)

    fills = {
        "fill_accession_number": fill("accession_number"),
        "fill_study_datetime": _naive(fill("study_datetime")),
        "fill_description": fill("description"),
        "fill_referring_physician": fill("referring_physician"),
        "fill_study_id": fill("study_id"),
        "fill_study_time": fill("study_time_dicom"),
        "fill_utc_offset_minutes": _offset_minutes(fill("study_datetime")),
    }
    conn = session.connection()
    for _attempt in range(2):
        version = state.content_version
        for uid, sha in pairs:
            version = _add_to_version(version, uid, sha)
        last = max(state.last_received_at, at)
        updated = conn.execute(
            _UPDATE_STUDY,
            {"sid": state.id, "old_version": state.content_version, "new_version": version, "last": last, **fills},
        ).rowcount
        if updated == 1:
            break
        fresh = _locked_study(session, study, at)  # the cached row was stale: re-read it under the lock
        state.id, state.content_version, state.last_received_at = (
            fresh.id,
            fresh.content_version,
            fresh.last_received_at,
        )
    else:
        raise StoreError(f"study {study.study_instance_uid} changed while its instances were indexed")
    state.content_version, state.last_received_at = version, last
    _expire_loaded(session, StudyRow, state.id)


def _add_instance(
    session: Session,
    study: Study,
    series: Series,
    instance: Instance,
    received_at: datetime,
    size_bytes: int | None,
) -> IndexResult:
    session.flush()  # Core statements below do not autoflush pending ORM changes
    conn = session.connection()
    existing = conn.execute(_SELECT_INSTANCE, {"uid": instance.sop_instance_uid}).first()
    if existing is not None:
        if existing.content_digest == instance.content_digest:
            return IndexResult.DUPLICATE
        return _record_conflict_core(session, existing.content_digest, instance, received_at)
    state, series_id = _ids_for(session, study, series, received_at)
    inserted = _insert_ignoring_duplicates(
        session, _INSTANCES, _instance_values(instance, series_id, size_bytes, received_at)
    )
    if not inserted:
        # another process indexed the same SOP Instance UID between our check and insert
        raced = conn.execute(_SELECT_INSTANCE, {"uid": instance.sop_instance_uid}).first()
        if raced is None:
            raise StoreError(f"instance {instance.sop_instance_uid} could not be inserted nor found")
        if raced.content_digest == instance.content_digest:
            return IndexResult.DUPLICATE
        return _record_conflict_core(session, raced.content_digest, instance, received_at)
    _bump_study(session, state, (study,), ((instance.sop_instance_uid, instance.content_digest),), received_at)
    _expire_loaded(session, SeriesRow, series_id)
    return IndexResult.NEW


@dataclass(frozen=True, slots=True)
class NewInstance:
    """One stored object for :func:`add_instances` (the arguments of :func:`add_instance`)."""

    study: Study
    series: Series
    instance: Instance
    size_bytes: int | None = None


#: Objects per SELECT / multi-row INSERT in :func:`add_instances` (well under SQLite's 32766 parameters).
_BULK = 500


def add_instances(session: Session, items: Sequence[NewInstance], *, received_at: datetime) -> list[IndexResult]:
    """Index many stored objects at once (a folder import): the results :func:`add_instance` gives one by one.

    Per 500 objects, one SELECT finds what is already indexed and one
    multi-row INSERT adds the rest; each study's content version is folded in
    Python and written once.  The same object twice in ``items`` is a
    DUPLICATE the second time (a CONFLICT when the bytes differ).
    """
    aware("add_instances received_at", received_at)
    for it in items:
        _check_hierarchy(it.study, it.series, it.instance)
    results: list[IndexResult] = []
    try:
        for start in range(0, len(items), _BULK):
            results += _add_chunk(session, items[start : start + _BULK], received_at)
    except IntegrityError as exc:
        raise StoreError(
            f"indexing {len(items)} instances failed: a database constraint was violated ({type(exc.orig).__name__})"
        ) from None
    return results


def _add_chunk(session: Session, chunk: Sequence[NewInstance], at: datetime) -> list[IndexResult]:
    session.flush()
    conn = session.connection()
    uids = {it.instance.sop_instance_uid for it in chunk}
    existing: dict[str, str] = dict(
        conn.execute(
            select(_INSTANCES.c.sop_instance_uid, _INSTANCES.c.content_digest).where(
                _INSTANCES.c.sop_instance_uid.in_(uids)
            )
        ).all()
    )
    results: list[IndexResult | None] = [None] * len(chunk)
    fresh: list[tuple[int, _StudyState, int]] = []
    for k, it in enumerate(chunk):
        inst = it.instance
        prior = existing.get(inst.sop_instance_uid)
        if prior is not None:
            if prior == inst.content_digest:
                results[k] = IndexResult.DUPLICATE
            else:
                results[k] = _record_conflict_core(session, prior, inst, at)
            continue
        existing[inst.sop_instance_uid] = inst.content_digest  # a second copy later in the batch compares to this one
        state, series_id = _ids_for(session, it.study, it.series, at)
        fresh.append((k, state, series_id))
    if not fresh:
        return [r for r in results if r is not None]
    inserted = _insert_many_ignoring_duplicates(
        session,
        _INSTANCES,
        [_instance_values(chunk[k].instance, series_id, chunk[k].size_bytes, at) for k, _, series_id in fresh],
    )
    per_study: dict[int, tuple[_StudyState, list[Study], list[tuple[str, str]]]] = {}
    for k, state, series_id in fresh:
        it = chunk[k]
        if it.instance.sop_instance_uid not in inserted:  # another process indexed it since the SELECT
            results[k] = _add_instance(session, it.study, it.series, it.instance, at, it.size_bytes)
            continue
        entry = per_study.setdefault(state.id, (state, [], []))
        entry[1].append(it.study)
        entry[2].append((it.instance.sop_instance_uid, it.instance.content_digest))
        results[k] = IndexResult.NEW
        _expire_loaded(session, SeriesRow, series_id)
    for state, studies, pairs in per_study.values():
        _bump_study(session, state, studies, pairs, at)
    return [r for r in results if r is not None]


def _insert_many_ignoring_duplicates(session: Session, table: Table, rows: list[dict[str, Any]]) -> set[str]:
    """Multi-row INSERT that skips existing SOP Instance UIDs; returns the UIDs it inserted."""
    conn = session.connection()
    dialect = conn.dialect.name
    if dialect == "sqlite":
        stmt: Any = sqlite_insert(table).on_conflict_do_nothing()
    elif dialect == "postgresql":
        stmt = pg_insert(table).on_conflict_do_nothing()
    else:
        return {str(r["sop_instance_uid"]) for r in rows if _insert_ignoring_duplicates(session, table, r)}
    result = conn.execute(stmt.returning(table.c.sop_instance_uid), rows)
    return set(result.scalars().all())


def add_quarantine(
    session: Session,
    *,
    path: Path | str,
    reason: str,
    source: str,
    received_at: datetime,
    sha256: str | None = None,
    study_instance_uid: str | None = None,
) -> int:
    """Record an input that was not indexed; returns the entry's id.

    ``reason`` must say what was wrong and what was expected, without PHI
    (it is shown on pages and in logs).  Idempotent: the same input (path,
    source, content hash) rejected for the same reason again returns the
    existing entry, so re-running an import duplicates nothing.
    """
    aware("add_quarantine received_at", received_at)
    if not reason.strip():
        raise StoreError(f"quarantine entry for {path}: expected a non-empty reason")
    same_hash = QuarantineRow.sha256.is_(None) if sha256 is None else QuarantineRow.sha256 == sha256
    existing = session.scalar(
        select(QuarantineRow.id).where(
            QuarantineRow.path == str(path),
            QuarantineRow.source == source,
            QuarantineRow.reason == reason,
            same_hash,
        )
    )
    if existing is not None:
        return existing
    row = QuarantineRow(
        path=str(path),
        reason=reason,
        source=source,
        received_at=received_at,
        sha256=sha256,
        study_instance_uid=study_instance_uid,
    )
    session.add(row)
    session.flush()
    return row.id


def count_quarantine(session: Session) -> int:
    """How many quarantine entries there are (an import counts the ones it added)."""
    return session.scalar(select(func.count(QuarantineRow.id))) or 0


def list_quarantine(session: Session, *, limit: int | None = None) -> list[QuarantineEntry]:
    """Quarantined inputs, newest first."""
    stmt = select(QuarantineRow).order_by(QuarantineRow.received_at.desc(), QuarantineRow.id.desc())
    if limit is not None:
        stmt = stmt.limit(limit)
    return [
        QuarantineEntry(
            id=r.id,
            path=Path(r.path),
            reason=r.reason,
            source=r.source,
            received_at=r.received_at,
            sha256=r.sha256,
            study_instance_uid=r.study_instance_uid,
        )
        for r in session.scalars(stmt)
    ]


def list_conflicts(session: Session, *, sop_instance_uid: str | None = None) -> list[ConflictEntry]:
    """Rejected re-sends with known UIDs but different bytes, oldest first."""
    stmt = select(InstanceConflictRow).order_by(InstanceConflictRow.id)
    if sop_instance_uid is not None:
        stmt = stmt.where(InstanceConflictRow.sop_instance_uid == sop_instance_uid)
    return [
        ConflictEntry(
            id=r.id,
            sop_instance_uid=r.sop_instance_uid,
            existing_digest=r.existing_digest,
            new_digest=r.new_digest,
            new_path=Path(r.new_path),
            source=r.source,
            at=r.at,
        )
        for r in session.scalars(stmt)
    ]


def _patient_record(row: PatientRow | None) -> Patient:
    if row is None:
        return Patient()
    return Patient(
        identifiers=tuple(PatientIdentifier(i.value, i.issuer or None) for i in row.identifiers),
        name=row.name,
        birth_date=row.birth_date,
        sex=row.sex,
        age_years=row.age_years,
    )


def _sort_key_number(number: int | None, uid: str) -> tuple[int, int, str]:
    return (0 if number is not None else 1, number or 0, uid)


def _study_record(row: StudyRow, *, with_children: bool = True) -> Study:
    uid = row.study_instance_uid
    series: list[Series] = []
    if with_children:
        for s in sorted(row.series, key=lambda s: _sort_key_number(s.series_number, s.series_instance_uid)):
            instances = tuple(
                Instance(
                    sop_instance_uid=i.sop_instance_uid,
                    sop_class_uid=i.sop_class_uid,
                    series_instance_uid=s.series_instance_uid,
                    study_instance_uid=uid,
                    path=Path(i.path),
                    content_digest=i.content_digest,
                    transfer_syntax_uid=i.transfer_syntax_uid,
                    instance_number=i.instance_number,
                    number_of_frames=i.number_of_frames,
                    rows=i.rows,
                    columns=i.columns,
                    source=i.source,
                )
                for i in sorted(s.instances, key=lambda i: _sort_key_number(i.instance_number, i.sop_instance_uid))
            )
            series.append(
                Series(
                    series_instance_uid=s.series_instance_uid,
                    study_instance_uid=uid,
                    modality=s.modality,
                    series_number=s.series_number,
                    description=s.description,
                    body_part=s.body_part,
                    instances=instances,
                )
            )
    return Study(
        study_instance_uid=uid,
        patient=_patient_record(row.patient),
        accession_number=row.accession_number,
        study_datetime=_with_offset(row.study_datetime, row.utc_offset_minutes),
        description=row.description,
        referring_physician=row.referring_physician,
        study_id=row.study_id,
        study_time_dicom=row.study_time,
        series=tuple(series),
    )


_LOAD_OPTIONS = (
    selectinload(StudyRow.series).selectinload(SeriesRow.instances),
    selectinload(StudyRow.patient).selectinload(PatientRow.identifiers),
)


def load_study(session: Session, uid: str) -> Study | None:
    """The study with its patient, series and instances as core records (None when not indexed).

    Series are ordered by series number, instances by instance number (then UID).
    """
    row = session.scalars(
        select(StudyRow).where(StudyRow.study_instance_uid == uid).options(*_LOAD_OPTIONS)
    ).one_or_none()
    return None if row is None else _study_record(row)


def list_studies(
    session: Session, *, limit: int | None = None, offset: int = 0, with_children: bool = True
) -> list[Study]:
    """Indexed studies, most recently received first.

    ``with_children=False`` leaves ``series`` empty (cheap listings of large archives).
    """
    stmt = select(StudyRow).order_by(StudyRow.last_received_at.desc(), StudyRow.id.desc()).offset(offset)
    if limit is not None:
        stmt = stmt.limit(limit)
    stmt = stmt.options(*_LOAD_OPTIONS) if with_children else stmt.options(_LOAD_OPTIONS[1])
    return [_study_record(r, with_children=with_children) for r in session.scalars(stmt)]


def content_version(session: Session, uid: str) -> str:
    """The study's current content version (64 hex digits; see the module docstring)."""
    value = session.scalars(select(StudyRow.content_version).where(StudyRow.study_instance_uid == uid)).one_or_none()
    if value is None:
        raise StoreError(f"study {uid} is not in the index")
    return value


def last_received_at(session: Session, uid: str) -> datetime:
    """When the study's latest new instance arrived."""
    value = session.scalars(select(StudyRow.last_received_at).where(StudyRow.study_instance_uid == uid)).one_or_none()
    if value is None:
        raise StoreError(f"study {uid} is not in the index")
    return value


def studies_quiet_since(session: Session, cutoff: datetime) -> list[str]:
    """Study UIDs that received nothing new after ``cutoff`` and whose current content has no job yet.

    The worker's dispatcher calls this with ``now - scp.stable_age_s`` and
    enqueues each result; oldest first.
    """
    aware("studies_quiet_since cutoff", cutoff)
    has_job = exists().where(
        and_(
            JobRow.study_instance_uid == StudyRow.study_instance_uid,
            JobRow.content_version == StudyRow.content_version,
        )
    )
    stmt = (
        select(StudyRow.study_instance_uid)
        .where(StudyRow.last_received_at <= cutoff, ~has_job)
        .order_by(StudyRow.last_received_at, StudyRow.id)
    )
    return list(session.scalars(stmt))


def count_instances(session: Session, uid: str) -> int:
    """Number of indexed instances of a study (0 when unknown)."""
    return (
        session.scalar(
            select(func.count(InstanceRow.id))
            .join(SeriesRow, InstanceRow.series_id == SeriesRow.id)
            .join(StudyRow, SeriesRow.study_id == StudyRow.id)
            .where(StudyRow.study_instance_uid == uid)
        )
        or 0
    )
