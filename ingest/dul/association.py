"""One accepted association, served on its own thread: PDU reading, ARTIM, negotiation, DIMSE reassembly.

This is the receive hot path.  The socket is read in large chunks and every PDU, PDV and dataset
fragment is a ``memoryview`` into them, never copied again; the per-PDU loop lives in :meth:`Association._serve`
and :meth:`Association._stream_data` with no function layer between the socket and the handler's sink.
"""

from __future__ import annotations

import logging
import socket
import time
from dataclasses import dataclass, field

import numpy

from ingest.dul import acse
from ingest.dul.acse import VERIFICATION, Context
from ingest.dul.dimse import (
    AFFECTED_SOP_CLASS_UID,
    AFFECTED_SOP_INSTANCE_UID,
    C_ECHO_RQ,
    C_ECHO_RSP,
    C_STORE_RQ,
    C_STORE_RSP,
    COMMAND_DATA_SET_TYPE,
    COMMAND_FIELD,
    MAX_COMMAND_BYTES,
    MESSAGE_ID,
    NO_DATASET,
    SUCCESS,
    SUPPORTED_COMMANDS,
    StoreHandler,
    StoreSink,
    StreamingStoreHandler,
    encode_response,
    file_bytes,
    file_head,
    parse_command,
    ui_value,
    us_value,
)
from ingest.dul.pdu import (
    A_ABORT,
    A_ASSOCIATE_RQ,
    A_RELEASE_RQ,
    DATA_PDU,
    ITEM_HEADER,
    MAX_ASSOCIATE_RQ_LENGTH,
    P_DATA_TF,
    PDU_HEADER,
    PDU_TYPES,
    PDV_COMMAND,
    PDV_HEADER,
    PDV_LAST,
    PRESENTATION_CONTEXT_RQ_ITEM,
    RELEASE_RP,
    UNLIMITED_PDU_CAP,
    USER_INFORMATION_ITEM,
    ProtocolError,
    ae_title,
    p_data,
)

log = logging.getLogger(__name__)

