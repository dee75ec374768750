"""What every DICOM object mmdx writes shares: identity, patient/study copy, flags, encoding.

Builders are pure and have no source datasets (records never hold pydicom
objects), so the patient and study attributes that highdicom copies from
"evidence" come from a minimal dataset built here from the core records.
Timestamps come from the report (content) and the context clock (creation),
so re-runs give identical bytes.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import highdicom as hd
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filewriter import dcmwrite
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian

from core.codes import SYSTEM_URIS, Code
from core.errors import ReportError
from core.identifiers import derive_uid
from core.records import DraftReport, Instance, ReportStatus, Study
from reports._common import NOT_ANALYSED, is_analysed, to_dicom_pn
from reports.context import ReportContext

#: Series numbers of mmdx-derived series (one series per artefact kind; instance number = report version)
SERIES_NUMBERS = {"sr-tid1500": 9001, "sr-tid2000": 9002, "sr-ecg": 9003, "sc": 9004, "pdf": 9005, "kos": 9006}

SOP_COMPREHENSIVE_3D_SR = "1.2.840.10008.5.1.4.1.1.88.34"
SOP_COMPREHENSIVE_SR = "1.2.840.10008.5.1.4.1.1.88.33"
SOP_ENHANCED_SR = "1.2.840.10008.5.1.4.1.1.88.22"
SOP_BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"

#: Coding schemes that are not in DICOM's registry (PS3.16 8.1) and need a Coding Scheme Identification item;
#: DICOM reserves designators starting with "99" for private schemes.
_LOCAL_SCHEMES = {"MMDX": "mmdx local codes"}
_DICOM_DESIGNATOR = {"MMDX": "99MMDX"}
LOCAL_DESIGNATOR = "99MMDX"


@dataclass(frozen=True, slots=True)
class DicomIdentity:
    """UIDs and numbers of one derived object (deterministic per report version)."""

    series_instance_uid: str
    sop_instance_uid: str
    series_number: int
    instance_number: int


def identity(report: DraftReport, ctx: ReportContext, purpose: str) -> DicomIdentity:
    return DicomIdentity(
        series_instance_uid=ctx.series_uid(report, purpose),
        sop_instance_uid=ctx.report_uid(report, purpose),
        series_number=SERIES_NUMBERS[purpose],
        instance_number=report.version,
    )


def document_kwargs(report: DraftReport, ctx: ReportContext, purpose: str, series_description: str) -> dict[str, Any]:
    """The identity, equipment and series arguments every highdicom SR/KOS document constructor takes."""
    ident = identity(report, ctx, purpose)
    return {
        "series_instance_uid": ident.series_instance_uid,
        "series_number": ident.series_number,
        "sop_instance_uid": ident.sop_instance_uid,
        "instance_number": ident.instance_number,
        "manufacturer": ctx.manufacturer,
        "institution_name": ctx.institution_name,
        "institutional_department_name": ctx.department_name,
        "series_description": series_description,
    }


def predecessor_uid(report: DraftReport, ctx: ReportContext, purpose: str) -> str | None:
    """SOP Instance UID of the previous version's object of the same kind, if any."""
    if report.replaces_version is None:
        return None
    return ctx.uid(report.study_instance_uid, purpose, report.replaces_version)


def hd_code(code: Code) -> hd.sr.CodedConcept:
    return hd.sr.CodedConcept(
        value=code.value, scheme_designator=_DICOM_DESIGNATOR.get(code.scheme, code.scheme), meaning=code.meaning[:64]
    )


def observation_context(report: DraftReport, ctx: ReportContext) -> hd.sr.ObservationContext:
    """The device observer is mmdx itself; once signed, the verifying clinician is the person observer."""
    device = hd.sr.ObserverContext(
        observer_type=hd.sr.CodedConcept("121007", "DCM", "Device"),
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=derive_uid(ctx.uid_root, ctx.software_name, ctx.software_version, "device-observer"),
            name=ctx.software_name,
            manufacturer_name=ctx.manufacturer,
            model_name=f"{ctx.software_name} {ctx.software_version}",
        ),
    )
    person = None
    if report.signature is not None and report.status in (ReportStatus.FINAL, ReportStatus.AMENDED):
        person = hd.sr.ObserverContext(
            observer_type=hd.sr.CodedConcept("121006", "DCM", "Person"),
            observer_identifying_attributes=hd.sr.PersonObserverIdentifyingAttributes(
                name=to_dicom_pn(report.signature.clinician.name),
                login_name=report.signature.clinician.identifier,
                organization_name=ctx.institution_name,
            ),
        )
    return hd.sr.ObservationContext(observer_person_context=person, observer_device_context=device)


