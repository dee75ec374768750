"""DICOM C-STORE SCU: one association per batch, proposing exactly what the batch holds.

Status classes (PS3.4 Annex B.2 and PS3.7 Annex C): success and warnings (coercion, elements
discarded) are delivered; "out of resources" (A7xx), "processing failure" (0110) and a lost
association are retried; every other failure (SOP class not supported, data set does not match,
cannot understand, not authorised) is permanent.  An association the PACS rejects is retried, so
a wrong AE title ends dead-lettered with the PACS's reason after ``max_attempts``.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

from pynetdicom import AE
from pynetdicom.association import Association
from pynetdicom.presentation import build_context
from pynetdicom.sop_class import StorageCommitmentPushModel  # type: ignore[attr-defined]

from core.config import Destination
from core.errors import BridgeError
from pacs_bridge._artefact import read_checked
from pacs_bridge._tls import client_context, tls_failure
from pacs_bridge.dimse_scu import AssociationRejected, FileMeta, StoreAssociation, read_file_meta
from pacs_bridge.outcome import AwaitingCommitment, Delivered, Failed, Outcome, Retry
from store.outbox import OutboxItem

log = logging.getLogger(__name__)

#: pynetdicom's limit of presentation contexts in one association request.
MAX_CONTEXTS = 128
_RETRYABLE = {0x0110, 0x0210, 0x0213}


def _classify_status(status: int) -> Outcome:
    """The outcome of one C-STORE response status."""
    if status == 0x0000:
        return Delivered()
    if status in (0x0107, 0x0116) or 0xB000 <= status <= 0xBFFF:
        return Delivered(f"stored with warning 0x{status:04X}")
    reason = f"PACS refused the object: status 0x{status:04X}"
    if 0xA700 <= status <= 0xA7FF or status in _RETRYABLE:
        return Retry(reason)
    return Failed(reason)


#: Files up to this size stay in memory between the check and the C-STORE; larger ones are read again then,
#: so that a batch of large objects never sits in memory at once.
KEEP_BYTES = 1 << 18


@dataclass(frozen=True, slots=True)
class _Prepared:
    item: OutboxItem
    kept: bytes | None
    meta: FileMeta

    @property
    def data(self) -> bytes:
        return self.kept if self.kept is not None else self.item.path.read_bytes()

    @property
    def sop_class_uid(self) -> str:
        return self.meta.sop_class_uid

    @property
    def transfer_syntax_uid(self) -> str:
        return self.meta.transfer_syntax_uid


def _prepare(item: OutboxItem, head: FileMeta | None = None) -> _Prepared | Failed:
    """Read, check against the stored digest and parse one artefact; ``head`` is what its first bytes said."""
    data = read_checked(item)
    if isinstance(data, Failed):
        return data
    try:
        meta = read_file_meta(data)
    except BridgeError as exc:
        return Failed(f"artefact {item.path.name} of item {item.id}: {exc}")
    if item.sop_instance_uid and meta.sop_instance_uid != item.sop_instance_uid:
        return Failed(f"artefact {item.path.name} of item {item.id} holds another SOP Instance UID than stored")
    if head is not None and head != meta:
        return Failed(f"artefact {item.path.name} of item {item.id} changed while it was being sent")
    return _Prepared(item, data if len(data) <= KEEP_BYTES else None, meta)


#: Bytes read to find a file's SOP class and transfer syntax (its file meta group is far shorter).
HEAD_BYTES = 4096


def _head(item: OutboxItem) -> FileMeta | Failed:
    """The file meta of an artefact from its first bytes: enough to propose the association's contexts."""
    try:
        with open(item.path, "rb") as fh:
            head = fh.read(HEAD_BYTES)
    except OSError as exc:
        return Failed(f"artefact {item.path.name} of item {item.id} cannot be read ({exc.strerror or exc})")
    try:
        return read_file_meta(head)
    except BridgeError as exc:
        if len(head) < HEAD_BYTES:  # the whole file was read: it is not what we can send
            return Failed(f"artefact {item.path.name} of item {item.id}: {exc}")
    prepared = _prepare(item)  # a file meta group longer than HEAD_BYTES: parse the whole file
    return prepared if isinstance(prepared, Failed) else prepared.meta


#: A batch's association is kept open this long for the next batch (a PACS may drop idle ones after a while).
KEEP_OPEN_S = 2.0

#: File metas read ahead and kept for their send (beyond it they are dropped: items never sent).
MAX_HEADS_KEPT = 10_000

#: Artefacts read and checked ahead of the one on the wire (each at most KEEP_BYTES in memory).
READ_AHEAD = 8


