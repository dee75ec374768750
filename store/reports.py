"""Report versions, their artefacts, and the outbox rows that deliver them: one unit of work.

:func:`save_report_version` writes the version, its artefacts and one outbox
row per (artefact, destination) in the caller's session; the ``db.session()``
block commits all of them or none.  A report can thus never be stored
without its deliveries queued, nor a delivery queued for a report that was
not stored.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from core.errors import StoreError
from core.records import DraftReport, Priority, PriorityLevel, ReportKind, ReportStatus
from store._checks import aware
from store.schema import ArtefactKind, ArtefactRow, OutboxRow, OutboxState, ReportVersionRow
from store.serialize import report_from_json, report_to_json

__all__ = [
    "ArtefactKind",
    "ArtefactRecord",
    "ReportVersionInfo",
    "StoredArtefact",
    "latest_report",
    "report_history",
    "save_report_version",
]


@dataclass(frozen=True, slots=True)
class ArtefactRecord:
    """A produced file to store with a report version (the file must already be durable).

    ``kind`` is one of ``sr``, ``sc``, ``pdf``, ``fhir``, ``oru``, ``html``
    (an :class:`ArtefactKind` value).
    """

    kind: str
    path: Path
    sha256: str
    media_type: str
    sop_instance_uid: str | None = None

    def __post_init__(self) -> None:
        try:
            ArtefactKind(self.kind)
        except ValueError:
            allowed = [k.value for k in ArtefactKind]
            raise StoreError(f"ArtefactRecord.kind: expected one of {allowed}, got {self.kind!r}") from None
        if len(self.sha256) != 64:
            raise StoreError(f"ArtefactRecord.sha256 of {self.path}: expected 64 hex digits, got {self.sha256!r}")
        if not self.media_type:
            raise StoreError(f"ArtefactRecord.media_type of {self.path}: expected a media type")


@dataclass(frozen=True, slots=True)
class StoredArtefact:
    """An artefact row of a stored report version."""

    id: int
    kind: str
    path: Path
    sha256: str
    media_type: str
    sop_instance_uid: str | None


@dataclass(frozen=True, slots=True)
class ReportVersionInfo:
    """What a history or worklist shows of one version (without the full report)."""

    id: int
    study_uid: str
    version: int
    status: ReportStatus
    kind: ReportKind
    priority: Priority
    signed_by_name: str | None
    signed_by_id: str | None
    signed_at: datetime | None
    created_at: datetime
    artefacts: tuple[StoredArtefact, ...]


def _info(row: ReportVersionRow) -> ReportVersionInfo:
    return ReportVersionInfo(
        id=row.id,
        study_uid=row.study_instance_uid,
        version=row.version,
        status=row.status,
        kind=row.kind,
        priority=Priority(PriorityLevel(row.priority_level), row.priority_reason),
        signed_by_name=row.signed_by_name,
        signed_by_id=row.signed_by_id,
        signed_at=row.signed_at,
        created_at=row.created_at,
        artefacts=tuple(
            StoredArtefact(a.id, a.kind.value, Path(a.path), a.sha256, a.media_type, a.sop_instance_uid)
            for a in row.artefacts
        ),
    )


def save_report_version(
    session: Session,
    report: DraftReport,
    artefacts: Sequence[ArtefactRecord],
    destinations_by_kind: Mapping[str, Sequence[str]],
    now: datetime,
    *,
    model_errors: Sequence[str] = (),
) -> int:
    """Store ``report`` as the next version of its study, its artefacts, and their outbox rows.

    Parameters
    ----------
    report:
        ``report.version`` must be the study's latest stored version + 1 (1 for the first).
    artefacts:
        The files built from this version.
    destinations_by_kind:
        Artefact kind (``"sr"``...) -> destination names (from ``delivery_routing``);
        kinds not listed are stored but not delivered.  Naming a destination
        twice for one kind violates UNIQUE(artefact, destination) and fails the whole unit.
    now:
        Creation time, and when the first delivery attempt is due.
    model_errors:
        "model 'X' failed: reason" lines of this version (PHI-free), kept in a column so the
        worklist shows them without reading the payload.

    Returns
    -------
    int
        The id of the new ``report_versions`` row.

    Raises
    ------
    StoreError
        Wrong version number, or a constraint failed; nothing of this version is kept
        once the caller's ``db.session()`` block rolls back.
    """
    aware("save_report_version now", now)
    _check_next_version(session, report)
    row = _version_row(report, model_errors, now)
    _add_artefacts(session, row, artefacts, destinations_by_kind, now)
    session.add(row)
    try:
        session.flush()
    except IntegrityError as exc:
        raise StoreError(
            f"report of study {report.study_instance_uid} version {report.version} was not stored: a constraint "
            f"failed ({exc.orig.__class__.__name__}: {exc.orig})"
        ) from exc
    return row.id


def _check_next_version(session: Session, report: DraftReport) -> None:
    """Versions are 1, 2, 3... per study with no gap or repeat, so the history reads as the clinicians made it."""
    uid = report.study_instance_uid
    latest = session.scalar(
        select(func.max(ReportVersionRow.version)).where(ReportVersionRow.study_instance_uid == uid)
    )
    expected = (latest or 0) + 1
    if report.version != expected:
        raise StoreError(
            f"report of study {uid}: version {report.version} cannot be stored, expected version {expected} "
            f"(latest stored: {latest or 'none'})"
        )


def _version_row(report: DraftReport, model_errors: Sequence[str], now: datetime) -> ReportVersionRow:
    """The row, with the columns the worklist and search read without parsing the payload."""
    signature = report.signature
    return ReportVersionRow(
        study_instance_uid=report.study_instance_uid,
        version=report.version,
        status=report.status,
        kind=report.kind,
        payload=report_to_json(report),
        priority_level=int(report.priority.level),
        priority_reason=report.priority.reason,
        model_errors="\n".join(e.replace("\n", " ") for e in model_errors)[:4000] or None,
        signed_by_name=signature.clinician.name if signature else None,
        signed_by_id=signature.clinician.identifier if signature else None,
        signed_at=signature.signed_at if signature else None,
        created_at=now,
    )


def _add_artefacts(
    session: Session,
    row: ReportVersionRow,
    artefacts: Sequence[ArtefactRecord],
    destinations_by_kind: Mapping[str, Sequence[str]],
    now: datetime,
) -> None:
    """Each artefact under the version, with one pending outbox row per destination of its kind, due ``now``."""
    for art in artefacts:
        art_row = ArtefactRow(
            kind=ArtefactKind(art.kind),
            path=str(art.path),
            sha256=art.sha256,
            sop_instance_uid=art.sop_instance_uid,
            media_type=art.media_type,
        )
        row.artefacts.append(art_row)
        for dest in destinations_by_kind.get(art.kind, ()):
            session.add(
                OutboxRow(
                    artefact=art_row,
                    destination=dest,
                    state=OutboxState.PENDING,
                    attempts=0,
                    next_attempt_at=now,
                    created_at=now,
                    updated_at=now,
                )
            )


def _latest_row(session: Session, uid: str) -> ReportVersionRow | None:
    return session.scalars(
        select(ReportVersionRow)
        .where(ReportVersionRow.study_instance_uid == uid)
        .order_by(ReportVersionRow.version.desc())
        .limit(1)
    ).first()


def latest_report(session: Session, uid: str) -> DraftReport | None:
    """The study's newest report version, as stored (None when it has none)."""
    row = _latest_row(session, uid)
    return None if row is None else report_from_json(row.payload)


def report_history(session: Session, uid: str) -> list[ReportVersionInfo]:
    """Every version of the study's report, oldest first, with artefacts."""
    rows = session.scalars(
        select(ReportVersionRow)
        .where(ReportVersionRow.study_instance_uid == uid)
        .order_by(ReportVersionRow.version)
        .options(selectinload(ReportVersionRow.artefacts))
    )
    return [_info(r) for r in rows]
