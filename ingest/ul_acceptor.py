"""A lean DICOM Upper Layer acceptor for storage (the ``fast`` SCP engine).

pynetdicom's acceptor runs two polling reactors per association (the DUL and
the association loop each sleep 1 ms when idle) and builds an object per PDU;
on loopback that caps a bare pynetdicom handler at about a third of DCMTK's
``storescp``.  This module speaks just the part of PS3.8 a storage SCP needs,
with one blocking thread per association and no polling:

* A-ASSOCIATE-RQ -> AC / RJ (called and calling AE checks, presentation
  context negotiation, maximum PDU length);
* P-DATA-TF: command and dataset fragments reassembled without re-copying;
  C-ECHO-RQ and C-STORE-RQ answered (any other command aborts: we never
  accept a context it could use);
* A-RELEASE-RQ -> RP, A-ABORT, timeouts, malformed or non-DICOM bytes -> A-ABORT.

Nothing a peer sends is unbounded (``limits``): a connection must send its
A-ASSOCIATE-RQ within the ARTIM timeout and then something at least every
idle timeout; one address holds at most ``max_per_peer`` connections (so idle
connections from one host cannot fill ``max_associations`` before any AE
check); a command other than C-STORE/C-ECHO is refused when its command set
completes, before any dataset is buffered; and a dataset held in memory
(a handler that does not stream) may not pass ``max_buffered_bytes``.

It is deliberately small; everything about *what is stored* lives in
:mod:`ingest.receive`, shared with the pynetdicom engine, and both engines
run the same test-suite.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from io import BytesIO
from typing import Protocol

import numpy
from pydicom.dataset import FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import UID

from core.identifiers import derive_uid
from core.version import SOFTWARE_VERSION

log = logging.getLogger(__name__)

APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"
VERIFICATION = "1.2.840.10008.1.1"
IMPLEMENTATION_CLASS_UID = derive_uid("2.25", "mmdx", "implementation-class", SOFTWARE_VERSION)
IMPLEMENTATION_VERSION = f"MMDX_{SOFTWARE_VERSION}"[:16]

#: The least the socket is asked for at once (see :meth:`Association._recv_exact`).
_READ_CHUNK = 256 << 10
_PDU_HEADER = struct.Struct(">BBL")
#: A P-DATA-TF header with its first PDV item header: type, reserved, PDU length, PDV length, context, control.
_DATA_PDU = struct.Struct(">BBLLBB")
_C_STORE_RQ, _C_STORE_RSP, _C_ECHO_RQ, _C_ECHO_RSP = 0x0001, 0x8001, 0x0030, 0x8030
_NO_DATASET = 0x0101
#: Whatever was negotiated, refuse to allocate more than this for one PDU.
_UNLIMITED_PDU_CAP = 1 << 26
#: A command set is a few hundred bytes; more is not DIMSE.
_MAX_COMMAND_BYTES = 64 << 10

#: A store handler: (file bytes, calling AE, transfer syntax, affected SOP instance UID) -> DIMSE status.
StoreHandler = Callable[[bytes, str, str, str], int]


class StoreSink(Protocol):
    """Where one C-STORE's dataset goes while it arrives."""

    def add(self, piece: memoryview, last: bool) -> None:
        """The next dataset fragment (a view into a received PDU, not copied); ``last``: the final one."""

    def add_many(self, pieces: list[memoryview], last: bool) -> None:
        """Several fragments in order, as :meth:`add` would take them one by one."""

    def finish(self) -> int:
        """The dataset is complete: the DIMSE status to answer."""

    def abort(self) -> None:
        """The association ended before the dataset was complete."""


class StreamingStoreHandler(Protocol):
    """A store handler that takes each dataset as it arrives instead of as one ``bytes`` at the end."""

    def begin(self, head: bytes, calling: str, transfer_syntax: str, sop_instance_uid: str) -> StoreSink:
        """A C-STORE request arrived; ``head`` is the preamble and file meta the stored file starts with."""


class ProtocolError(Exception):
    """The peer broke PS3.8; the association is aborted."""


