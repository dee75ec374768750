"""The index of received objects, read side: studies as core records, content versions, quarantine, conflicts.

Every function takes a SQLAlchemy ``Session`` (from :meth:`store.db.Database.session`)
and leaves committing to it, so that callers can combine several calls in
one unit of work.  Records in and out are ``core`` records, never rows.

Objects are written by the one writer, :mod:`store.index_writer` (deduplication,
conflicts and the study's ``content_version`` are explained there); its
session-level functions are re-exported here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy import and_, exists, func, select
from sqlalchemy.orm import Session, selectinload

from core.errors import StoreError
from core.records import Instance, Patient, PatientIdentifier, Series, Study
from store._checks import aware
from store.index_writer import IndexResult, NewInstance, add_instance, add_instances, add_to_version
from store.schema import (
    InstanceConflictRow,
    InstanceRow,
    JobRow,
    PatientRow,
    QuarantineRow,
    SeriesRow,
    StudyRow,
)


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
        version = add_to_version(version, sop_uid, digest)
    return version


def _with_offset(value: datetime | None, minutes: int | None) -> datetime | None:
    if value is None or minutes is None:
        return value
    return value.replace(tzinfo=timezone(timedelta(minutes=minutes)))


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


def newest_received_at(session: Session) -> datetime | None:
    """When the most recently received instance arrived (None: the index is empty); where recovery starts."""
    return session.scalar(select(func.max(InstanceRow.received_at)))


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


__all__ = [
    "ConflictEntry",
    "IndexResult",
    "NewInstance",
    "QuarantineEntry",
    "add_instance",
    "add_instances",
    "add_quarantine",
    "content_version",
    "count_instances",
    "count_quarantine",
    "last_received_at",
    "list_conflicts",
    "list_quarantine",
    "list_studies",
    "load_study",
    "recompute_content_version",
    "studies_quiet_since",
]
