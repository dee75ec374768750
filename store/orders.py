"""Orders and the study each order was answered by.

An order is identified by its placer number and authority (a second message
with the same pair updates it); an accession number belongs to one order
only, and a second order claiming it is refused.  :func:`match_study` finds a
study's order by accession number, or else by patient + procedure + day (a
weaker match), records the match with the demographic fields on which order
and images disagree, and never changes either side: a conflict is for a
person to resolve.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.errors import StoreError
from core.orders import MatchStrength, Order, OrderedProcedure, OrderMatch, OrderStatus
from core.records import Patient, PatientIdentifier, Sex, Study
from store._checks import aware
from store.schema import OrderMatchRow, OrderRow


@dataclass(frozen=True, slots=True)
class StoredOrder:
    """An order as stored, with the study matched to it (if any)."""

    id: int
    order: Order
    received_at: datetime
    updated_at: datetime
    study_instance_uid: str | None = None
    strength: MatchStrength | None = None
    conflicts: tuple[str, ...] = ()


def _naive(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=None) if value is not None and value.tzinfo is not None else value


def _record(row: OrderRow) -> Order:
    procedure = None
    if row.procedure_code or row.procedure_text:
        procedure = OrderedProcedure(row.procedure_code, row.procedure_system, row.procedure_text)
    return Order(
        placer_number=row.placer_number,
        placer_authority=row.placer_authority or None,
        patient=Patient(
            identifiers=(PatientIdentifier(row.patient_id_value, row.patient_id_issuer or None),),
            name=row.patient_name,
            birth_date=row.patient_birth_date,
            sex=row.patient_sex,
        ),
        source=row.source,
        filler_number=row.filler_number,
        filler_authority=row.filler_authority,
        accession_number=row.accession_number,
        procedure=procedure,
        modality=row.modality,
        reason=row.reason,
        clinical_history=row.clinical_history,
        ordering_provider=row.ordering_provider,
        scheduled_at=row.scheduled_at,
        status=row.status,
        service_request_id=row.service_request_id,
        requested_procedure_id=row.requested_procedure_id,
        study_instance_uid=row.study_instance_uid,
    )


def _fill(row: OrderRow, order: Order) -> None:
    ident = order.patient.identifiers[0]
    row.filler_number = order.filler_number
    row.filler_authority = order.filler_authority
    row.accession_number = order.accession_number
    row.patient_id_value = ident.value
    row.patient_id_issuer = ident.issuer or ""
    row.patient_name = order.patient.name
    row.patient_birth_date = order.patient.birth_date
    row.patient_sex = order.patient.sex
    row.procedure_code = order.procedure.code if order.procedure else None
    row.procedure_system = order.procedure.system if order.procedure else None
    row.procedure_text = order.procedure.text if order.procedure else None
    row.modality = order.modality
    row.reason = order.reason
    row.clinical_history = order.clinical_history
    row.ordering_provider = order.ordering_provider
    row.scheduled_at = _naive(order.scheduled_at)
    row.status = order.status
    row.source = order.source
    row.service_request_id = order.service_request_id
    row.requested_procedure_id = order.requested_procedure_id
    row.study_instance_uid = order.study_instance_uid


def _by_placer(session: Session, placer_number: str, placer_authority: str | None) -> OrderRow | None:
    return session.scalars(
        select(OrderRow).where(
            OrderRow.placer_number == placer_number, OrderRow.placer_authority == (placer_authority or "")
        )
    ).one_or_none()


def save_order(session: Session, order: Order, now: datetime) -> tuple[int, bool]:
    """Insert the order, or update the one with the same placer number and authority: (id, created).

    Raises
    ------
    StoreError
        When another order already holds the accession number (never overwritten: two
        orders claiming one accession is a RIS fault a person has to look at).
    """
    aware("save_order(now)", now)
    row = _by_placer(session, order.placer_number, order.placer_authority)
    if order.accession_number:
        holder = session.scalars(select(OrderRow).where(OrderRow.accession_number == order.accession_number)).first()
        if holder is not None and (row is None or holder.id != row.id):
            raise StoreError(
                "order: accession number is already used by another order (other placer order number); refused"
            )
    created = row is None
    if row is None:
        row = OrderRow(
            placer_number=order.placer_number,
            placer_authority=order.placer_authority or "",
            received_at=now,
            updated_at=now,
        )
        session.add(row)
    elif row.status is OrderStatus.IN_PROGRESS and order.status is OrderStatus.SCHEDULED:
        order = _with_status(order, OrderStatus.IN_PROGRESS)  # a re-sent order does not undo its images
    _fill(row, order)
    row.updated_at = now
    session.flush()
    return row.id, created


def _with_status(order: Order, status: OrderStatus) -> Order:
    return replace(order, status=status)


def cancel_order(session: Session, placer_number: str, placer_authority: str | None, now: datetime) -> bool:
    """Mark an order cancelled; False when no such order is stored."""
    row = _by_placer(session, placer_number, placer_authority)
    if row is None:
        return False
    row.status = OrderStatus.CANCELLED
    row.updated_at = aware("cancel_order(now)", now)
    return True


def get_order(session: Session, placer_number: str, placer_authority: str | None = None) -> Order | None:
    row = _by_placer(session, placer_number, placer_authority)
    return None if row is None else _record(row)


def find_by_accession(session: Session, accession_number: str) -> Order | None:
    row = session.scalars(select(OrderRow).where(OrderRow.accession_number == accession_number)).one_or_none()
    return None if row is None else _record(row)


def list_orders(session: Session, *, limit: int | None = None, status: OrderStatus | None = None) -> list[StoredOrder]:
    """Stored orders, newest first, with their matched study."""
    stmt = (
        select(OrderRow, OrderMatchRow)
        .outerjoin(OrderMatchRow, OrderMatchRow.order_id == OrderRow.id)
        .order_by(OrderRow.received_at.desc(), OrderRow.id.desc())
    )
    if status is not None:
        stmt = stmt.where(OrderRow.status == status)
    if limit is not None:
        stmt = stmt.limit(limit)
    return [
        StoredOrder(
            row.id,
            _record(row),
            row.received_at,
            row.updated_at,
            match.study_instance_uid if match else None,
            match.strength if match else None,
            tuple(c for c in match.conflicts.split(",") if c) if match else (),
        )
        for row, match in session.execute(stmt).all()
    ]


# --------------------------------------------------------------------------- matching


_GERMAN = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss", "Ä": "Ae", "Ö": "Oe", "Ü": "Ue"})


def _name_keys(name: str | None) -> set[str]:
    """A person name reduced for comparison: case, punctuation, component separators and accents ignored.

    Two spellings of each accented name count (``Müller`` as ``muller`` and ``mueller``): systems that
    cannot store the accent write either.
    """
    if not name:
        return set()
    keys = set()
    for text in (name, name.translate(_GERMAN)):
        plain = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
        parts = [re.sub(r"[^0-9a-z]", "", p.casefold()) for p in re.split(r"[\^,=]", plain)[:2]]
        keys.add("^".join(parts))
    return keys


def conflicts(order: Order, study: Study) -> tuple[str, ...]:
    """Fields on which the order and the study's images disagree (names only, never values)."""
    out: list[str] = []
    p, o = study.patient, order.patient
    if p.identifiers:
        values = {i.value for i in p.identifiers}
        if not any(i.value in values for i in o.identifiers):
            out.append("patient ID")
    if p.name and o.name and not _name_keys(p.name) & _name_keys(o.name):
        out.append("patient name")
    if p.birth_date and o.birth_date and p.birth_date != o.birth_date:
        out.append("birth date")
    if p.sex is not Sex.UNKNOWN and o.sex is not Sex.UNKNOWN and p.sex is not o.sex:
        out.append("sex")
    if study.accession_number and order.accession_number and study.accession_number != order.accession_number:
        out.append("accession number")
    if order.study_instance_uid and order.study_instance_uid != study.study_instance_uid:
        out.append("study instance UID")
    return tuple(out)


