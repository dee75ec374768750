"""Fuzzing the input boundary (issue 19): hypothesis mutates the files of ``tests/data`` and a DIMSE stream.

Properties:

* the DICOM scan never raises, whatever the bytes: every input ends as a DICOM object or a ``Rejected`` with a reason;
* every ECG reader, behind the boundary of ``app.inputs`` (child process with limits), ends as a record, "not an
  ECG" or a refusal with a reason, never an exception;
* the fast DIMSE acceptor answers any byte stream by serving, rejecting or aborting: it never raises anything
  but the protocol and connection errors its server turns into an A-ABORT, and never waits past its timeouts.
"""

from __future__ import annotations

import socket
import struct
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.inputs import examine_ecg
from app.isolated import InputRefused, runner
from core.config import LimitsConfig

try:  # the scan moved from ingest.files to ingest.scan
    from ingest.scan import scan  # type: ignore[import-not-found,unused-ignore]
except ImportError:  # pragma: no cover - the older layout
    from ingest.files import scan  # type: ignore[no-redef,unused-ignore]
from ingest.dul import AcceptorConfig, Association, ProtocolError

DATA = Path(__file__).resolve().parents[1] / "data"
DICOM_SEEDS = [p.read_bytes() for p in sorted((DATA / "dicom" / "net").glob("*.dcm"))[:4]]
ECG_SEEDS = [
    (p.name, p.read_bytes())
    for p in (
        DATA / "ecg" / "dicom" / "waveform_ecg.dcm",
        DATA / "ecg" / "hl7_aecg" / "minimum_aecg.xml",
        DATA / "ecg" / "philips" / "1_03__129DYPRG.XML",
        DATA / "ecg" / "wfdb" / "mitdb_100" / "100.hea",
    )
]

FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    """A seed with some bytes overwritten, a range deleted or duplicated, or cut short."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(0, 8))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    kind = draw(st.sampled_from(["none", "cut", "delete", "repeat"]))
    a = draw(st.integers(0, len(data)))
    b = draw(st.integers(a, min(len(data), a + 4096)))
    if kind == "cut":
        del data[a:]
    elif kind == "delete":
        del data[a:b]
    elif kind == "repeat":
        data[a:a] = data[a:b]
    return bytes(data)


@FUZZ
@given(data=mutated(DICOM_SEEDS))
def test_scan_never_raises(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    folder = tmp_path_factory.mktemp("fuzz")
    (folder / "x.dcm").write_bytes(data)
    result = scan([folder], LimitsConfig())
    assert len(result.dicom) + len(result.rejected) == 1
    assert all(r.reason for r in result.rejected)


@FUZZ
@given(data=st.data())
def test_ecg_readers_behind_the_boundary_never_raise(
    tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    name, seed = data.draw(st.sampled_from(ECG_SEEDS))
    body = data.draw(mutated([seed]))
    folder = tmp_path_factory.mktemp("ecg")
    path = folder / name
    path.write_bytes(body)
    if name.endswith(".hea"):
        (folder / "100.dat").write_bytes((DATA / "ecg" / "wfdb" / "mitdb_100" / "100.dat").read_bytes()[:20000])
    isolated = runner(20.0, 2 << 30)
    try:
        kind, found = isolated.call(examine_ecg, str(path), "2.25", 5_000_000)
    except InputRefused as exc:
        assert str(exc)
        return
    assert kind in ("ecg", "not-ecg", "error")
    if kind == "error":
        assert isinstance(found, str) and found


# --------------------------------------------------------------------------- DIMSE stream


def _valid_stream() -> bytes:
    """A-ASSOCIATE-RQ (Verification + CT storage), C-ECHO-RQ, A-RELEASE-RQ, as pynetdicom encodes them."""
    from pynetdicom.pdu import A_ASSOCIATE_RQ
    from pynetdicom.pdu_primitives import A_ASSOCIATE, MaximumLengthNotification
    from pynetdicom.presentation import build_context

    primitive = A_ASSOCIATE()
    primitive.application_context_name = "1.2.840.10008.3.1.1.1"
    primitive.calling_ae_title = "FUZZ"
    primitive.called_ae_title = "MMDX"
    contexts = [build_context("1.2.840.10008.1.1"), build_context("1.2.840.10008.5.1.4.1.1.2")]
    for i, ctx in enumerate(contexts):
        ctx.context_id = 2 * i + 1
    primitive.presentation_context_definition_list = contexts
    max_length = MaximumLengthNotification()
    max_length.maximum_length_received = 16384
    primitive.user_information = [max_length]
    request = A_ASSOCIATE_RQ()
    request.from_primitive(primitive)
    elements = [(0x0002, b"1.2.840.10008.1.1\x00"), (0x0100, b"\x30\x00"), (0x0110, b"\x01\x00"), (0x0800, b"\x01\x01")]
    body = b"".join(struct.pack("<HHL", 0, el, len(v)) + v for el, v in elements)
    command = struct.pack("<HHLL", 0, 0, 4, len(body)) + body
    pdv = struct.pack(">LBB", len(command) + 2, 1, 0x03) + command
    echo = struct.pack(">BBL", 0x04, 0, len(pdv)) + pdv
    release = struct.pack(">BBL", 0x05, 0, 4) + bytes(4)
    return bytes(request.encode()) + echo + release


VALID = _valid_stream()
CONFIG = AcceptorConfig(
    ae_title="MMDX",
    allowed_calling=(),
    storage_sop_classes=frozenset({"1.2.840.10008.5.1.4.1.1.2"}),
    transfer_syntaxes=("1.2.840.10008.1.2", "1.2.840.10008.1.2.1"),
    acse_timeout_s=2.0,
    network_timeout_s=2.0,
)


class _Sink:
    def add(self, piece: memoryview, last: bool) -> None: ...

    def add_many(self, pieces: list[memoryview], last: bool) -> None: ...

    def finish(self) -> int:
        return 0

    def abort(self) -> None: ...


class _Handler:
    def begin(self, head: bytes, calling: str, transfer_syntax: str, sop_instance_uid: str) -> _Sink:
        return _Sink()


def test_the_valid_stream_is_served() -> None:
    assert _serve(VALID) is None


def _serve(stream: bytes) -> BaseException | None:
    """Feed ``stream`` to an association on a socket pair; what it raised (None: it ended cleanly)."""
    ours, theirs = socket.socketpair()
    sender = threading.Thread(target=_send, args=(theirs, stream), daemon=True)
    sender.start()
    try:
        assoc = Association(ours, CONFIG, _Handler())
        if assoc.negotiate():
            assoc.serve()
        return None
    except BaseException as exc:  # the property is about which
        return exc
    finally:
        ours.close()
        sender.join(5)


def _send(sock: socket.socket, stream: bytes) -> None:
    try:
        sock.sendall(stream)
        sock.shutdown(socket.SHUT_WR)
        while sock.recv(65536):  # drain the answers until the acceptor closes
            pass
    except OSError:
        pass
    finally:
        sock.close()


@FUZZ
@given(stream=mutated([VALID]))
def test_acceptor_fails_only_as_protocol_or_connection_errors(stream: bytes) -> None:
    raised = _serve(stream)
    assert raised is None or isinstance(raised, (ProtocolError, ConnectionError, TimeoutError, OSError)), repr(raised)
