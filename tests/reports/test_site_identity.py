"""Site profile, patient identity and local time across the outputs: FHIR, HL7 v2 and DICOM SR agree.

A study acquired at 09:34 local time in a +01:00 zone comes out as 09:34+01:00 everywhere; the
patient's identifier is named by the site's systems (FHIR system, PID-3 authority, DICOM issuer);
a study nobody read says "not analysed"; an ECG file's SR references no waveform that does not exist.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pydicom
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message

from core.codes import LOINC, MMDX
from core.config import Destination
from core.identifiers import FixedClock
from core.patient_ids import IdentifierMap
from core.records import (
    ECG_FILE_SOURCE,
    DraftReport,
    Instance,
    Patient,
    PatientIdentifier,
    PriorityLevel,
    ReportKind,
    ReportSection,
    ReportStatus,
    Series,
    Sex,
)
from core.site import SiteConfig
from pacs_bridge.fhir import FhirSender
from pacs_bridge.outcome import Delivered
from reports import sr_ecg, sr_tid2000
from reports.context import ReportContext
from reports.fhir_bundle import build_bundle, bundle_json
from reports.fhir_validate import check_bundle
from reports.hl7_oru import build_oru
from store.outbox import OutboxItem, OutboxState
from tests.peers import start_fhir_server, stop_pid
from tests.reports import helpers as h

SITE = SiteConfig.model_validate(
    {
        "institution_name": "St. Elsewhere",
        "department_name": "Cardiology",
        "timezone": "Europe/Berlin",
        "language": "de-DE",
        "hl7": {"sending_application": "MMDX", "sending_facility": "STE", "receiving_application": "EPIC"},
        "performer": {"name": "St. Elsewhere Cardiology", "identifier_system": "urn:oid:1.2.3.9", "identifier": "CARD"},
        "patient_identifiers": {
            "default": {"fhir_system": "urn:oid:1.2.3.4.5", "hl7_namespace": "STE", "hl7_universal_id": "1.2.3.4.5"},
            "issuers": {
                "HOSP": {
                    "fhir_system": "urn:oid:1.2.3.4.6",
                    "hl7_namespace": "HOSP",
                    "dicom_issuer": "HOSP-MRN",
                    "type_code": "MR",
                }
            },
        },
    }
)


def _ctx() -> ReportContext:
    return ReportContext.from_site(SITE, uid_root="1.2.826.0.1.3680043.10.999", clock=FixedClock(h.CREATED))


def _winter_study(**patient: object):
    """The ECG study acquired at 09:34 local (naive: DICOM's wall clock) on a winter day in Berlin (+01:00)."""
    study = h.ecg_study()
    p = dataclasses.replace(study.patient, **patient) if patient else study.patient
    return dataclasses.replace(
        study,
        patient=p,
        study_datetime=datetime(2026, 1, 15, 9, 34, 31, 700000),
        study_time_dicom="093431.70",
        study_id="4711",
        referring_physician="Weiß^Jürgen",
    )


def _strict(message: str):
    return parse_message(message.replace("\r", "\r"), validation_level=VALIDATION_LEVEL.STRICT, find_groups=True)


def test_local_0934_is_0934_plus_0100_in_fhir_hl7_and_sr(tmp_path: Path) -> None:
    ctx, study, report = _ctx(), _winter_study(), h.ecg_report()
    bundle = json.loads(bundle_json(build_bundle(report, study, ctx)))
    (dr,) = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "DiagnosticReport"]
    assert dr["effectiveDateTime"] == "2026-01-15T09:34:31.700000+01:00"
    (im,) = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "ImagingStudy"]
    assert im["started"].startswith("2026-01-15T09:34:31") and im["started"].endswith("+01:00")
    oru = build_oru(report, study, ctx)
    obr = next(s for s in oru.split("\r") if s.startswith("OBR|"))
    assert obr.split("|")[7] == "20260115093431+0100"
    msh = oru.split("\r")[0].split("|")
    assert msh[6] == "20261120103000+0100"  # the clock's 09:30 UTC on the site's wall clock
    sr = pydicom.dcmread(io.BytesIO(sr_ecg.build_ecg_sr_bytes(report, study, ctx)))
    assert (sr.StudyDate, sr.StudyTime, sr.TimezoneOffsetFromUTC) == ("20260115", "093431.70", "+0100")
    assert sr.ContentTime == "103000"  # report time, in the same zone as the offset says