def content_preamble(report: DraftReport, ctx: ReportContext) -> list[Any]:
    """Language of content (TID 1204) and observation context (TID 1001) items that open a document tree."""
    items: list[Any] = []  # content items and templates (sequences of items)
    language = hd.sr.CodedConcept(ctx.language, "RFC5646", _LANGUAGE_NAMES.get(ctx.language, ctx.language))
    items.extend(hd.sr.LanguageOfContentItemAndDescendants(language))
    items.extend(observation_context(report, ctx))
    return items


_LANGUAGE_NAMES = {"en-US": "English (US)", "en-GB": "English (GB)", "de-DE": "German (Germany)", "fr-FR": "French"}


def needs_utf8(*texts: str | None) -> bool:
    return any(t is not None and not t.isascii() for t in texts)


def character_set(study: Study, report: DraftReport, *extra: str | None) -> str | None:
    """ISO_IR 192 (UTF-8) when any text we write is non-ASCII; None keeps the default repertoire."""
    texts: list[str | None] = [study.patient.name, study.description, study.referring_physician, *extra]
    texts += [s.text for s in report.sections] + [f.text for f in report.findings]
    if report.signature is not None:
        texts.append(report.signature.clinician.name)
    return "ISO_IR 192" if needs_utf8(*texts) else None


def study_instances(study: Study, source_instances: Sequence[Instance] = ()) -> list[Instance]:
    """The instances an object references: those given, else every instance of ``study``.

    Only DICOM objects: an ECG file indexed under derived UIDs (``Instance.is_dicom_object`` false) has
    no SOP instance anyone could retrieve, so nothing references it (an empty list for such a study).
    """
    return [i for i in (list(source_instances) or [i for s in study.series for i in s.instances]) if i.is_dicom_object]


def study_dataset(study: Study, charset: str | None, ctx: ReportContext | None = None) -> Dataset:
    """A dataset with the character set, patient/study module and Study Instance UID (no series or SOP)."""
    ds = Dataset()
    if charset:
        ds.SpecificCharacterSet = charset
    patient_module(ds, study, ctx)
    ds.StudyInstanceUID = study.study_instance_uid
    return ds


def evidence_dataset(
    study: Study,
    charset: str | None,
    series_instance_uid: str,
    sop_instance_uid: str,
    sop_class_uid: str,
    ctx: ReportContext | None = None,
) -> Dataset:
    """A minimal source dataset (patient, study, series, SOP) for highdicom's evidence handling."""
    ds = study_dataset(study, charset, ctx)
    ds.SeriesInstanceUID = series_instance_uid
    ds.SOPInstanceUID = sop_instance_uid
    ds.SOPClassUID = sop_class_uid
    return ds


def evidence_datasets(
    study: Study, instances: Sequence[Instance], charset: str | None, ctx: ReportContext | None = None
) -> list[Dataset]:
    """Minimal source datasets (patient, study, series, SOP) for highdicom's evidence handling."""
    if not instances:
        raise ReportError(f"study {study.study_instance_uid}: no source instances to reference")
    return [
        evidence_dataset(study, charset, inst.series_instance_uid, inst.sop_instance_uid, inst.sop_class_uid, ctx)
        for inst in instances
    ]


def patient_study_source(study: Study, charset: str | None, ctx: ReportContext | None = None) -> Dataset:
    """A dataset highdicom copies the patient and study modules from, for a study with no DICOM object.

    It names the study's first (non-DICOM) instance so highdicom can look up its IOD; the document
    built from it must then drop its evidence references (:func:`drop_evidence`).
    """
    inst = next((i for s in study.series for i in s.instances), None)
    if inst is None:
        raise ReportError(f"study {study.study_instance_uid}: no instances")
    return evidence_dataset(study, charset, inst.series_instance_uid, inst.sop_instance_uid, inst.sop_class_uid, ctx)


def drop_evidence(ds: Dataset) -> None:
    """Remove references to objects that do not exist (an SR of an ECG file that has no DICOM waveform)."""
    for keyword in ("CurrentRequestedProcedureEvidenceSequence", "PertinentOtherEvidenceSequence"):
        if keyword in ds:
            delattr(ds, keyword)


