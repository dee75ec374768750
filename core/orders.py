"""Orders: what the hospital asked for, and how a study was matched to it.

An order arrives before the images (HL7 ORM^O01 / OMI^O23, a FHIR
ServiceRequest, a Modality Worklist entry).  The study that answers it is
matched by accession number, or, more weakly, by patient + procedure + date;
results then carry the order's placer/filler numbers back to the RIS and EHR.
Demographics that differ between order and images are recorded as conflicts
(field names only, never values) and never merged.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from core._validate import check_nonempty
from core.errors import RecordError
from core.records import Patient


class OrderStatus(enum.Enum):
    """Where the order stands (HL7 ORC-5 / FHIR ServiceRequest.status, reduced)."""

    SCHEDULED = "scheduled"  #: placed or scheduled, no images yet
    IN_PROGRESS = "in-progress"  #: images arrived and matched
    COMPLETED = "completed"  #: reported
    CANCELLED = "cancelled"  #: withdrawn by the placer (ORC-1 CA, ServiceRequest revoked)


class OrderSource(enum.Enum):
    """How the order reached mmdx."""

    HL7 = "hl7"  #: ORM^O01 / OMI^O23 over MLLP or from a file
    FHIR = "fhir"  #: ServiceRequest (API call or polling)
    WORKLIST = "worklist"  #: DICOM Modality Worklist C-FIND


class MatchStrength(enum.Enum):
    """How sure the study-to-order match is."""

    ACCESSION = "accession"  #: same accession number
    STUDY_UID = "study-uid"  #: the Study Instance UID the order assigned (OMI IPC-3, worklist)
    PATIENT_PROCEDURE_DATE = "patient-procedure-date"  #: same patient, procedure and day: a weaker match


def _clean(record: str, name: str, value: str | None, limit: int) -> None:
    if value is None:
        return
    check_nonempty(record, name, value)
    if len(value) > limit:
        raise RecordError(record, name, f"expected at most {limit} characters, got {len(value)}")
    if any(ord(c) < 0x20 for c in value):
        raise RecordError(record, name, "expected no control characters")


@dataclass(frozen=True, slots=True)
class OrderedProcedure:
    """The requested procedure: a code in the placer's system and/or its text (OBR-4, ServiceRequest.code)."""

    code: str | None = None
    system: str | None = None  #: HL7 v2 coding system (OBR-4.3) or FHIR system URI
    text: str | None = None

    def __post_init__(self) -> None:
        if not (self.code or self.text):
            raise RecordError("OrderedProcedure", "code", "expected a code or a text")
        _clean("OrderedProcedure", "code", self.code, 64)
        _clean("OrderedProcedure", "system", self.system, 256)
        _clean("OrderedProcedure", "text", self.text, 256)

    @property
    def display(self) -> str:
        return self.text or self.code or ""


@dataclass(frozen=True, slots=True)
class Order:
    """One imaging / ECG order (PHI: ``patient``; ``repr`` is redacted).

    ``placer_number`` (+ ``placer_authority``) identifies the order: a second
    message with the same pair updates it.  ``accession_number`` is unique
    among stored orders.
    """

    placer_number: str
    patient: Patient
    source: OrderSource
    placer_authority: str | None = None
    filler_number: str | None = None
    filler_authority: str | None = None
    accession_number: str | None = None
    procedure: OrderedProcedure | None = None
    modality: str | None = None
    reason: str | None = None  #: reason for exam (OBR-31, ServiceRequest.reasonCode)
    clinical_history: str | None = None  #: relevant clinical information (OBR-13, ServiceRequest.note)
    ordering_provider: str | None = None  #: name as given (ORC-12 / OBR-16, ServiceRequest.requester)
    scheduled_at: datetime | None = None  #: local wall clock when naive (as DICOM)
    status: OrderStatus = OrderStatus.SCHEDULED
    service_request_id: str | None = None  #: FHIR logical id of the ServiceRequest, when known
    requested_procedure_id: str | None = None  #: DICOM Requested Procedure ID (worklist)
    study_instance_uid: str | None = None  #: when the order pre-assigned one (OMI, worklist)

    def __post_init__(self) -> None:
        _clean("Order", "placer_number", self.placer_number, 64)
        for name, limit in (
            ("placer_authority", 64),
            ("filler_number", 64),
            ("filler_authority", 64),
            ("accession_number", 16),
            ("modality", 16),
            ("ordering_provider", 256),
            ("service_request_id", 64),
            ("requested_procedure_id", 16),
            ("study_instance_uid", 64),
        ):
            _clean("Order", name, getattr(self, name), limit)
        for name in ("reason", "clinical_history"):
            value = getattr(self, name)
            if value is not None:
                check_nonempty("Order", name, value)
                if len(value) > 4000:
                    raise RecordError("Order", name, f"expected at most 4000 characters, got {len(value)}")
        if not isinstance(self.patient, Patient):
            raise RecordError("Order", "patient", f"expected a Patient, got {type(self.patient).__name__}")
        if not self.patient.identifiers:
            raise RecordError("Order", "patient", "expected at least one patient identifier (PID-3)")
        if not isinstance(self.source, OrderSource):
            raise RecordError("Order", "source", f"expected an OrderSource, got {self.source!r}")
        if not isinstance(self.status, OrderStatus):
            raise RecordError("Order", "status", f"expected an OrderStatus, got {self.status!r}")

    def __repr__(self) -> str:  # PHI: never printed
        return f"Order(<redacted>, source={self.source.value}, status={self.status.value})"

    __str__ = __repr__

    @property
    def indication(self) -> str | None:
        """Reason for exam and clinical history as one sentence pair: what models and readers are told."""
        parts = []
        if self.reason:
            parts.append(f"Reason for exam: {self.reason.strip()}")
        if self.clinical_history:
            parts.append(f"Clinical history: {self.clinical_history.strip()}")
        return ". ".join(p.rstrip(".") for p in parts) + "." if parts else None


@dataclass(frozen=True, slots=True)
class OrderMatch:
    """The order a study answers, how it was matched, and what disagrees (field names, never values)."""

    order: Order
    strength: MatchStrength
    conflicts: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.strength, MatchStrength):
            raise RecordError("OrderMatch", "strength", f"expected a MatchStrength, got {self.strength!r}")
        for c in self.conflicts:
            check_nonempty("OrderMatch", "conflicts", c)

    @property
    def notice(self) -> str | None:
        """What a reader must know about the match (weak or conflicting), or None for a clean accession match."""
        parts = []
        if self.strength is MatchStrength.PATIENT_PROCEDURE_DATE:
            parts.append("matched to the order by patient, procedure and date only (no accession number match)")
        if self.conflicts:
            parts.append("order and images disagree on " + ", ".join(self.conflicts) + "; not merged, check")
        return "Order: " + "; ".join(parts) + "." if parts else None
