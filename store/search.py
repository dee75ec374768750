"""Study search for the API and pages: by patient identifier, accession, modality, date and report status."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any

from sqlalchemy import Text, cast, func, select
from sqlalchemy.orm import Session
from sqlalchemy.sql import Subquery

from core.errors import StoreError
from core.records import ReportStatus
from store._versions import newest
from store.audit import sqlite_file
from store.db import SQLITE_BUSY_TIMEOUT_MS, Database
from store.schema import InstanceRow, PatientIdentifierRow, ReportVersionRow, SeriesRow, StudyRow

__all__ = ["StudySummary", "WouldWait", "report_payload", "report_payload_bytes", "search_studies"]


@dataclass(frozen=True, slots=True)
class StudySummary:
    """A found study without demographics (the detail endpoint and pages show those to clinicians)."""

    study_uid: str
    accession_number: str | None
    study_datetime: datetime | None
    description: str | None
    modalities: tuple[str, ...]
    series: int
    instances: int
    report_status: ReportStatus | None
    report_version: int | None
    first_received_at: datetime


def search_studies(
    session: Session,
    *,
    patient_id: str | None = None,
    accession: str | None = None,
    modality: str | None = None,
    date_from: date | None = None,
    date_to: date | None = None,
    status: ReportStatus | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[StudySummary]:
    """Studies matching every given filter, most recently received first.

    ``status`` matches the newest report version's status; dates compare the study date (DICOM wall clock).
    """
    latest = _latest_versions()
    stmt = (
        select(StudyRow, latest.c.status, latest.c.version)
        .outerjoin(latest, latest.c.study_instance_uid == StudyRow.study_instance_uid)
        .order_by(StudyRow.last_received_at.desc(), StudyRow.id.desc())
        .limit(limit)
        .offset(offset)
    )
    if patient_id is not None:
        stmt = stmt.where(
            select(PatientIdentifierRow.id)
            .where(PatientIdentifierRow.patient_id == StudyRow.patient_id, PatientIdentifierRow.value == patient_id)
            .exists()
        )
    if accession is not None:
        stmt = stmt.where(StudyRow.accession_number == accession)
    if modality is not None:
        stmt = stmt.where(
            select(SeriesRow.id).where(SeriesRow.study_id == StudyRow.id, SeriesRow.modality == modality).exists()
        )
    if date_from is not None:
        stmt = stmt.where(StudyRow.study_datetime >= datetime.combine(date_from, time.min))
    if date_to is not None:
        stmt = stmt.where(StudyRow.study_datetime <= datetime.combine(date_to, time.max))
    if status is not None:
        stmt = stmt.where(latest.c.status == status)
    found = session.execute(stmt).all()
    counts = _series_counts(session, [row.id for row, _, _ in found])
    return [
        StudySummary(
            study_uid=row.study_instance_uid,
            accession_number=row.accession_number,
            study_datetime=row.study_datetime,
            description=row.description,
            modalities=tuple(sorted(counts[row.id].modalities)),
            series=counts[row.id].series,
            instances=counts[row.id].instances,
            report_status=status_,
            report_version=version,
            first_received_at=row.first_received_at,
        )
        for row, status_, version in found
    ]


def _latest_versions() -> Subquery:
    """(study UID, status, version) of each study's newest report version: a version with no newer one."""
    return (
        select(ReportVersionRow.study_instance_uid, ReportVersionRow.status, ReportVersionRow.version)
        .where(newest())
        .subquery()
    )


@dataclass(slots=True)
class _Counts:
    modalities: set[str] = field(default_factory=set)
    series: int = 0
    instances: int = 0


def _series_counts(session: Session, ids: list[int]) -> dict[int, _Counts]:
    """Modalities, series and instances per found study, in one grouped query for the whole page."""
    counts = {i: _Counts() for i in ids}
    if ids:
        for study_id, mod, n in session.execute(
            select(SeriesRow.study_id, SeriesRow.modality, func.count(InstanceRow.id))
            .outerjoin(InstanceRow, InstanceRow.series_id == SeriesRow.id)
            .where(SeriesRow.study_id.in_(ids))
            .group_by(SeriesRow.id, SeriesRow.study_id, SeriesRow.modality)
        ):
            c = counts[study_id]
            c.modalities.add(mod)
            c.series += 1
            c.instances += int(n)
    return counts


def report_payload(session: Session, study_uid: str, version: int | None = None) -> tuple[int, dict[str, Any]] | None:
    """(version, stored JSON) of one report version (the newest when ``version`` is None), not parsed into records.

    What the API returns as it is: the payload is :func:`store.serialize.report_to_json`'s output.
    """
    stmt = select(ReportVersionRow.version, ReportVersionRow.payload).where(
        ReportVersionRow.study_instance_uid == study_uid
    )
    if version is None:
        stmt = stmt.order_by(ReportVersionRow.version.desc()).limit(1)
    else:
        stmt = stmt.where(ReportVersionRow.version == version)
    row = session.execute(stmt).first()
    return None if row is None else (int(row[0]), row[1])


_T = ReportVersionRow.__tablename__
_NEWEST = f"SELECT version, CAST(payload AS BLOB) FROM {_T} WHERE study_instance_uid = ? ORDER BY version DESC LIMIT 1"
_ONE = f"SELECT version, CAST(payload AS BLOB) FROM {_T} WHERE study_instance_uid = ? AND version = ?"


class WouldWait(StoreError):
    """``wait=False`` and the read could not be made at once (another database than SQLite, or SQLite busy)."""


def report_payload_bytes(
    db: Database, study_uid: str, version: int | None = None, *, wait: bool = True
) -> tuple[int, bytes] | None:
    """(version, stored JSON as UTF-8 bytes) of one report version (the newest when ``version`` is None).

    The bytes the API sends as they are (no parsing, no re-encoding): on a SQLite file one statement on an
    already-open connection; elsewhere the column read as text through a read-only session.  ``wait=False``
    (a caller on an event loop) never waits: SQLite's busy timeout is 0 for the statement, and
    :class:`WouldWait` says to call again with ``wait=True`` from a thread.
    """
    if sqlite_file(db):
        with db.sqlite_connection() as conn:
            if not wait:
                conn.execute("PRAGMA busy_timeout=0")
            try:
                if version is None:
                    row = conn.execute(_NEWEST, (study_uid,)).fetchone()
                else:
                    row = conn.execute(_ONE, (study_uid, version)).fetchone()
            except sqlite3.OperationalError as exc:
                if wait or ("locked" not in str(exc) and "busy" not in str(exc)):
                    raise
                raise WouldWait("report payload: SQLite is busy") from None
            finally:
                if not wait:
                    conn.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        return None if row is None else (int(row[0]), bytes(row[1]))
    if not wait:
        raise WouldWait(f"report payload: {db.url.get_backend_name()} is read from a thread")
    stmt = select(ReportVersionRow.version, cast(ReportVersionRow.payload, Text)).where(
        ReportVersionRow.study_instance_uid == study_uid
    )
    if version is None:
        stmt = stmt.order_by(ReportVersionRow.version.desc()).limit(1)
    else:
        stmt = stmt.where(ReportVersionRow.version == version)
    with db.session(readonly=True) as session:
        found = session.execute(stmt).first()
    return None if found is None else (int(found[0]), str(found[1]).encode())
