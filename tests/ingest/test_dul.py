"""The fast engine's PDU and command-set parsing: properties and hostile input on a socket pair."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.dul import AcceptorConfig, Association, ProtocolError
from ingest.dul.dimse import _encode_command as _command
from ingest.dul.dimse import encode_response as _response
from ingest.dul.dimse import parse_command as _parse_command
from ingest.dul.dimse import ui_value as _ui
from ingest.dul.dimse import us_value as _us
from ingest.scp import STORAGE_SOP_CLASSES, TRANSFER_SYNTAXES

CONFIG = AcceptorConfig(
    ae_title="MMDX",
    allowed_calling=("MODALITY",),
    storage_sop_classes=frozenset(STORAGE_SOP_CLASSES),
    transfer_syntaxes=TRANSFER_SYNTAXES,
    max_pdu=16384,
    acse_timeout_s=2,
    network_timeout_s=2,
)


@given(st.lists(st.tuples(st.integers(1, 0xFFFF), st.binary(max_size=40)), max_size=12, unique_by=lambda t: t[0]))
def test_command_set_round_trips(elements: list[tuple[int, bytes]]) -> None:
    encoded = _command(elements)
    fields = _parse_command(encoded)
    assert fields[0x00000000] == struct.pack("<L", len(encoded) - 12)
    for element, value in elements:
        assert fields[element] == value


@given(st.binary(max_size=200))
def test_command_parser_only_raises_protocol_error(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        _parse_command(data)


def test_store_response_carries_status_and_uids() -> None:
    fields = _parse_command(_response(0x8001, 7, "1.2.840.10008.5.1.4.1.1.2", "1.2.3.4", 0xA700))
    assert (_us(fields, 0x0100), _us(fields, 0x0120), _us(fields, 0x0900)) == (0x8001, 7, 0xA700)
    assert _ui(fields, 0x1000) == "1.2.3.4" and _ui(fields, 0x0002) == "1.2.840.10008.5.1.4.1.1.2"
    assert _us(fields, 0x0800) == 0x0101  # no dataset follows


def _associate_rq(called: str, calling: str, contexts: list[tuple[int, str, list[str]]], max_pdu: int = 0) -> bytes:
    def item(t: int, payload: bytes) -> bytes:
        return struct.pack(">BBH", t, 0, len(payload)) + payload

    body = struct.pack(">HH", 1, 0) + called.encode().ljust(16) + calling.encode().ljust(16) + bytes(32)
    body += item(0x10, b"1.2.840.10008.3.1.1.1")
    for cid, abstract, syntaxes in contexts:
        sub = item(0x30, abstract.encode()) + b"".join(item(0x40, ts.encode()) for ts in syntaxes)
        body += item(0x20, bytes([cid, 0, 0, 0]) + sub)
    body += item(0x50, item(0x51, struct.pack(">L", max_pdu)))
    return struct.pack(">BBL", 0x01, 0, len(body)) + body


def _run(payload: bytes, handler_calls: list[bytes] | None = None) -> bytes:
    """Feed bytes to one Association over a socket pair; return what it answered."""
    ours, theirs = socket.socketpair()
    calls = handler_calls if handler_calls is not None else []

    def handler(data: bytes, calling: str, ts: str, uid: str) -> int:
        calls.append(data)
        return 0

    def serve() -> None:
        assoc = Association(ours, CONFIG, handler)
        try:
            if assoc.negotiate():
                assoc.serve()
        except (ProtocolError, ConnectionError, TimeoutError, OSError):
            pass
        finally:  # drain what the peer still sends, so closing does not reset the connection
            ours.shutdown(socket.SHUT_WR)
            ours.settimeout(5)
            try:
                while ours.recv(65536):
                    pass
            except OSError:
                pass
            ours.close()

    thread = threading.Thread(target=serve)
    thread.start()
    theirs.sendall(payload)
    theirs.shutdown(socket.SHUT_WR)
    answer = b""
    theirs.settimeout(5)
    while chunk := theirs.recv(65536):
        answer += chunk
    thread.join(5)
    theirs.close()
    assert not thread.is_alive()
    return answer


def test_negotiation_accepts_known_contexts_and_rejects_others() -> None:
    rq = _associate_rq(
        "MMDX",
        "MODALITY",
        [
            (1, "1.2.840.10008.5.1.4.1.1.2", ["1.2.840.10008.1.2.2", "1.2.840.10008.1.2"]),
            (3, "1.2.840.10008.5.1.4.1.1.481.1", ["1.2.840.10008.1.2"]),  # RT Image: not ours
            (5, "1.2.840.10008.5.1.4.1.1.2", ["1.2.840.10008.1.2.4.100"]),  # MPEG2: not ours
        ],
    )
    answer = _run(rq)
    assert answer[0] == 0x02  # A-ASSOCIATE-AC
    results = {}
    pos = 6 + 68
    while pos < len(answer):
        t, _, length = struct.unpack_from(">BBH", answer, pos)
        if t == 0x21:
            cid, result = answer[pos + 4], answer[pos + 6]
            ts_len = struct.unpack_from(">H", answer, pos + 10)[0]
            results[cid] = (result, answer[pos + 12 : pos + 12 + ts_len].decode())
        pos += 4 + length
    assert results[1] == (0, "1.2.840.10008.1.2")  # little endian preferred over big endian
    assert results[3][0] == 3  # abstract syntax not supported
    assert results[5][0] == 4  # transfer syntaxes not supported


@pytest.mark.parametrize(
    ("called", "calling", "reason"),
    [("MMDX", "INTRUDER", 0x03), ("OTHER", "MODALITY", 0x07)],
)
def test_wrong_ae_titles_get_associate_rj(called: str, calling: str, reason: int) -> None:
    answer = _run(_associate_rq(called, calling, [(1, "1.2.840.10008.1.1", ["1.2.840.10008.1.2"])]))
    assert answer == struct.pack(">BBL", 0x03, 0, 4) + bytes([0, 0x01, 0x01, reason])


@settings(max_examples=40, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_after_association_never_crash_or_store(noise: bytes) -> None:
    rq = _associate_rq("MMDX", "MODALITY", [(1, "1.2.840.10008.5.1.4.1.1.2", ["1.2.840.10008.1.2.1"])])
    calls: list[bytes] = []
    answer = _run(rq + noise, calls)
    assert answer[0] == 0x02
    # random bytes are at most a (very unlikely) well-formed exchange; never a handler call with garbage
    assert calls == [] or all(c[128:132] == b"DICM" for c in calls)


def test_echo_and_release_over_socket_pair() -> None:
    rq = _associate_rq("MMDX", "MODALITY", [(1, "1.2.840.10008.1.1", ["1.2.840.10008.1.2"])])
    echo = _command([(0x0002, b"1.2.840.10008.1.1\x00"), (0x0100, struct.pack("<H", 0x0030)),
                     (0x0110, struct.pack("<H", 9)), (0x0800, struct.pack("<H", 0x0101))])  # fmt: skip
    pdv = struct.pack(">LBB", len(echo) + 2, 1, 0x03) + echo
    p_data = struct.pack(">BBL", 0x04, 0, len(pdv)) + pdv
    release = struct.pack(">BBL", 0x05, 0, 4) + bytes(4)
    answer = _run(rq + p_data + release)
    ac_len = struct.unpack_from(">L", answer, 2)[0]
    rest = answer[6 + ac_len :]
    assert rest[0] == 0x04  # the C-ECHO-RSP
    rsp_len = struct.unpack_from(">L", rest, 2)[0]
    fields = _parse_command(rest[12 : 6 + rsp_len])
    assert (_us(fields, 0x0100), _us(fields, 0x0120), _us(fields, 0x0900)) == (0x8030, 9, 0)
    assert rest[6 + rsp_len :] == struct.pack(">BBL", 0x06, 0, 4) + bytes(4)  # A-RELEASE-RP


def _c_store_pdus(message_id: int, uid: str, dataset: bytes, max_pdu: int) -> bytes:
    """A C-STORE-RQ as P-DATA-TF PDUs: the command, then the dataset in fragments of at most ``max_pdu``."""
    sop_class = "1.2.840.10008.5.1.4.1.1.2"
    padded = uid.encode() + b"\x00" * (len(uid) % 2)
    command = _command([(0x0002, sop_class.encode() + b"\x00"), (0x0100, struct.pack("<H", 0x0001)),
                        (0x0110, struct.pack("<H", message_id)), (0x0700, struct.pack("<H", 0)),
                        (0x0800, struct.pack("<H", 0x0000)), (0x1000, padded)])  # fmt: skip
    out = [struct.pack(">BBL", 0x04, 0, len(command) + 6) + struct.pack(">LBB", len(command) + 2, 1, 0x03) + command]
    step = max_pdu - 6
    for start in range(0, len(dataset), step):
        piece = dataset[start : start + step]
        last = 0x02 if start + step >= len(dataset) else 0x00
        out.append(struct.pack(">BBL", 0x04, 0, len(piece) + 6) + struct.pack(">LBB", len(piece) + 2, 1, last) + piece)
    return b"".join(out)


class _Collect:
    """A streaming handler keeping each dataset as its sink received it (pieces and calls)."""

    def __init__(self) -> None:
        self.datasets: list[bytes] = []
        self.batches = 0

    def begin(self, head: bytes, calling: str, transfer_syntax: str, sop_instance_uid: str) -> _Collect.Sink:
        return _Collect.Sink(self)

    class Sink:
        def __init__(self, owner: _Collect) -> None:
            self.owner, self.pieces, self.done = owner, list[bytes](), False

        def add(self, piece: memoryview, last: bool) -> None:
            self.add_many([piece], last)

        def add_many(self, pieces: list[memoryview], last: bool) -> None:
            assert not self.done, "a fragment after the last one"
            self.owner.batches += 1
            self.pieces.extend(bytes(p) for p in pieces)  # copied now: a later read must not change them
            self.done = last

        def finish(self) -> int:
            assert self.done
            self.owner.datasets.append(b"".join(self.pieces))
            return 0

        def abort(self) -> None:
            pass


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.binary(min_size=2, max_size=5000).map(lambda b: b[: len(b) // 2 * 2]), min_size=1, max_size=4),
    st.integers(64, 3000),
    st.lists(st.integers(1, 9000), min_size=1, max_size=40),
    st.booleans(),
)
def test_stores_arriving_in_any_slicing_reach_the_handler_intact(
    datasets: list[bytes], max_pdu: int, slices: list[int], streaming: bool
) -> None:
    """The buffered reader and the batched data path: PDUs split across reads, several in one read, back to back."""
    rq = _associate_rq("MMDX", "MODALITY", [(1, "1.2.840.10008.5.1.4.1.1.2", ["1.2.840.10008.1.2.1"])])
    stream = rq + b"".join(_c_store_pdus(i + 1, f"1.2.3.{i}", ds, max_pdu) for i, ds in enumerate(datasets))
    stream += struct.pack(">BBL", 0x05, 0, 4) + bytes(4)
    calls: list[bytes] = []
    ours, theirs = socket.socketpair()

    collect = _Collect()

    def handler(data: bytes, calling: str, ts: str, uid: str) -> int:
        calls.append(data)
        return 0

    def serve() -> None:
        with contextlib.closing(ours):
            assoc = Association(ours, CONFIG, collect if streaming else handler)
            if assoc.negotiate():
                assoc.serve()

    thread = threading.Thread(target=serve)
    thread.start()
    pos, k = 0, 0
    while pos < len(stream):  # the sender's writes, cut at arbitrary points
        size = slices[k % len(slices)]
        theirs.sendall(stream[pos : pos + size])
        pos, k = pos + size, k + 1
    theirs.settimeout(5)
    answer = b""
    while chunk := theirs.recv(65536):
        answer += chunk
    thread.join(5)
    theirs.close()
    assert not thread.is_alive()
    if streaming:
        assert collect.datasets == datasets
    else:
        assert len(calls) == len(datasets)
        for call, dataset in zip(calls, datasets, strict=True):
            assert call[128:132] == b"DICM" and call.endswith(dataset)
    assert answer.endswith(struct.pack(">BBL", 0x06, 0, 4) + bytes(4))  # released after every answer


def test_dataset_pdus_already_read_reach_the_sink_in_batches() -> None:
    """What one read brought goes to the sink in one call, not one call per PDU (the receive path's hot loop)."""
    datasets = [bytes([i]) * 20_000 for i in range(3)]
    rq = _associate_rq("MMDX", "MODALITY", [(1, "1.2.840.10008.5.1.4.1.1.2", ["1.2.840.10008.1.2.1"])])
    stores = [_c_store_pdus(i + 1, f"1.2.3.{i}", ds, 1024) for i, ds in enumerate(datasets)]
    release = struct.pack(">BBL", 0x05, 0, 4) + bytes(4)
    ours, theirs = socket.socketpair()
    theirs.sendall(rq + b"".join(stores) + release)  # all queued before the association reads a byte
    collect = _Collect()
    with contextlib.closing(ours):
        assoc = Association(ours, CONFIG, collect)
        assert assoc.negotiate()
        assoc.serve()
    theirs.close()
    assert collect.datasets == datasets
    pdus = sum(-(-len(ds) // (1024 - 12)) for ds in datasets)
    assert collect.batches <= pdus // 5, (collect.batches, pdus)
