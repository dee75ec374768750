"""DICOM Storage Commitment Push Model (PS3.4 Annex J) as the SCU.

After the C-STOREs of a batch, :func:`request_commitment` sends one N-ACTION naming the stored
instances under a new Transaction UID; the items wait in ``awaiting_commitment``.  The PACS
answers later with an N-EVENT-REPORT on a new association to :class:`CommitmentListener`
(``bridge.commitment_ae_title`` at ``bridge.commitment_host:commitment_port``, which the PACS must
know), with the requestor in the SCP role (role selection).  The report is matched to the
items by its Transaction UID: committed instances are delivered, failed ones retried.  An
unanswered request is retried by the loop after the destination's ``commitment_timeout_s``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.association import Association
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StorageCommitmentPushModel,
    StorageCommitmentPushModelInstance,
)

from core.config import Settings
from core.identifiers import Clock, new_uid
from pacs_bridge.outcome import Retry
from store import outbox
from store.db import Database

log = logging.getLogger(__name__)

#: Failure Reason (0008,1197) values, PS3.3 C.14.1.1: a resource shortage is worth retrying.
_RETRYABLE_REASONS = {0x0110, 0x0213}


def request_commitment(assoc: Association, refs: Sequence[tuple[str, str]], uid_root: str) -> str | Retry:
    """Send the N-ACTION (Request Storage Commitment) for ``refs``; the Transaction UID, or why it failed."""
    tx = new_uid(uid_root)
    ds = Dataset()
    ds.TransactionUID = tx
    ds.ReferencedSOPSequence = []
    for sop_class, sop_instance in refs:
        ref = Dataset()
        ref.ReferencedSOPClassUID = sop_class
        ref.ReferencedSOPInstanceUID = sop_instance
        ds.ReferencedSOPSequence.append(ref)
    try:
        status, _ = assoc.send_n_action(ds, 1, StorageCommitmentPushModel, StorageCommitmentPushModelInstance)
    except ValueError as exc:  # the PACS did not accept the storage commitment context
        return Retry(f"PACS does not accept storage commitment requests ({exc})")
    code = getattr(status, "Status", None)
    if code is None:
        return Retry("no response to the storage commitment request (timeout or abort)")
    if int(code) != 0x0000:
        return Retry(f"storage commitment request refused: status 0x{int(code):04X}")
    return tx


class CommitmentListener:
    """Accepts the PACS's N-EVENT-REPORTs and settles the items of their transactions."""

    def __init__(self, database: Database, settings: Settings, clock: Clock) -> None:
        cfg = settings.bridge
        if cfg.commitment_port is None:
            raise ValueError("bridge.commitment_port is not set")  # Settings validation makes this unreachable
        self.db, self.settings, self.clock = database, settings, clock
        self.address = (cfg.commitment_host, cfg.commitment_port)
        self._ae = AE(ae_title=cfg.commitment_ae_title)
        # the PACS opens the association but acts as the SCP of the SOP class (it sends the report)
        self._ae.add_supported_context(StorageCommitmentPushModel, scu_role=False, scp_role=True)
        self._ae.add_supported_context(StorageCommitmentPushModel)
        self._server: Any = None
        # reports that came before the sender recorded their transaction (the PACS may answer within
        # milliseconds of the N-ACTION): kept and applied again after the next outcomes are recorded
        self._unmatched: dict[str, tuple[set[str], dict[str, int], float]] = {}
        self._lock = threading.Lock()

    def start(self) -> None:
        self._server = self._ae.start_server(
            self.address, block=False, evt_handlers=[(evt.EVT_N_EVENT_REPORT, self._on_report)]
        )

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    def _on_report(self, event: Any) -> tuple[int, Dataset | None]:
        info = event.event_information
        tx = str(getattr(info, "TransactionUID", ""))
        if not tx:
            return 0x0000, None
        committed = {str(r.ReferencedSOPInstanceUID) for r in getattr(info, "ReferencedSOPSequence", [])}
        failed = {
            str(r.ReferencedSOPInstanceUID): int(getattr(r, "FailureReason", 0x0110))
            for r in getattr(info, "FailedSOPSequence", [])
        }
        if settle(self.db, self.settings, self.clock, tx, committed, failed) == 0:
            with self._lock:
                self._unmatched[tx] = (committed, failed, time.monotonic())
        return 0x0000, None

    def settle_unmatched(self, keep_s: float = 3600.0) -> int:
        """Apply again the reports whose transaction was not recorded yet; returns how many items they settled."""
        with self._lock:
            pending = dict(self._unmatched)
        settled = 0
        for tx, (committed, failed, since) in pending.items():
            n = settle(self.db, self.settings, self.clock, tx, committed, failed)
            if n or time.monotonic() - since > keep_s:
                with self._lock:
                    self._unmatched.pop(tx, None)
            settled += n
        return settled


def settle(db: Database, settings: Settings, clock: Clock, tx: str, committed: set[str], failed: dict[str, int]) -> int:
    """Apply one commitment report to the items of transaction ``tx``; returns how many items it settled."""
    now = clock.now()
    settled = 0
    with db.session() as session:
        for item in outbox.by_transaction(session, tx):
            if item.state is not outbox.OutboxState.AWAITING_COMMITMENT:
                continue
            uid = item.sop_instance_uid or ""
            dest = settings.destinations.get(item.destination)
            if uid in committed:
                outbox.mark_delivered(session, item.id, now)
            elif uid in failed:
                reason = failed[uid]
                why = f"PACS did not commit to keep the object: failure reason 0x{reason:04X}"
                if reason in _RETRYABLE_REASONS:
                    outbox.mark_retry(session, item.id, why, now, max_attempts=dest.max_attempts if dest else 1)
                else:
                    outbox.mark_dead(session, item.id, why, now)
            else:
                continue
            settled += 1
    log.info("storage commitment %s settled %d item(s)", tx, settled)
    return settled
