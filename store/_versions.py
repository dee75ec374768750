"""SQL predicates over report versions, shared by the queries that need "the newest version of a study".

A version is the newest when no version of the same study has a higher number; one definition, so search
and retention agree on which version is current (``store/worklist.py`` still spells the same rule out).
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import aliased

from store.schema import ReportVersionRow


def superseded() -> ColumnElement[bool]:
    """True for a ``ReportVersionRow`` that a later version of the same study replaces."""
    newer = aliased(ReportVersionRow)
    return (
        select(newer.id)
        .where(
            newer.study_instance_uid == ReportVersionRow.study_instance_uid,
            newer.version > ReportVersionRow.version,
        )
        .exists()
    )


def newest() -> ColumnElement[bool]:
    """True for the newest ``ReportVersionRow`` of its study."""
    return ~superseded()
