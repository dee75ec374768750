"""The DICOM Storage SCP: C-ECHO and C-STORE over DIMSE (pynetdicom), optionally TLS.

Each C-STORE is parsed, written atomically and indexed before its status is
returned (see :mod:`ingest.receive`); a failure is answered with the DIMSE
status that tells the sender what to do (``0xA700`` retry later, ``0xC000``
do not retry) and the server goes on serving.  Associations run on their own
threads, up to ``scp.max_associations`` at once.  Calling AE titles outside
``scp.allowed_calling_aes`` are refused at association time with
A-ASSOCIATE-RJ (rejected-permanent, service-user, calling AE title not
recognised).  Log lines name AE titles, addresses and UIDs only: never
patient demographics.
"""

from __future__ import annotations

import logging
import ssl
import threading
from typing import TYPE_CHECKING, Any

from pynetdicom import AE, evt
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from pynetdicom.transport import ThreadedAssociationServer

from core.errors import ConfigError
from ingest.dul import AcceptorConfig, UpperLayerServer
from ingest.filestore import FileStore
from ingest.receive import Incoming, Outcome, Received, Receiver
from ingest.scp_limits import LimitedAssociationServer, MessageBound, Overflowed

if TYPE_CHECKING:
    from core.config import Settings, TlsConfig
    from store.db import Database

log = logging.getLogger(__name__)

#: Storage SOP classes the pipeline consumes (images, SR, SEG, ECG waveforms, PDF, KOS).
STORAGE_SOP_CLASSES: tuple[str, ...] = (
    "1.2.840.10008.5.1.4.1.1.1",  # Computed Radiography
    "1.2.840.10008.5.1.4.1.1.1.1",  # Digital X-Ray, for presentation
    "1.2.840.10008.5.1.4.1.1.1.1.1",  # Digital X-Ray, for processing
    "1.2.840.10008.5.1.4.1.1.1.2",  # Digital Mammography X-Ray, for presentation
    "1.2.840.10008.5.1.4.1.1.2",  # CT
    "1.2.840.10008.5.1.4.1.1.2.1",  # Enhanced CT
    "1.2.840.10008.5.1.4.1.1.4",  # MR
    "1.2.840.10008.5.1.4.1.1.4.1",  # Enhanced MR
    "1.2.840.10008.5.1.4.1.1.6.1",  # Ultrasound
    "1.2.840.10008.5.1.4.1.1.3.1",  # Ultrasound multi-frame
    "1.2.840.10008.5.1.4.1.1.7",  # Secondary Capture
    "1.2.840.10008.5.1.4.1.1.7.1",  # Multi-frame single bit SC
    "1.2.840.10008.5.1.4.1.1.7.2",  # Multi-frame grayscale byte SC
    "1.2.840.10008.5.1.4.1.1.7.3",  # Multi-frame grayscale word SC
    "1.2.840.10008.5.1.4.1.1.7.4",  # Multi-frame true colour SC
    "1.2.840.10008.5.1.4.1.1.88.11",  # Basic Text SR
    "1.2.840.10008.5.1.4.1.1.88.22",  # Enhanced SR
    "1.2.840.10008.5.1.4.1.1.88.33",  # Comprehensive SR
    "1.2.840.10008.5.1.4.1.1.88.34",  # Comprehensive 3D SR
    "1.2.840.10008.5.1.4.1.1.88.59",  # Key Object Selection
    "1.2.840.10008.5.1.4.1.1.66.4",  # Segmentation
    "1.2.840.10008.5.1.4.1.1.9.1.1",  # 12-lead ECG waveform
    "1.2.840.10008.5.1.4.1.1.9.1.2",  # General ECG waveform
    "1.2.840.10008.5.1.4.1.1.9.1.3",  # Ambulatory ECG waveform
    "1.2.840.10008.5.1.4.1.1.104.1",  # Encapsulated PDF
)

