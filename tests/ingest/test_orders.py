"""Order intake: HL7 ORM/OMI over a real MLLP socket (ACK AA/AE/AR), FHIR ServiceRequest, DICOM worklist
(DCMTK ``wlmscpfs`` as the RIS), and matching studies to the stored orders."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import hl7
import pytest
from hl7apy.parser import parse_message
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from core.config import DicomPeer
from core.errors import IngestError
from core.orders import MatchStrength, OrderSource, OrderStatus
from core.records import Patient, PatientIdentifier, Sex, Study
from ingest.orders import mllp
from ingest.orders.fhir_orders import order_from_service_request
from ingest.orders.hl7_orders import OrderControl, OrderMessageError, parse_order_message
from ingest.orders.intake import accept_service_request, fetch_from_worklist, receive_hl7
from store import orders as order_store
from store.db import Database
from tests.peers import DCMTK_ENV, free_port, require_binary, stop_pid

NOW = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
STUDY_UID = "1.2.826.0.1.3680043.10.543.7"


def orm(
    *,
    control: str = "NW",
    placer: str = "PL1001",
    accession: str = "ACC1001",
    pid: str = "MRN4711",
    name: str = "Müller^Jürgen",
    kind: str = "ORM^O01^ORM_O01",
    charset: str = "UNICODE UTF-8",
) -> bytes:
    """An IHE-style RIS order: accession in OBR-18, modality in OBR-24, reason in OBR-31, history in OBR-13."""
    obr = ["OBR", "1", f"{placer}^HIS", "F77^RIS", "93000^12-lead ECG^C4", "", "20261207093000"]
    obr += [""] * (13 - len(obr)) + ["Known CAD; on beta blockers"]  # OBR-13
    obr += [""] * (18 - len(obr)) + [accession]  # OBR-18
    obr += [""] * (24 - len(obr)) + ["ECG"]  # OBR-24
    obr += [""] * (31 - len(obr)) + ["^Chest pain at rest"]  # OBR-31
    segs = [
        f"MSH|^~\\&|HIS|HOSP|MMDX|HOSP|20261207090000||{kind}|MSG-{placer}|P|2.5.1|||AL|NE||{charset}",
        f"PID|1||{pid}^^^HOSP^MR||{name}||19500102|M",
        f"ORC|{control}|{placer}^HIS|F77^RIS||SC||^^^20261207093000||20261207090000|||1234^House^Greg",
        "|".join(obr),
    ]
    return ("\r".join(segs) + "\r").encode("utf-8" if "UTF-8" in charset else "latin-1")


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'orders.db'}")
    database.migrate()
    yield database
    database.dispose()


def _ack(raw: bytes) -> hl7.Message:
    return hl7.parse(raw.decode("utf-8"))


# --------------------------------------------------------------------------- parsing


def test_orm_fields_are_read_with_escapes_and_utf8() -> None:
    message = parse_order_message(orm(pid="AB\\F\\12", name="Müller^Jürgen"))
    order = message.order
    assert message.control is OrderControl.NEW
    assert (order.placer_number, order.placer_authority, order.filler_number) == ("PL1001", "HIS", "F77")
    assert order.accession_number == "ACC1001"
    assert order.patient.identifiers[0].value == "AB|12"  # \F\ is the escaped field separator
    assert order.patient.identifiers[0].issuer == "HOSP"
    assert order.patient.name == "Müller^Jürgen"
    assert order.patient.birth_date == date(1950, 1, 2) and order.patient.sex is Sex.MALE
    assert order.procedure is not None and order.procedure.code == "93000" and order.procedure.text == "12-lead ECG"
    assert order.modality == "ECG"
    assert order.reason == "Chest pain at rest"
    assert order.clinical_history == "Known CAD; on beta blockers"
    assert order.scheduled_at == datetime(2026, 12, 7, 9, 30)
    assert order.indication == "Reason for exam: Chest pain at rest. Clinical history: Known CAD; on beta blockers."


def test_latin1_message_is_decoded_by_msh18() -> None:
    message = parse_order_message(orm(charset="8859/1"))
    assert message.order.patient.name == "Müller^Jürgen"


def test_omi_with_ipc_carries_accession_and_study_uid() -> None:
    raw = orm(kind="OMI^O23^OMI_O23", accession="").rstrip(b"\r") + (
        f"\rIPC|ACC2002|RP1|{STUDY_UID}|SPS1|ECG\r".encode()
    )
    order = parse_order_message(raw).order
    assert order.accession_number == "ACC2002"
    assert order.study_instance_uid == STUDY_UID
    assert order.requested_procedure_id == "RP1"


@pytest.mark.parametrize(
    ("raw", "code", "field"),
    [
        (b"hello", "AR", "MSH"),
        (orm(kind="ADT^A01^ADT_A01"), "AR", "MSH^1^9"),
        (orm(pid=""), "AE", "PID^1^3"),
        (orm(placer="").replace(b"F77^RIS", b""), "AE", "ORC^1^2"),
    ],
)
def test_bad_order_messages_name_the_field(raw: bytes, code: str, field: str) -> None:
    with pytest.raises(OrderMessageError) as info:
        parse_order_message(raw)
    assert info.value.ack_code == code
    assert info.value.location == field
    assert "Müller" not in str(info.value) and "MRN4711" not in str(info.value)


# --------------------------------------------------------------------------- MLLP listener + store


@pytest.fixture
def listener(db: Database) -> Iterator[mllp.MllpServer]:
    server = mllp.MllpServer(("127.0.0.1", 0), lambda raw: receive_hl7(db, raw, NOW))
    server.start()
    yield server
    server.shutdown()
    server.server_close()


def test_mllp_orders_are_stored_and_acknowledged(db: Database, listener: mllp.MllpServer) -> None:
    ack = _ack(mllp.send("127.0.0.1", listener.port, orm()))
    assert str(ack.segment("MSA")[1]) == "AA"
    assert str(ack.segment("MSA")[2]) == "MSG-PL1001"
    # the ACK itself parses as HL7 2.5.1 with hl7apy (strict validation)
    from hl7apy.consts import VALIDATION_LEVEL

    parse_message(mllp.send("127.0.0.1", listener.port, orm()).decode(), validation_level=VALIDATION_LEVEL.STRICT)
    with db.session() as session:
        stored = order_store.list_orders(session)
    assert len(stored) == 1  # the repeat updated, not duplicated
    order = stored[0].order
    assert order.source is OrderSource.HL7 and order.status is OrderStatus.SCHEDULED
    assert order.patient.name == "Müller^Jürgen"

    # cancel
    ack = _ack(mllp.send("127.0.0.1", listener.port, orm(control="CA")))
    assert str(ack.segment("MSA")[1]) == "AA"
    with db.session() as session:
        got = order_store.get_order(session, "PL1001", "HIS")
    assert got is not None and got.status is OrderStatus.CANCELLED


def test_duplicate_accession_is_refused_with_ae(db: Database, listener: mllp.MllpServer) -> None:
    assert str(_ack(mllp.send("127.0.0.1", listener.port, orm())).segment("MSA")[1]) == "AA"
    ack = _ack(mllp.send("127.0.0.1", listener.port, orm(placer="PL2002")))
    assert str(ack.segment("MSA")[1]) == "AE"
    assert "accession number is already used" in str(ack.segment("ERR")[8])
    with db.session() as session:
        assert [s.order.placer_number for s in order_store.list_orders(session)] == ["PL1001"]


def test_not_an_order_is_rejected_ar_and_unknown_patient_ae(listener: mllp.MllpServer) -> None:
    ack = _ack(mllp.send("127.0.0.1", listener.port, orm(kind="ADT^A01^ADT_A01")))
    assert str(ack.segment("MSA")[1]) == "AR"
    ack = _ack(mllp.send("127.0.0.1", listener.port, orm(pid="")))
    assert str(ack.segment("MSA")[1]) == "AE"
    assert str(ack.segment("ERR")[2]) == "PID^1^3"
    ack = _ack(mllp.send("127.0.0.1", listener.port, orm(control="CA", placer="NEVER")))
    assert str(ack.segment("MSA")[1]) == "AE"


def test_two_messages_in_one_connection_get_two_acks(db: Database, listener: mllp.MllpServer) -> None:
    import socket

    with socket.create_connection(("127.0.0.1", listener.port), timeout=10) as sock:
        sock.sendall(mllp.frame(orm()) + mllp.frame(orm(placer="PL3", accession="ACC3")))
        buffer = bytearray()
        acks: list[bytes] = []
        while len(acks) < 2:
            buffer += sock.recv(65536)
            acks += mllp.split_frames(buffer)
    assert [str(_ack(a).segment("MSA")[1]) for a in acks] == ["AA", "AA"]


# --------------------------------------------------------------------------- FHIR ServiceRequest


def service_request(**extra: object) -> dict[str, object]:
    resource: dict[str, object] = {
        "resourceType": "ServiceRequest",
        "id": "sr-1",
        "status": "active",
        "intent": "order",
        "identifier": [
            {
                "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "PLAC"}]},
                "system": "urn:oid:1.2.3.4",
                "value": "PL-FHIR-1",
            },
            {
                "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "ACSN"}]},
                "system": "urn:oid:1.2.3.5",
                "value": "ACC-F1",
            },
        ],
        "code": {"coding": [{"system": "http://loinc.org", "code": "11524-6", "display": "EKG study"}]},
        "category": [{"coding": [{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "ECG"}]}],
        "subject": {"reference": "#p"},
        "contained": [
            {
                "resourceType": "Patient",
                "id": "p",
                "identifier": [{"system": "urn:oid:1.2.3.6", "value": "MRN9"}],
                "name": [{"family": "Søren", "given": ["Kierke"]}],
                "birthDate": "1960-05-06",
                "gender": "female",
            }
        ],
        "occurrenceDateTime": "2026-12-07T09:30:00+01:00",
        "reasonCode": [{"text": "Palpitations"}],
        "note": [{"text": "Syncope last week"}],
    }
    resource.update(extra)
    return resource


def test_service_request_is_accepted(db: Database) -> None:
    _order_id, created = accept_service_request(db, service_request(), NOW)
    assert created
    with db.session() as session:
        order = order_store.find_by_accession(session, "ACC-F1")
    assert order is not None and order.source is OrderSource.FHIR
    assert (order.placer_number, order.placer_authority, order.service_request_id) == (
        "PL-FHIR-1",
        "urn:oid:1.2.3.4",
        "sr-1",
    )
    assert order.modality == "ECG" and order.reason == "Palpitations" and order.clinical_history == "Syncope last week"
    assert order.patient.name == "Søren^Kierke" and order.patient.sex is Sex.FEMALE


def test_bad_service_requests_are_clear_errors() -> None:
    with pytest.raises(IngestError, match="resourceType"):
        order_from_service_request({"resourceType": "Patient"})
    with pytest.raises(IngestError, match="ServiceRequest.status"):
        order_from_service_request(service_request(status="bogus"))
    with pytest.raises(IngestError, match="patient identifier"):
        order_from_service_request(service_request(contained=[], subject={"display": "someone"}))


# --------------------------------------------------------------------------- matching


def _study(**kw: object) -> Study:
    base: dict[str, object] = {
        "study_instance_uid": STUDY_UID,
        "patient": Patient(
            identifiers=(PatientIdentifier("MRN4711", "HOSP"),),
            name="MUELLER^JUERGEN",
            birth_date=date(1950, 1, 2),
            sex=Sex.MALE,
        ),
        "accession_number": "ACC1001",
        "study_datetime": datetime(2026, 12, 7, 9, 34),
        "description": "Resting ECG",
    }
    base.update(kw)
    return Study(**base)  # type: ignore[arg-type]


def test_match_by_accession_flags_conflicts_never_merges(db: Database) -> None:
    receive_hl7(db, orm(), NOW)
    other = Patient(identifiers=(PatientIdentifier("MRN4711", "HOSP"),), name="Müller^Jürgen", sex=Sex.FEMALE)
    with db.session() as session:
        match = order_store.match_study(session, _study(patient=other), NOW)
    assert match is not None and match.strength is MatchStrength.ACCESSION
    assert match.conflicts == ("sex",)  # accents and case in the name are not a conflict
    assert match.notice is not None and "sex" in match.notice
    with db.session() as session:
        order = order_store.get_order(session, "PL1001", "HIS")
        again = order_store.match_for_study(session, STUDY_UID)
    assert order is not None and order.patient.sex is Sex.MALE  # the order keeps what it said
    assert order.status is OrderStatus.IN_PROGRESS
    assert again is not None and again.conflicts == ("sex",)


def test_weaker_match_by_patient_procedure_and_date(db: Database) -> None:
    receive_hl7(db, orm(), NOW)
    study = _study(accession_number=None, description="12-lead ECG")
    with db.session() as session:
        match = order_store.match_study(session, study, NOW)
    assert match is not None and match.strength is MatchStrength.PATIENT_PROCEDURE_DATE
    assert match.notice is not None and "weaker" not in match.notice and "patient, procedure and date" in match.notice
    # three days later is outside the window: no match
    with db.session() as session:
        late = _study(
            study_instance_uid=STUDY_UID + ".2",
            accession_number=None,
            description="12-lead ECG",
            study_datetime=datetime(2026, 12, 10, 9, 0),
        )
        assert order_store.match_study(session, late, NOW) is None


def test_two_fitting_orders_match_neither(db: Database) -> None:
    receive_hl7(db, orm(), NOW)
    receive_hl7(db, orm(placer="PL2", accession="ACC2"), NOW)
    with db.session() as session:
        assert order_store.match_study(session, _study(accession_number=None, description="12-lead ECG"), NOW) is None


# --------------------------------------------------------------------------- DICOM Modality Worklist (DCMTK)


def _worklist_entry(folder: Path) -> None:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName = "Müller^Jürgen"
    ds.PatientID = "MRN4711"
    ds.IssuerOfPatientID = "HOSP"
    ds.PatientBirthDate = "19500102"
    ds.PatientSex = "M"
    ds.AccessionNumber = "ACC-WL1"
    ds.RequestedProcedureID = "RP77"
    ds.RequestedProcedureDescription = "Resting 12-lead ECG"
    code = Dataset()
    code.CodeValue = "93000"
    code.CodingSchemeDesignator = "C4"
    code.CodeMeaning = "Electrocardiogram"
    ds.RequestedProcedureCodeSequence = [code]
    ds.StudyInstanceUID = STUDY_UID
    ds.PlacerOrderNumberImagingServiceRequest = "PL-WL1"
    ds.FillerOrderNumberImagingServiceRequest = "FI-WL1"
    ds.ReasonForTheRequestedProcedure = "Pre-operative assessment"
    ds.RequestingPhysician = "House^Greg"
    ds.ReferringPhysicianName = "House^Greg"
    ds.MedicalAlerts = ""
    ds.AdditionalPatientHistory = "Hypertension"
    step = Dataset()
    step.Modality = "ECG"
    step.ScheduledStationAETitle = "CART1"
    step.ScheduledProcedureStepStartDate = "20261207"
    step.ScheduledProcedureStepStartTime = "093000"
    step.ScheduledProcedureStepDescription = "Resting ECG"
    step.ScheduledProcedureStepID = "SPS1"
    ds.ScheduledProcedureStepSequence = [step]
    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    ds.save_as(folder / "entry1.wl", enforce_file_format=False, implicit_vr=False, little_endian=True)


@pytest.fixture
def worklist(tmp_path: Path) -> Iterator[DicomPeer]:
    exe = require_binary("wlmscpfs")
    ae_dir = tmp_path / "wl" / "RISWL"
    ae_dir.mkdir(parents=True)
    (ae_dir / "lockfile").write_text("")
    _worklist_entry(ae_dir)
    port = free_port()
    proc = subprocess.Popen(
        [exe, "-csk", "-dfp", str(tmp_path / "wl"), str(port)],
        env=DCMTK_ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    peer = DicomPeer(ae_title="RISWL", host="127.0.0.1", port=port)
    deadline = time.monotonic() + 10
    import socket

    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.05)
    yield peer
    stop_pid(proc)


def test_worklist_query_by_accession_stores_the_order(db: Database, worklist: DicomPeer) -> None:
    found = fetch_from_worklist(db, worklist, "ACC-WL1", NOW)
    assert len(found) == 1
    order = found[0]
    assert order.source is OrderSource.WORKLIST
    assert (order.placer_number, order.filler_number, order.accession_number) == ("PL-WL1", "FI-WL1", "ACC-WL1")
    assert order.patient.name == "Müller^Jürgen"  # ISO_IR 192 kept
    assert order.study_instance_uid == STUDY_UID
    assert order.reason == "Pre-operative assessment" and order.clinical_history == "Hypertension"
    assert order.modality == "ECG" and order.scheduled_at == datetime(2026, 12, 7, 9, 30)
    assert fetch_from_worklist(db, worklist, "ACC-NONE", NOW) == []
    with db.session() as session:
        stored = order_store.find_by_accession(session, "ACC-WL1")
    assert stored is not None and stored.requested_procedure_id == "RP77"


def test_worklist_accession_with_wildcards_is_refused(worklist: DicomPeer, db: Database) -> None:
    with pytest.raises(IngestError, match="wildcards"):
        fetch_from_worklist(db, worklist, "ACC*", NOW)


def test_match_by_the_study_uid_the_order_assigned(db: Database) -> None:
    raw = orm(kind="OMI^O23^OMI_O23", accession="").rstrip(b"\r") + f"\rIPC|ACC9|RP1|{STUDY_UID}|SPS1|ECG\r".encode()
    assert b"MSA|AA" in receive_hl7(db, raw, NOW)
    with db.session() as session:  # the modality sent no accession number, but kept the worklist's Study UID
        match = order_store.match_study(session, _study(accession_number=None), NOW)
    assert match is not None and match.strength is MatchStrength.STUDY_UID and match.conflicts == ()


def test_conflicts_name_the_fields_only() -> None:
    order = parse_order_message(orm()).order  # Müller^Jürgen, MRN4711, 1950-01-02, M
    assert order_store.conflicts(order, _study()) == ()  # MUELLER^JUERGEN: the same name without the umlauts
    other = Patient(
        identifiers=(PatientIdentifier("MRN0001", "HOSP"),), name="Schmidt^Jürgen", birth_date=date(1950, 1, 3)
    )
    found = order_store.conflicts(order, _study(patient=other, accession_number="ACC-OTHER"))
    assert found == ("patient ID", "patient name", "birth date", "accession number")
    assert not any("Schmidt" in f or "MRN" in f for f in found)


def test_second_study_with_the_same_accession_is_flagged(db: Database) -> None:
    receive_hl7(db, orm(), NOW)
    with db.session() as session:
        first = order_store.match_study(session, _study(), NOW)
        second = order_store.match_study(session, _study(study_instance_uid=STUDY_UID + ".9"), NOW)
    assert first is not None and first.conflicts == ()
    assert second is not None and second.conflicts == ("order already answered by another study",)
