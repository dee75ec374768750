"""The outbox loop: claim due items with a lease, send them, record each outcome.

Delivery is at least once towards the peer and exactly once in effect: every peer kind
deduplicates a re-send (a PACS keeps one copy per SOP Instance UID, FHIR entries are
conditional creates, a folder re-write replaces its own file), so a sender killed between
sending and recording only makes the item due again after its lease.  Outcomes of one batch
are recorded in one transaction.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from core.config import Destination, Settings
from core.errors import StoreError
from core.identifiers import Clock
from core.records import PriorityLevel, ReportStatus
from pacs_bridge.commitment import CommitmentListener
from pacs_bridge.outcome import (
    AwaitingCommitment,
    Delivered,
    Failed,
    KeepsOpen,
    Outcome,
    ReadsAhead,
    Retry,
    Sender,
)
from pacs_bridge.senders import build_sender
from store import outbox
from store.db import Database
from store.outbox import OutboxItem

log = logging.getLogger(__name__)

__all__ = ["OutboxLoop", "PassSummary"]


@dataclass
class PassSummary:
    """What one pass did (counts per outcome, PHI-free reasons of the failures)."""

    claimed: int = 0
    delivered: int = 0
    awaiting_commitment: int = 0
    retried: int = 0
    dead: int = 0
    skipped: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def idle(self) -> bool:
        return self.claimed == 0

    def line(self) -> str:
        return (
            f"{self.claimed} claimed: {self.delivered} delivered, {self.awaiting_commitment} awaiting commitment, "
            f"{self.retried} to retry, {self.dead} dead, {self.skipped} skipped"
        )


@dataclass(frozen=True)
class _Claimed:
    items: list[OutboxItem]
    to_send: list[OutboxItem]
    dead: int
    skipped: int
    at: float = field(default_factory=time.monotonic)  #: when it was claimed (its lease runs from there)


class OutboxLoop:
    """Drains the outbox of one database to the configured destinations.

    Several loops (processes or threads) may run against one database: claims are leased, so
    no item is sent by two of them at once; a crashed loop's claims come back after
    ``bridge.lease_s``.
    """

    def __init__(
        self,
        database: Database,
        settings: Settings,
        clock: Clock,
        *,
        senders: Mapping[str, Sender] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.db = database
        self.settings = settings
        self.clock = clock
        self._rng = rng or random.Random()
        self._senders: dict[str, Sender] = dict(senders or {})
        self._listener: CommitmentListener | None = None
        self._listener_elsewhere = False
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._next: Future[_Claimed] | None = None  #: the next batch, claimed while this one is sent

    # ------------------------------------------------------------------ senders

    def _needs_commitment(self) -> bool:
        return any(d.storage_commitment for d in self.settings.destinations.values())

    def _start_listener(self) -> None:
        if self._listener is None and not self._listener_elsewhere and self._needs_commitment():
            listener = CommitmentListener(self.db, self.settings, self.clock)
            try:
                listener.start()
            except OSError as exc:
                # another sender of this installation (mmdx serve, a second worker) holds the port: its listener
                # settles the reports in the shared database for every sender
                log.warning("storage commitment port %s in use (%s): reports settle there", listener.address, exc)
                self._listener_elsewhere = True
                return
            self._listener = listener

    def _sender(self, name: str, dest: Destination) -> Sender:
        if name not in self._senders:
            self._senders[name] = build_sender(name, dest, self.settings, self.clock)
        return self._senders[name]

    # ------------------------------------------------------------------ one pass

    def run_once(self) -> PassSummary:
        """One pass: settle overdue commitments, claim a batch, send it, record the outcomes."""
        with self._lock:
            self._start_listener()
            summary = PassSummary()
            if self._listener is not None:
                self._listener.settle_unmatched()
            self._overdue_commitments(summary)
            claimed = self._take_prefetched() or self._claim()
            items, to_send = claimed.items, claimed.to_send
            summary.claimed, summary.dead, summary.skipped = len(items), claimed.dead, claimed.skipped
            if not items:
                self._release_idle()
                return summary
            if len(items) == self.settings.bridge.batch_size:
                # probably more waiting: claim the next batch while this one is on the wire
                self._next = self._executor().submit(self._claim)
            by_dest: dict[str, list[OutboxItem]] = {}
            for item in to_send:
                by_dest.setdefault(item.destination, []).append(item)
            for name, batch in by_dest.items():
                dest = self.settings.destinations[name]
                try:
                    outcomes = self._sender(name, dest).send(batch)
                except Exception as exc:  # a sender bug must not stop the other destinations
                    log.exception("sender for destination %s crashed", name)
                    outcomes = [Retry(f"sender for {name} crashed: {type(exc).__name__}: {exc}")] * len(batch)
                if len(outcomes) != len(batch):
                    outcomes = [
                        Retry(f"sender for {name} returned {len(outcomes)} outcomes for {len(batch)} items")
                    ] * len(batch)
                self._record(dest, batch, outcomes, summary)
            if self._next is None:  # the batch was not full: the burst is over
                self._release_idle()
            if self._listener is not None:
                self._listener.settle_unmatched()
            return summary

    def _release_idle(self) -> None:
        """Let go of what senders keep open between batches (see :class:`KeepsOpen`)."""
        for name, sender in self._senders.items():
            if isinstance(sender, KeepsOpen):
                try:
                    sender.release_idle()
                except Exception:
                    log.exception("releasing destination %s's connection failed", name)

    def _claim(self) -> _Claimed:
        """Claim due items and screen them, in one transaction."""
        part = PassSummary()
        with self.db.session() as session:
            items = outbox.claim_due(
                session, self.clock.now(), self.settings.bridge.batch_size, lease_s=self.settings.bridge.lease_s
            )
            to_send = self._screen(session, items, part)
        self._read_ahead(to_send)
        return _Claimed(items, to_send, part.dead, part.skipped)

    def _read_ahead(self, items: Sequence[OutboxItem]) -> None:
        """Let senders that can prepare the batch now (see :class:`ReadsAhead`); never fails the claim."""
        by_dest: dict[str, list[OutboxItem]] = {}
        for item in items:
            by_dest.setdefault(item.destination, []).append(item)
        for name, batch in by_dest.items():
            sender = self._senders.get(name)  # made by the pass that sends (not from this thread)
            if isinstance(sender, ReadsAhead):
                try:
                    sender.read_ahead(batch)
                except Exception:  # the send does the same work again and reports what fails
                    log.exception("read-ahead for destination %s failed", name)

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox-claim")
        return self._pool

    def _take_prefetched(self) -> _Claimed | None:
        """The batch claimed during the previous pass, if it found any (else claim afresh: retries may be due)."""
        future, self._next = self._next, None
        if future is None:
            return None
        claimed = future.result()
        if claimed.items and time.monotonic() - claimed.at > self.settings.bridge.lease_s / 2:
            # the loop was busy elsewhere (a worker's job): half the lease is gone, give the batch back
            with self.db.session() as session:
                outbox.release(session, [i.id for i in claimed.to_send], self.clock.now())
            return None
        return claimed if claimed.items else None

    def _screen(self, session: Session, items: Sequence[OutboxItem], summary: PassSummary) -> list[OutboxItem]:
        """Drop items whose destination is gone, that it takes only signed, or that a newer version superseded."""
        keep: list[OutboxItem] = []
        now = self.clock.now()
        newest: dict[tuple[str, str], int | None] = {}  # (study, destination) -> newest version, once per pass
        for item in items:
            dest = self.settings.destinations.get(item.destination)
            if dest is None:
                outbox.mark_dead(session, item.id, f"destination {item.destination!r} is no longer configured", now)
                summary.dead += 1
                continue
            if dest.type == "webhook" and item.priority > PriorityLevel[dest.min_priority.upper()]:
                # whatever queued it: a webhook pages only for versions at or above its min_priority
                outbox.mark_dead(
                    session, item.id, f"not sent: priority {item.priority.name} is below {dest.min_priority}", now
                )
                summary.skipped += 1
                continue
            if item.report_status is ReportStatus.PRELIMINARY:
                if not dest.send_preliminary:
                    outbox.mark_dead(session, item.id, f"destination {item.destination} takes only signed reports", now)
                    summary.skipped += 1
                    continue
                if dest.skip_superseded:
                    key = (item.study_uid, item.destination)
                    if key not in newest:
                        newest[key] = outbox.newest_version(session, *key)
                    newer = newest[key]
                    if newer is not None and newer > item.report_version:
                        outbox.mark_skipped(session, item.id, newer, now)
                        summary.skipped += 1
                        continue
            keep.append(item)
        return keep

    def _record(
        self, dest: Destination, batch: Sequence[OutboxItem], outcomes: Sequence[Outcome], summary: PassSummary
    ) -> None:
        now = self.clock.now()
        with self.db.session() as session:
            delivered = [
                item.id for item, outcome in zip(batch, outcomes, strict=True) if isinstance(outcome, Delivered)
            ]
            summary.delivered += outbox.mark_delivered_many(session, delivered, now)
            for item, outcome in zip(batch, outcomes, strict=True):
                if isinstance(outcome, Delivered):
                    continue
                try:
                    self._record_one(session, dest, item, outcome, now, summary)
                except StoreError as exc:  # its lease ran out and another sender settled it meanwhile
                    log.warning("outbox item %s: outcome not recorded: %s", item.id, exc)

    def _record_one(
        self,
        session: Session,
        dest: Destination,
        item: OutboxItem,
        outcome: Outcome,
        now: datetime,
        summary: PassSummary,
    ) -> None:
        if isinstance(outcome, AwaitingCommitment):
            outbox.mark_awaiting_commitment(session, item.id, outcome.transaction_uid, now)
            summary.awaiting_commitment += 1
        elif isinstance(outcome, Retry):
            state = outbox.mark_retry(
                session,
                item.id,
                outcome.reason,
                now,
                max_attempts=dest.max_attempts,
                base_delay_s=dest.base_delay_s,
                max_delay_s=dest.max_delay_s,
                jitter=self._rng.uniform(0.8, 1.2),
            )
            summary.retried += state is outbox.OutboxState.PENDING
            summary.dead += state is outbox.OutboxState.DEAD
            summary.errors.append(f"{item.destination}: {outcome.reason}")
        else:
            assert isinstance(outcome, Failed)
            outbox.mark_dead(session, item.id, outcome.reason, now, tried=True)
            summary.dead += 1
            summary.errors.append(f"{item.destination}: {outcome.reason}")

    def _overdue_commitments(self, summary: PassSummary) -> None:
        """An unanswered storage commitment goes back to pending (the objects are sent and requested again)."""
        timeouts = {n: d.commitment_timeout_s for n, d in self.settings.destinations.items() if d.storage_commitment}
        if not timeouts:
            return
        now = self.clock.now()
        with self.db.session() as session:
            for item in outbox.commitment_overdue(session, now - timedelta(seconds=min(timeouts.values()))):
                limit = timeouts.get(item.destination)
                if limit is not None and item.updated_at > now - timedelta(seconds=limit):
                    continue
                dest = self.settings.destinations.get(item.destination)
                outbox.mark_retry(
                    session,
                    item.id,
                    f"no storage commitment report within {limit or 0:.0f} s",
                    now,
                    max_attempts=dest.max_attempts if dest else 1,
                    base_delay_s=0.0,
                )
                summary.retried += 1

    # ------------------------------------------------------------------ service

    def run_forever(self, stop: threading.Event) -> None:
        """Pass after pass until ``stop`` is set; waits ``bridge.poll_s`` when a pass found nothing."""
        try:
            while not stop.is_set():
                try:
                    summary = self.run_once()
                except Exception:  # the database may be briefly unavailable: keep the loop alive
                    log.exception("outbox pass failed")
                    stop.wait(self.settings.bridge.poll_s)
                    continue
                if summary.idle:
                    stop.wait(self.settings.bridge.poll_s)
        finally:
            self.close()

    def close(self) -> None:
        """Give back a batch claimed ahead, close the senders and stop the commitment listener."""
        try:
            ahead = self._take_prefetched()
        except Exception:
            log.exception("claiming ahead failed")
            ahead = None
        if ahead is not None:
            with self.db.session() as session:
                outbox.release(session, [i.id for i in ahead.to_send], self.clock.now())
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        for sender in self._senders.values():
            try:
                sender.close()
            except Exception:
                log.exception("closing a sender failed")
        self._senders.clear()
        if self._listener is not None:
            self._listener.stop()
            self._listener = None
