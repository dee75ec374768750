"""Conformance of everything `mmdx run` writes for every sample and every file of tests/data.

Each study's outputs are checked by the validators of their standards: dciodvfy (0 errors) on
every DICOM object, dcentvfy across the study's objects (0 errors), hl7apy STRICT 2.5.1 on every
ORU, the project's FHIR checker on every bundle; and an identity check: the patient a source names
is the same patient in the SR, the FHIR bundle and the ORU, and two recordings of one patient give
the same FHIR Patient identifier (so the EHR's conditional create makes one Patient).  The site
profile sets a +01:00 zone and a hospital MRN system, as a hospital's would.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pydicom
import pytest
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message
from typer.testing import CliRunner

from app.cli import cli
from core.config import Destination
from core.records import PriorityLevel, ReportStatus
from pacs_bridge.fhir import FhirSender
from pacs_bridge.outcome import Delivered
from reports.fhir_validate import check_bundle, validate_many_with_medplum
from store.outbox import OutboxItem, OutboxState
from tests.app.conftest import REPO
from tests.ecg.synth_formats import MUSE_8_LEADS, write_muse_xml
from tests.peers import start_fhir_server, stop_pid
from tests.reports.helpers import unescape

SITE = {
    "site": {
        "institution_name": "Conformance Hospital",
        "timezone": "Europe/Berlin",
        "patient_identifiers": {
            "default": {"fhir_system": "urn:oid:1.2.3.4.5.6", "hl7_namespace": "CH", "hl7_universal_id": "1.2.3.4.5.6"}
        },
    }
}


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} (dicom3tools) is required: make sysdeps installs it")
    return path


def _errors(cmd: list[str]) -> list[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    return [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("Error")]


def _muse_pair(folder: Path) -> None:
    """Two recordings of one patient (same MRN, different ECGs): two studies, one patient."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    for i, when in enumerate((("01-15-2026", "09:34:00"), ("01-16-2026", "10:02:00"))):
        leads = {name: rng.integers(-300, 300, 5000).astype(np.int16) for name in MUSE_8_LEADS}
        write_muse_xml(
            folder / f"muse_{i}.xml",
            leads,
            gender="MALE",
            acquired=when,
            demographics={"PatientFirstName": "Jürgen", "DateofBirth": "02-03-1950"},
        )


@pytest.fixture(scope="module")
def run_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("conformance")
    inputs = work / "in"
    shutil.copytree(REPO / "samples", inputs / "samples")
    shutil.copytree(REPO / "tests" / "data", inputs / "data")
    _muse_pair(inputs / "muse")
    (work / "site.yaml").write_text(json.dumps(SITE))
    mp = pytest.MonkeyPatch()
    mp.chdir(work)
    for key in [k for k in __import__("os").environ if k.startswith("MMDX_")]:
        mp.delenv(key)
    mp.setenv("MMDX_CONFIG", str(work / "site.yaml"))
    try:
        result = CliRunner().invoke(cli, ["run", str(inputs), "--out", str(work / "out")])
    finally:
        mp.undo()
    assert result.exit_code == 0, result.output
    return work / "out"


def _studies(out: Path) -> list[Path]:
    folders = sorted(p for p in out.iterdir() if p.is_dir())
    assert len(folders) >= 15, [p.name for p in folders]
    return folders


def test_every_dicom_object_passes_dciodvfy_and_each_study_dcentvfy(run_out: Path) -> None:
    dciodvfy, dcentvfy = _tool("dciodvfy"), _tool("dcentvfy")
    failures = {}
    with_sources = 0
    for study in _studies(run_out):
        objects = sorted(study.glob("*.dcm"))
        assert objects, study.name
        for obj in objects:
            errors = _errors([dciodvfy, str(obj)])
            if errors:
                failures[f"{study.name}/{obj.name}"] = errors[:3]
        # across the study: the received objects and mmdx's; an error the sources already have among
        # themselves is theirs, every other one is mmdx's
        sources = sorted(map(str, (run_out.parent / "var" / "store" / study.name).rglob("*.dcm")))
        with_sources += bool(sources)
        theirs = set(_errors([dcentvfy, *sources])) if sources else set()
        errors = sorted(set(_errors([dcentvfy, *sources, *map(str, objects)])) - theirs)
        if errors:
            failures[f"{study.name} (dcentvfy)"] = errors[:3]
    assert failures == {}
    assert with_sources >= 10  # the DICOM studies were checked against their received objects


