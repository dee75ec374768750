"""The Storage SCP against real peers: DCMTK echoscu/storescu and pynetdicom as SCU, on loopback."""

from __future__ import annotations

import contextlib
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE, _config
from pynetdicom.sop_class import CTImageStorage, MRImageStorage, Verification  # type: ignore[attr-defined]
from sqlalchemy import text

from core.config import Settings
from ingest.receive import Outcome
from ingest.scp import STATUS_CANNOT_UNDERSTAND, STATUS_OUT_OF_RESOURCES, StorageServer
from store import index as idx
from store.db import Database
from tests.peers import DCMTK_ENV, free_port, require_binary

from .conftest import DATA, ENGINES, MODALITY_AE, make_settings, storescu, ts_of

pytestmark = pytest.mark.integration


def _indexed(db: Database) -> dict[str, tuple[str | None, Path]]:
    with db.session(readonly=True) as s:
        return {
            i.sop_instance_uid: (i.transfer_syntax_uid, i.path)
            for st in idx.list_studies(s)
            for se in st.series
            for i in se.instances
        }


def _client(calling: str = MODALITY_AE) -> AE:
    ae = AE(ae_title=calling)
    ae.add_requested_context(Verification)
    ae.add_requested_context(CTImageStorage)
    ae.add_requested_context(MRImageStorage)
    return ae


