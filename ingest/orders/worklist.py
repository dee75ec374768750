"""DICOM Modality Worklist (C-FIND) by accession number: the order as the RIS scheduled it.

Used when a study arrives with an accession number no stored order holds:
the worklist answers with the patient, the requested procedure, the
scheduled step and, in IHE Scheduled Workflow, the placer/filler order
numbers, the reason for the requested procedure and the study UID the RIS
assigned.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import ModalityWorklistInformationFind  # type: ignore[attr-defined]

from core.config import DicomPeer
from core.errors import IngestError, RecordError
from core.orders import Order, OrderedProcedure, OrderSource
from core.records import Patient, PatientIdentifier, Sex

_RETURN_KEYS = (
    "PatientName",
    "PatientID",
    "IssuerOfPatientID",
    "PatientBirthDate",
    "PatientSex",
    "AccessionNumber",
    "RequestedProcedureID",
    "RequestedProcedureDescription",
    "StudyInstanceUID",
    "PlacerOrderNumberImagingServiceRequest",
    "FillerOrderNumberImagingServiceRequest",
    "ReasonForTheRequestedProcedure",
    "RequestingPhysician",
    "ReferringPhysicianName",
    "MedicalAlerts",
    "AdditionalPatientHistory",
)


def _worklist_query(accession_number: str) -> Dataset:
    """The C-FIND identifier: match on the accession number, return the order's keys."""
    if any(c in accession_number for c in "*?\\"):
        raise IngestError("worklist query: the accession number must not contain C-FIND wildcards (* ? \\)")
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"  # names come back decodable whatever the RIS stores them in
    for key in _RETURN_KEYS:
        setattr(ds, key, "")
    ds.AccessionNumber = accession_number
    ds.RequestedProcedureCodeSequence = [Dataset()]
    step = Dataset()
    for key in ("Modality", "ScheduledProcedureStepStartDate", "ScheduledProcedureStepStartTime"):
        setattr(step, key, "")
    step.ScheduledStationAETitle = ""
    step.ScheduledProcedureStepDescription = ""
    ds.ScheduledProcedureStepSequence = [step]
    return ds


def _str(ds: Dataset, keyword: str) -> str | None:
    value = ds.get(keyword)
    text = str(value).strip() if value is not None else ""
    return text or None


def _order_from_worklist(ds: Dataset) -> Order:
    """The order one worklist answer describes.

    Raises
    ------
    IngestError
        When the answer lacks the patient ID or carries a bad value (names the attribute).
    """
    pid = _str(ds, "PatientID")
    if pid is None:
        raise IngestError("worklist answer: PatientID (0010,0020) is empty")
    step = ds.ScheduledProcedureStepSequence[0] if ds.get("ScheduledProcedureStepSequence") else Dataset()
    scheduled = None
    sdate, stime = _str(step, "ScheduledProcedureStepStartDate"), _str(step, "ScheduledProcedureStepStartTime")
    if sdate:
        try:
            scheduled = datetime.strptime(sdate + (stime or "000000").split(".")[0].ljust(6, "0"), "%Y%m%d%H%M%S")
        except ValueError:
            raise IngestError("worklist answer: ScheduledProcedureStepStartDate/Time is not a DICOM DA/TM") from None
    code = ds.RequestedProcedureCodeSequence[0] if ds.get("RequestedProcedureCodeSequence") else Dataset()
    proc_code, proc_text = _str(code, "CodeValue"), _str(ds, "RequestedProcedureDescription")
    birth = _str(ds, "PatientBirthDate")
    history = "\n".join(t for t in (_str(ds, "AdditionalPatientHistory"), _str(ds, "MedicalAlerts")) if t) or None
    accession = _str(ds, "AccessionNumber")
    placer = _str(ds, "PlacerOrderNumberImagingServiceRequest") or accession or _str(ds, "RequestedProcedureID")
    if placer is None:
        raise IngestError("worklist answer: no placer order number, accession number or requested procedure ID")
    try:
        return Order(
            placer_number=placer,
            patient=Patient(
                identifiers=(PatientIdentifier(pid, _str(ds, "IssuerOfPatientID")),),
                name=_str(ds, "PatientName"),
                birth_date=datetime.strptime(birth, "%Y%m%d").date() if birth else None,
                sex={"M": Sex.MALE, "F": Sex.FEMALE, "O": Sex.OTHER}.get(_str(ds, "PatientSex") or "", Sex.UNKNOWN),
            ),
            source=OrderSource.WORKLIST,
            filler_number=_str(ds, "FillerOrderNumberImagingServiceRequest"),
            accession_number=accession,
            procedure=OrderedProcedure(proc_code, _str(code, "CodingSchemeDesignator"), proc_text)
            if proc_code or proc_text
            else None,
            modality=_str(step, "Modality"),
            reason=_str(ds, "ReasonForTheRequestedProcedure"),
            clinical_history=history,
            ordering_provider=_str(ds, "RequestingPhysician") or _str(ds, "ReferringPhysicianName"),
            scheduled_at=scheduled,
            requested_procedure_id=_str(ds, "RequestedProcedureID"),
            study_instance_uid=_str(ds, "StudyInstanceUID"),
        )
    except (RecordError, ValueError) as exc:
        raise IngestError(f"worklist answer: {exc}") from exc


def query_worklist(
    peer: DicomPeer, accession_number: str, *, calling_ae: str = "MMDX", timeout_s: float = 30.0
) -> list[Order]:
    """C-FIND the worklist for one accession number; the orders it answers with.

    Raises
    ------
    IngestError
        When the worklist cannot be reached, refuses, or answers something unusable.
    """
    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout_s
    ae.add_requested_context(ModalityWorklistInformationFind)
    assoc: Any = ae.associate(peer.host, peer.port, ae_title=peer.ae_title)
    if not assoc.is_established:
        raise IngestError(
            f"no association with worklist {peer.ae_title}@{peer.host}:{peer.port} "
            f"({'rejected' if assoc.is_rejected else 'aborted or unreachable'})"
        )
    answers: list[Dataset] = []
    try:
        for status, identifier in assoc.send_c_find(_worklist_query(accession_number), ModalityWorklistInformationFind):
            code = int(getattr(status, "Status", 0xFFFF)) if status else None
            if code is None:
                raise IngestError(f"worklist C-FIND to {peer.ae_title}: no response (timeout or abort)")
            if code in (0xFF00, 0xFF01) and identifier is not None:
                answers.append(identifier)
            elif code != 0x0000:
                raise IngestError(f"worklist C-FIND to {peer.ae_title} failed with status 0x{code:04X}")
    finally:
        assoc.release()
    return [_order_from_worklist(ds) for ds in answers]