@dataclass(slots=True)
class _Context:
    abstract_syntax: str
    transfer_syntax: str


@dataclass(slots=True)
class _Message:
    """A DIMSE message being reassembled on one presentation context."""

    context_id: int
    command: list[memoryview] = field(default_factory=list)
    data: list[memoryview] = field(default_factory=list)
    command_done: bool = False
    fields: dict[int, bytes] = field(default_factory=dict)
    sink: StoreSink | None = None  #: set when a streaming handler takes the dataset as it arrives
    buffered: int = 0  #: bytes of this message held in memory


# --------------------------------------------------------------------------- encoding helpers


def _ae(value: bytes | memoryview) -> str:
    return bytes(value).decode("ascii", "replace").strip(" \x00")


def _pad_ae(title: str) -> bytes:
    return title.encode("ascii", "replace")[:16].ljust(16, b" ")


def _uid_bytes(uid: str) -> bytes:
    raw = uid.encode("ascii")
    return raw + b"\x00" if len(raw) % 2 else raw


def _item(item_type: int, payload: bytes) -> bytes:
    return struct.pack(">BBH", item_type, 0, len(payload)) + payload


def _parse_command(data: bytes) -> dict[int, bytes]:
    """Implicit VR little endian group 0000 elements: tag -> raw value."""
    out: dict[int, bytes] = {}
    pos, end = 0, len(data)
    while pos + 8 <= end:
        group, elem, length = struct.unpack_from("<HHL", data, pos)
        pos += 8
        if pos + length > end:
            raise ProtocolError("command set element runs past the end of the command")
        out[(group << 16) | elem] = data[pos : pos + length]
        pos += length
    if pos != end:
        raise ProtocolError("trailing bytes in the command set")
    return out


def _us(fields: dict[int, bytes], tag: int) -> int | None:
    raw = fields.get(tag)
    return struct.unpack("<H", raw[:2])[0] if raw is not None and len(raw) >= 2 else None


def _ui(fields: dict[int, bytes], tag: int) -> str:
    return fields.get(tag, b"").decode("ascii", "replace").strip(" \x00")


def _command(elements: Sequence[tuple[int, bytes]]) -> bytes:
    body = b"".join(struct.pack("<HHL", 0, el, len(v)) + v for el, v in elements)
    return struct.pack("<HHLL", 0, 0, 4, len(body)) + body


def _response(command_field: int, message_id: int, sop_class: str, sop_instance: str | None, status: int) -> bytes:
    elements = [(0x0002, _uid_bytes(sop_class)), (0x0100, struct.pack("<H", command_field))]
    elements.append((0x0120, struct.pack("<H", message_id)))
    elements.append((0x0800, struct.pack("<H", _NO_DATASET)))
    elements.append((0x0900, struct.pack("<H", status)))
    if sop_instance:
        elements.append((0x1000, _uid_bytes(sop_instance)))
    return _command(elements)


def _p_data(context_id: int, command: bytes) -> bytes:
    pdv = struct.pack(">LBB", len(command) + 2, context_id, 0x03) + command
    return _PDU_HEADER.pack(0x04, 0, len(pdv)) + pdv


def _abort(reason: int = 0) -> bytes:
    return _PDU_HEADER.pack(0x07, 0, 4) + bytes([0, 0, 2, reason])


# --------------------------------------------------------------------------- association


@dataclass(frozen=True, slots=True)
class AcceptorConfig:
    """What the acceptor accepts."""

    ae_title: str
    allowed_calling: tuple[str, ...]
    storage_sop_classes: frozenset[str]
    transfer_syntaxes: tuple[str, ...]
    max_pdu: int = 16384  #: what we announce; 0 = unlimited
    acse_timeout_s: float = 10.0  #: ARTIM: connect to A-ASSOCIATE-RQ (``limits.association_request_timeout_s``)
    network_timeout_s: float = 60.0  #: silence that ends an association (``limits.idle_timeout_s``)
    max_buffered_bytes: int = 64 << 20  #: a message's fragments held in memory (``limits.max_buffered_bytes``)
    max_per_peer: int = 4  #: open connections from one address (``limits.max_associations_per_peer``)


