"""A lean DICOM C-STORE requestor (PS3.7 9.1.1, PS3.8 9.3): one association, the file's bytes as they are.

pynetdicom runs each association on its own threads that poll, and re-encodes nothing but still costs
several milliseconds per C-STORE.  Sending results needs only this much of the Upper Layer: A-ASSOCIATE
with exactly the batch's (SOP class, transfer syntax) pairs, then per object a C-STORE-RQ command and the
data set read straight from the file (after its file meta group, in the transfer syntax it was written
in, which is the one proposed), and the C-STORE-RSP status; A-RELEASE at the end.  Storage commitment
(N-ACTION) still goes through pynetdicom.
"""

from __future__ import annotations

import socket
import ssl
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from core.errors import BridgeError

APPLICATION_CONTEXT = b"1.2.840.10008.3.1.1.1"
IMPLICIT_VR_LE = "1.2.840.10008.1.2"
IMPLEMENTATION_CLASS_UID = b"1.2.826.0.1.3680043.10.1313.1"  # mmdx's implementation class (under its UID root)
IMPLEMENTATION_VERSION = b"MMDX_BRIDGE"
OUR_MAX_PDU = 1 << 20
#: Buffers handed to one sendmsg call (below the kernel's IOV_MAX of 1024).
IOV_BATCH = 512


class AssociationRejected(BridgeError):
    """The peer answered A-ASSOCIATE-RJ (result, source and reason as PS3.8 Table 9-21 numbers them)."""


class AssociationLost(BridgeError):
    """The peer aborted or closed the association, or sent something this requestor does not expect."""


def _uid(value: str | bytes) -> bytes:
    raw = value.encode("ascii") if isinstance(value, str) else value
    return raw + b"\0" if len(raw) % 2 else raw


def _ae(title: str) -> bytes:
    return title.encode("ascii").ljust(16)[:16]


def _item(kind: int, payload: bytes) -> bytes:
    return struct.pack(">BBH", kind, 0, len(payload)) + payload


def _associate_rq(calling: str, called: str, pairs: Sequence[tuple[str, str]]) -> bytes:
    """A-ASSOCIATE-RQ proposing one presentation context (ids 1, 3, 5...) per (SOP class, transfer syntax)."""
    body = struct.pack(">HH", 1, 0) + _ae(called) + _ae(calling) + bytes(32)
    body += _item(0x10, APPLICATION_CONTEXT)
    for n, (sop_class, ts) in enumerate(pairs):
        sub = _item(0x30, sop_class.encode()) + _item(0x40, ts.encode())
        body += _item(0x20, struct.pack(">BBBB", 2 * n + 1, 0, 0, 0) + sub)
    user = _item(0x51, struct.pack(">I", OUR_MAX_PDU)) + _item(0x52, IMPLEMENTATION_CLASS_UID)
    user += _item(0x55, IMPLEMENTATION_VERSION)
    body += _item(0x50, user)
    return struct.pack(">BBI", 0x01, 0, len(body)) + body


def _element(group: int, elem: int, value: bytes) -> bytes:
    return struct.pack("<HHI", group, elem, len(value)) + value


def _c_store_rq(message_id: int, sop_class: str, sop_instance: str) -> bytes:
    """The C-STORE-RQ command set, implicit VR little endian (PS3.7 Table 9.3-1)."""
    body = (
        _element(0, 0x0002, _uid(sop_class))
        + _element(0, 0x0100, struct.pack("<H", 0x0001))
        + _element(0, 0x0110, struct.pack("<H", message_id))
        + _element(0, 0x0700, struct.pack("<H", 0))
        + _element(0, 0x0800, struct.pack("<H", 0x0000))
        + _element(0, 0x1000, _uid(sop_instance))
    )
    return _element(0, 0x0000, struct.pack("<I", len(body))) + body


def parse_command(data: bytes) -> dict[int, bytes]:
    """Elements of an implicit VR little endian command set, by element number (group 0000)."""
    out: dict[int, bytes] = {}
    pos = 0
    while pos + 8 <= len(data):
        group, elem, length = struct.unpack_from("<HHI", data, pos)
        pos += 8
        if group == 0:
            out[elem] = data[pos : pos + length]
        pos += length
    return out