#: Transfer syntaxes accepted for every storage SOP class.
TRANSFER_SYNTAXES: tuple[str, ...] = (
    "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
    "1.2.840.10008.1.2",  # Implicit VR Little Endian
    "1.2.840.10008.1.2.1.99",  # Deflated Explicit VR Little Endian
    "1.2.840.10008.1.2.2",  # Explicit VR Big Endian (retired, still sent by old modalities)
    "1.2.840.10008.1.2.4.50",  # JPEG Baseline
    "1.2.840.10008.1.2.4.51",  # JPEG Extended
    "1.2.840.10008.1.2.4.57",  # JPEG Lossless
    "1.2.840.10008.1.2.4.70",  # JPEG Lossless SV1
    "1.2.840.10008.1.2.4.80",  # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.81",  # JPEG-LS Near-Lossless
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 Lossless
    "1.2.840.10008.1.2.4.91",  # JPEG 2000
    "1.2.840.10008.1.2.4.201",  # HTJ2K Lossless
    "1.2.840.10008.1.2.4.202",  # HTJ2K Lossless RPCL
    "1.2.840.10008.1.2.4.203",  # HTJ2K
    "1.2.840.10008.1.2.5",  # RLE Lossless
)

#: DIMSE statuses returned by the C-STORE handler (PS3.4 B.2.3 / PS3.7 C).
STATUS_SUCCESS = 0x0000
STATUS_OUT_OF_RESOURCES = 0xA700
STATUS_CANNOT_UNDERSTAND = 0xC000
STATUS_PROCESSING_FAILURE = 0x0110


def _tls_server_context(tls: TlsConfig) -> ssl.SSLContext:
    """A server-side TLS context from the configured certificate (and CA bundle for client certificates).

    Raises
    ------
    ConfigError
        A file is missing or does not hold a usable certificate/key.
    """
    if tls.certificate is None or tls.private_key is None:
        raise ConfigError("scp.tls: certificate and private_key are required when TLS is enabled")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(str(tls.certificate), str(tls.private_key))
        if tls.ca_certificates is not None:
            ctx.load_verify_locations(str(tls.ca_certificates))
            ctx.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"scp.tls: cannot load certificate/key ({exc})") from None
    return ctx


def status_for(received: Received) -> int:
    """The DIMSE C-STORE status for an outcome."""
    if received.outcome.acknowledged:
        return STATUS_SUCCESS
    if received.outcome is Outcome.REJECTED:
        return STATUS_CANNOT_UNDERSTAND
    return STATUS_OUT_OF_RESOURCES