def sr_evidence(
    study: Study,
    report: DraftReport,
    source_instances: Sequence[Instance],
    *extra: str | None,
    ctx: ReportContext | None = None,
) -> tuple[list[Instance], list[Dataset]]:
    """The referenced instances (:func:`study_instances`) and their evidence datasets, in the report's charset.

    ``extra`` are further texts the document writes (see :func:`character_set`).  A study without a
    DICOM object gives no instances and one :func:`patient_study_source` dataset (drop the evidence).
    """
    instances = study_instances(study, source_instances)
    charset = character_set(study, report, *extra)
    if not instances:
        return [], [patient_study_source(study, charset, ctx)]
    return instances, evidence_datasets(study, instances, charset, ctx)


def _check_length(keyword: str, value: str, limit: int) -> str:
    if len(value) > limit:
        raise ReportError(f"DICOM {keyword}: {len(value)} characters, the VR allows at most {limit}")
    return value


def patient_module(ds: Dataset, study: Study, ctx: ReportContext | None = None) -> None:
    """Patient + General Study attributes (type 2 present even when unknown).

    With ``ctx`` the issuer is the site's DICOM issuer for the source's authority (core.patient_ids) and
    further identifiers go to OtherPatientIDsSequence; StudyID and StudyTime are the source's, unchanged.

    Raises
    ------
    ReportError
        When an identifier is too long for its VR (never truncated: a cut identifier names someone else).
    """
    p = study.patient
    if p.identifiers:
        _check_length("PatientID", p.identifiers[0].value, 64)
    if study.accession_number:
        _check_length("AccessionNumber", study.accession_number, 16)
    # names as the source wrote them (a DICOM PN is copied unchanged, so every object of the study agrees)
    ds.PatientName = p.name or ""
    ds.PatientID = p.identifiers[0].value if p.identifiers else ""
    if ctx is not None and p.identifiers:
        hospital = ctx.patient_ids.resolve_all(p)
        if hospital[0].system.dicom_issuer:
            ds.IssuerOfPatientID = hospital[0].system.dicom_issuer
        others = []
        for hid in hospital[1:]:
            item = Dataset()
            item.PatientID = _check_length("PatientID", hid.value, 64)
            if hid.system.dicom_issuer:
                item.IssuerOfPatientID = hid.system.dicom_issuer
            item.TypeOfPatientID = "TEXT"
            others.append(item)
        if others:
            ds.OtherPatientIDsSequence = DicomSequence(others)
    elif p.identifiers and p.identifiers[0].issuer:
        ds.IssuerOfPatientID = p.identifiers[0].issuer
    ds.PatientBirthDate = p.birth_date.strftime("%Y%m%d") if p.birth_date else ""
    ds.PatientSex = p.sex.value if p.sex.value in ("M", "F", "O") else ""
    ds.AccessionNumber = study.accession_number or ""
    ds.StudyID = study.study_id or ""
    ds.StudyDate = study.study_datetime.strftime("%Y%m%d") if study.study_datetime else ""
    if study.study_time_dicom is not None:
        ds.StudyTime = study.study_time_dicom  # as received: "093431.70" stays "093431.70"
    else:
        ds.StudyTime = study.study_datetime.strftime("%H%M%S") if study.study_datetime else ""
    ds.ReferringPhysicianName = study.referring_physician or ""
    if study.description:
        ds.StudyDescription = study.description[:64]


#: coding schemes an order's procedure code may carry that are also DICOM designators (HL7 v2 name -> DICOM)
_ORDER_CODE_SCHEMES = {"LN": "LN", "SCT": "SCT", "C4": "C4", "DCM": "DCM", "RADLEX": "RADLEX", "http://loinc.org": "LN"}