def test_a_source_offset_is_kept_not_replaced_by_the_site_zone() -> None:
    study = dataclasses.replace(
        _winter_study(), study_datetime=datetime(2026, 1, 15, 9, 34, tzinfo=timezone(-timedelta(hours=5)))
    )
    oru = build_oru(h.ecg_report(), study, _ctx())
    assert next(s for s in oru.split("\r") if s.startswith("OBR|")).split("|")[7] == "20260115093400-0500"


def test_patient_identity_under_the_site_systems_in_every_output(tmp_path: Path) -> None:
    patient = Patient(
        identifiers=(PatientIdentifier("MRN|77^&", "HOSP"), PatientIdentifier("A-1", None)),
        name="Müller^Zoë",
        birth_date=h.patient().birth_date,
        sex=Sex.FEMALE,
    )
    ctx, report = _ctx(), h.ecg_report()
    study = dataclasses.replace(_winter_study(), patient=patient)
    bundle = json.loads(bundle_json(build_bundle(report, study, ctx)))
    (pat,) = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"]
    assert [(i["system"], i["value"]) for i in pat["identifier"]] == [
        ("urn:oid:1.2.3.4.6", "MRN|77^&"),
        ("urn:oid:1.2.3.4.5", "A-1"),
    ]
    assert pat["name"][0]["family"] == "Müller"
    (dr,) = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "DiagnosticReport"]
    (org,) = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Organization"]
    assert org["name"] == "St. Elsewhere Cardiology" and dr["performer"][0]["display"] == org["name"]
    assert check_bundle(bundle) == []

    oru = build_oru(report, study, ctx)
    msg = _strict(oru)  # hl7apy STRICT 2.5.1: delimiters in the ID escaped, UTF-8 name, MSH-18
    pid3 = next(s for s in oru.split("\r") if s.startswith("PID|")).split("|")[3]
    first, second = pid3.split("~")
    assert h.unescape(first.split("^")[0]) == "MRN|77^&" and first.split("^")[3:] == ["HOSP", "MR"]
    assert second == "A-1^^^STE&1.2.3.4.5&ISO^MR"
    assert "Müller" in oru and oru.split("\r")[0].endswith("UNICODE UTF-8")
    assert msg.msh.msh_4.to_er7() == "STE" and msg.msh.msh_5.to_er7() == "EPIC"

    sr = pydicom.dcmread(io.BytesIO(sr_ecg.build_ecg_sr_bytes(report, study, ctx)))
    assert sr.SpecificCharacterSet == "ISO_IR 192" and str(sr.PatientName) == "Müller^Zoë"
    assert (sr.PatientID, sr.IssuerOfPatientID) == ("MRN|77^&", "HOSP-MRN")
    assert sr.OtherPatientIDsSequence[0].PatientID == "A-1"
    assert (sr.StudyID, sr.ReferringPhysicianName, sr.InstitutionName) == ("4711", "Weiß^Jürgen", "St. Elsewhere")
    assert sr.InstitutionalDepartmentName == "Cardiology"


def test_identifier_map_keeps_an_unlisted_issuer() -> None:
    ids = IdentifierMap()
    oid = ids.system_for("2.16.840.1.113883.3.400")
    assert (oid.fhir_system, oid.hl7_universal_id) == ("urn:oid:2.16.840.1.113883.3.400", "2.16.840.1.113883.3.400")
    other = ids.system_for("Clinic A|B")
    assert other.fhir_system == "urn:mmdx:patient-id:Clinic%20A%7CB" and "|" not in other.hl7_namespace
    assert ids.system_for(None) is ids.default


def test_ecg_file_sr_references_no_waveform_that_does_not_exist(tmp_path: Path, dciodvfy) -> None:
    study = h.ecg_study()
    series = study.series[0]
    inst = dataclasses.replace(series.instances[0], source=ECG_FILE_SOURCE)
    study = dataclasses.replace(study, series=(dataclasses.replace(series, instances=(inst,)),))
    data = sr_ecg.build_ecg_sr_bytes(h.ecg_report(), study, h.context())
    sr = pydicom.dcmread(io.BytesIO(data))
    assert "CurrentRequestedProcedureEvidenceSequence" not in sr
    assert inst.sop_instance_uid.encode() not in data
    path = tmp_path / "sr.dcm"
    path.write_bytes(data)
    assert dciodvfy(path) == []