def _procedure_fits(order: Order, study: Study) -> bool:
    if order.modality and order.modality in study.modalities:
        return True
    wanted = order.procedure.text if order.procedure else None
    return bool(wanted and study.description and wanted.casefold() == study.description.casefold())


def _weak_candidates(session: Session, study: Study, window: timedelta) -> list[OrderRow]:
    if not study.patient.identifiers or study.study_datetime is None:
        return []
    taken = select(OrderMatchRow.order_id).where(OrderMatchRow.study_instance_uid != study.study_instance_uid)
    rows = session.scalars(
        select(OrderRow).where(
            OrderRow.patient_id_value.in_([i.value for i in study.patient.identifiers]),
            OrderRow.status != OrderStatus.CANCELLED,
            OrderRow.id.not_in(taken),
        )
    ).all()
    when = _naive(study.study_datetime)
    assert when is not None
    out = []
    for row in rows:
        if row.scheduled_at is None or abs(row.scheduled_at.date() - when.date()) > window:
            continue
        if _procedure_fits(_record(row), study):
            out.append(row)
    return out


def match_study(session: Session, study: Study, now: datetime, *, window_days: int = 1) -> OrderMatch | None:
    """Find the study's order and record the match (and its conflicts); None when no single order fits.

    Accession number first, then the Study Instance UID the order assigned; otherwise one
    order of the same patient, with the study's modality or description, scheduled within
    ``window_days`` of the study date (a weaker match).  Several orders fitting that weaker rule match none of them.
    The order goes ``scheduled -> in-progress``.
    """
    aware("match_study(now)", now)
    row: OrderRow | None = None
    strength = MatchStrength.ACCESSION
    if study.accession_number:
        row = session.scalars(
            select(OrderRow).where(
                OrderRow.accession_number == study.accession_number, OrderRow.status != OrderStatus.CANCELLED
            )
        ).one_or_none()
    if row is None:
        row = session.scalars(
            select(OrderRow).where(
                OrderRow.study_instance_uid == study.study_instance_uid, OrderRow.status != OrderStatus.CANCELLED
            )
        ).first()
        strength = MatchStrength.STUDY_UID
    if row is None:
        candidates = _weak_candidates(session, study, timedelta(days=window_days))
        if len(candidates) != 1:
            return None
        row, strength = candidates[0], MatchStrength.PATIENT_PROCEDURE_DATE
    order = _record(row)
    found = conflicts(order, study)
    other = session.scalars(
        select(OrderMatchRow.id).where(
            OrderMatchRow.order_id == row.id, OrderMatchRow.study_instance_uid != study.study_instance_uid
        )
    ).first()
    if other is not None:  # two studies under one accession number: both keep the order, a person decides
        found = (*found, "order already answered by another study")
    match = session.scalars(
        select(OrderMatchRow).where(OrderMatchRow.study_instance_uid == study.study_instance_uid)
    ).one_or_none()
    if match is None:
        match = OrderMatchRow(study_instance_uid=study.study_instance_uid, matched_at=now)
        session.add(match)
    match.order_id = row.id
    match.strength = strength
    match.conflicts = ",".join(found)
    if row.status is OrderStatus.SCHEDULED:
        row.status = OrderStatus.IN_PROGRESS
        row.updated_at = now
        order = _with_status(order, OrderStatus.IN_PROGRESS)
    session.flush()
    return OrderMatch(order, strength, found)


