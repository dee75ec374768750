"""The reading worklist: each study's newest report, stat before urgent before routine, then the longest waiting.

Priority comes from the stored report version (the ECG rules' and models'
``Priority`` with its reason); waiting time runs from when the study was
first received.  Three queries whatever the length: reports with their
studies, the series' modalities and body parts, and who has each open
(the newest ``report.view`` audit entry of the last minutes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session, aliased

from core.records import PriorityLevel, ReportKind, ReportStatus
from store import audit
from store._checks import aware
from store.schema import AuditRow, PatientRow, ReportVersionRow, SeriesRow, StudyRow

__all__ = ["OPEN_WINDOW", "WorklistRow", "change_token", "worklist"]

#: A view older than this no longer counts as "has it open".
OPEN_WINDOW = timedelta(minutes=15)


@dataclass(frozen=True, slots=True)
class WorklistRow:
    """One line of the worklist."""

    study_uid: str
    accession_number: str | None
    patient_name: str | None
    study_datetime: datetime | None
    description: str | None
    modalities: tuple[str, ...]
    body_parts: tuple[str, ...]
    priority: PriorityLevel
    priority_reason: str
    status: ReportStatus
    kind: ReportKind
    version: int
    waiting_since: datetime
    opened_by: str | None
    model_errors: tuple[str, ...] = ()  #: "model 'X' failed: reason" of this version; empty when none failed

    def waiting_s(self, now: datetime) -> float:
        return max(0.0, (now - self.waiting_since).total_seconds())


def worklist(
    session: Session,
    now: datetime,
    *,
    statuses: Sequence[ReportStatus] | None = (ReportStatus.PRELIMINARY,),
    modality: str | None = None,
    priority: PriorityLevel | None = None,
    kind: ReportKind | None = None,
    limit: int = 500,
) -> list[WorklistRow]:
    """The studies to read, most urgent first, then oldest first.

    ``statuses=None`` lists every newest version (signed and withdrawn too).
    """
    aware("worklist now", now)
    newer = aliased(ReportVersionRow)
    # columns, not entities: the report payload (kilobytes of JSON per row) is not read for a worklist
    stmt = (
        select(
            ReportVersionRow.priority_level,
            ReportVersionRow.priority_reason,
            ReportVersionRow.model_errors,
            ReportVersionRow.status,
            ReportVersionRow.kind,
            ReportVersionRow.version,
            StudyRow.id,
            StudyRow.study_instance_uid,
            StudyRow.accession_number,
            StudyRow.study_datetime,
            StudyRow.description,
            StudyRow.first_received_at,
            PatientRow.name,
        )
        .join(StudyRow, StudyRow.study_instance_uid == ReportVersionRow.study_instance_uid)
        .outerjoin(PatientRow, PatientRow.id == StudyRow.patient_id)
        .where(
            ~select(newer.id)
            .where(
                newer.study_instance_uid == ReportVersionRow.study_instance_uid,
                newer.version > ReportVersionRow.version,
            )
            .exists()
        )
        .order_by(ReportVersionRow.priority_level, StudyRow.first_received_at, StudyRow.id)
        .limit(limit)
    )
    if statuses is not None:
        stmt = stmt.where(ReportVersionRow.status.in_(list(statuses)))
    if priority is not None:
        stmt = stmt.where(ReportVersionRow.priority_level == int(priority))
    if kind is not None:
        stmt = stmt.where(ReportVersionRow.kind == kind)
    if modality is not None:
        stmt = stmt.where(
            select(SeriesRow.id).where(SeriesRow.study_id == StudyRow.id, SeriesRow.modality == modality).exists()
        )
    found = session.execute(stmt).all()
    ids = [row.id for row in found]
    modalities: dict[int, set[str]] = {i: set() for i in ids}
    body_parts: dict[int, set[str]] = {i: set() for i in ids}
    if ids:
        for study_id, mod, part in session.execute(
            select(SeriesRow.study_id, SeriesRow.modality, SeriesRow.body_part).where(SeriesRow.study_id.in_(ids))
        ):
            modalities[study_id].add(mod)
            if part:
                body_parts[study_id].add(part)
    opened = audit.open_by(session, [row.study_instance_uid for row in found], now - OPEN_WINDOW)
    return [
        WorklistRow(
            study_uid=row.study_instance_uid,
            accession_number=row.accession_number,
            patient_name=row.name,
            study_datetime=row.study_datetime,
            description=row.description,
            modalities=tuple(sorted(modalities[row.id])),
            body_parts=tuple(sorted(body_parts[row.id])),
            priority=PriorityLevel(row.priority_level),
            priority_reason=row.priority_reason,
            status=row.status,
            kind=row.kind,
            version=row.version,
            waiting_since=row.first_received_at,
            opened_by=opened.get(row.study_instance_uid),
            model_errors=tuple(row.model_errors.splitlines()) if row.model_errors else (),
        )
        for row in found
    ]


def change_token(session: Session) -> tuple[int | None, ...]:
    """Changes whenever a worklist could: a new report version, series or audit entry (ids only grow).

    One cheap statement (three primary-key maxima), so a caller can keep the last worklist and
    answer from it until something was written.
    """
    row = session.execute(
        select(
            select(func.max(ReportVersionRow.id)).scalar_subquery(),
            select(func.max(SeriesRow.id)).scalar_subquery(),
            select(func.max(AuditRow.id)).scalar_subquery(),
        )
    ).one()
    return tuple(row)