def _read_ahead(group: Sequence[tuple[OutboxItem, FileMeta]]) -> Iterator[_Prepared | Failed]:
    """Each artefact read and checked on a second thread while the one before it is on the wire.

    Reading and hashing a file releases the GIL, and the sender spends most of its time waiting for
    the PACS's C-STORE-RSP: overlapping the two makes the check nearly free.
    """
    with ThreadPoolExecutor(1, thread_name_prefix="mmdx-send-read") as pool:
        queued: deque[Future[_Prepared | Failed]] = deque()
        rest = iter(group)
        for item, head in islice(rest, READ_AHEAD):
            queued.append(pool.submit(_prepare, item, head))
        while queued:
            done = queued.popleft()
            following = next(rest, None)
            if following is not None:
                queued.append(pool.submit(_prepare, *following))
            yield done.result()
        # an early exit (association lost) cancels what was queued when the pool shuts down


def _no_delay(assoc: Association) -> None:
    """Turn off Nagle's algorithm: pynetdicom leaves it on, and each small DIMSE message would wait for an ACK."""
    sock = getattr(getattr(assoc.dul, "socket", None), "socket", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


#: Called after the stores of a batch with the association and the stored (SOP class, SOP instance) pairs:
#: returns the storage commitment transaction UID, or why the request failed.
CommitRequest = Callable[[Association, Sequence[tuple[str, str]]], "str | Retry"]


class CStoreSender:
    """Sends DICOM artefacts to one PACS by C-STORE; optionally requests storage commitment."""

    def __init__(
        self,
        dest: Destination,
        *,
        calling_ae_title: str,
        commit: CommitRequest | None = None,
    ) -> None:
        assert dest.host and dest.port and dest.ae_title  # Destination validated them
        self.dest = dest
        self.host, self.port, self.called = dest.host, dest.port, dest.ae_title
        self.calling = dest.calling_ae_title or calling_ae_title
        self.commit = commit
        self._tls = client_context(dest.tls)
        self._heads: dict[int, FileMeta] = {}  #: read ahead by the loop's claim thread (item id -> file meta)
        self._kept: tuple[StoreAssociation, float] | None = None  #: the last batch's association, when it ended

    def _ae(self) -> AE:
        ae = AE(ae_title=self.calling)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = self.dest.timeout_s
        ae.connection_timeout = self.dest.timeout_s
        return ae

    def read_ahead(self, items: Sequence[OutboxItem]) -> None:
        """Read the file meta of a batch claimed while the previous one is on the wire (its contexts)."""
        if len(self._heads) > MAX_HEADS_KEPT:  # items read ahead and never sent (their lease was given back)
            self._heads.clear()
        for item in items:
            head = _head(item)
            if not isinstance(head, Failed):  # a failure is found again, and reported, by send
                self._heads[item.id] = head

    def send(self, items: Sequence[OutboxItem]) -> list[Outcome]:
        outcomes: dict[int, Outcome] = {}
        ready: list[tuple[OutboxItem, FileMeta]] = []
        for item in items:
            head = self._heads.pop(item.id, None) or _head(item)
            if isinstance(head, Failed):
                outcomes[item.id] = head
            else:
                ready.append((item, head))
        # one association per group of at most MAX_CONTEXTS distinct (SOP class, transfer syntax) pairs
        while ready:
            pairs: list[tuple[str, str]] = []
            group: list[tuple[OutboxItem, FileMeta]] = []
            rest: list[tuple[OutboxItem, FileMeta]] = []
            for item, head in ready:
                pair = (head.sop_class_uid, head.transfer_syntax_uid)
                if pair in pairs or len(pairs) < MAX_CONTEXTS - 1:
                    if pair not in pairs:
                        pairs.append(pair)
                    group.append((item, head))
                else:
                    rest.append((item, head))
            if self.commit is None:
                outcomes.update(self._send_group_lean(group, pairs))
            else:
                ok: list[_Prepared] = []
                for item, head in group:
                    prepared = _prepare(item, head)
                    if isinstance(prepared, Failed):
                        outcomes[item.id] = prepared
                    else:
                        ok.append(prepared)
                outcomes.update(self._send_group_pynetdicom(ok, pairs))
            ready = rest
        return [outcomes[item.id] for item in items]

    def _associate(self, pairs: Sequence[tuple[str, str]]) -> tuple[StoreAssociation, bool]:
        """The association kept from the previous batch when it proposed these pairs and is recent, else a new
        one; and whether it was kept (raises as :class:`StoreAssociation` does)."""
        kept, self._kept = self._kept, None
        if kept is not None:
            assoc, used_at = kept
            if time.monotonic() - used_at < KEEP_OPEN_S and set(pairs) <= set(assoc.pairs):
                return assoc, True
            assoc.release()
        fresh = StoreAssociation(
            self.host,
            self.port,
            calling=self.calling,
            called=self.called,
            pairs=pairs,
            timeout=self.dest.timeout_s,
            tls=self._tls,
        )
        return fresh, False

    def _send_group_lean(
        self, group: Sequence[tuple[OutboxItem, FileMeta]], pairs: Sequence[tuple[str, str]]
    ) -> dict[int, Outcome]:
        """Over :mod:`pacs_bridge.dimse_scu` (no storage commitment to request); the association stays open for
        the next batch (:data:`KEEP_OPEN_S`), so a burst of batches pays one A-ASSOCIATE as storescu does."""
        where = f"{self.called}@{self.host}:{self.port}"
        try:
            assoc, kept = self._associate(pairs)
        except AssociationRejected as exc:
            return {item.id: Retry(f"{exc} by PACS {where}") for item, _ in group}
        except (OSError, BridgeError) as exc:
            why = tls_failure(exc) or str(exc)
            return {item.id: Retry(f"no association with PACS {where} ({why})") for item, _ in group}
        outcomes: dict[int, Outcome] = {}
        stored = False
        try:
            for n, p in enumerate(_read_ahead(group)):
                if isinstance(p, Failed):
                    outcomes[group[n][0].id] = p
                    continue
                if (p.sop_class_uid, p.transfer_syntax_uid) not in assoc.accepted.contexts:
                    outcomes[p.item.id] = Failed(
                        f"PACS {where} accepted no presentation context for SOP class {p.sop_class_uid} "
                        f"in transfer syntax {p.transfer_syntax_uid}"
                    )
                    continue
                try:
                    status = assoc.store(p.data, p.meta)
                except (OSError, BridgeError) as exc:
                    if kept and not stored:  # the PACS closed the kept association meanwhile: a new one
                        assoc.abort()
                        return self._send_group_lean(group, pairs)
                    lost = f"association with PACS {where} lost mid-batch ({exc})"
                    outcomes.update({item.id: Retry(lost) for item, _ in group[n:]})
                    assoc.abort()
                    return outcomes
                outcomes[p.item.id] = _classify_status(status)
                stored = True
        except BaseException:
            assoc.abort()
            raise
        self._kept = (assoc, time.monotonic())
        return outcomes

    def _send_group_pynetdicom(
        self, group: Sequence[_Prepared], pairs: Sequence[tuple[str, str]]
    ) -> dict[int, Outcome]:
        contexts = [build_context(sop, [ts]) for sop, ts in pairs]
        if self.commit is not None:
            contexts.append(build_context(StorageCommitmentPushModel))
        where = f"{self.called}@{self.host}:{self.port}"
        try:
            assoc = self._ae().associate(
                self.host,
                self.port,
                contexts=contexts,
                ae_title=self.called,
                tls_args=(self._tls, self.host) if self._tls is not None else None,
            )
        except OSError as exc:
            return {p.item.id: Retry(f"cannot reach PACS {where}: {tls_failure(exc) or exc}") for p in group}
        if not assoc.is_established:
            if assoc.is_rejected and assoc.acceptor.primitive is not None:
                prim = assoc.acceptor.primitive
                why = f"association rejected by PACS {where} (result {prim.result}, source {prim.result_source}, "
                why += f"reason {prim.diagnostic})"
            else:  # pynetdicom reports a refused connection as an abort
                why = f"no association with PACS {where} (connection refused, timed out or aborted)"
            return {p.item.id: Retry(why) for p in group}
        _no_delay(assoc)
        outcomes: dict[int, Outcome] = {}
        stored: list[_Prepared] = []
        try:
            for n, p in enumerate(group):
                if not assoc.is_established:
                    outcomes.update(
                        {q.item.id: Retry(f"association with PACS {where} lost mid-batch") for q in group[n:]}
                    )
                    break
                try:
                    status = assoc.send_c_store(Path(p.item.path))
                except ValueError as exc:  # no accepted presentation context for this object
                    outcomes[p.item.id] = Failed(
                        f"PACS {where} accepted no presentation context for SOP class {p.sop_class_uid} "
                        f"in transfer syntax {p.transfer_syntax_uid} ({exc})"
                    )
                    continue
                code = getattr(status, "Status", None)
                if code is None:
                    outcomes[p.item.id] = Retry(f"no C-STORE response from PACS {where} (timeout or abort)")
                    continue
                outcome = _classify_status(int(code))
                outcomes[p.item.id] = outcome
                if isinstance(outcome, Delivered):
                    stored.append(p)
            if stored and self.commit is not None and assoc.is_established:
                refs = [(p.sop_class_uid, p.item.sop_instance_uid or "") for p in stored]
                tx = self.commit(assoc, refs)
                for p in stored:
                    outcomes[p.item.id] = tx if isinstance(tx, Retry) else AwaitingCommitment(tx)
        finally:
            if assoc.is_established:
                assoc.release()
        return outcomes

    def release_idle(self) -> None:
        """Release the association kept for the next batch (the loop calls it when a burst ends)."""
        kept, self._kept = self._kept, None
        if kept is not None:
            kept[0].release()

    def close(self) -> None:
        self.release_idle()