class Association:
    """One accepted connection, served on the calling thread."""

    def __init__(
        self, sock: socket.socket, config: AcceptorConfig, handler: StoreHandler | StreamingStoreHandler
    ) -> None:
        self.sock = sock
        self.config = config
        self.handler = handler
        self.calling = "?"
        self.peer = "?"
        self.contexts: dict[int, _Context] = {}
        self.peer_max_pdu = 0
        self._message: _Message | None = None
        self._view = memoryview(b"")  # the current chunk
        self._pos = self._end = 0
        self._deadline: float | None = None  # ARTIM: the whole request, not each read, must arrive in time
        self.statuses: dict[int, int] = {}  #: C-STORE answers given on this association, by status

    def summary(self) -> str:
        """The objects this association brought, for its closing log line."""
        total = sum(self.statuses.values())
        if not total:
            return "no objects"
        by_status = ", ".join(f"0x{status:04X} x{n}" for status, n in sorted(self.statuses.items()))
        return f"{total} object(s) received ({by_status})"

    # --------------------------------------------------------------- reading

    def _recv_exact(self, n: int) -> memoryview:
        """The next ``n`` bytes of the stream, without copying them again.

        The socket is read in chunks of at least ``_READ_CHUNK`` bytes: while
        this thread works, the sender keeps sending, so one read usually brings
        several PDUs.  A chunk is never reused (views into it are handed on).
        """
        if self._end - self._pos < n:
            self._fill(n)
        view = self._view[self._pos : self._pos + n]
        self._pos += n
        return view

    def _fill(self, n: int) -> None:
        have = self._end - self._pos
        if self._pos + n > len(self._view):
            # uninitialised (a bytearray would zero half a megabyte per object): only what was read is handed on
            view = numpy.empty(max(n, _READ_CHUNK), dtype=numpy.uint8).data
            view[:have] = self._view[self._pos : self._end]
            self._view, self._pos, self._end = view, 0, have
        while self._end - self._pos < n:
            if self._deadline is not None:
                left = self._deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("no A-ASSOCIATE-RQ within limits.association_request_timeout_s")
                self.sock.settimeout(left)
            k = self.sock.recv_into(self._view[self._end :])
            if k == 0:
                raise ConnectionError("peer closed the connection")
            self._end += k

    def _read_pdu(self) -> tuple[int, memoryview]:
        if self._end - self._pos < 6:
            self._fill(6)
        pdu_type, _, length = _PDU_HEADER.unpack_from(self._view, self._pos)
        if pdu_type not in (0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07):
            raise ProtocolError(f"unknown PDU type 0x{pdu_type:02X} (not DICOM?)")
        # Lenient on purpose: a PDU above the negotiated maximum is a peer bug we tolerate, up to a hard
        # memory cap (what stops a hostile or garbled length from allocating gigabytes).
        limit = (1 << 20) if pdu_type == 0x01 else max(self.config.max_pdu, _UNLIMITED_PDU_CAP)
        if length > limit:
            raise ProtocolError(f"PDU of {length} bytes exceeds the limit of {limit}")
        self._pos += 6
        return pdu_type, self._recv_exact(length)

    # --------------------------------------------------------------- negotiation

    def _reject(self, result: int, source: int, reason: int) -> None:
        self.sock.sendall(_PDU_HEADER.pack(0x03, 0, 4) + bytes([0, result, source, reason]))

    def negotiate(self) -> bool:
        """Read the A-ASSOCIATE-RQ and answer AC or RJ; True when accepted."""
        self.sock.settimeout(self.config.acse_timeout_s)
        self._deadline = time.monotonic() + self.config.acse_timeout_s
        try:
            pdu_type, body = self._read_pdu()
        finally:
            self._deadline = None
        if pdu_type != 0x01:
            raise ProtocolError(f"expected A-ASSOCIATE-RQ, got PDU type 0x{pdu_type:02X}")
        if len(body) < 68:
            raise ProtocolError("A-ASSOCIATE-RQ too short")
        called, self.calling = _ae(body[4:20]), _ae(body[20:36])
        proposals: list[tuple[int, str, list[str]]] = []
        pos = 68
        while pos + 4 <= len(body):
            item_type, _, length = struct.unpack_from(">BBH", body, pos)
            payload = body[pos + 4 : pos + 4 + length]
            pos += 4 + length
            if item_type == 0x20:
                proposals.append(self._parse_pc(payload))
            elif item_type == 0x50:
                self._parse_user_info(payload)
        if self.config.allowed_calling and self.calling not in self.config.allowed_calling:
            log.warning("association rejected: calling AE %s not allowed (%s)", self.calling, self.peer)
            self._reject(0x01, 0x01, 0x03)
            return False
        if called != self.config.ae_title:
            log.warning("association rejected: called AE %s is not ours (%s)", called, self.peer)
            self._reject(0x01, 0x01, 0x07)
            return False
        self.sock.sendall(self._accept(proposals))
        self.sock.settimeout(self.config.network_timeout_s)
        log.info("association accepted from %s@%s", self.calling, self.peer)
        return True

    @staticmethod
    def _parse_pc(payload: memoryview) -> tuple[int, str, list[str]]:
        context_id = payload[0]
        abstract, syntaxes = "", []
        pos = 4
        while pos + 4 <= len(payload):
            item_type, _, length = struct.unpack_from(">BBH", payload, pos)
            value = bytes(payload[pos + 4 : pos + 4 + length]).decode("ascii", "replace").strip(" \x00")
            pos += 4 + length
            if item_type == 0x30:
                abstract = value
            elif item_type == 0x40:
                syntaxes.append(value)
        return context_id, abstract, syntaxes

    def _parse_user_info(self, payload: memoryview) -> None:
        pos = 0
        while pos + 4 <= len(payload):
            item_type, _, length = struct.unpack_from(">BBH", payload, pos)
            if item_type == 0x51 and length == 4:
                self.peer_max_pdu = struct.unpack_from(">L", payload, pos + 4)[0]
            pos += 4 + length

    def _accept(self, proposals: list[tuple[int, str, list[str]]]) -> bytes:
        items = [_item(0x10, APPLICATION_CONTEXT.encode())]
        for context_id, abstract, syntaxes in proposals:
            supported = abstract == VERIFICATION or abstract in self.config.storage_sop_classes
            # the requestor's order (its first compressed choice keeps the object as encoded), except that
            # explicit VR little endian beats implicit VR, and big endian is the last resort
            usable = [ts for ts in syntaxes if ts in self.config.transfer_syntaxes]
            usable.sort(key=lambda ts: (ts == "1.2.840.10008.1.2.2", ts == "1.2.840.10008.1.2"))
            chosen = usable[0] if usable else None
            if abstract == VERIFICATION and chosen is None and "1.2.840.10008.1.2" in syntaxes:
                chosen = "1.2.840.10008.1.2"
            result = 0 if supported and chosen else (3 if not supported else 4)
            if result == 0 and chosen is not None:
                self.contexts[context_id] = _Context(abstract, chosen)
            ts_item = _item(0x40, (chosen or syntaxes[0] if syntaxes else "1.2.840.10008.1.2").encode())
            items.append(_item(0x21, bytes([context_id, 0, result, 0]) + ts_item))
        user = _item(0x51, struct.pack(">L", self.config.max_pdu))
        user += _item(0x52, IMPLEMENTATION_CLASS_UID.encode())
        user += _item(0x55, IMPLEMENTATION_VERSION.encode())
        items.append(_item(0x50, user))
        header = struct.pack(">HH", 1, 0) + _pad_ae(self.config.ae_title) + _pad_ae(self.calling) + bytes(32)
        body = header + b"".join(items)
        return _PDU_HEADER.pack(0x02, 0, len(body)) + body

    # --------------------------------------------------------------- serving

    def serve(self) -> None:
        """Answer DIMSE messages until release, abort or error."""
        try:
            self._serve()
        finally:
            message, self._message = self._message, None
            if message is not None and message.sink is not None:
                message.sink.abort()

    def _serve(self) -> None:
        message: _Message | None = None
        while True:
            if message is not None and message.sink is not None and self._stream_data(message):
                self._dispatch(message)  # the last fragment was among those already read
                message = self._message = None
                continue
            pdu_type, body = self._read_pdu()
            if pdu_type == 0x05:  # A-RELEASE-RQ
                self.sock.sendall(_PDU_HEADER.pack(0x06, 0, 4) + bytes(4))
                log.info("association released by %s@%s: %s", self.calling, self.peer, self.summary())
                return
            if pdu_type == 0x07:
                log.warning("association aborted by %s@%s: %s", self.calling, self.peer, self.summary())
                return
            if pdu_type != 0x04:
                raise ProtocolError(f"unexpected PDU type 0x{pdu_type:02X} in an established association")
            pos, end = 0, len(body)
            while pos < end:
                if pos + 6 > end:
                    raise ProtocolError("truncated PDV item")
                length, context_id, control = struct.unpack_from(">LBB", body, pos)
                if length < 2 or pos + 4 + length > end:
                    raise ProtocolError("PDV item length outside the PDU")
                fragment = body[pos + 6 : pos + 4 + length]
                pos += 4 + length
                if context_id not in self.contexts:
                    raise ProtocolError(f"PDV on presentation context {context_id}, which was not accepted")
                if message is None:
                    message = self._message = _Message(context_id)
                elif message.context_id != context_id:
                    raise ProtocolError("PDVs of two messages interleaved")
                if control & 0x01:
                    message.command.append(fragment)
                    message.buffered += len(fragment)
                    if message.buffered > _MAX_COMMAND_BYTES:
                        raise ProtocolError(f"command set longer than {_MAX_COMMAND_BYTES} bytes")
                    if control & 0x02:
                        message.fields = _parse_command(b"".join(message.command))
                        message.command_done = True
                        message.buffered = 0
                        command = _us(message.fields, 0x0100)
                        if command not in (_C_STORE_RQ, _C_ECHO_RQ):  # refused before any dataset is buffered
                            raise ProtocolError(f"unsupported DIMSE command 0x{command or 0:04X}")
                        if _us(message.fields, 0x0800) == _NO_DATASET:
                            self._dispatch(message)
                            message = self._message = None
                        else:
                            self._open_sink(message)
                else:
                    if not message.command_done:
                        raise ProtocolError("dataset fragment before the command set was complete")
                    if message.sink is not None:
                        message.sink.add(fragment, bool(control & 0x02))
                    else:
                        message.buffered += len(fragment)
                        if message.buffered > self.config.max_buffered_bytes:
                            raise ProtocolError(
                                f"dataset passes limits.max_buffered_bytes ({self.config.max_buffered_bytes})"
                            )
                        message.data.append(fragment)
                    if control & 0x02:
                        self._dispatch(message)
                        message = self._message = None

    def _stream_data(self, message: _Message) -> bool:
        """Hand the sink, in one call, the dataset PDUs of ``message`` that are already read; True at the last.

        Takes only the shape storage SCUs send (one dataset PDV per P-DATA-TF,
        on the message's context), complete in the buffer; anything else, and
        every check that fails, is left to the general loop, which reports it.
        """
        view, pos, end = self._view, self._pos, self._end
        context, unpack = message.context_id, _DATA_PDU.unpack_from
        pieces: list[memoryview] = []
        last = False
        while end - pos >= 12:
            pdu_type, _, pdu_length, pdv_length, context_id, control = unpack(view, pos)
            stop = pos + 6 + pdu_length
            if (
                pdu_type != 0x04
                or pdv_length + 4 != pdu_length
                or pdv_length < 2
                or context_id != context
                or control & 0x01
                or stop > end
            ):
                break
            pieces.append(view[pos + 12 : stop])
            pos = stop
            if control & 0x02:
                last = True
                break
        if pieces:
            self._pos = pos
            sink: StoreSink = message.sink  # type: ignore[assignment]
            sink.add_many(pieces, last)
        return last

    def _open_sink(self, message: _Message) -> None:
        """A C-STORE's command set is complete: a streaming handler takes the dataset from here on."""
        begin = getattr(self.handler, "begin", None)
        if begin is None or _us(message.fields, 0x0100) != _C_STORE_RQ:
            return
        context = self.contexts[message.context_id]
        sop_class = _ui(message.fields, 0x0002) or context.abstract_syntax
        sop_instance = _ui(message.fields, 0x1000)
        head = _file_head(sop_class, sop_instance, context.transfer_syntax, self.calling)
        message.sink = begin(head, self.calling, context.transfer_syntax, sop_instance)

    def _dispatch(self, message: _Message) -> None:
        fields = message.fields
        command = _us(fields, 0x0100)
        message_id = _us(fields, 0x0110) or 0
        context = self.contexts[message.context_id]
        if command == _C_ECHO_RQ:
            rsp = _response(_C_ECHO_RSP, message_id, VERIFICATION, None, 0x0000)
        elif command == _C_STORE_RQ:
            sop_class = _ui(fields, 0x0002) or context.abstract_syntax
            sop_instance = _ui(fields, 0x1000)
            if message.sink is not None:
                sink, message.sink = message.sink, None
                status = sink.finish()
            else:
                data = _file_bytes(sop_class, sop_instance, context.transfer_syntax, self.calling, message.data)
                message.data.clear()
                handler: StoreHandler = self.handler  # type: ignore[assignment]
                status = handler(data, self.calling, context.transfer_syntax, sop_instance)
            self.statuses[status] = self.statuses.get(status, 0) + 1
            if log.isEnabledFor(logging.DEBUG):
                log.debug("C-STORE %s from %s: 0x%04X", sop_instance, self.calling, status)
            rsp = _response(_C_STORE_RSP, message_id, sop_class, sop_instance, status)
        else:
            raise ProtocolError(f"unsupported DIMSE command 0x{command or 0:04X}")
        self.sock.sendall(_p_data(message.context_id, rsp))


