"""Patients of received studies, matched on (identifier, issuer) through the ORM (the index writer's new studies)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.records import Patient, Sex
from store.schema import Base, PatientIdentifierRow, PatientRow

_Row = TypeVar("_Row", bound=Base)


def get_or_create(session: Session, query: Callable[[], _Row | None], create: Callable[[], _Row]) -> _Row:
    """Return the row ``query`` finds, or insert the one ``create`` builds.

    The insert runs in a SAVEPOINT: when another process inserted the same unique key in between (PostgreSQL,
    READ COMMITTED), the insert is undone and the other process's row is returned instead of failing the unit.
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


def upsert_patient(session: Session, patient: Patient, now: datetime) -> PatientRow:
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
    row = get_or_create(session, lambda: _find_patient(session, patient), create)
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


__all__ = ["get_or_create", "upsert_patient"]