def complete_for_study(session: Session, study_instance_uid: str, now: datetime) -> bool:
    """The study's order is reported (a signed final report): ``in-progress -> completed``; False without one."""
    row = session.scalars(
        select(OrderRow)
        .join(OrderMatchRow, OrderMatchRow.order_id == OrderRow.id)
        .where(OrderMatchRow.study_instance_uid == study_instance_uid)
    ).one_or_none()
    if row is None or row.status is OrderStatus.CANCELLED:
        return False
    row.status = OrderStatus.COMPLETED
    row.updated_at = aware("complete_for_study(now)", now)
    return True


def match_for_study(session: Session, study_instance_uid: str) -> OrderMatch | None:
    """The match recorded for a study, if any."""
    found = session.execute(
        select(OrderRow, OrderMatchRow)
        .join(OrderMatchRow, OrderMatchRow.order_id == OrderRow.id)
        .where(OrderMatchRow.study_instance_uid == study_instance_uid)
    ).one_or_none()
    if found is None:
        return None
    row, match = found
    return OrderMatch(_record(row), match.strength, tuple(c for c in match.conflicts.split(",") if c))


__all__ = [
    "StoredOrder",
    "cancel_order",
    "complete_for_study",
    "conflicts",
    "find_by_accession",
    "get_order",
    "list_orders",
    "match_for_study",
    "match_study",
    "save_order",
]