def _meta_element(element: int, vr: bytes, value: bytes, pad: bytes) -> bytes:
    if len(value) % 2:
        value += pad
    return struct.pack("<HH", 0x0002, element) + vr + struct.pack("<H", len(value)) + value


def _file_bytes(sop_class: str, sop_instance: str, ts: str, calling: str, fragments: list[memoryview]) -> bytes:
    """DICOM file format around the received dataset (as pynetdicom's ``encoded_dataset`` builds it)."""
    return b"".join((_file_head(sop_class, sop_instance, ts, calling), *fragments))


def _file_head(sop_class: str, sop_instance: str, ts: str, calling: str) -> bytes:
    """Preamble, ``DICM`` and the group 0002 file meta of a received object.

    Encoded here directly (explicit VR little endian, the same bytes as pydicom's ``write_file_meta_info``),
    which costs a fraction of building a ``FileMetaDataset`` per object.
    """
    if not (sop_class.isascii() and sop_instance.isascii() and ts.isascii() and calling.isascii()):
        return _file_bytes_pydicom(sop_class, sop_instance, ts, calling, [])
    body = b"".join(
        (
            struct.pack("<HH", 0x0002, 0x0001) + b"OB\x00\x00" + struct.pack("<L", 2) + b"\x00\x01",
            _meta_element(0x0002, b"UI", sop_class.encode("ascii"), b"\x00"),
            _meta_element(0x0003, b"UI", sop_instance.encode("ascii"), b"\x00"),
            _meta_element(0x0010, b"UI", ts.encode("ascii"), b"\x00"),
            _meta_element(0x0012, b"UI", IMPLEMENTATION_CLASS_UID.encode("ascii"), b"\x00"),
            _meta_element(0x0013, b"SH", IMPLEMENTATION_VERSION.encode("ascii"), b" "),
            _meta_element(0x0016, b"AE", calling.encode("ascii"), b" ") if calling else b"",
        )
    )
    group_length = struct.pack("<HH", 0x0002, 0x0000) + b"UL" + struct.pack("<HL", 4, len(body))
    return b"".join((b"\x00" * 128, b"DICM", group_length, body))


