"""The ``limits`` on pynetdicom's acceptor (``scp.engine: pynetdicom``); the fast engine's are in :mod:`ingest.dul`.

pynetdicom has the ARTIM and idle timeouts (``acse_timeout``, ``network_timeout``) and ``maximum_associations``,
but no limit per peer, a TLS handshake inside its accept loop (one silent client stalls every other) and no bound
on a DIMSE message it reassembles in memory.  :class:`LimitedAssociationServer` closes the first two and
:class:`MessageBound` the third:

* a connection from an address that already holds ``limits.max_associations_per_peer`` is closed at accept,
  before a thread or a read;
* the TLS handshake runs on the connection's own thread under the ARTIM timeout;
* a message other than a C-STORE whose buffered fragments pass ``limits.max_buffered_bytes`` aborts the
  association (A-ABORT) and its bytes are dropped; a C-STORE dataset past ``limits.max_object_bytes`` is
  dropped as it arrives and answered ``0xC000`` with the reason, like the fast engine.

pynetdicom holds each C-STORE dataset in memory until it is complete (up to ``max_object_bytes``), where the fast
engine streams it to disk: sites receiving very large objects should keep the default ``scp.engine: fast``.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import threading
from io import BytesIO
from typing import TYPE_CHECKING, Any

from pynetdicom.dimse_messages import C_STORE_RQ
from pynetdicom.pdu import P_DATA_TF
from pynetdicom.transport import ThreadedAssociationServer

if TYPE_CHECKING:
    from core.config import LimitsConfig

log = logging.getLogger(__name__)


class Overflowed(BytesIO):
    """Stands for a C-STORE dataset that passed ``limits.max_object_bytes``: counts what arrives, keeps nothing."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def write(self, data: Any) -> int:
        n = len(data)
        self.size += n
        return n


class MessageBound:
    """An ``EVT_PDU_RECV`` handler that bounds what pynetdicom reassembles of one DIMSE message.

    It runs on the association's DUL thread before the P-DATA-TF is added to the message, so the bound holds
    to within one PDU (``maximum_pdu_size``).
    """

    def __init__(self, limits: LimitsConfig) -> None:
        self.max_buffered = limits.max_buffered_bytes
        self.max_object = limits.max_object_bytes

    def __call__(self, event: Any) -> None:
        pdu = event.pdu
        if not isinstance(pdu, P_DATA_TF):
            return
        assoc = event.assoc
        message = assoc.dimse.message
        held = 0
        if message is not None:
            held = message.encoded_command_set.tell()
            if message.data_set is not None:
                held += message.data_set.tell()
        arriving = len(pdu)
        if isinstance(message, C_STORE_RQ):
            if isinstance(message.data_set, Overflowed):
                return
            if held + arriving > self.max_object:
                log.warning(
                    "C-STORE from %s passes limits.max_object_bytes (%d): its bytes are dropped",
                    assoc.requestor.address,
                    self.max_object,
                )
                message.data_set = Overflowed(held)
            return
        if held + arriving > self.max_buffered:
            log.warning(
                "aborting association with %s: a DIMSE message passes limits.max_buffered_bytes (%d)",
                assoc.requestor.address,
                self.max_buffered,
            )
            assoc.dimse.message = None  # let go of what it holds
            assoc.dul.artim_timer.timeout = 0  # after the A-ABORT, close at once (not wait for the peer to)
            assoc.dul.event_queue.put("Evt19")  # ahead of this PDU's Evt10: A-ABORT, the rest is ignored


class LimitedAssociationServer(ThreadedAssociationServer):
    """pynetdicom's threaded acceptor with a limit per peer address and the TLS handshake off the accept loop.

    Built by ``ae.make_server(..., server_class=LimitedAssociationServer, limits=..., tls=...)``; its
    ``ssl_context`` stays ``None`` (the parent would wrap in the accept loop), ``tls`` is used instead.
    """

    daemon_threads = True
    block_on_close = False

    def __init__(self, *args: Any, limits: LimitsConfig, tls: ssl.SSLContext | None = None, **kwargs: Any) -> None:
        self.max_per_peer = limits.max_associations_per_peer
        self.handshake_timeout_s = limits.association_request_timeout_s
        self.tls = tls
        self._peers: dict[str, int] = {}
        self._peers_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def verify_request(self, request: Any, client_address: Any) -> bool:
        """Refuse (close at once) a connection from an address holding ``max_associations_per_peer``."""
        peer = str(client_address[0])
        with self._peers_lock:
            held = self._peers.get(peer, 0)
            if held >= self.max_per_peer:
                crowded = True
            else:
                crowded = False
                self._peers[peer] = held + 1
        if crowded:
            log.warning("connection from %s closed: limits.max_associations_per_peer reached", peer)
            return False
        return True

    def _release(self, peer: str) -> None:
        with self._peers_lock:
            left = self._peers.get(peer, 1) - 1
            if left > 0:
                self._peers[peer] = left
            else:
                self._peers.pop(peer, None)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        """Handshake (TLS), start the association, and hold the peer's slot until it ends."""
        peer = str(client_address[0])
        try:
            sock: socket.socket = request
            if self.tls is not None:
                try:
                    request.settimeout(self.handshake_timeout_s)
                    sock = self.tls.wrap_socket(request, server_side=True)
                    sock.settimeout(None)
                except (OSError, ssl.SSLError) as exc:
                    log.info("connection from %s ended in the TLS handshake: %s", peer, type(exc).__name__)
                    with contextlib.suppress(OSError):
                        request.close()
                    return
            super().process_request_thread(sock, client_address)
            for assoc in self.active_associations:
                if assoc.dul.socket is not None and assoc.dul.socket.socket is sock:
                    artim = threading.Timer(self.handshake_timeout_s, self._artim, args=(assoc, sock, peer))
                    artim.daemon = True
                    artim.start()
                    assoc.join()
                    artim.cancel()
                    break
        finally:
            self._release(peer)

    @staticmethod
    def _artim(assoc: Any, sock: socket.socket, peer: str) -> None:
        """ARTIM as a deadline: pynetdicom's DUL reads a PDU to its end, so a dribbled request would hold it."""
        if assoc.is_alive() and not (assoc.is_established or assoc.is_rejected or assoc.is_aborted):
            log.warning(
                "connection from %s closed: no A-ASSOCIATE-RQ within limits.association_request_timeout_s", peer
            )
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