def test_a_study_nobody_read_says_not_analysed_everywhere(tmp_path: Path, dciodvfy) -> None:
    report = DraftReport(
        study_instance_uid=h.CR_STUDY_UID,
        kind=ReportKind.IMAGING,
        created_at=datetime(2026, 11, 20, 9, 30, tzinfo=UTC),
        sections=(
            ReportSection(LOINC.TECHNIQUE, "Single PA radiograph of the chest."),
            ReportSection(MMDX.PROCESSING_NOTE, "No radiology model is configured."),
        ),
    )
    study, ctx = h.chest_study(), h.context()
    bundle = json.loads(bundle_json(build_bundle(report, study, ctx)))
    (dr,) = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "DiagnosticReport"]
    assert dr["conclusion"].startswith("Not analysed") and "conclusionCode" not in dr and "meta" not in dr
    assert not [e for e in bundle["entry"] if e["resource"]["resourceType"] == "Observation"]
    oru = build_oru(report, study, ctx)
    _strict(oru)
    obx = [s for s in oru.split("\r") if s.startswith("OBX|")]
    assert not any("59776-5" in s or "No radiology model" in s for s in obx)  # a note is never a finding
    notes = [s.split("|")[3] for s in oru.split("\r") if s.startswith("NTE|")]
    assert "No radiology model is configured." in notes and any(n.startswith("Not analysed") for n in notes)
    data = sr_tid2000.build_tid2000_bytes(report, study, ctx)
    sr = pydicom.dcmread(io.BytesIO(data))
    assert (sr.CompletionFlag, sr.CompletionFlagDescription[:12]) == ("PARTIAL", "Not analysed")
    assert b"No radiology model" not in data
    path = tmp_path / "tid2000.dcm"
    path.write_bytes(data)
    assert dciodvfy(path) == []


def test_imaging_study_follows_the_study_when_it_grows_on_the_fhir_server(tmp_path: Path) -> None:
    """First bundle with one series, then the study grows (a lateral view): the EHR's ImagingStudy is updated."""

    ctx, report, study = h.context(), h.chest_report(), h.chest_study()
    uid = "1.2.826.0.1.3680043.8.498.10000000000000000000000000009"
    lateral = Instance(uid + "1", h.CR_SOP_CLASS, uid, h.CR_STUDY_UID, tmp_path / "lat.dcm", "sha256:" + "0" * 64)
    grown = dataclasses.replace(
        study, series=(*study.series, Series(uid, h.CR_STUDY_UID, "CR", 2, "LAT", None, (lateral,)))
    )
    server = start_fhir_server(tmp_path / "fhir")
    try:
        sender = FhirSender(Destination(type="fhir", url=server.url))
        for n, s in enumerate((study, grown)):
            path = tmp_path / f"bundle{n}.json"
            path.write_bytes(bundle_json(build_bundle(report, s, ctx)))
            (outcome,) = sender.send([_outbox_item(path)])
            assert isinstance(outcome, Delivered), outcome
        sender.close()
        (imaging,) = server.search("ImagingStudy")
        assert imaging["numberOfSeries"] == 2 and len(server.search("Patient")) == 1
    finally:
        stop_pid(server.proc)


def _outbox_item(path: Path) -> OutboxItem:

    now = datetime(2026, 11, 20, tzinfo=UTC)
    return OutboxItem(
        id=1,
        destination="ehr",
        state=OutboxState.PENDING,
        attempts=0,
        next_attempt_at=now,
        last_error=None,
        transaction_uid=None,
        updated_at=now,
        artefact_id=1,
        kind="fhir",
        path=path,
        sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
        media_type="application/fhir+json",
        sop_instance_uid=None,
        study_uid=h.CR_STUDY_UID,
        report_version=1,
        report_status=ReportStatus.PRELIMINARY,
        priority=PriorityLevel.ROUTINE,
        priority_reason="",
    )