def referenced_request(study: Study) -> list[Dataset] | None:
    """The SR's Referenced Request Sequence item for the order the study answers (None without one).

    A procedure code whose scheme has no DICOM designator is left out (the description stays): a
    made-up designator would need a Coding Scheme Identification nobody can resolve.
    """
    if study.order_match is None:
        return None
    order = study.order_match.order
    item = Dataset()
    item.StudyInstanceUID = study.study_instance_uid
    item.ReferencedStudySequence = DicomSequence([])  # type 2: the study is named by its UID above
    item.AccessionNumber = order.accession_number or study.accession_number or ""
    item.PlacerOrderNumberImagingServiceRequest = order.placer_number
    if order.placer_authority:
        issuer = Dataset()
        issuer.LocalNamespaceEntityID = order.placer_authority
        item.OrderPlacerIdentifierSequence = DicomSequence([issuer])
    item.FillerOrderNumberImagingServiceRequest = order.filler_number or ""
    if order.filler_number and order.filler_authority:
        issuer = Dataset()
        issuer.LocalNamespaceEntityID = order.filler_authority
        item.OrderFillerIdentifierSequence = DicomSequence([issuer])
    item.RequestedProcedureID = order.requested_procedure_id or ""
    proc = order.procedure
    item.RequestedProcedureDescription = (proc.text or "")[:64] if proc else ""
    codes = []
    if proc and proc.code and proc.system in _ORDER_CODE_SCHEMES and len(proc.code) <= 16:
        code = Dataset()
        code.CodeValue = proc.code
        code.CodingSchemeDesignator = _ORDER_CODE_SCHEMES[proc.system]
        code.CodeMeaning = (proc.text or proc.code)[:64]
        codes.append(code)
    item.RequestedProcedureCodeSequence = DicomSequence(codes)
    if order.reason:
        item.ReasonForTheRequestedProcedure = order.reason[:64]
    return [item]


def dicom_dt(value: datetime) -> str:
    return value.strftime("%Y%m%d%H%M%S") + (value.strftime("%z") if value.tzinfo else "")


def set_times(ds: Dataset, report: DraftReport, ctx: ReportContext) -> None:
    """Content time = the report version's time; creation time = the context clock (both deterministic in tests)."""
    # the site's wall clock with its offset: TimezoneOffsetFromUTC holds for every DA/TM of the object,
    # the copied (local) StudyDate/StudyTime included
    created = ctx.local(ctx.now())
    content = ctx.local(report.created_at)
    ds.InstanceCreationDate = created.strftime("%Y%m%d")
    ds.InstanceCreationTime = created.strftime("%H%M%S")
    ds.ContentDate = content.strftime("%Y%m%d")
    ds.ContentTime = content.strftime("%H%M%S")
    if "SeriesDate" in ds or ds.get("Modality") in ("SR", "KO", "DOC"):
        ds.SeriesDate = content.strftime("%Y%m%d")
        ds.SeriesTime = content.strftime("%H%M%S")
    if "DateOfSecondaryCapture" in ds:
        ds.DateOfSecondaryCapture = created.strftime("%Y%m%d")
        ds.TimeOfSecondaryCapture = created.strftime("%H%M%S")
    for item in ds.get("ContributingEquipmentSequence", []):
        # highdicom stamps its own contribution with the wall clock: use ours so re-runs are identical
        item.ContributionDateTime = dicom_dt(created)
    if "TimezoneOffsetFromUTC" not in ds and content.tzinfo is not None:
        ds.TimezoneOffsetFromUTC = content.strftime("%z")


def set_sr_flags(ds: Dataset, report: DraftReport, ctx: ReportContext) -> None:
    """PRELIMINARY/UNVERIFIED for drafts; FINAL/VERIFIED with the verifying observer once signed.

    A study nobody read is PARTIAL with the description "Not analysed": the DICOM way to say the
    document holds no reading, instead of a finding or a normal conclusion.
    """
    if is_analysed(report):
        ds.CompletionFlag = "COMPLETE"
        if "CompletionFlagDescription" in ds:
            del ds.CompletionFlagDescription
    else:
        ds.CompletionFlag = "PARTIAL"
        ds.CompletionFlagDescription = NOT_ANALYSED.split(":")[0] + ": no model or rule engine has read it"
    signed = report.status in (ReportStatus.FINAL, ReportStatus.AMENDED) and report.signature is not None
    if signed and report.signature is not None:
        sig = report.signature
        ds.VerificationFlag = "VERIFIED"
        ds.PreliminaryFlag = "FINAL"
        obs = Dataset()
        obs.VerifyingObserverName = to_dicom_pn(sig.clinician.name)
        code = Dataset()
        if len(sig.clinician.identifier) <= 16:
            code.CodeValue = sig.clinician.identifier
        else:
            code.LongCodeValue = sig.clinician.identifier
        code.CodingSchemeDesignator = LOCAL_DESIGNATOR
        code.CodeMeaning = f"{sig.clinician.role} identifier"[:64]
        obs.VerifyingObserverIdentificationCodeSequence = DicomSequence([code])
        obs.VerifyingOrganization = ctx.institution_name
        obs.VerificationDateTime = dicom_dt(sig.signed_at)
        ds.VerifyingObserverSequence = DicomSequence([obs])
    else:
        ds.VerificationFlag = "UNVERIFIED"
        ds.PreliminaryFlag = "PRELIMINARY"
        if "VerifyingObserverSequence" in ds:
            del ds.VerifyingObserverSequence