class StorageServer:
    """mmdx's Storage SCP.

    Parameters
    ----------
    settings:
        ``scp`` (AE title, host, port, allow-list, TLS, max associations) and
        ``storage`` (store and quarantine folders, fsync) are used.
    db:
        The index database.
    host, port, ae_title:
        Override the configuration (CLI flags, tests: ``port=0`` binds a free port).
    max_pdu:
        Largest PDU we announce (bytes; 0 = unlimited).
    engine:
        ``pynetdicom`` or ``fast`` (``ingest.dul``); default ``scp.engine``.
    recover:
        At start, re-index stored files the index lacks (:meth:`ingest.receive.Receiver.recover`), in the background.
    """

    def __init__(
        self,
        settings: Settings,
        db: Database,
        *,
        host: str | None = None,
        port: int | None = None,
        ae_title: str | None = None,
        max_pdu: int | None = None,
        engine: str | None = None,
        recover: bool = True,
    ) -> None:
        self.settings = settings
        self.host = host or settings.scp.host
        self._port = settings.scp.port if port is None else port
        self.ae_title = ae_title or settings.scp.ae_title
        store = FileStore(settings.storage.store_dir, fsync=settings.storage.fsync)
        self.receiver = Receiver(store, db, settings.storage.quarantine_dir, limits=settings.limits)
        self._ssl = _tls_server_context(settings.scp.tls) if settings.scp.tls.enabled else None
        self.engine = engine or settings.scp.engine
        if self.engine not in ("pynetdicom", "fast"):
            raise ConfigError(f"scp.engine: expected 'pynetdicom' or 'fast', got {self.engine!r}")
        self._max_pdu = 16384 if max_pdu is None else max_pdu
        self._pdu_asked = max_pdu
        self._server: ThreadedAssociationServer | UpperLayerServer | None = None
        self._stopped = threading.Event()
        self.recover = recover
        self.recovered = 0
        self.recovery_done = threading.Event()
        self._recovery: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port (the real one once started with ``port=0``)."""
        if self._server is not None:
            return int(self._server.server_address[1])
        return self._port

    @property
    def running(self) -> bool:
        return self._server is not None

    def _pynetdicom_ae(self) -> AE:
        """The pynetdicom acceptor, built only when ``scp.engine: pynetdicom`` runs."""
        settings = self.settings
        ae = AE(ae_title=self.ae_title)
        ae.maximum_associations = settings.scp.max_associations
        # the timeouts are pynetdicom's; the per-peer and message limits: ingest.scp_limits
        ae.acse_timeout = settings.limits.association_request_timeout_s
        ae.network_timeout = settings.limits.idle_timeout_s
        ae.dimse_timeout = settings.limits.idle_timeout_s
        ae.require_called_aet = True
        if settings.scp.allowed_calling_aes:
            ae.require_calling_aet = list(settings.scp.allowed_calling_aes)
        if self._pdu_asked is not None:
            ae.maximum_pdu_size = self._pdu_asked
        ae.add_supported_context(Verification)
        for sop in STORAGE_SOP_CLASSES:
            ae.add_supported_context(sop, list(TRANSFER_SYNTAXES))
        return ae

    def _handlers(self) -> list[Any]:
        return [
            (evt.EVT_C_ECHO, self._on_echo),
            (evt.EVT_C_STORE, self._on_store),
            (evt.EVT_ACCEPTED, self._on_accepted),
            (evt.EVT_REJECTED, self._on_rejected),
            (evt.EVT_RELEASED, self._on_released),
            (evt.EVT_ABORTED, self._on_aborted),
            (evt.EVT_PDU_RECV, MessageBound(self.settings.limits)),
        ]

    def start(self, block: bool = False) -> None:
        """Listen; with ``block=True`` serve in this thread until :meth:`stop` (from a signal handler or thread)."""
        if self._server is not None:
            raise RuntimeError("StorageServer already started")
        self._stopped.clear()
        self.receiver.store.sweep_temporary()
        self.receiver.store.keep_spares()
        limits = self.settings.limits
        if self.engine == "fast":
            config = AcceptorConfig(
                ae_title=self.ae_title,
                allowed_calling=tuple(self.settings.scp.allowed_calling_aes),
                storage_sop_classes=frozenset(STORAGE_SOP_CLASSES),
                transfer_syntaxes=TRANSFER_SYNTAXES,
                max_pdu=self._max_pdu,
                acse_timeout_s=limits.association_request_timeout_s,
                network_timeout_s=limits.idle_timeout_s,
                max_buffered_bytes=limits.max_buffered_bytes,
                max_per_peer=limits.max_associations_per_peer,
            )
            server = UpperLayerServer(
                (self.host, self._port),
                config,
                _FastStore(self.receiver),
                ssl_context=self._ssl,
                max_associations=self.settings.scp.max_associations,
            )
            server.start()
            self._server = server
        else:
            ae = self._pynetdicom_ae()
            acceptor = ae.make_server(
                (self.host, self._port),
                evt_handlers=self._handlers(),
                server_class=LimitedAssociationServer,
                limits=limits,
                tls=self._ssl,
            )
            ae._servers.append(acceptor)  # as ae.start_server does: ae.shutdown and acceptor.shutdown find it there
            threading.Thread(target=acceptor.serve_forever, name="mmdx-scp-acceptor", daemon=True).start()
            self._server = acceptor
        if self.recover:
            self._recovery = threading.Thread(target=self._recover, name="mmdx-scp-recovery", daemon=True)
            self._recovery.start()
        log.info(
            "SCP %s listening on %s:%d (engine %s, TLS %s, %d allowed calling AEs)",
            self.ae_title,
            self.host,
            self.port,
            self.engine,
            "on" if self._ssl else "off",
            len(self.settings.scp.allowed_calling_aes),
        )
        if block:
            self.wait()

    def _recover(self) -> None:
        try:
            self.recovered = self.receiver.recover()
        except Exception as exc:  # recovery must never stop the SCP
            log.error("recovery of unindexed stored objects failed: %s", type(exc).__name__)
        finally:
            self.recovery_done.set()

    def wait(self, timeout: float | None = None) -> None:
        """Block until :meth:`stop` has been called."""
        self._stopped.wait(timeout)

    def stop(self) -> None:
        """Stop listening and close open associations."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            if isinstance(server, ThreadedAssociationServer):
                for assoc in server.active_associations:
                    assoc.abort()
            log.info("SCP %s stopped", self.ae_title)
        self.receiver.store.close()
        self._stopped.set()

    def __enter__(self) -> StorageServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ handlers

    @staticmethod
    def _peer(event: Any) -> str:
        req = event.assoc.requestor
        return f"{req.ae_title.strip()}@{req.address}:{req.port}"

    def _on_echo(self, event: Any) -> int:
        log.debug("C-ECHO from %s", self._peer(event))
        return STATUS_SUCCESS

    def _on_store(self, event: Any) -> int:
        calling = event.assoc.requestor.ae_title.strip()
        dropped = event.request.DataSet
        if isinstance(dropped, Overflowed):  # its bytes were dropped as they arrived (ingest.scp_limits)
            reason = f"scp:{calling}: object of {dropped.size} bytes exceeds limits.max_object_bytes"
            return status_for(self.receiver.reject(reason, source=f"scp:{calling}"))
        try:
            data = event.encoded_dataset(include_meta=True)
            expected = str(event.request.AffectedSOPInstanceUID or "") or None
            ts = str(event.context.transfer_syntax)
        except Exception as exc:  # pynetdicom could not give us the bytes: cannot understand
            log.warning("C-STORE from %s: unreadable request (%s)", calling, type(exc).__name__)
            return STATUS_CANNOT_UNDERSTAND
        try:
            received = self.receiver.receive(
                data, source=f"scp:{calling}", transfer_syntax_uid=ts, expected_sop_instance_uid=expected
            )
        except Exception as exc:  # never let one object take the server down
            log.exception("C-STORE from %s: unexpected failure (%s)", calling, type(exc).__name__)
            return STATUS_OUT_OF_RESOURCES
        status = status_for(received)
        log.debug("C-STORE %s from %s: %s (0x%04X)", received.sop_instance_uid, calling, received.outcome.value, status)
        return status

    def _on_accepted(self, event: Any) -> None:
        log.info("association accepted from %s", self._peer(event))

    def _on_rejected(self, event: Any) -> None:
        log.warning("association rejected from %s", self._peer(event))

    def _on_released(self, event: Any) -> None:
        log.info("association released by %s", self._peer(event))

    def _on_aborted(self, event: Any) -> None:
        log.warning("association aborted with %s", self._peer(event))


class _FastStore:
    """The fast engine's store handler: each dataset streams into the receiver as it arrives."""

    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver

    def begin(self, head: bytes, calling: str, transfer_syntax: str, sop_instance_uid: str) -> _FastSink:
        incoming = self.receiver.accept(
            head,
            source=f"scp:{calling}",
            transfer_syntax_uid=transfer_syntax,
            expected_sop_instance_uid=sop_instance_uid or None,
        )
        return _FastSink(incoming, calling)


class _FastSink:
    def __init__(self, incoming: Incoming, calling: str) -> None:
        self.incoming = incoming
        self.calling = calling

    def add(self, piece: memoryview, last: bool) -> None:
        self.incoming.add(piece, last=last)

    def add_many(self, pieces: list[memoryview], last: bool) -> None:
        self.incoming.add_many(pieces, last=last)

    def finish(self) -> int:
        try:
            return status_for(self.incoming.finish())
        except Exception as exc:  # never let one object take the server down
            log.exception("C-STORE from %s: unexpected failure (%s)", self.calling, type(exc).__name__)
            return STATUS_OUT_OF_RESOURCES

    def abort(self) -> None:
        self.incoming.abort()
