"""FHIR R4 ServiceRequest in: as given to the API, or polled from the EHR's FHIR server.

The resource is validated with ``fhir.resources`` (R4B) first.  Identifiers
are read by their v2-0203 type: PLAC (placer order number, its ``system`` the
authority), FILL (filler), ACSN (accession); without a PLAC identifier the
resource id stands in for the placer number.  The patient comes from a
contained or included Patient (identifier, name, birth date, gender) or from
``subject.identifier``; an order that names no patient identifier is refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

import httpx
from fhir.resources.R4B.servicerequest import ServiceRequest
from pydantic import ValidationError

from core.errors import IngestError, RecordError
from core.orders import Order, OrderedProcedure, OrderSource, OrderStatus
from core.records import Patient, PatientIdentifier, Sex

ID_TYPES = "http://terminology.hl7.org/CodeSystem/v2-0203"
DCM = "http://dicom.nema.org/resources/ontology/DCM"
_STATUS = {
    "draft": OrderStatus.SCHEDULED,
    "active": OrderStatus.SCHEDULED,
    "on-hold": OrderStatus.SCHEDULED,
    "completed": OrderStatus.COMPLETED,
    "revoked": OrderStatus.CANCELLED,
    "entered-in-error": OrderStatus.CANCELLED,
}


def _typed(identifiers: list[dict[str, Any]], code: str) -> dict[str, Any] | None:
    for ident in identifiers:
        for coding in (ident.get("type") or {}).get("coding", []):
            if coding.get("code") == code:
                return ident
    return None


def _text(concept: Mapping[str, Any] | None) -> str | None:
    if not concept:
        return None
    if concept.get("text"):
        return str(concept["text"])
    for coding in concept.get("coding", []):
        if coding.get("display") or coding.get("code"):
            return str(coding.get("display") or coding.get("code"))
    return None


def _patient(resource: Mapping[str, Any], patients: Mapping[str, Mapping[str, Any]]) -> Patient:
    subject = resource.get("subject") or {}
    ref = str(subject.get("reference") or "")
    found = patients.get(ref)
    if found is None and ref.startswith("#"):
        found = next((c for c in resource.get("contained", []) if f"#{c.get('id')}" == ref), None)
    idents: list[PatientIdentifier] = []
    source = (found or {}).get("identifier") or ([subject["identifier"]] if subject.get("identifier") else [])
    for ident in source:
        if ident.get("value"):
            idents.append(PatientIdentifier(str(ident["value"]), ident.get("system") or None))
    if not idents:
        raise IngestError(
            "ServiceRequest.subject: expected a patient identifier (Patient.identifier or subject.identifier)"
        )
    name = None
    birth: date | None = None
    sex = Sex.UNKNOWN
    if found:
        names = found.get("name") or []
        if names:
            n = names[0]
            name = "^".join((str(n.get("family") or ""), " ".join(n.get("given") or []))).rstrip("^") or None
        if found.get("birthDate"):
            birth = date.fromisoformat(str(found["birthDate"])[:10])
        sex = {"male": Sex.MALE, "female": Sex.FEMALE, "other": Sex.OTHER}.get(str(found.get("gender")), Sex.UNKNOWN)
    return Patient(identifiers=tuple(idents), name=name, birth_date=birth, sex=sex)


def order_from_service_request(
    resource: Mapping[str, Any], patients: Mapping[str, Mapping[str, Any]] | None = None
) -> Order:
    """The order a ServiceRequest (JSON dict) describes.

    ``patients`` maps ``"Patient/<id>"`` to Patient resources fetched beside it (``_include``).

    Raises
    ------
    IngestError
        When the resource is not a valid R4 ServiceRequest or lacks a placer number or patient.
    """
    if resource.get("resourceType") != "ServiceRequest":
        raise IngestError(f"expected a FHIR ServiceRequest, got resourceType {resource.get('resourceType')!r}")
    try:
        ServiceRequest.model_validate(dict(resource))
    except ValidationError as exc:
        problem = exc.errors()[0]
        where = ".".join(str(p) for p in problem["loc"])
        raise IngestError(f"ServiceRequest.{where}: {problem['msg']}") from None
    if resource.get("status") not in _STATUS:
        raise IngestError(f"ServiceRequest.status: expected one of {sorted(_STATUS)}, got {resource.get('status')!r}")
    idents = list(resource.get("identifier") or [])
    placer = _typed(idents, "PLAC")
    filler = _typed(idents, "FILL")
    accession = _typed(idents, "ACSN")
    placer_number = (placer or {}).get("value") or resource.get("id")
    if not placer_number:
        raise IngestError("ServiceRequest.identifier: expected a PLAC identifier or a resource id")
    code: dict[str, Any] = dict(resource.get("code") or {})
    codings = code.get("coding") or []
    first: dict[str, Any] = dict(codings[0]) if codings else {}
    modality = None
    for concept in [code, *(resource.get("category") or [])]:
        for c in concept.get("coding", []):
            if c.get("system") == DCM and c.get("code"):
                modality = str(c["code"])
    reasons = [t for t in (_text(r) for r in resource.get("reasonCode") or []) if t]
    notes = [str(n["text"]) for n in resource.get("note") or [] if n.get("text")]
    when = resource.get("occurrenceDateTime") or (resource.get("occurrencePeriod") or {}).get("start")
    try:
        return Order(
            placer_number=str(placer_number),
            placer_authority=(placer or {}).get("system") or None,
            patient=_patient(resource, patients or {}),
            source=OrderSource.FHIR,
            filler_number=(filler or {}).get("value") or None,
            filler_authority=(filler or {}).get("system") or None,
            accession_number=(accession or {}).get("value") or None,
            procedure=OrderedProcedure(first.get("code"), first.get("system"), code.get("text") or first.get("display"))
            if (first.get("code") or code.get("text"))
            else None,
            modality=modality,
            reason="; ".join(reasons) or None,
            clinical_history="\n".join(notes) or None,
            ordering_provider=(resource.get("requester") or {}).get("display") or None,
            scheduled_at=datetime.fromisoformat(str(when)) if when else None,
            status=_STATUS[str(resource["status"])],
            service_request_id=resource.get("id"),
        )
    except RecordError as exc:
        raise IngestError(f"ServiceRequest: {exc}") from exc
    except ValueError as exc:
        raise IngestError(f"ServiceRequest.occurrenceDateTime: expected an ISO date-time ({exc})") from exc


def poll_service_requests(
    client: httpx.Client, base_url: str, *, since: str | None = None
) -> tuple[list[Order | IngestError], str | None]:
    """ServiceRequests changed since ``since`` (a FHIR instant), with their patients: (orders or errors, newest).

    Each resource that cannot be taken comes back as its :class:`IngestError`, so one
    bad order does not stop the others.
    """
    params = {"_include": "ServiceRequest:subject", "_count": "100", "_sort": "_lastUpdated"}
    if since:
        params["_lastUpdated"] = f"gt{since}"
    url: str | None = f"{base_url.rstrip('/')}/ServiceRequest"
    out: list[Order | IngestError] = []
    newest = since
    while url:
        try:
            response = client.get(url, params=params if "?" not in url else None, timeout=30.0)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise IngestError(f"FHIR server {base_url}: ServiceRequest search failed ({type(exc).__name__})") from exc
        bundle = response.json()
        entries = [e.get("resource") or {} for e in bundle.get("entry") or []]
        patients = {f"Patient/{r.get('id')}": r for r in entries if r.get("resourceType") == "Patient"}
        for r in entries:
            if r.get("resourceType") != "ServiceRequest":
                continue
            ref = str((r.get("subject") or {}).get("reference") or "")
            if ref.startswith("Patient/") and ref not in patients:  # the server ignored _include
                found = client.get(f"{base_url.rstrip('/')}/{ref}", timeout=30.0)
                if found.status_code == 200:
                    patients[ref] = found.json()
            updated = (r.get("meta") or {}).get("lastUpdated")
            if updated and (newest is None or updated > newest):
                newest = updated
            try:
                out.append(order_from_service_request(r, patients))
            except IngestError as exc:
                out.append(IngestError(f"ServiceRequest/{r.get('id')}: {exc}"))
        url = next((link.get("url") for link in bundle.get("link") or [] if link.get("relation") == "next"), None)
    return out, newest
