"""What a retention policy may delete: never anything the outbox, a job or an unsigned report still needs.

* a **finished study**: its newest report version is signed or withdrawn, none of its deliveries is still
  pending, sent or awaiting commitment, no job of it is pending or running, and its last object arrived before
  the cutoff.  Deleting it removes its index rows (series, instances) and jobs; report versions, artefacts,
  outbox history and the audit log stay.
* **superseded outputs**: the artefact files of a report version that is not its study's newest, created
  before the cutoff, whose deliveries are all settled (delivered or dead).  The rows stay (history).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from core.records import ReportStatus
from store import index
from store._checks import aware
from store._versions import newest, superseded
from store.schema import (
    ArtefactRow,
    InstanceRow,
    JobRow,
    JobState,
    OutboxRow,
    OutboxState,
    ReportVersionRow,
    SeriesRow,
    StudyRow,
)

__all__ = ["delete_study", "finished_studies", "superseded_artefacts"]

OPEN_DELIVERY = (OutboxState.PENDING, OutboxState.AWAITING_COMMITMENT)
SIGNED = (ReportStatus.FINAL, ReportStatus.AMENDED, ReportStatus.ENTERED_IN_ERROR)


def _open_deliveries(study_uid_column: object) -> object:
    return (
        select(OutboxRow.id)
        .join(ArtefactRow, OutboxRow.artefact_id == ArtefactRow.id)
        .join(ReportVersionRow, ArtefactRow.report_version_id == ReportVersionRow.id)
        .where(ReportVersionRow.study_instance_uid == study_uid_column, OutboxRow.state.in_(OPEN_DELIVERY))
        .exists()
    )


def finished_studies(session: Session, cutoff: datetime) -> list[str]:
    """Studies whose received objects may go (see the module docstring), oldest first."""
    aware("retention cutoff", cutoff)
    stmt = (
        select(StudyRow.study_instance_uid)
        .join(ReportVersionRow, ReportVersionRow.study_instance_uid == StudyRow.study_instance_uid)
        .where(
            StudyRow.last_received_at < cutoff,
            newest(),
            ReportVersionRow.status.in_(SIGNED),
            ~_open_deliveries(StudyRow.study_instance_uid),  # type: ignore[operator]
            ~select(JobRow.id)
            .where(
                JobRow.study_instance_uid == StudyRow.study_instance_uid,
                JobRow.state.in_((JobState.PENDING, JobState.RUNNING)),
            )
            .exists(),
        )
        .order_by(StudyRow.last_received_at)
    )
    return list(session.scalars(stmt))


def delete_study(session: Session, study_uid: str) -> list[Path]:
    """Remove the study's index rows and jobs; returns its objects' paths (the caller deletes the files)."""
    paths = [
        Path(p)
        for p in session.scalars(
            select(InstanceRow.path)
            .join(SeriesRow, InstanceRow.series_id == SeriesRow.id)
            .join(StudyRow, SeriesRow.study_id == StudyRow.id)
            .where(StudyRow.study_instance_uid == study_uid)
        )
    ]
    study = session.scalars(select(StudyRow).where(StudyRow.study_instance_uid == study_uid)).one_or_none()
    if study is not None:
        session.delete(study)  # series and instances go with it (cascade)
    session.execute(delete(JobRow).where(JobRow.study_instance_uid == study_uid))
    session.flush()
    # an index that keeps committed study/series ids per engine must not reuse the deleted ones (the newer index
    # writer detects a deleted row itself and re-reads; the older one's cache is dropped here)
    shared = getattr(index, "_SHARED", None)
    if shared is not None:
        bind = session.get_bind()
        shared.pop(getattr(bind, "engine", bind), None)
    return paths


def superseded_artefacts(session: Session, cutoff: datetime) -> list[tuple[int, Path]]:
    """(artefact id, path) of superseded versions older than ``cutoff`` with every delivery settled."""
    aware("retention cutoff", cutoff)
    stmt = (
        select(ArtefactRow.id, ArtefactRow.path)
        .join(ReportVersionRow, ArtefactRow.report_version_id == ReportVersionRow.id)
        .where(
            ReportVersionRow.created_at < cutoff,
            superseded(),
            ~select(OutboxRow.id)
            .where(OutboxRow.artefact_id == ArtefactRow.id, OutboxRow.state.in_(OPEN_DELIVERY))
            .exists(),
        )
        .order_by(ArtefactRow.id)
    )
    return [(i, Path(p)) for i, p in session.execute(stmt)]