#: The least the socket is asked for at once (see :meth:`Association._recv_exact`).
READ_CHUNK = 256 << 10


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
        self.contexts: dict[int, Context] = {}
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

        The socket is read in chunks of at least ``READ_CHUNK`` bytes: while
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
            view = numpy.empty(max(n, READ_CHUNK), dtype=numpy.uint8).data
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

    def read_pdu(self) -> tuple[int, memoryview]:
        """The next PDU: its type and body (a view into the read chunk)."""
        if self._end - self._pos < 6:
            self._fill(6)
        pdu_type, _, length = PDU_HEADER.unpack_from(self._view, self._pos)
        if pdu_type not in PDU_TYPES:
            raise ProtocolError(f"unknown PDU type 0x{pdu_type:02X} (not DICOM?)")
        # Lenient on purpose: a PDU above the negotiated maximum is a peer bug we tolerate, up to a hard
        # memory cap (what stops a hostile or garbled length from allocating gigabytes).
        limit = MAX_ASSOCIATE_RQ_LENGTH if pdu_type == A_ASSOCIATE_RQ else max(self.config.max_pdu, UNLIMITED_PDU_CAP)
        if length > limit:
            raise ProtocolError(f"PDU of {length} bytes exceeds the limit of {limit}")
        self._pos += 6
        return pdu_type, self._recv_exact(length)

    # --------------------------------------------------------------- negotiation

    def reject(self, result: int, source: int, reason: int) -> None:
        """Answer the A-ASSOCIATE-RQ with an A-ASSOCIATE-RJ."""
        self.sock.sendall(acse.reject(result, source, reason))

    def negotiate(self) -> bool:
        """Read the A-ASSOCIATE-RQ and answer AC or RJ; True when accepted."""
        self.sock.settimeout(self.config.acse_timeout_s)
        self._deadline = time.monotonic() + self.config.acse_timeout_s
        try:
            pdu_type, body = self.read_pdu()
        finally:
            self._deadline = None
        if pdu_type != A_ASSOCIATE_RQ:
            raise ProtocolError(f"expected A-ASSOCIATE-RQ, got PDU type 0x{pdu_type:02X}")
        if len(body) < acse.ASSOCIATE_RQ_FIXED_LENGTH:
            raise ProtocolError("A-ASSOCIATE-RQ too short")
        called, self.calling = ae_title(body[4:20]), ae_title(body[20:36])
        proposals: list[acse.Proposal] = []
        pos = acse.ASSOCIATE_RQ_FIXED_LENGTH
        while pos + 4 <= len(body):
            item_type, _, length = ITEM_HEADER.unpack_from(body, pos)
            payload = body[pos + 4 : pos + 4 + length]
            pos += 4 + length
            if item_type == PRESENTATION_CONTEXT_RQ_ITEM:
                proposals.append(acse.parse_presentation_context(payload))
            elif item_type == USER_INFORMATION_ITEM:
                max_length = acse.maximum_length(payload)
                if max_length is not None:
                    self.peer_max_pdu = max_length
        if self.config.allowed_calling and self.calling not in self.config.allowed_calling:
            log.warning("association rejected: calling AE %s not allowed (%s)", self.calling, self.peer)
            self.reject(acse.REJECTED_PERMANENT, acse.SOURCE_SERVICE_USER, acse.REASON_CALLING_AE_NOT_RECOGNIZED)
            return False
        if called != self.config.ae_title:
            log.warning("association rejected: called AE %s is not ours (%s)", called, self.peer)
            self.reject(acse.REJECTED_PERMANENT, acse.SOURCE_SERVICE_USER, acse.REASON_CALLED_AE_NOT_RECOGNIZED)
            return False
        config = self.config
        answer, contexts = acse.accept(
            proposals,
            config.storage_sop_classes,
            config.transfer_syntaxes,
            config.ae_title,
            self.calling,
            config.max_pdu,
        )
        self.contexts.update(contexts)
        self.sock.sendall(answer)
        self.sock.settimeout(self.config.network_timeout_s)
        log.info("association accepted from %s@%s", self.calling, self.peer)
        return True

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
            pdu_type, body = self.read_pdu()
            if pdu_type == A_RELEASE_RQ:
                self.sock.sendall(RELEASE_RP)
                log.info("association released by %s@%s: %s", self.calling, self.peer, self.summary())
                return
            if pdu_type == A_ABORT:
                log.warning("association aborted by %s@%s: %s", self.calling, self.peer, self.summary())
                return
            if pdu_type != P_DATA_TF:
                raise ProtocolError(f"unexpected PDU type 0x{pdu_type:02X} in an established association")
            pos, end = 0, len(body)
            while pos < end:
                if pos + 6 > end:
                    raise ProtocolError("truncated PDV item")
                length, context_id, control = PDV_HEADER.unpack_from(body, pos)
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
                if control & PDV_COMMAND:
                    message.command.append(fragment)
                    message.buffered += len(fragment)
                    if message.buffered > MAX_COMMAND_BYTES:
                        raise ProtocolError(f"command set longer than {MAX_COMMAND_BYTES} bytes")
                    if control & PDV_LAST:
                        message.fields = parse_command(b"".join(message.command))
                        message.command_done = True
                        message.buffered = 0
                        command = us_value(message.fields, COMMAND_FIELD)
                        if command not in SUPPORTED_COMMANDS:  # refused before any dataset is buffered
                            raise ProtocolError(f"unsupported DIMSE command 0x{command or 0:04X}")
                        if us_value(message.fields, COMMAND_DATA_SET_TYPE) == NO_DATASET:
                            self._dispatch(message)
                            message = self._message = None
                        else:
                            self._open_sink(message)
                else:
                    if not message.command_done:
                        raise ProtocolError("dataset fragment before the command set was complete")
                    if message.sink is not None:
                        message.sink.add(fragment, bool(control & PDV_LAST))
                    else:
                        message.buffered += len(fragment)
                        if message.buffered > self.config.max_buffered_bytes:
                            raise ProtocolError(
                                f"dataset passes limits.max_buffered_bytes ({self.config.max_buffered_bytes})"
                            )
                        message.data.append(fragment)
                    if control & PDV_LAST:
                        self._dispatch(message)
                        message = self._message = None

    def _stream_data(self, message: _Message) -> bool:
        """Hand the sink, in one call, the dataset PDUs of ``message`` that are already read; True at the last.

        Takes only the shape storage SCUs send (one dataset PDV per P-DATA-TF,
        on the message's context), complete in the buffer; anything else, and
        every check that fails, is left to the general loop, which reports it.
        """
        view, pos, end = self._view, self._pos, self._end
        context, unpack = message.context_id, DATA_PDU.unpack_from
        pieces: list[memoryview] = []
        last = False
        while end - pos >= 12:
            pdu_type, _, pdu_length, pdv_length, context_id, control = unpack(view, pos)
            stop = pos + 6 + pdu_length
            if (
                pdu_type != P_DATA_TF
                or pdv_length + 4 != pdu_length
                or pdv_length < 2
                or context_id != context
                or control & PDV_COMMAND
                or stop > end
            ):
                break
            pieces.append(view[pos + 12 : stop])
            pos = stop
            if control & PDV_LAST:
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
        if begin is None or us_value(message.fields, COMMAND_FIELD) != C_STORE_RQ:
            return
        context = self.contexts[message.context_id]
        sop_class = ui_value(message.fields, AFFECTED_SOP_CLASS_UID) or context.abstract_syntax
        sop_instance = ui_value(message.fields, AFFECTED_SOP_INSTANCE_UID)
        head = file_head(sop_class, sop_instance, context.transfer_syntax, self.calling)
        message.sink = begin(head, self.calling, context.transfer_syntax, sop_instance)

    def _dispatch(self, message: _Message) -> None:
        fields = message.fields
        command = us_value(fields, COMMAND_FIELD)
        message_id = us_value(fields, MESSAGE_ID) or 0
        context = self.contexts[message.context_id]
        if command == C_ECHO_RQ:
            rsp = encode_response(C_ECHO_RSP, message_id, VERIFICATION, None, SUCCESS)
        elif command == C_STORE_RQ:
            sop_class = ui_value(fields, AFFECTED_SOP_CLASS_UID) or context.abstract_syntax
            sop_instance = ui_value(fields, AFFECTED_SOP_INSTANCE_UID)
            if message.sink is not None:
                sink, message.sink = message.sink, None
                status = sink.finish()
            else:
                data = file_bytes(sop_class, sop_instance, context.transfer_syntax, self.calling, message.data)
                message.data.clear()
                handler: StoreHandler = self.handler  # type: ignore[assignment]
                status = handler(data, self.calling, context.transfer_syntax, sop_instance)
            self.statuses[status] = self.statuses.get(status, 0) + 1
            if log.isEnabledFor(logging.DEBUG):
                log.debug("C-STORE %s from %s: 0x%04X", sop_instance, self.calling, status)
            rsp = encode_response(C_STORE_RSP, message_id, sop_class, sop_instance, status)
        else:
            raise ProtocolError(f"unsupported DIMSE command 0x{command or 0:04X}")
        self.sock.sendall(p_data(message.context_id, rsp))
