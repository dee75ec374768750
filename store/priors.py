"""Prior studies of the same patient, for comparison sections and model context."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from core.records import Study
from store.index import _study_record
from store.schema import SeriesRow, StudyRow


def prior_studies(session: Session, study_uid: str, *, limit: int = 3) -> list[Study]:
    """Earlier studies of the same patient in the index, most recent first (without instances).

    A study without a patient or a date has no priors: nothing is guessed.
    """
    current = session.scalar(select(StudyRow).where(StudyRow.study_instance_uid == study_uid))
    if current is None or current.patient_id is None or current.study_datetime is None:
        return []
    rows = session.scalars(
        select(StudyRow)
        .where(
            StudyRow.patient_id == current.patient_id,
            StudyRow.study_datetime < current.study_datetime,
            StudyRow.id != current.id,
        )
        .options(selectinload(StudyRow.series).selectinload(SeriesRow.instances), selectinload(StudyRow.patient))
        .order_by(StudyRow.study_datetime.desc())
        .limit(limit)
    ).all()
    return [_study_record(r) for r in rows]
