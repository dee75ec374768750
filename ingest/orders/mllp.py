"""A minimal MLLP listener: one thread per connection, one acknowledgement per framed message.

MLLP (HL7 v2 over TCP) wraps each message in 0x0B ... 0x1C 0x0D.  The handler
turns a message into its ACK; the listener only frames, so it is tested with
real sockets on loopback and knows nothing of orders.
"""

from __future__ import annotations

import logging
import socket
import socketserver
import threading
from collections.abc import Callable

from core.errors import IngestError

log = logging.getLogger(__name__)

START = b"\x0b"
END = b"\x1c\x0d"
#: a frame larger than this is refused and the connection closed (a stuck or hostile peer)
MAX_MESSAGE_BYTES = 8 * 1024 * 1024

Handler = Callable[[bytes], bytes]


def frame(message: bytes) -> bytes:
    """Wrap one message in MLLP framing."""
    if START in message or b"\x1c" in message:
        raise IngestError("MLLP: the message contains a framing byte (0x0B or 0x1C)")
    return START + message + END


def split_frames(buffer: bytearray) -> list[bytes]:
    """Take the complete frames out of ``buffer`` (bytes before a start byte are dropped); the rest stays."""
    out: list[bytes] = []
    while True:
        start = buffer.find(START)
        if start < 0:
            buffer.clear()
            return out
        end = buffer.find(END, start + 1)
        if end < 0:
            del buffer[:start]
            if len(buffer) > MAX_MESSAGE_BYTES:
                raise IngestError(f"MLLP: frame larger than {MAX_MESSAGE_BYTES} bytes without a terminator")
            return out
        out.append(bytes(buffer[start + 1 : end]))
        del buffer[: end + len(END)]


class _Connection(socketserver.BaseRequestHandler):
    server: MllpServer

    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.settimeout(self.server.idle_timeout_s)
        buffer = bytearray()
        while True:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                return
            if not chunk:
                return
            buffer += chunk
            try:
                messages = split_frames(buffer)
            except IngestError as exc:
                log.warning("MLLP peer %s: %s; closing", self.client_address[0], exc)
                return
            for message in messages:
                sock.sendall(frame(self.server.handler(message)))


class MllpServer(socketserver.ThreadingTCPServer):
    """``MllpServer((host, port), handler)``; ``serve_forever()`` or :meth:`start` in a thread."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: Handler, *, idle_timeout_s: float = 300.0) -> None:
        self.handler = handler
        self.idle_timeout_s = idle_timeout_s
        super().__init__(address, _Connection)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def start(self) -> threading.Thread:
        """Serve in a daemon thread (tests, the service); stop with ``shutdown()`` + ``server_close()``."""
        thread = threading.Thread(target=self.serve_forever, name="mllp", daemon=True)
        thread.start()
        return thread


def send(host: str, port: int, message: bytes, *, timeout_s: float = 30.0) -> bytes:
    """Send one message and return the peer's (unframed) answer."""
    with socket.create_connection((host, port), timeout=timeout_s) as sock:
        sock.sendall(frame(message))
        buffer = bytearray()
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                raise IngestError(f"MLLP {host}:{port}: connection closed before the answer")
            buffer += chunk
            answers = split_frames(buffer)
            if answers:
                return answers[0]