def _file_bytes_pydicom(sop_class: str, sop_instance: str, ts: str, calling: str, fragments: list[memoryview]) -> bytes:
    """The reference encoding with pydicom (used when a value is not plain ASCII, and by the tests)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class)
    meta.MediaStorageSOPInstanceUID = UID(sop_instance)
    meta.TransferSyntaxUID = UID(ts)
    meta.ImplementationClassUID = UID(IMPLEMENTATION_CLASS_UID)
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION
    if calling:
        meta.SourceApplicationEntityTitle = calling
    buf = DicomBytesIO()
    buf.is_little_endian, buf.is_implicit_VR = True, False
    write_file_meta_info(buf, meta, enforce_standard=True)
    out = BytesIO()
    out.write(b"\x00" * 128 + b"DICM")
    out.write(buf.getvalue())
    for f in fragments:
        out.write(f)
    return out.getvalue()


# --------------------------------------------------------------------------- server


class UpperLayerServer:
    """Accept connections and serve each association on its own thread."""

    def __init__(
        self,
        address: tuple[str, int],
        config: AcceptorConfig,
        handler: StoreHandler | StreamingStoreHandler,
        *,
        ssl_context: ssl.SSLContext | None = None,
        max_associations: int = 10,
    ) -> None:
        self.config = config
        self.handler = handler
        self.ssl_context = ssl_context
        self.max_associations = max_associations
        self._listener = socket.create_server(address, reuse_port=False)
        self._listener.settimeout(0.2)
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._per_peer: dict[str, int] = {}
        self._thread: threading.Thread | None = None

    @property
    def server_address(self) -> tuple[str, int]:
        host, port = self._listener.getsockname()[:2]
        return str(host), int(port)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._accept_loop, name="mmdx-ul-accept", daemon=True)
        self._thread.start()

    def shutdown(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(5)
        self._listener.close()
        with self._lock:
            for s in list(self._open):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, addr = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._stopping.is_set():
                    return
                continue
            with self._lock:
                crowded = self._per_peer.get(addr[0], 0) >= self.config.max_per_peer
                if not crowded:
                    self._per_peer[addr[0]] = self._per_peer.get(addr[0], 0) + 1
            if crowded:  # before a thread or a read: one host cannot take every association slot
                log.warning("connection from %s closed: limits.max_associations_per_peer reached", addr[0])
                with contextlib.suppress(OSError):
                    conn.close()
                continue
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._serve, args=(conn, addr), name="mmdx-ul-assoc", daemon=True).start()

    def _serve(self, conn: socket.socket, addr: tuple[str, int]) -> None:
        sock: socket.socket = conn
        with self._lock:
            busy = len(self._open) >= self.max_associations
            self._open.add(conn)
        try:
            if self.ssl_context is not None:
                sock.settimeout(self.config.acse_timeout_s)
                sock = self.ssl_context.wrap_socket(conn, server_side=True)
            assoc = Association(sock, self.config, self.handler)
            assoc.peer = f"{addr[0]}:{addr[1]}"
            if busy:  # rejected-transient, service-provider (presentation), local limit exceeded
                assoc.sock.settimeout(self.config.acse_timeout_s)
                assoc._read_pdu()
                assoc._reject(0x02, 0x03, 0x02)
                return
            if assoc.negotiate():
                assoc.serve()
        except ProtocolError as exc:
            log.warning("aborting association with %s: %s", addr[0], exc)
            with contextlib.suppress(OSError):
                sock.sendall(_abort())
        except (ConnectionError, TimeoutError, ssl.SSLError, OSError) as exc:
            log.info("connection from %s ended: %s", addr[0], type(exc).__name__)
        finally:
            with self._lock:
                self._open.discard(conn)
                left = self._per_peer.get(addr[0], 1) - 1
                if left > 0:
                    self._per_peer[addr[0]] = left
                else:
                    self._per_peer.pop(addr[0], None)
            with contextlib.suppress(OSError):
                sock.close()