@dataclass(frozen=True, slots=True)
class FileMeta:
    """What sending a DICOM file needs from its file meta group (explicit VR little endian, PS3.10 7.1)."""

    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax_uid: str
    dataset_offset: int


_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}


def read_file_meta(data: bytes) -> FileMeta:
    """Parse the file meta group of a DICOM file's bytes; BridgeError when it is not one."""
    if len(data) < 144 or data[128:132] != b"DICM" or data[132:136] != b"\x02\x00\x00\x00":
        raise BridgeError("not a DICOM file with a File Meta Information Group Length (0002,0000)")
    (length,) = struct.unpack_from("<I", data, 140)
    end = 144 + int(length)
    if end > len(data):
        raise BridgeError("the file meta group is longer than the file")
    values: dict[int, str] = {}
    pos = 144
    while pos + 8 <= end:
        group, elem = struct.unpack_from("<HH", data, pos)
        vr = data[pos + 4 : pos + 6]
        if vr in _LONG_VRS:
            (size,) = struct.unpack_from("<I", data, pos + 8)
            pos += 12
        else:
            (size,) = struct.unpack_from("<H", data, pos + 6)
            pos += 8
        if group == 2 and elem in (0x0002, 0x0003, 0x0010):
            values[elem] = data[pos : pos + size].rstrip(b"\0 ").decode("ascii", "replace")
        pos += size
    missing = [f"(0002,{e:04X})" for e in (0x0002, 0x0003, 0x0010) if not values.get(e)]
    if missing:
        raise BridgeError(f"the file meta group lacks {', '.join(missing)}")
    return FileMeta(values[0x0002], values[0x0003], values[0x0010], end)


@dataclass(frozen=True, slots=True)
class Accepted:
    """The association's accepted contexts: (SOP class, transfer syntax) -> context id, and the peer's PDU limit."""

    contexts: dict[tuple[str, str], int]
    max_pdu: int


