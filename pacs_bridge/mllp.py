"""HL7 v2 over MLLP: send each ORU^R01 framed, wait for its ACK (original acknowledgment mode).

MSA-1 AA/CA: delivered; AE/CE (application error): retried; AR/CR (rejected): permanent, with
MSA-3 / ERR text kept.  A timeout, a closed connection or an ACK for another message id is
retried.  One connection serves the whole batch.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from collections.abc import Sequence

import hl7

from core.config import Destination
from pacs_bridge._artefact import read_checked
from pacs_bridge._tls import client_context, tls_failure
from pacs_bridge.outcome import Delivered, Failed, Outcome, Retry
from store.outbox import OutboxItem

START, END = b"\x0b", b"\x1c\r"


def frame(message: bytes) -> bytes:
    """MLLP envelope: <VT> message <FS><CR>."""
    return START + message + END


def _read_frame(sock: socket.socket | ssl.SSLSocket, limit: int = 1 << 20) -> bytes:
    """One MLLP frame's payload; raises ConnectionError if the peer closes first."""
    buf = bytearray()
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed before the end of the MLLP frame")
        buf += chunk
        end = buf.find(END)
        if end >= 0:
            start = buf.find(START)
            return bytes(buf[start + 1 if start >= 0 else 0 : end])
        if len(buf) > limit:
            raise ConnectionError("MLLP frame exceeds 1 MiB")


def control_id(message: bytes) -> str:
    """MSH-10 of an ER7 message."""
    first = message.split(b"\r", 1)[0].decode("utf-8", "replace")
    fields = first.split(first[3] if len(first) > 3 else "|")
    return fields[9] if len(fields) > 9 else ""


def _judge_ack(ack: bytes, sent_id: str, where: str) -> Outcome:
    """The outcome an ACK says for the message ``sent_id``."""
    try:
        msg = hl7.parse(ack.decode("utf-8", "replace").replace("\n", "\r"))
        msa = msg.segment("MSA")
    except (KeyError, IndexError, ValueError) as exc:
        return Retry(f"{where}: unreadable ACK ({exc})")
    code, acked = str(msa[1]), str(msa[2])
    if acked != sent_id:
        return Retry(f"{where}: ACK for message {acked!r}, expected {sent_id!r}")
    text = str(msa[3]) if len(msa) > 3 else ""
    try:
        err = msg.segment("ERR")
        text = text or str(err)
    except KeyError:
        pass
    if code in ("AA", "CA"):
        return Delivered(f"{where}: {code}")
    if code in ("AE", "CE"):
        return Retry(f"{where}: application error {code}" + (f": {text}" if text else ""))
    if code in ("AR", "CR"):
        return Failed(f"{where}: rejected {code}" + (f": {text}" if text else ""))
    return Retry(f"{where}: unknown acknowledgment code {code!r}")


class MllpSender:
    """Sends ORU messages to one RIS/EHR interface engine."""

    def __init__(self, dest: Destination) -> None:
        assert dest.host and dest.port
        self.host, self.port, self.timeout = dest.host, dest.port, dest.timeout_s
        self.where = f"MLLP {dest.host}:{dest.port}"
        self._tls = client_context(dest.tls)

    def _connect(self) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self._tls is not None:
            return self._tls.wrap_socket(sock, server_hostname=self.host)
        return sock

    def send(self, items: Sequence[OutboxItem]) -> list[Outcome]:
        out: list[Outcome] = []
        sock: socket.socket | None = None
        try:
            for item in items:
                data = read_checked(item)
                if isinstance(data, Failed):
                    out.append(data)
                    continue
                try:
                    if sock is None:
                        sock = self._connect()
                    sock.sendall(frame(data))
                    ack = _read_frame(sock)
                except TimeoutError:
                    out.append(Retry(f"{self.where}: no ACK within {self.timeout:g} s"))
                    _drop(sock)
                    sock = None
                    continue
                except OSError as exc:
                    out.append(Retry(f"{self.where}: {tls_failure(exc) or exc.strerror or exc}"))
                    _drop(sock)
                    sock = None
                    continue
                out.append(_judge_ack(ack, control_id(data), self.where))
        finally:
            _drop(sock)
        return out

    def close(self) -> None:
        return None


def _drop(sock: socket.socket | None) -> None:
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.close()