def test_every_oru_is_strict_hl7_2_5_1_and_every_bundle_passes_the_fhir_checkers(run_out: Path) -> None:
    documents = []
    for study in _studies(run_out):
        oru = (study / "oru.hl7").read_bytes().decode("utf-8")
        msg = parse_message(oru, validation_level=VALIDATION_LEVEL.STRICT, find_groups=True)
        assert msg.msh.msh_18.to_er7() == "UNICODE UTF-8"
        raw = (study / "bundle.json").read_bytes()
        assert check_bundle(json.loads(raw)) == [], study.name
        documents.append(raw)
    issues = validate_many_with_medplum(documents)  # the second checker (make test installs it)
    assert [i for doc in issues for i in doc] == []


def _identity(study: Path) -> tuple[str, str, str, str]:
    """(SR PatientID, FHIR Patient identifier value, PID-3.1, FHIR system) of one study's outputs."""
    sr_path = next(p for p in sorted(study.glob("sr_*.dcm")))
    sr = pydicom.dcmread(sr_path)
    bundle = json.loads((study / "bundle.json").read_text())
    (patient,) = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"]
    ident = patient["identifier"][0]
    oru = (study / "oru.hl7").read_bytes().decode("utf-8")
    pid = next(s for s in oru.split("\r") if s.startswith("PID|")).split("|")
    return str(sr.PatientID), ident["value"], unescape(pid[3].split("~")[0].split("^")[0]), ident["system"]


def test_the_same_patient_in_sr_fhir_and_hl7_and_one_patient_for_two_recordings(run_out: Path) -> None:
    by_value: dict[str, set[str]] = defaultdict(set)
    for study in _studies(run_out):
        sr_id, fhir_id, pid3, _system = _identity(study)
        bundle = json.loads((study / "bundle.json").read_text())
        (patient,) = [e for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"]
        if sr_id:  # the source names the patient: the same identifier in all three outputs
            assert sr_id == fhir_id == pid3, study.name
            assert patient["resource"]["identifier"][0].get("use") != "temp"
            by_value[fhir_id].add(patient["request"]["ifNoneExist"])
        else:  # no identifier in the source: a temporary one, said to be temporary, nothing made up in DICOM
            assert patient["resource"]["identifier"][0]["use"] == "temp"
    # the two MUSE recordings of MUSE's SYNTH-0001 patient: one conditional-create query -> one Patient
    assert by_value["SYNTH-0001"] == {"identifier=urn:oid:1.2.3.4.5.6|SYNTH-0001"}


def test_local_times_carry_the_site_offset(run_out: Path) -> None:
    muse = []
    for study in _studies(run_out):
        oru = (study / "oru.hl7").read_bytes().decode("utf-8")
        obr7 = next(s for s in oru.split("\r") if s.startswith("OBR|")).split("|")[7]
        if obr7 in ("20260115093400+0100", "20260116100200+0100"):
            bundle = json.loads((study / "bundle.json").read_text())
            (dr,) = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "DiagnosticReport"]
            sr = pydicom.dcmread(next(study.glob("sr_*.dcm")))
            muse.append((obr7, dr["effectiveDateTime"], sr.StudyTime, sr.TimezoneOffsetFromUTC))
    assert sorted(muse) == [
        ("20260115093400+0100", "2026-01-15T09:34:00+01:00", "093400", "+0100"),
        ("20260116100200+0100", "2026-01-16T10:02:00+01:00", "100200", "+0100"),
    ]


def _deliver(sender: FhirSender, study: Path) -> None:
    path = study / "bundle.json"
    now = datetime(2026, 1, 16, tzinfo=UTC)
    item = OutboxItem(
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
        study_uid=study.name,
        report_version=1,
        report_status=ReportStatus.PRELIMINARY,
        priority=PriorityLevel.ROUTINE,
        priority_reason="",
    )
    (outcome,) = sender.send([item])
    assert isinstance(outcome, Delivered), outcome


def test_two_recordings_of_one_patient_are_one_patient_on_the_fhir_server(run_out: Path, tmp_path: Path) -> None:
    muse = []
    for study in _studies(run_out):
        bundle = json.loads((study / "bundle.json").read_text())
        (patient,) = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"]
        if patient["identifier"][0]["value"] == "SYNTH-0001":
            muse.append(study)
    assert len(muse) == 2
    server = start_fhir_server(tmp_path / "fhir")
    try:
        sender = FhirSender(Destination(type="fhir", url=server.url))
        for study in muse:
            _deliver(sender, study)
        sender.close()
        patients = server.search("Patient")
        assert len(patients) == 1, patients
        assert len(server.search("DiagnosticReport")) == 2 and len(server.search("ImagingStudy")) == 2
    finally:
        stop_pid(server.proc)
