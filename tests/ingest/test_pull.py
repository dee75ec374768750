"""Pull from a real Orthanc: QIDO-RS/WADO-RS and C-FIND/C-MOVE into our SCP; priors."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pydicom
import pytest
import yaml

from core.config import DicomPeer, Settings
from core.errors import IngestError
from core.identifiers import derive_uid
from core.records import Patient, PatientIdentifier, Study
from ingest.filestore import FileStore
from ingest.pull import DicomWebPuller, DimsePuller, StudyQuery, find_priors
from ingest.receive import Receiver
from ingest.scp import StorageServer
from store import index as idx
from store.db import Database
from tests.peers import Orthanc, free_port, start_orthanc, stop_pid

from .conftest import DATA, make_settings

pytestmark = pytest.mark.integration

PRIOR_PATIENT = "PULLTEST-7"
Pacs = tuple[Orthanc, int, dict[str, Path]]
Local = tuple[Settings, Database]
PRIOR_DATES = ["20200105", "20210310", "20220701", "20230915"]


def _study_file(out: Path, n: int, study_date: str, *, patient: str, compressed: bool = False) -> Path:
    """A one-image study derived from CT_small with its own UIDs, date, patient and accession."""
    ds = pydicom.dcmread(DATA / "net" / "CT_small.dcm")
    ds.StudyInstanceUID = derive_uid("2.25", "pull-test-study", str(n))
    ds.SeriesInstanceUID = derive_uid("2.25", "pull-test-series", str(n))
    ds.SOPInstanceUID = derive_uid("2.25", "pull-test-sop", str(n))
    ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.UID(ds.SOPInstanceUID)
    ds.PatientID = patient
    ds.StudyDate = study_date
    ds.AccessionNumber = f"ACC{n:04d}"
    if compressed:
        ds.compress(pydicom.uid.JPEGLSLossless)
    path = out / f"study{n}.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture(scope="module")
def pacs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Orthanc, int, dict[str, Path]]]:
    """Orthanc with five one-image studies; it knows our SCP as 'mmdx' on a port chosen here."""
    work = tmp_path_factory.mktemp("orthanc")
    mmdx_port = free_port()
    orthanc, proc = start_orthanc(work, mmdx_port=mmdx_port)
    files = {d: _study_file(work, i, d, patient=PRIOR_PATIENT) for i, d in enumerate(PRIOR_DATES)}
    files["compressed"] = _study_file(work, 99, "20240101", patient="OTHER-1", compressed=True)
    try:
        for f in files.values():
            orthanc.upload(f)
        yield orthanc, mmdx_port, files
    finally:
        stop_pid(proc)


@pytest.fixture
def local(tmp_path: Path, pacs: tuple[Orthanc, int, dict[str, Path]]) -> Iterator[tuple[Settings, Database]]:
    settings = make_settings(tmp_path)
    db = Database.from_settings(settings)
    yield settings, db
    db.dispose()


def _receiver(settings: Settings, db: Database) -> Receiver:
    return Receiver(FileStore(settings.storage.store_dir), db, settings.storage.quarantine_dir)


def _indexed(db: Database) -> dict[str, tuple[str, str | None]]:
    with db.session(readonly=True) as s:
        return {
            i.sop_instance_uid: (i.source, i.transfer_syntax_uid)
            for st in idx.list_studies(s)
            for se in st.series
            for i in se.instances
        }


def test_qido_find_and_wado_retrieve_by_accession(pacs: Pacs, local: Local) -> None:
    orthanc, _, files = pacs
    settings, db = local
    puller = DicomWebPuller(f"{orthanc.url}/dicom-web", _receiver(settings, db), peer_name="orthanc")
    (match,) = puller.find_studies(StudyQuery(accession_number="ACC0099"))
    expected = pydicom.dcmread(files["compressed"])
    assert match.study_instance_uid == expected.StudyInstanceUID
    assert match.modalities == ("CT",)
    result = puller.pull(StudyQuery(accession_number="ACC0099"))
    assert (result.stored, result.failed, result.rejected) == (1, 0, 0)
    source, ts = _indexed(db)[expected.SOPInstanceUID]
    assert source == "pull:orthanc"
    assert ts == "1.2.840.10008.1.2.4.80"  # retrieved as stored (JPEG-LS), not transcoded
    again = puller.retrieve_study(match.study_instance_uid)
    assert (again.stored, again.duplicate) == (0, 1)


def test_qido_by_patient_and_date_range(pacs: Pacs, local: Local) -> None:
    orthanc, _, _ = pacs
    settings, db = local
    puller = DicomWebPuller(f"{orthanc.url}/dicom-web", _receiver(settings, db))
    found = puller.find_studies(
        StudyQuery(patient_id=PRIOR_PATIENT, date_from=date(2021, 1, 1), date_to=date(2022, 12, 31))
    )
    assert sorted(m.study_date for m in found if m.study_date) == [date(2021, 3, 10), date(2022, 7, 1)]


def test_cfind_cmove_into_our_scp(pacs: Pacs, local: Local) -> None:
    orthanc, mmdx_port, files = pacs
    settings, db = local
    server = StorageServer(settings, db, port=mmdx_port)
    server.start()
    try:
        peer = DicomPeer(ae_title=orthanc.ae_title, host="127.0.0.1", port=orthanc.dicom_port)
        puller = DimsePuller(peer, calling_ae="MMDX", move_destination="MMDX")
        found = puller.find_studies(StudyQuery(patient_id=PRIOR_PATIENT, date_from=date(2022, 1, 1)))
        assert sorted(m.accession_number or "" for m in found) == ["ACC0002", "ACC0003"]
        by_uid = puller.find_studies(StudyQuery(study_uid=found[0].study_instance_uid))
        assert [m.study_instance_uid for m in by_uid] == [found[0].study_instance_uid]
        moves = puller.pull(StudyQuery(patient_id=PRIOR_PATIENT, date_from=date(2022, 1, 1)))
        assert [m.completed for m in moves] == [1, 1]
        indexed = _indexed(db)
        for key in ("20220701", "20230915"):
            sop = pydicom.dcmread(files[key]).SOPInstanceUID
            assert indexed[sop][0] == "scp:ORTHANC"
        assert len(indexed) == 2
        with pytest.raises(IngestError, match="C-MOVE"):
            DimsePuller(peer, calling_ae="MMDX", move_destination="NOBODY").move_study(found[0].study_instance_uid)
    finally:
        server.stop()


def test_find_priors_same_patient_most_recent_first(pacs: Pacs, local: Local) -> None:
    orthanc, _, files = pacs
    settings, db = local
    current = pydicom.dcmread(files["20230915"])
    study = Study(
        study_instance_uid=current.StudyInstanceUID,
        patient=Patient(identifiers=(PatientIdentifier(PRIOR_PATIENT),)),
        study_datetime=datetime(2023, 9, 15, 10, 0, tzinfo=UTC),
    )
    web = DicomWebPuller(f"{orthanc.url}/dicom-web", _receiver(settings, db))
    peer = DicomPeer(ae_title=orthanc.ae_title, host="127.0.0.1", port=orthanc.dicom_port)
    dimse = DimsePuller(peer, calling_ae="MMDX", move_destination="MMDX")
    for finder in (web, dimse):
        priors = find_priors(finder, study, 2)
        assert [p.study_date for p in priors] == [date(2022, 7, 1), date(2021, 3, 10)]
        assert all(p.study_instance_uid != study.study_instance_uid for p in priors)
    assert find_priors(web, study, 0) == []


def test_unreachable_pacs_is_a_clear_error(local: Local) -> None:
    settings, db = local
    port = free_port()
    dimse = DimsePuller(
        DicomPeer(ae_title="NOPE", host="127.0.0.1", port=port), calling_ae="MMDX", move_destination="X"
    )
    with pytest.raises(IngestError, match=rf"no association with NOPE@127.0.0.1:{port}"):
        dimse.find_studies(StudyQuery(study_uid="1.2.3"))
    web = DicomWebPuller(f"http://127.0.0.1:{port}/dicom-web", _receiver(settings, db), timeout_s=2, attempts=1)
    with pytest.raises(IngestError, match="QIDO-RS search"):
        web.find_studies(StudyQuery(accession_number="X"))
    with pytest.raises(IngestError, match="needs a study UID"):
        StudyQuery()
    with pytest.raises(IngestError, match="patient_id contains a wildcard"):
        StudyQuery(patient_id="PULL*")
    with pytest.raises(IngestError, match="date_from .* is after date_to"):
        StudyQuery(accession_number="A1", date_from=date(2024, 2, 1), date_to=date(2024, 1, 1))
    assert "PULLTEST" not in repr(StudyQuery(patient_id=PRIOR_PATIENT))


# --------------------------------------------------------------------------- `mmdx pull`

_CLI = (
    "import typer\n"
    "from app.commands.ingest import register\n"
    "app = typer.Typer()\n"
    "app.callback()(lambda: None)\n"
    "register(app)\n"
    "app()\n"
)


def _cli(tmp: Path, orthanc: Orthanc, mmdx_port: int, *args: str) -> subprocess.CompletedProcess[str]:
    cfg = {
        "database": {"url": f"sqlite:///{tmp / 'mmdx.db'}"},
        "storage": {"store_dir": str(tmp / "store"), "quarantine_dir": str(tmp / "quarantine")},
        "scp": {"ae_title": "MMDX", "port": mmdx_port},
        "pull": {
            "dicomweb_url": f"{orthanc.url}/dicom-web",
            "dimse_peer": {"ae_title": orthanc.ae_title, "host": "127.0.0.1", "port": orthanc.dicom_port},
        },
    }
    (tmp / "mmdx.yaml").write_text(yaml.safe_dump(cfg))
    return subprocess.run(
        [sys.executable, "-c", _CLI, "pull", "--config", str(tmp / "mmdx.yaml"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
    )


def test_cli_pull_by_accession_with_priors_via_dicomweb(pacs: Pacs, tmp_path: Path) -> None:
    orthanc, mmdx_port, _ = pacs
    r = _cli(tmp_path, orthanc, mmdx_port, "--accession", "ACC0003", "--priors", "2", "--via", "dicomweb")
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("prior") == 2 and "requested" in r.stdout
    db = Database(f"sqlite:///{tmp_path / 'mmdx.db'}")
    with db.session(readonly=True) as s:
        dates = sorted(st.study_datetime.date() for st in idx.list_studies(s) if st.study_datetime)
    db.dispose()
    assert dates == [date(2021, 3, 10), date(2022, 7, 1), date(2023, 9, 15)]
    assert PRIOR_PATIENT not in r.stdout + r.stderr


def test_cli_pull_via_dimse_into_running_scp(pacs: Pacs, tmp_path: Path) -> None:
    orthanc, mmdx_port, files = pacs
    settings = make_settings(tmp_path)
    db = Database.from_settings(settings)
    server = StorageServer(settings, db, port=mmdx_port)
    server.start()
    try:
        r = _cli(tmp_path, orthanc, mmdx_port, "--study-uid", pydicom.dcmread(files["20200105"]).StudyInstanceUID,
                 "--via", "dimse", "--priors", "0")  # fmt: skip
    finally:
        server.stop()
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 sent to MMDX" in r.stdout
    assert pydicom.dcmread(files["20200105"]).SOPInstanceUID in _indexed(db)
    db.dispose()
    missing = _cli(tmp_path, orthanc, mmdx_port, "--accession", "NO-SUCH", "--via", "dicomweb")
    assert missing.returncode == 1 and "no matching study" in missing.stderr