def test_echoscu_succeeds(scp: StorageServer) -> None:
    exe = require_binary("echoscu")
    r = subprocess.run(
        [exe, "-aet", MODALITY_AE, "-aec", "MMDX", "127.0.0.1", str(scp.port)],
        env=DCMTK_ENV,
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert r.returncode == 0, r.stderr


def test_storescu_every_transfer_syntax_is_indexed_as_sent(
    scp: StorageServer, db: Database, distinct_files: list[Path]
) -> None:
    runs = storescu(distinct_files, scp.port)
    assert all(r.returncode == 0 for r in runs), [r.stderr for r in runs]
    indexed = _indexed(db)
    assert len(indexed) == len(distinct_files)
    for f in distinct_files:
        original = pydicom.dcmread(f)
        ts, path = indexed[original.SOPInstanceUID]
        assert ts == ts_of(f), f.name  # accepted in the file's own transfer syntax, not converted
        stored = pydicom.dcmread(path)
        if "PixelData" in original:
            assert stored.PixelData == original.PixelData, f.name
        assert stored.SOPInstanceUID == original.SOPInstanceUID
    assert scp.receiver.counts[Outcome.STORED] == len(distinct_files)
    scp.stop()  # spare temporary files exist while it serves; none is left once it stops
    assert not list(Path(scp.settings.storage.store_dir).rglob(".tmp-*"))


def test_object_is_indexed_before_success_is_returned(scp: StorageServer, db: Database) -> None:
    ds = pydicom.dcmread(DATA / "net" / "CT_small.dcm")
    assoc = _client().associate("127.0.0.1", scp.port, ae_title="MMDX")
    assert assoc.is_established
    try:
        status = assoc.send_c_store(ds)
        assert status.Status == 0x0000
        # the response is in: the row must already be committed and the file complete on disk
        _ts, path = _indexed(db)[ds.SOPInstanceUID]
        assert pydicom.dcmread(path).PixelData == ds.PixelData
    finally:
        assoc.release()


def test_unknown_calling_ae_is_rejected_at_association(scp: StorageServer) -> None:
    exe = require_binary("echoscu")
    r = subprocess.run(
        [exe, "-aet", "INTRUDER", "-aec", "MMDX", "127.0.0.1", str(scp.port)],
        env=DCMTK_ENV,
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert r.returncode != 0
    assert "Calling AE Title Not Recognized" in r.stderr
    assert "Rejected Permanent" in r.stderr
    wrong_called = _client().associate("127.0.0.1", scp.port, ae_title="NOT-MMDX")
    assert wrong_called.is_rejected


def _chunked_send(port: int, path: Path) -> int:
    """Send a file's bytes as they are (pynetdicom does not decode them first)."""
    old = _config.STORE_SEND_CHUNKED_DATASET
    _config.STORE_SEND_CHUNKED_DATASET = True
    try:
        ae = AE(ae_title=MODALITY_AE)
        meta = pydicom.dcmread(path, stop_before_pixels=True).file_meta
        ae.add_requested_context(meta.MediaStorageSOPClassUID, meta.TransferSyntaxUID)
        assoc = ae.associate("127.0.0.1", port, ae_title="MMDX")
        assert assoc.is_established
        try:
            return int(assoc.send_c_store(path).Status)
        finally:
            assoc.release()
    finally:
        _config.STORE_SEND_CHUNKED_DATASET = old


def test_garbage_dataset_fails_and_server_keeps_serving(scp: StorageServer, db: Database, tmp_path: Path) -> None:
    good = pydicom.dcmread(DATA / "net" / "CT_small.dcm")
    # a dataset whose first element declares 4 GB: what a broken sender or a fuzzer produces
    garbage = tmp_path / "garbage.dcm"
    meta_only = Dataset()
    meta_only.file_meta = good.file_meta
    meta_only.save_as(garbage, enforce_file_format=True)
    with garbage.open("ab") as fh:
        fh.write(b"\x08\x00\x18\x00UI\xfe\xff" + b"\x00" * 64)
    assert _chunked_send(scp.port, garbage) == STATUS_CANNOT_UNDERSTAND
    assert _chunked_send(scp.port, DATA / "bad" / "MR_truncated.dcm") == STATUS_CANNOT_UNDERSTAND
    # missing Study/Series UIDs
    bare = Dataset()
    bare.file_meta = FileMetaDataset()
    bare.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    bare.SOPClassUID = CTImageStorage
    bare.SOPInstanceUID = "1.2.3.999"
    assoc = _client().associate("127.0.0.1", scp.port, ae_title="MMDX")
    assert assoc.send_c_store(bare).Status == STATUS_CANNOT_UNDERSTAND
    assert assoc.send_c_store(good).Status == 0x0000
    assoc.release()
    assert set(_indexed(db)) == {good.SOPInstanceUID}
    with db.session(readonly=True) as s:
        reasons = sorted(q.reason for q in idx.list_quarantine(s))
    assert len(reasons) == 3
    assert any("missing required tag (0020,000D) StudyInstanceUID" in r for r in reasons)
    assert any("truncated DICOM" in r for r in reasons)
    assert all(q.exists() for q in Path(scp.settings.storage.quarantine_dir).iterdir())


def test_disk_and_database_failures_answer_out_of_resources(scp: StorageServer, db: Database) -> None:
    ds = pydicom.dcmread(DATA / "net" / "CT_small.dcm")
    blocker = Path(scp.settings.storage.store_dir) / ds.StudyInstanceUID
    blocker.write_bytes(b"a file where the study folder should be: the disk write fails")
    assoc = _client().associate("127.0.0.1", scp.port, ae_title="MMDX")
    try:
        assert assoc.send_c_store(ds).Status == STATUS_OUT_OF_RESOURCES
        blocker.unlink()
        with db.engine.begin() as conn:
            conn.execute(text("ALTER TABLE instances RENAME TO instances_gone"))
        assert assoc.send_c_store(ds).Status == STATUS_OUT_OF_RESOURCES
        with db.engine.begin() as conn:
            conn.execute(text("ALTER TABLE instances_gone RENAME TO instances"))
        assert assoc.send_c_store(ds).Status == 0x0000  # the sender's retry succeeds
    finally:
        assoc.release()
    assert set(_indexed(db)) == {ds.SOPInstanceUID}


def test_non_dicom_bytes_on_the_port_do_not_stop_the_server(scp: StorageServer) -> None:
    with socket.create_connection(("127.0.0.1", scp.port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + bytes(range(256)) * 8)
        with contextlib.suppress(OSError):
            sock.recv(1024)
    assoc = _client().associate("127.0.0.1", scp.port, ae_title="MMDX")
    assert assoc.is_established and assoc.send_c_echo().Status == 0x0000
    assoc.release()


def test_concurrent_storescu_and_dedupe_on_resend(
    scp: StorageServer, db: Database, distinct_files: list[Path], tmp_path: Path
) -> None:
    exe = require_binary("storescu")
    uncompressed = [f for f in distinct_files if ts_of(f) in ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1")]
    groups = [uncompressed[i::3] for i in range(3)]
    procs = [
        subprocess.Popen(
            [exe, "-aet", MODALITY_AE, "-aec", "MMDX", "127.0.0.1", str(scp.port), *map(str, g)],
            env=DCMTK_ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for g in groups
    ]
    results = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), results
    assert set(_indexed(db)) == {pydicom.dcmread(f).SOPInstanceUID for f in uncompressed}
    before = {p: p.stat().st_mtime_ns for p in Path(scp.settings.storage.store_dir).rglob("*.dcm")}
    runs = storescu(uncompressed, scp.port)  # re-send everything: no-op
    assert all(r.returncode == 0 for r in runs)
    assert scp.receiver.counts[Outcome.DUPLICATE] == len(uncompressed)
    after = {p: p.stat().st_mtime_ns for p in Path(scp.settings.storage.store_dir).rglob("*.dcm")}
    assert after == before


def test_pynetdicom_threads_in_parallel(scp: StorageServer, db: Database, distinct_files: list[Path]) -> None:
    datasets = [pydicom.dcmread(f) for f in distinct_files if ts_of(f).endswith(("1.2", "1.2.1"))]
    statuses: list[int] = []

    def send(ds: Dataset) -> None:
        ae = AE(ae_title=MODALITY_AE)
        ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
        assoc = ae.associate("127.0.0.1", scp.port, ae_title="MMDX")
        statuses.append(int(assoc.send_c_store(ds).Status))
        assoc.release()

    threads = [threading.Thread(target=send, args=(d,)) for d in datasets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert statuses == [0] * len(datasets)
    assert len(_indexed(db)) == len(datasets)


# --------------------------------------------------------------------------- TLS


def _self_signed(folder: Path) -> tuple[Path, Path]:
    exe = require_binary("openssl")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [exe, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
         "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    return cert, key


@pytest.mark.parametrize("engine", ENGINES)
def test_tls_association_with_self_signed_certificate(tmp_path: Path, engine: str) -> None:
    cert, key = _self_signed(tmp_path)
    settings: Settings = make_settings(
        tmp_path, scp={"tls": {"enabled": True, "certificate": cert, "private_key": key}}
    )
    db = Database.from_settings(settings)
    server = StorageServer(settings, db, port=0, engine=engine)
    server.start()
    try:
        client_ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(cert))
        ds = pydicom.dcmread(DATA / "net" / "MR_small.dcm")
        assoc = _client().associate("127.0.0.1", server.port, ae_title="MMDX", tls_args=(client_ctx, "localhost"))
        assert assoc.is_established
        assert assoc.send_c_echo().Status == 0x0000
        assert assoc.send_c_store(ds).Status == 0x0000
        assoc.release()
        assert set(_indexed(db)) == {ds.SOPInstanceUID}
        # a client that does not trust the certificate gets no association
        untrusting = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        refused = _client().associate("127.0.0.1", server.port, ae_title="MMDX", tls_args=(untrusting, "localhost"))
        assert not refused.is_established
        # nor does a plain-TCP client
        plain = _client().associate("127.0.0.1", server.port, ae_title="MMDX")
        assert not plain.is_established
    finally:
        server.stop()
        db.dispose()


def test_tls_config_with_missing_files_is_a_config_error(tmp_path: Path) -> None:
    from core.errors import ConfigError

    settings = make_settings(
        tmp_path, scp={"tls": {"enabled": True, "certificate": tmp_path / "no.pem", "private_key": tmp_path / "no.key"}}
    )
    with pytest.raises(ConfigError, match="scp.tls"):
        StorageServer(settings, Database.from_settings(settings), port=0)


# --------------------------------------------------------------------------- `mmdx scp` as a process

_CLI = (
    "import typer\n"
    "from app.commands.ingest import register\n"
    "app = typer.Typer()\n"
    "app.callback()(lambda: None)\n"
    "register(app)\n"
    "app()\n"
)


def _write_config(tmp: Path, port: int, stable_age_s: float = 60.0) -> Path:
    import yaml

    cfg = {
        "database": {"url": f"sqlite:///{tmp / 'mmdx.db'}"},
        "storage": {"store_dir": str(tmp / "store"), "quarantine_dir": str(tmp / "quarantine")},
        "scp": {"port": port, "allowed_calling_aes": [MODALITY_AE], "stable_age_s": stable_age_s},
    }
    path = tmp / "mmdx.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _start_cli(config: Path, *args: str) -> subprocess.Popen[str]:
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-c", _CLI, "scp", "--config", str(config), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:  # wait until it listens
        if "listening on" in line:
            return proc
    raise AssertionError(f"mmdx scp did not start (exit {proc.wait()})")


def _many(tmp: Path, n: int) -> list[Path]:
    from core.identifiers import derive_uid

    base = pydicom.dcmread(DATA / "net" / "CT_small.dcm")
    out = tmp / "many"
    out.mkdir()
    files = []
    for i in range(n):
        base.SOPInstanceUID = derive_uid("2.25", "kill-test", str(i))
        base.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.UID(base.SOPInstanceUID)
        base.InstanceNumber = i + 1
        path = out / f"{i:03d}.dcm"
        base.save_as(path, enforce_file_format=True)
        files.append(path)
    return files


def test_cli_scp_receives_dispatches_and_stops_on_sigterm(tmp_path: Path) -> None:
    import signal as sig

    require_binary("storescu")
    port = free_port()
    config = _write_config(tmp_path, port, stable_age_s=0.5)
    proc = _start_cli(config, "--ae-title", "MMDX", "--dispatch-every", "0.2", "--engine", "fast")
    try:
        runs = storescu([DATA / "net" / "CT_small.dcm"], port)
        assert runs[0].returncode == 0, runs[0].stderr
        db = Database(f"sqlite:///{tmp_path / 'mmdx.db'}")
        deadline = time.monotonic() + 10
        from store.schema import JobRow

        while time.monotonic() < deadline:
            with db.session(readonly=True) as s:
                if s.query(JobRow).count() == 1:
                    break
            time.sleep(0.1)
        with db.session(readonly=True) as s:
            assert s.query(JobRow).count() == 1  # the quiet study was dispatched once
        db.dispose()
    finally:
        proc.send_signal(sig.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, out
    assert "received: stored 1" in out
    patient = str(pydicom.dcmread(DATA / "net" / "CT_small.dcm").PatientName)
    assert patient and patient not in out  # no patient name in the log


@pytest.mark.parametrize("engine", ENGINES)
def test_sigkill_midway_loses_nothing_acknowledged(tmp_path: Path, engine: str) -> None:
    """Acceptance: kill -9 the SCP during a push; every acknowledged object is indexed and whole."""
    import re
    import signal as sig

    exe = require_binary("storescu")
    files = _many(tmp_path, 60)
    port = free_port()
    config = _write_config(tmp_path, port)
    proc = _start_cli(config, "--engine", engine)
    sender = subprocess.Popen(
        [exe, "-v", "-aet", MODALITY_AE, "-aec", "MMDX", "127.0.0.1", str(port), *map(str, files)],
        env=DCMTK_ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    acked: list[Path] = []
    current: Path | None = None
    assert sender.stdout is not None
    for line in sender.stdout:
        if m := re.search(r"Sending file: (\S+)", line):
            current = Path(m.group(1))
        elif "Received Store Response (Success)" in line and current is not None:
            acked.append(current)
            if len(acked) == 20:
                proc.send_signal(sig.SIGKILL)  # mid-association, mid-stream
    sender.wait(timeout=30)
    proc.wait(timeout=10)
    assert 20 <= len(acked) < len(files)
    # restart: the store sweeps leftovers; every acknowledged object is there and complete
    restarted = _start_cli(config)
    restarted.send_signal(sig.SIGTERM)
    restarted.communicate(timeout=20)
    db = Database(f"sqlite:///{tmp_path / 'mmdx.db'}")
    indexed = _indexed(db)
    db.dispose()
    for f in acked:
        uid = pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID
        assert uid in indexed, f.name
        stored = pydicom.dcmread(indexed[uid][1])
        assert stored.PixelData == pydicom.dcmread(f).PixelData
    store = tmp_path / "store"
    assert not list(store.rglob(".tmp-*"))
    for path in store.rglob("*.dcm"):  # nothing half-written, acknowledged or not
        pydicom.dcmread(path).PixelData  # noqa: B018


@pytest.mark.parametrize("engine", ENGINES)
def test_mutual_tls_requires_a_trusted_client_certificate(tmp_path: Path, engine: str) -> None:
    cert, key = _self_signed(tmp_path)
    tls = {"enabled": True, "certificate": cert, "private_key": key, "ca_certificates": cert}
    settings = make_settings(tmp_path, scp={"tls": tls})
    db = Database.from_settings(settings)
    server = StorageServer(settings, db, port=0, engine=engine)
    server.start()
    try:
        with_cert = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(cert))
        with_cert.load_cert_chain(str(cert), str(key))
        assoc = _client().associate("127.0.0.1", server.port, ae_title="MMDX", tls_args=(with_cert, "localhost"))
        assert assoc.is_established and assoc.send_c_echo().Status == 0x0000
        assoc.release()
        without_cert = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(cert))
        refused = _client().associate("127.0.0.1", server.port, ae_title="MMDX", tls_args=(without_cert, "localhost"))
        assert not refused.is_established
    finally:
        server.stop()
        db.dispose()


@pytest.mark.parametrize("engine", ENGINES)
def test_association_limit_rejects_then_recovers(tmp_path: Path, engine: str) -> None:
    settings = make_settings(tmp_path, scp={"max_associations": 1})
    db = Database.from_settings(settings)
    server = StorageServer(settings, db, port=0, engine=engine)
    server.start()
    try:
        first = _client().associate("127.0.0.1", server.port, ae_title="MMDX")
        assert first.is_established
        second = _client().associate("127.0.0.1", server.port, ae_title="MMDX")
        assert second.is_rejected  # rejected-transient: local limit exceeded
        first.release()
        time.sleep(0.3)
        third = _client().associate("127.0.0.1", server.port, ae_title="MMDX")
        assert third.is_established and third.send_c_echo().Status == 0x0000
        third.release()
    finally:
        server.stop()
        db.dispose()


def test_fast_engine_aborts_protocol_violations(tmp_path: Path) -> None:
    """Oversized PDUs and unknown PDU types end the association; the server goes on."""
    import struct

    settings = make_settings(tmp_path)
    db = Database.from_settings(settings)
    server = StorageServer(settings, db, port=0, engine="fast", max_pdu=16384)
    server.start()
    try:
        for payload in (
            struct.pack(">BBL", 0x04, 0, 1 << 30),  # P-DATA before association, declaring 1 GiB
            struct.pack(">BBL", 0x01, 0, 1 << 24) + b"\x00" * 16,  # A-ASSOCIATE-RQ declaring 16 MiB
            b"\x16\x03\x01\x00\x05hello",  # a TLS ClientHello on a plain port
        ):
            with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
                sock.sendall(payload)
                reply = sock.recv(16)
            assert reply[:1] in (b"\x07", b"")  # A-ABORT or closed, never a hang
        assoc = _client().associate("127.0.0.1", server.port, ae_title="MMDX")
        assert assoc.is_established and assoc.send_c_echo().Status == 0x0000
        assoc.release()
    finally:
        server.stop()
        db.dispose()


def test_same_object_by_other_routes_is_a_duplicate(scp: StorageServer, db: Database) -> None:
    """Received from one AE, re-sent by another, then found in a folder: one instance, no conflict."""
    from datetime import UTC, datetime

    from ingest.indexing import index_scan
    from ingest.scan import scan

    original = DATA / "net" / "CT_small.dcm"
    ds = pydicom.dcmread(original)
    for calling in (MODALITY_AE, "ECHOSCU"):  # the file meta each receipt writes differs by source AE
        assoc = _client(calling).associate("127.0.0.1", scp.port, ae_title="MMDX")
        assert assoc.send_c_store(ds).Status == 0x0000
        assoc.release()
    with db.session() as s:
        counts = index_scan(s, scan([original]), datetime.now(UTC))
    assert (counts.new, counts.duplicate, counts.conflict) == (0, 1, 0)
    assert scp.receiver.counts[Outcome.DUPLICATE] == 1
    with db.session(readonly=True) as s:
        assert idx.list_conflicts(s) == []


def test_every_storage_sop_class_is_accepted_and_indexed(scp: StorageServer, db: Database) -> None:
    """One object of each SOP class the pipeline uses (headers only: the SCP does not decode pixels)."""
    from core.identifiers import derive_uid
    from ingest.scp import STORAGE_SOP_CLASSES

    ae = AE(ae_title=MODALITY_AE)
    for sop_class in STORAGE_SOP_CLASSES:
        ae.add_requested_context(sop_class, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", scp.port, ae_title="MMDX")
    assert assoc.is_established and len(assoc.accepted_contexts) == len(STORAGE_SOP_CLASSES)
    study = derive_uid("2.25", "sop-class-test")
    for sop_class in STORAGE_SOP_CLASSES:
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID = sop_class
        ds.SOPInstanceUID = derive_uid("2.25", "sop-class-test", sop_class)
        ds.StudyInstanceUID = study
        ds.SeriesInstanceUID = derive_uid("2.25", "sop-class-test-series", sop_class)
        assert assoc.send_c_store(ds).Status == 0x0000, sop_class
    assoc.release()
    with db.session(readonly=True) as s:
        (indexed,) = idx.list_studies(s)
    classes = {i.sop_class_uid for se in indexed.series for i in se.instances}
    assert classes == set(STORAGE_SOP_CLASSES)
    modality = {se.instances[0].sop_class_uid: se.modality for se in indexed.series}
    assert modality["1.2.840.10008.5.1.4.1.1.9.1.1"] == "ECG"  # no (0008,0060): implied by the SOP class
    assert modality["1.2.840.10008.5.1.4.1.1.104.1"] == "DOC"


def test_stored_but_unindexed_objects_are_reindexed_at_start(settings: Settings, db: Database) -> None:
    """A power loss can roll back the last index commits of fsynced, acknowledged files: start-up re-indexes them."""
    from ingest.filestore import FileStore

    ds = pydicom.dcmread(DATA / "net" / "MR_small.dcm")
    store = FileStore(settings.storage.store_dir)
    placed = store.put(
        (DATA / "net" / "MR_small.dcm").read_bytes(),
        study_uid=ds.StudyInstanceUID,
        series_uid=ds.SeriesInstanceUID,
        sop_instance_uid=ds.SOPInstanceUID,
    )
    assert _indexed(db) == {}
    server = StorageServer(settings, db, port=0)
    server.start()
    try:
        assert server.recovery_done.wait(10)
    finally:
        server.stop()
    assert server.recovered == 1
    assert _indexed(db)[ds.SOPInstanceUID][1] == placed.path
    second = StorageServer(settings, db, port=0)  # nothing to do the second time
    second.start()
    try:
        assert second.recovery_done.wait(10)
    finally:
        second.stop()
    assert second.recovered == 0


def test_same_uid_other_content_is_a_logged_conflict(scp: StorageServer, db: Database) -> None:
    """MR_small and MR_small_RLE share one SOP Instance UID: the first is kept, the second set aside."""
    first, second = DATA / "net" / "MR_small.dcm", DATA / "net" / "MR_small_RLE.dcm"
    for f in (first, second):
        (run,) = storescu([f], scp.port)
        assert run.returncode == 0, run.stderr  # a conflict is acknowledged: the sender must not retry forever
    uid = pydicom.dcmread(first).SOPInstanceUID
    ts, path = _indexed(db)[uid]
    assert ts == "1.2.840.10008.1.2.1" and pydicom.dcmread(path).PixelData == pydicom.dcmread(first).PixelData
    assert scp.receiver.counts[Outcome.CONFLICT] == 1
    with db.session(readonly=True) as s:
        (conflict,) = idx.list_conflicts(s)
    assert conflict.sop_instance_uid == uid
    kept = list((Path(scp.settings.storage.store_dir) / "_conflicts").iterdir())
    assert len(kept) == 1 and pydicom.dcmread(kept[0]).file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.5"


def test_large_objects_over_small_pdus_are_stored_byte_for_byte(
    scp: StorageServer, db: Database, tmp_path: Path
) -> None:
    """~0.6 MB objects in 4 KiB PDUs (the fast engine streams them: headers parsed early, written in 256 KiB runs)."""
    import numpy as np
    from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

    from core.identifiers import derive_uid

    rng = np.random.default_rng(7)
    files = []
    for k, ts in enumerate((ExplicitVRLittleEndian, ImplicitVRLittleEndian)):
        ds = pydicom.dcmread(DATA / "net" / "CT_small.dcm")
        ds.Rows = ds.Columns = 560
        ds.PixelData = rng.integers(0, 4096, (560, 560), dtype=np.uint16).tobytes()
        ds.SOPInstanceUID = derive_uid("2.25", "large-pdu-test", str(k))
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.file_meta.TransferSyntaxUID = ts
        path = tmp_path / f"large{k}.dcm"
        ds.save_as(path, enforce_file_format=True, implicit_vr=ts == ImplicitVRLittleEndian, little_endian=True)
        files.append(path)
    # each sent in its own transfer syntax (-xi: propose implicit VR only), so the bytes arrive unconverted
    runs = [*storescu(files[:1], scp.port, extra=["--max-pdu", "4096"])]
    runs += storescu(files[1:], scp.port, extra=["--max-pdu", "4096", "-xi"])
    assert all(r.returncode == 0 for r in runs), [r.stderr for r in runs]
    indexed = _indexed(db)
    for f in files:
        original = pydicom.dcmread(f)
        _ts, stored_path = indexed[original.SOPInstanceUID]
        stored = pydicom.dcmread(stored_path)
        assert stored.PixelData == original.PixelData and stored.Rows == 560
        if 0xFFFCFFFC in original:  # Data Set Trailing Padding: a sender may drop it (DCMTK does)
            del original[0xFFFCFFFC]
        diff = {e.tag for e in stored} ^ {e.tag for e in original}
        diff |= {e.tag for e in original if e.tag in stored and stored[e.tag].value != e.value}
        assert not diff, diff  # every element as sent (DCMTK may re-encode lengths, so not byte for byte)
        assert stored.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
