"""Order round trip: an ORM over MLLP (python-hl7's ``mllp_send`` as the RIS), then the study from a modality
(DCMTK ``storescu`` into mmdx's Storage SCP), then the results: the ORU carries the order's placer/filler numbers,
procedure and the study's acquisition time; the FHIR DiagnosticReport is basedOn the order; the SR has the
Referenced Request Sequence; the report prints the indication; conflicting demographics are flagged, not merged."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import hl7
import pydicom
import pytest
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message
from typer.testing import CliRunner

from app.cli import cli
from app.context import AppContext
from app.orders import hl7_handler
from app.pipeline import process_study
from ingest.orders.mllp import MllpServer
from ingest.scp import StorageServer
from models.protocol import ClinicalContext
from store import orders as order_store
from tests.peers import DCMTK_ENV, require_binary

REPO = Path(__file__).resolve().parents[2]
ECG = REPO / "tests" / "data" / "ecg" / "dicom" / "waveform_ecg.dcm"
runner = CliRunner()
MLLP_SEND = shutil.which("mllp_send") or str(Path(sys.executable).parent / "mllp_send")  # python-hl7's client


def orm(*, accession: str = "ACC7001", placer: str = "PL7001", name: str = "Ölund^Åsa") -> bytes:
    obr = ["OBR", "1", f"{placer}^HIS", f"FL{placer[2:]}^CARDIO", "93000^Resting 12-lead ECG^C4"]
    obr += [""] * (13 - len(obr)) + ["Palpitations for two weeks; on sotalol"]
    obr += [""] * (18 - len(obr)) + [accession]
    obr += [""] * (24 - len(obr)) + ["ECG"]
    obr += [""] * (31 - len(obr)) + ["^QT check on sotalol"]
    segs = [
        f"MSH|^~\\&|HIS|HOSP|MMDX|HOSP|20261207080000||ORM^O01^ORM_O01|M-{placer}|P|2.5.1|||AL|NE||UNICODE UTF-8",
        f"PID|1||PAT-77\\F\\X^^^HOSP^MR||{name}||19610304|F",
        f"ORC|NW|{placer}^HIS|FL{placer[2:]}^CARDIO||SC|||||||555^Attending^Anna",
        "|".join(obr),
    ]
    return ("\r".join(segs) + "\r").encode()


@pytest.fixture
def ctx(workdir: Path) -> Iterator[AppContext]:
    context = AppContext.create(
        None,
        scp={"ae_title": "MMDX", "allowed_calling_aes": ["STORESCU"]},
        storage={"store_dir": workdir / "store", "out_dir": workdir / "out", "quarantine_dir": workdir / "q"},
        database={"url": f"sqlite:///{workdir / 'mmdx.db'}"},
    )
    yield context
    context.db.dispose()


@pytest.fixture
def listener(ctx: AppContext) -> Iterator[MllpServer]:
    server = MllpServer(("127.0.0.1", 0), hl7_handler(ctx))
    server.start()
    yield server
    server.shutdown()
    server.server_close()


def _send_order(listener: MllpServer, message: bytes, tmp: Path) -> hl7.Message:
    """Send with python-hl7's ``mllp_send`` (a client that is not mmdx's): the ACK it prints."""
    path = tmp / "order.hl7"
    path.write_bytes(message.replace(b"\r", b"\n"))
    out = subprocess.run(
        [MLLP_SEND, "--loose", "--port", str(listener.port), "--file", str(path), "127.0.0.1"],
        capture_output=True,
        check=True,
        timeout=30,
    ).stdout
    return hl7.parse(out.decode().strip().replace("\n", "\r"))


def _modality_sends(
    ctx: AppContext,
    tmp: Path,
    *,
    accession: str,
    sex: str = "F",
    pid: str = "PAT-77|X",
    name: str = "Ölund^Åsa",
    birth: str = "19610304",
    study_uid: str | None = None,
) -> str:
    """The ECG cart: the waveform with the order's accession and patient, sent by storescu to mmdx's SCP."""
    ds = pydicom.dcmread(ECG)
    ds.AccessionNumber = accession
    ds.PatientID = pid
    ds.IssuerOfPatientID = "HOSP"
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName = name
    ds.PatientBirthDate = birth
    ds.PatientSex = sex
    if study_uid:
        ds.StudyInstanceUID = study_uid
    path = tmp / "ecg.dcm"
    ds.save_as(path, enforce_file_format=True)
    server = StorageServer(ctx.settings, ctx.db, port=0, engine="fast")
    server.start()
    try:
        subprocess.run(
            [require_binary("storescu"), "-aet", "STORESCU", "-aec", "MMDX", "127.0.0.1", str(server.port), str(path)],
            check=True,
            env=DCMTK_ENV,
            capture_output=True,
            timeout=60,
        )
    finally:
        server.stop()
    return str(ds.StudyInstanceUID)


def test_order_round_trip(ctx: AppContext, listener: MllpServer, tmp_path: Path) -> None:
    ack = _send_order(listener, orm(), tmp_path)
    assert str(ack.segment("MSA")[1]) == "AA"

    study_uid = _modality_sends(ctx, tmp_path, accession="ACC7001")
    outcome = process_study(ctx, study_uid, ctx.settings.storage.out_dir)
    assert outcome.report is not None
    out = Path(ctx.settings.storage.out_dir) / study_uid

    # ORU: placer/filler numbers and procedure of the order; OBR-7 the acquisition time; ORC-5 agrees with OBR-25
    raw = (out / "oru.hl7").read_bytes().decode()
    parse_message(raw, validation_level=VALIDATION_LEVEL.STRICT, find_groups=True)
    oru = hl7.parse(raw)
    orc, obr = oru.segment("ORC"), oru.segment("OBR")
    assert str(orc[2]) == str(obr[2]) == "PL7001^HIS"
    assert str(orc[3]) == str(obr[3]) == "FL7001^CARDIO"
    assert str(obr[4]) == "93000^Resting 12-lead ECG^C4"
    assert str(oru["OBR.F25"]) == "P" and str(oru["ORC.F5"]) == "A"
    acquired = pydicom.dcmread(tmp_path / "ecg.dcm")
    assert str(oru["OBR.F7"]).startswith(acquired.StudyDate + acquired.StudyTime[:4])
    assert oru["PID.F3.R1.C1"] == "PAT-77|X"  # the delimiter went out escaped and comes back whole
    assert "PAT-77\\F\\X^" in raw and str(oru.segment("PID")[5]) == "Ölund^Åsa"  # UTF-8, as MSH-18 says
    assert str(oru.segment("MSH")[18]) == "UNICODE UTF-8"
    assert str(obr[13]) == "Palpitations for two weeks; on sotalol" and str(obr[31]) == "^QT check on sotalol"

    # FHIR: DiagnosticReport.basedOn the order (by its placer identifier)
    bundle = json.loads((out / "bundle.json").read_text())
    report = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "DiagnosticReport")
    (based_on,) = report["basedOn"]
    assert based_on["type"] == "ServiceRequest"
    assert based_on["identifier"]["value"] == "PL7001"
    assert based_on["identifier"]["type"]["coding"][0]["code"] == "PLAC"
    imaging = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "ImagingStudy")
    assert imaging["basedOn"] == report["basedOn"]  # the study was acquired for the same order
    from reports.fhir_validate import assert_valid, medplum_ready

    assert_valid((out / "bundle.json").read_bytes(), medplum=medplum_ready())  # project checker (+ Medplum)

    # SR: Referenced Request Sequence with the accession and both order numbers
    sr = pydicom.dcmread(out / "sr_ecg.dcm")
    assert sr.SpecificCharacterSet == "ISO_IR 192" and str(sr.PatientName) == "Ölund^Åsa"
    (request,) = sr.ReferencedRequestSequence
    assert request.AccessionNumber == "ACC7001" == sr.AccessionNumber
    assert request.PlacerOrderNumberImagingServiceRequest == "PL7001"
    assert request.FillerOrderNumberImagingServiceRequest == "FL7001"
    assert request.StudyInstanceUID == study_uid
    assert request.RequestedProcedureCodeSequence[0].CodeValue == "93000"
    verify = subprocess.run(
        [require_binary("dciodvfy"), str(out / "sr_ecg.dcm")], capture_output=True, text=True, timeout=60
    )
    request_errors = [
        line
        for line in (verify.stdout + verify.stderr).splitlines()
        if line.startswith("Error") and any(k in line for k in ("Request", "Order", "SRDocumentGeneral"))
    ]
    assert request_errors == []

    # the indication is printed in the report (HTML and PDF share one layout)
    assert "Reason for exam: QT check on sotalol" in (out / "report.html").read_text()

    # the order is in progress and matched by accession, without conflicts
    with ctx.db.session() as session:
        (stored,) = order_store.list_orders(session)
    assert stored.study_instance_uid == study_uid and stored.strength is not None
    assert stored.strength.value == "accession" and stored.conflicts == ()
    result = runner.invoke(cli, ["orders", "list", "--json"], env={"MMDX_DATABASE__URL": ctx.settings.database.url})
    assert result.exit_code == 0, result.output
    row = json.loads(result.output.splitlines()[0])
    assert row["placer"] == "PL7001" and row["status"] == "in-progress" and row["match"] == "accession"
    assert "Ölund" not in result.output and "PAT-77" not in result.output  # no patient data printed

    # the cardiologist signs: the final ORU still carries the order, ORC-5 CM with OBR-25 F; the order is completed
    from app.review import ReviewAction, apply_action
    from core.records import Clinician

    signed = apply_action(ctx, study_uid, ReviewAction.SIGN, Clinician("Heart^Hanna", "C-1", "cardiologist"), actor="t")
    final = hl7.parse(next(p for p in signed.artefacts if p.name == "oru.hl7").read_bytes().decode())
    assert str(final.segment("OBR")[2]) == "PL7001^HIS" and str(final.segment("OBR")[3]) == "FL7001^CARDIO"
    assert str(final.segment("OBR")[25]) == "F" and str(final.segment("ORC")[5]) == "CM"
    with ctx.db.session() as session:
        assert order_store.get_order(session, "PL7001", "HIS").status.value == "completed"  # type: ignore[union-attr]


def test_conflicting_sex_is_flagged_on_the_study_not_merged(
    ctx: AppContext, listener: MllpServer, tmp_path: Path
) -> None:
    assert str(_send_order(listener, orm(), tmp_path).segment("MSA")[1]) == "AA"
    study_uid = _modality_sends(ctx, tmp_path, accession="ACC7001", sex="M")
    outcome = process_study(ctx, study_uid, ctx.settings.storage.out_dir)
    assert any("disagree on sex" in p for p in outcome.problems)
    oru = hl7.parse((Path(ctx.settings.storage.out_dir) / study_uid / "oru.hl7").read_bytes().decode())
    assert any("disagree on sex" in str(seg) for seg in oru.segments("NTE"))
    assert str(oru["PID.F8"]) == "M"  # the images' data go out as they were; the order's are not merged in
    with ctx.db.session() as session:
        match = order_store.match_for_study(session, study_uid)
    assert match is not None and match.conflicts == ("sex",)


def test_indication_reaches_the_models(ctx: AppContext, listener: MllpServer, tmp_path: Path) -> None:
    from app.models_stage import clinical_context

    _send_order(listener, orm(), tmp_path)
    study_uid = _modality_sends(ctx, tmp_path, accession="ACC7001")
    from app.orders import order_for_study
    from store import index

    with ctx.db.session() as session:
        study = index.load_study(session, study_uid)
    assert study is not None
    match = order_for_study(ctx, study, [])
    import dataclasses

    context = clinical_context(dataclasses.replace(study, order_match=match))
    assert isinstance(context, ClinicalContext)
    assert context.indication == (
        "Reason for exam: QT check on sotalol. Clinical history: Palpitations for two weeks; on sotalol."
    )


def test_unknown_accession_is_asked_of_the_worklist(workdir: Path, tmp_path: Path) -> None:
    """No order was sent: the pipeline asks the Modality Worklist by accession and the results carry its order."""
    from tests.ingest.test_orders import STUDY_UID

    peer = _start_worklist(tmp_path)
    context = AppContext.create(
        None,
        scp={"ae_title": "MMDX", "allowed_calling_aes": ["STORESCU"]},
        storage={"store_dir": workdir / "store", "out_dir": workdir / "out", "quarantine_dir": workdir / "q"},
        database={"url": f"sqlite:///{workdir / 'mmdx.db'}"},
        orders={"worklist": {"ae_title": peer[0], "host": "127.0.0.1", "port": peer[1]}},
    )
    try:
        study_uid = _modality_sends(
            context,
            tmp_path,
            accession="ACC-WL1",
            pid="MRN4711",
            name="Müller^Jürgen",
            birth="19500102",
            sex="M",
            study_uid=STUDY_UID,
        )
        outcome = process_study(context, study_uid, context.settings.storage.out_dir)
        assert outcome.report is not None
        oru = hl7.parse((Path(context.settings.storage.out_dir) / study_uid / "oru.hl7").read_bytes().decode())
        assert str(oru.segment("OBR")[2]) == "PL-WL1" and str(oru.segment("OBR")[3]) == "FI-WL1"
        with context.db.session() as session:
            match = order_store.match_for_study(session, study_uid)
        assert match is not None and match.conflicts == () and match.order.source.value == "worklist"
    finally:
        context.db.dispose()
        _stop_worklist()


_WL: list[subprocess.Popen[bytes]] = []


def _start_worklist(tmp: Path) -> tuple[str, int]:
    from tests.ingest.test_orders import _worklist_entry
    from tests.peers import free_port

    exe = require_binary("wlmscpfs")
    ae_dir = tmp / "wl" / "RISWL"
    ae_dir.mkdir(parents=True)
    (ae_dir / "lockfile").write_text("")
    _worklist_entry(ae_dir)
    port = free_port()
    _WL.append(
        subprocess.Popen(
            [exe, "-csk", "-dfp", str(tmp / "wl"), str(port)],
            env=DCMTK_ENV,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    )
    import socket
    import time

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.05)
    return "RISWL", port


def _stop_worklist() -> None:
    from tests.peers import stop_pid

    while _WL:
        stop_pid(_WL.pop())