def set_predecessor(ds: Dataset, report: DraftReport, ctx: ReportContext, purpose: str, sop_class_uid: str) -> None:
    """An amended SR references the version it replaces (Predecessor Documents Sequence)."""
    pred = predecessor_uid(report, ctx, purpose)
    if pred is None:
        return
    sop = Dataset()
    sop.ReferencedSOPClassUID = sop_class_uid
    sop.ReferencedSOPInstanceUID = pred
    series = Dataset()
    series.SeriesInstanceUID = ctx.series_uid(report, purpose)
    series.ReferencedSOPSequence = DicomSequence([sop])
    study = Dataset()
    study.StudyInstanceUID = report.study_instance_uid
    study.ReferencedSeriesSequence = DicomSequence([series])
    ds.PredecessorDocumentsSequence = DicomSequence([study])


def set_equipment(ds: Dataset, ctx: ReportContext) -> None:
    ds.Manufacturer = ctx.manufacturer[:64]
    ds.ManufacturerModelName = ctx.software_name[:64]
    ds.SoftwareVersions = ctx.software_version[:64]
    ds.InstitutionName = ctx.institution_name[:64]
    if ctx.department_name:
        ds.InstitutionalDepartmentName = ctx.department_name[:64]


def add_coding_schemes(ds: Dataset, schemes: Iterable[str]) -> None:
    """Identify local coding schemes used in the document (PS3.3 C.12.1.1.2: Coding Scheme Identification)."""
    items = []
    for s in sorted(set(schemes) & set(_LOCAL_SCHEMES)):
        it = Dataset()
        it.CodingSchemeDesignator = _DICOM_DESIGNATOR[s]
        it.CodingSchemeName = f"{_LOCAL_SCHEMES[s]} ({SYSTEM_URIS[s]})"[:64]
        it.CodingSchemeResponsibleOrganization = "mmdx project"
        items.append(it)
    if items:
        ds.CodingSchemeIdentificationSequence = DicomSequence(items)


def finish_sr(
    ds: Dataset, report: DraftReport, ctx: ReportContext, purpose: str, sop_class: str, schemes: set[str]
) -> None:
    """The parts every mmdx SR shares: times, flags, predecessor, equipment, local coding schemes."""
    set_times(ds, report, ctx)
    set_sr_flags(ds, report, ctx)
    set_predecessor(ds, report, ctx, purpose, sop_class)
    set_equipment(ds, ctx)
    add_coding_schemes(ds, schemes)


def build_sr(
    sr_class: type[hd.sr.Comprehensive3DSR] | type[hd.sr.ComprehensiveSR] | type[hd.sr.EnhancedSR],
    report: DraftReport,
    ctx: ReportContext,
    purpose: str,
    sop_class: str,
    schemes: set[str],
    *,
    evidence: Sequence[Dataset],
    content: Dataset | DicomSequence,
    series_description: str,
    **extra: Any,
) -> Dataset:
    """A complete SR document of ``sr_class`` with mmdx's identity, then :func:`finish_sr`."""
    sr = sr_class(
        evidence=evidence,
        content=content,
        is_complete=True,
        **document_kwargs(report, ctx, purpose, series_description),
        **extra,
    )
    finish_sr(sr, report, ctx, purpose, sop_class, schemes)
    return sr


def to_bytes(ds: Dataset) -> bytes:
    """Part-10 bytes, explicit VR little endian, with file meta."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.file_meta = meta
    buf = io.BytesIO()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dcmwrite(buf, ds, enforce_file_format=True)
    bad = [str(w.message) for w in caught if "encode" in str(w.message).lower()]
    if bad:
        # never write an object whose text was silently replaced
        raise ReportError(f"SOP instance {ds.SOPInstanceUID}: {bad[0]}")
    return buf.getvalue()
