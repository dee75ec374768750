"""Each SCP resource limit (``limits``) hit on loopback: ARTIM, idle, per-peer, buffered bytes, object size."""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage, Verification  # type: ignore[attr-defined]

from ingest.filestore import FileStore
from ingest.receive import Outcome, Receiver
from ingest.scp import STATUS_CANNOT_UNDERSTAND, StorageServer
from store.db import Database

from .conftest import DATA, MODALITY_AE, make_settings

pytestmark = pytest.mark.integration


def _server(tmp_path: Path, engine: str = "fast", **limits: object) -> Iterator[StorageServer]:
    settings = make_settings(tmp_path, limits=limits, scp={"max_associations": 3})
    db = Database.from_settings(settings)
    server = StorageServer(settings, db, port=0, engine=engine, recover=False)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        db.dispose()


ENGINES = pytest.mark.parametrize("engine", ["fast", "pynetdicom"])


@pytest.fixture(params=["fast", "pynetdicom"])
def strict(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[StorageServer]:
    """Both engines apply every limit (pynetdicom's through :mod:`ingest.scp_limits`)."""
    yield from _server(
        tmp_path,
        request.param,
        association_request_timeout_s=0.5,
        idle_timeout_s=1.0,
        max_associations_per_peer=2,
        max_buffered_bytes=64 << 10,
    )


def _closed_within(sock: socket.socket, seconds: float) -> bool:
    """True when the server closes (or aborts) the connection within ``seconds``."""
    sock.settimeout(seconds)
    try:
        while True:
            data = sock.recv(4096)
            if not data or data[:1] == b"\x07":
                return True
    except TimeoutError:
        return False
    except OSError:
        return True


def _associate(port: int, bind: str = "127.0.0.1") -> object:
    ae = AE(ae_title=MODALITY_AE)
    ae.add_requested_context(Verification)
    ae.add_requested_context(CTImageStorage, "1.2.840.10008.1.2.1")
    return ae.associate("127.0.0.1", port, ae_title="MMDX", bind_address=(bind, 0))


def test_artim_closes_a_connection_that_never_asks(strict: StorageServer) -> None:
    with socket.create_connection(("127.0.0.1", strict.port)) as sock:
        started = time.monotonic()
        assert _closed_within(sock, 5)
        assert time.monotonic() - started < 3


def test_artim_is_a_deadline_not_a_per_read_timeout(strict: StorageServer) -> None:
    """A request dribbled a byte at a time is cut off at the deadline (no slowloris)."""
    with socket.create_connection(("127.0.0.1", strict.port)) as sock:
        started = time.monotonic()
        closed = False
        for byte in struct.pack(">BBL", 0x01, 0, 200) + b"\x00" * 200:
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                closed = True
                break
            time.sleep(0.1)
            if time.monotonic() - started > 3:
                break
        assert closed or _closed_within(sock, 0.5)
        assert time.monotonic() - started < 3


def test_idle_association_is_closed(strict: StorageServer) -> None:
    assoc = _associate(strict.port)
    assert assoc.is_established  # type: ignore[attr-defined]
    time.sleep(2.0)
    assert not assoc.is_established  # type: ignore[attr-defined]  # aborted by the SCP after 1 s of silence


def test_one_peer_cannot_fill_every_slot(strict: StorageServer) -> None:
    """Idle connections from one host take at most its share; another host still gets through."""
    idle = [socket.create_connection(("127.0.0.1", strict.port)) for _ in range(5)]
    try:
        time.sleep(0.1)
        assoc = _associate(strict.port, bind="127.0.0.2")
        assert assoc.is_established  # type: ignore[attr-defined]
        assert assoc.send_c_echo().Status == 0x0000  # type: ignore[attr-defined]
        assoc.release()  # type: ignore[attr-defined]
        closed = sum(_closed_within(s, 0.2) for s in idle)
        assert closed >= 3  # beyond max_associations_per_peer (2): closed at once
    finally:
        for s in idle:
            s.close()


def _p_data(context_id: int, control: int, payload: bytes) -> bytes:
    pdv = struct.pack(">LBB", len(payload) + 2, context_id, control) + payload
    return struct.pack(">BBL", 0x04, 0, len(pdv)) + pdv


def _command(elements: list[tuple[int, bytes]]) -> bytes:
    body = b"".join(struct.pack("<HHL", 0, el, len(v)) + v for el, v in elements)
    return struct.pack("<HHLL", 0, 0, 4, len(body)) + body


def test_other_commands_are_refused_before_their_dataset_is_buffered(strict: StorageServer) -> None:
    """A C-FIND with a dataset on a storage context: aborted at its command set, however much follows."""
    from pynetdicom.pdu import A_ASSOCIATE_RQ
    from pynetdicom.pdu_primitives import A_ASSOCIATE, MaximumLengthNotification
    from pynetdicom.presentation import build_context

    primitive = A_ASSOCIATE()
    primitive.application_context_name = "1.2.840.10008.3.1.1.1"
    primitive.calling_ae_title = MODALITY_AE
    primitive.called_ae_title = "MMDX"
    ctx = build_context(CTImageStorage, ["1.2.840.10008.1.2.1"])
    ctx.context_id = 1
    primitive.presentation_context_definition_list = [ctx]
    max_length = MaximumLengthNotification()
    max_length.maximum_length_received = 16384
    primitive.user_information = [max_length]
    request = A_ASSOCIATE_RQ()
    request.from_primitive(primitive)
    with socket.create_connection(("127.0.0.1", strict.port)) as sock:
        sock.sendall(request.encode())
        sock.settimeout(5)
        header = sock.recv(6, socket.MSG_WAITALL)
        assert header[:1] == b"\x02"  # A-ASSOCIATE-AC
        sock.recv(struct.unpack(">L", header[2:6])[0], socket.MSG_WAITALL)
        find = _command([(0x0002, b"1.2.840.10008.5.1.4.1.2.2.1\x00"), (0x0100, b"\x20\x00"), (0x0800, b"\x00\x00")])
        sock.sendall(_p_data(1, 0x03, find))
        aborted = False
        try:  # sent without a pause (so no idle timeout ends it) and never last: only the limit can stop it
            for _ in range(2000):  # up to 32 MB of "identifier" the SCP must not keep
                sock.sendall(_p_data(1, 0x00, b"\x00" * 16000))
        except OSError:
            aborted = True
        assert aborted


@ENGINES
def test_object_over_max_object_bytes_is_rejected_and_not_kept(tmp_path: Path, engine: str) -> None:
    """``limits.max_object_bytes``: 0xC000 with the reason, no temporary copy left behind."""
    servers = _server(tmp_path, engine, max_object_bytes=4096)
    server = next(servers)
    try:
        ae = AE(ae_title=MODALITY_AE)
        ae.add_requested_context(CTImageStorage, "1.2.840.10008.1.2.1")
        assoc = ae.associate("127.0.0.1", server.port, ae_title="MMDX")
        ds = pydicom.dcmread(DATA / "net" / "CT_small.dcm")  # 39 KB
        assert assoc.send_c_store(ds).Status == STATUS_CANNOT_UNDERSTAND
        assoc.release()
        tmp = Path(server.settings.storage.store_dir) / ".tmp"
        assert [p for p in tmp.iterdir() if p.stat().st_size] == []
        assert server.receiver.counts[Outcome.REJECTED] == 1
    finally:
        next(servers, None)


def test_receiver_limit_applies_to_pull_too(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, limits={"max_object_bytes": 4096})
    db = Database.from_settings(settings)
    try:
        receiver = Receiver(
            FileStore(settings.storage.store_dir), db, settings.storage.quarantine_dir, limits=settings.limits
        )
        received = receiver.receive((DATA / "net" / "CT_small.dcm").read_bytes(), source="pull:test")
        assert received.outcome is Outcome.REJECTED
        assert received.reason is not None and "limits.max_object_bytes" in received.reason
    finally:
        db.dispose()