class StoreAssociation:
    """One association to a storage SCP; use as a context manager (released on exit, aborted on error)."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        calling: str,
        called: str,
        pairs: Sequence[tuple[str, str]],
        timeout: float,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.pairs = list(pairs)
        sock = socket.create_connection((host, port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock: socket.socket = tls.wrap_socket(sock, server_hostname=host) if tls is not None else sock
        self._message_id = 0
        self._buf = bytearray()
        try:
            self.sock.sendall(_associate_rq(calling, called, self.pairs))
            self.accepted = self._read_ac()
        except BaseException:
            self.sock.close()
            raise

    # ---------------------------------------------------------------- PDUs

    def _recv_exact(self, n: int) -> bytes:
        """``n`` bytes, from what an earlier read brought first (one recv usually brings a whole response)."""
        while len(self._buf) < n:
            chunk = self.sock.recv(max(65536, n - len(self._buf)))
            if not chunk:
                raise AssociationLost("the peer closed the connection")
            self._buf += chunk
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    def _read_pdu(self) -> tuple[int, bytes]:
        kind, _, length = struct.unpack(">BBI", self._recv_exact(6))
        return kind, self._recv_exact(length)

    def _read_ac(self) -> Accepted:
        kind, body = self._read_pdu()
        if kind == 0x03:
            result, source, reason = body[1], body[2], body[3]
            raise AssociationRejected(f"association rejected (result {result}, source {source}, reason {reason})")
        if kind == 0x07:
            raise AssociationLost("association aborted by the peer during negotiation")
        if kind != 0x02:
            raise AssociationLost(f"unexpected PDU type 0x{kind:02X} in answer to A-ASSOCIATE-RQ")
        pos = 68
        contexts: dict[tuple[str, str], int] = {}
        max_pdu = 0
        while pos + 4 <= len(body):
            item, _, length = struct.unpack_from(">BBH", body, pos)
            payload = body[pos + 4 : pos + 4 + length]
            pos += 4 + length
            if item == 0x21 and payload[2] == 0:  # accepted presentation context
                ctx_id = payload[0]
                n = (ctx_id - 1) // 2
                if 0 <= n < len(self.pairs):
                    contexts[self.pairs[n]] = ctx_id
            elif item == 0x50:
                sub = 0
                while sub + 4 <= len(payload):
                    s_item, _, s_len = struct.unpack_from(">BBH", payload, sub)
                    if s_item == 0x51 and s_len == 4:
                        (max_pdu,) = struct.unpack_from(">I", payload, sub + 4)
                    sub += 4 + s_len
        return Accepted(contexts, max_pdu)

    def _pdus(self, ctx_id: int, command: bool, data: memoryview) -> list[bytes | memoryview]:
        """``data`` as P-DATA-TF PDUs within the peer's limit, as (header, fragment) buffers; the last is flagged."""
        limit = (self.accepted.max_pdu or (1 << 24)) - 6
        flag = 0x01 if command else 0x00
        total = len(data)
        buffers: list[bytes | memoryview] = []
        pos = 0
        while True:
            chunk = data[pos : pos + limit]
            pos += len(chunk)
            last = pos >= total
            buffers.append(
                struct.pack(">BBIIBB", 0x04, 0, len(chunk) + 6, len(chunk) + 2, ctx_id, flag | (0x02 if last else 0))
            )
            buffers.append(chunk)
            if last:
                return buffers

    def _send_buffers(self, buffers: list[bytes | memoryview]) -> None:
        """Write the buffers in order with as few system calls as possible (scatter/gather, no copies)."""
        if isinstance(self.sock, ssl.SSLSocket):  # no sendmsg over TLS
            self.sock.sendall(b"".join(buffers))
            return
        pending = [memoryview(b) for b in buffers]
        first = 0
        while first < len(pending):
            sent = self.sock.sendmsg(pending[first : first + IOV_BATCH])
            while first < len(pending) and sent >= len(pending[first]):
                sent -= len(pending[first])
                first += 1
            if sent:
                pending[first] = pending[first][sent:]

    def _read_command(self) -> dict[int, bytes]:
        parts: list[bytes] = []
        while True:
            kind, body = self._read_pdu()
            if kind == 0x07:
                raise AssociationLost("association aborted by the peer")
            if kind != 0x04:
                raise AssociationLost(f"unexpected PDU type 0x{kind:02X} while waiting for a C-STORE-RSP")
            pos = 0
            while pos + 6 <= len(body):
                (length,) = struct.unpack_from(">I", body, pos)
                header = body[pos + 5]
                parts.append(body[pos + 6 : pos + 4 + length])
                pos += 4 + length
                if header & 0x01 and header & 0x02:
                    return parse_command(b"".join(parts))

    # ---------------------------------------------------------------- services

    def store(self, data: bytes, meta: FileMeta) -> int:
        """C-STORE one file's bytes; returns the response status.  KeyError when no context was accepted for it."""
        ctx_id = self.accepted.contexts[(meta.sop_class_uid, meta.transfer_syntax_uid)]
        self._message_id = (self._message_id % 0xFFFF) + 1
        command = _c_store_rq(self._message_id, meta.sop_class_uid, meta.sop_instance_uid)
        # the command and the data set's PDUs in one write: fewer segments and system calls, no copies
        self._send_buffers(
            self._pdus(ctx_id, True, memoryview(command))
            + self._pdus(ctx_id, False, memoryview(data)[meta.dataset_offset :])
        )
        rsp = self._read_command()
        if struct.unpack("<H", rsp.get(0x0100, b"\0\0"))[0] != 0x8001:
            raise AssociationLost("the answer to a C-STORE-RQ is not a C-STORE-RSP")
        if struct.unpack("<H", rsp.get(0x0120, b"\0\0"))[0] != self._message_id:
            raise AssociationLost("C-STORE-RSP for another message id")
        return int(struct.unpack("<H", rsp[0x0900])[0])

    def release(self) -> None:
        try:
            self.sock.sendall(struct.pack(">BBII", 0x05, 0, 4, 0))
            self._read_pdu()  # A-RELEASE-RP (or whatever the peer says last)
        except (OSError, BridgeError):
            pass
        finally:
            self.sock.close()

    def abort(self) -> None:
        try:
            self.sock.sendall(struct.pack(">BBIBBBB", 0x07, 0, 4, 0, 0, 0, 0))
        except OSError:
            pass
        finally:
            self.sock.close()
