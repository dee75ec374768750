"""The fast engine's server loop: the listening socket, one thread per association, the connection limits.

A connection must send its A-ASSOCIATE-RQ within the ARTIM timeout and then something at least every
idle timeout (:class:`~ingest.dul.association.AcceptorConfig`); one address holds at most ``max_per_peer``
connections (so idle connections from one host cannot fill ``max_associations`` before any AE check), and
past ``max_associations`` a request is rejected as transient.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import threading

from ingest.dul import acse
from ingest.dul.association import AcceptorConfig, Association
from ingest.dul.dimse import StoreHandler, StreamingStoreHandler
from ingest.dul.pdu import ProtocolError, abort

log = logging.getLogger(__name__)


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
            if busy:
                assoc.sock.settimeout(self.config.acse_timeout_s)
                assoc.read_pdu()
                assoc.reject(
                    acse.REJECTED_TRANSIENT, acse.SOURCE_SERVICE_PROVIDER_PRESENTATION, acse.REASON_LOCAL_LIMIT_EXCEEDED
                )
                return
            if assoc.negotiate():
                assoc.serve()
        except ProtocolError as exc:
            log.warning("aborting association with %s: %s", addr[0], exc)
            with contextlib.suppress(OSError):
                sock.sendall(abort())
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
