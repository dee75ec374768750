"""One received object -> durable file + index row (shared by the SCP and the pull client).

The order is what makes an acknowledgement trustworthy: parse (reject what
cannot be understood), write the file atomically and durably, index it in one
committed transaction, and only then report success.  A failure at any step
leaves nothing half-written and is reported with a status the caller maps to
DIMSE (``0xC000`` cannot understand, ``0xA700`` out of resources).
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import logging
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from core.errors import IngestError, StoreError
from core.identifiers import Clock, SystemClock
from ingest.files import outcome_name, parse_dicom
from ingest.filestore import FileStore, Placement, StoredFile, content_sha256
from ingest.headers import HeaderRecords, records_from_dataset

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from store.db import Database

log = logging.getLogger(__name__)


class Outcome(enum.Enum):
    """What happened to one received object."""

    STORED = "stored"  #: new, on disk and indexed
    DUPLICATE = "duplicate"  #: same SOP Instance UID and same bytes already held: nothing changed
    CONFLICT = "conflict"  #: same UID, other bytes: original kept, newcomer kept aside and logged
    REJECTED = "rejected"  #: not understandable (quarantined with the reason)
    FAILED = "failed"  #: disk or database failure: the sender should retry

    @property
    def acknowledged(self) -> bool:
        return self in (Outcome.STORED, Outcome.DUPLICATE, Outcome.CONFLICT)


@dataclass(frozen=True, slots=True)
class Received:
    """The result of :meth:`Receiver.receive`; ``reason`` is PHI-free."""

    outcome: Outcome
    sop_instance_uid: str | None = None
    study_instance_uid: str | None = None
    path: Path | None = None
    reason: str | None = None


class Receiver:
    """Parse, store and index received objects; thread-safe (one call per C-STORE).

    Parameters
    ----------
    store:
        The file store (``settings.storage.store_dir``).
    db:
        The database; each object is indexed in its own short transaction.
    quarantine_dir:
        Where bytes that could not be understood are kept for review.
    """

    def __init__(self, store: FileStore, db: Database, quarantine_dir: Path, *, clock: Clock | None = None) -> None:
        self.store = store
        self.db = db
        self.quarantine_dir = Path(quarantine_dir)
        self.clock = clock or SystemClock()
        self._lock = threading.Lock()
        self._writer = ThreadPoolExecutor(max_workers=16, thread_name_prefix="mmdx-store-write")
        self.counts: dict[Outcome, int] = dict.fromkeys(Outcome, 0)

    def _count(self, outcome: Outcome) -> None:
        with self._lock:
            self.counts[outcome] += 1

    def receive(
        self,
        data: bytes,
        *,
        source: str,
        transfer_syntax_uid: str | None = None,
        expected_sop_instance_uid: str | None = None,
    ) -> Received:
        """Make one object durable and indexed, or say why not.

        Parameters
        ----------
        data:
            The object in DICOM file format (preamble, file meta, dataset).
        source:
            ``"scp:<calling AE>"`` or ``"pull:<peer>"``: recorded in the index.
        expected_sop_instance_uid:
            The C-STORE request's Affected SOP Instance UID; a dataset naming
            another UID is rejected rather than filed under the wrong name.
        """
        received_at = self.clock.now()
        where = source
        # The bytes go to a durable temporary file at once, beside the parse and the index work; the row commits
        # only once the file is linked into place and durable, so an acknowledged object is on disk and indexed.
        target: Future[tuple[str, str, str, str] | None] = Future()
        write = self._writer.submit(self._write_then_place, data, target)
        try:
            try:
                ds = parse_dicom(data, where)
                records = records_from_dataset(
                    ds, path=Path("."), sha256="0" * 64, source=source, transfer_syntax_uid=transfer_syntax_uid
                )
                uid = records.instance.sop_instance_uid
                if expected_sop_instance_uid is not None and uid != expected_sop_instance_uid.strip():
                    raise IngestError(
                        f"(0008,0018) SOPInstanceUID {uid} differs from the request's Affected SOP Instance UID "
                        f"{expected_sop_instance_uid}",
                        source=where,
                    )
            except IngestError as exc:
                target.set_result(None)
                with contextlib.suppress(Exception):
                    write.result()
                return self._reject(data, str(exc), source, received_at)
            digest = content_sha256(data)
            inst = records.instance
            try:
                final_path = self.store.path_for(inst.study_instance_uid, inst.series_instance_uid, uid)
            except StoreError as exc:
                return self._failed(uid, records, source, exc)
            target.set_result((inst.study_instance_uid, inst.series_instance_uid, uid, digest))
        finally:
            if not target.done():
                target.set_result(None)
        try:
            with self.db.session() as session:
                result = self._index(session, _finalise(records, final_path, digest), received_at, len(data))
                placed = write.result()
                if placed is None:
                    raise StoreError(f"cannot place {uid}: the file write was cancelled")
                if placed.placement is Placement.CONFLICT and outcome_name(result) == "new":
                    session.rollback()  # other bytes hold this UID's file: index the newcomer where it went
                    result = self._index(session, _finalise(records, placed.path, digest), received_at, len(data))
        except StoreError as exc:
            return self._failed(uid, records, source, exc)
        except Exception as exc:  # any database failure: the sender retries (a re-sent object is identical)
            with contextlib.suppress(Exception):
                write.result()
            log.error("cannot index %s from %s: %s", uid, source, type(exc).__name__)
            self._count(Outcome.FAILED)
            return Received(Outcome.FAILED, uid, records.study.study_instance_uid, final_path, f"index: {exc}")
        kind = outcome_name(result)
        if placed.placement is Placement.CONFLICT or kind == "conflict":
            log.warning("conflict: %s from %s has other content than the stored copy; original kept", uid, source)
            outcome = Outcome.CONFLICT
        elif kind == "duplicate":
            outcome = Outcome.DUPLICATE
        else:
            outcome = Outcome.STORED
        self._count(outcome)
        return Received(outcome, uid, records.study.study_instance_uid, placed.path)

    def _write_then_place(self, data: bytes, target: Future[tuple[str, str, str, str] | None]) -> StoredFile | None:
        """Writer thread: temporary file first, then (once the UIDs are known) link it into place."""
        tmp = self.store.write_temporary(data)
        try:
            names = target.result()
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        if names is None:  # rejected or unplaceable: nothing is kept under the store
            tmp.unlink(missing_ok=True)
            return None
        study_uid, series_uid, uid, digest = names
        return self.store.place(
            tmp, data, study_uid=study_uid, series_uid=series_uid, sop_instance_uid=uid, sha256=digest
        )

    @staticmethod
    def _index(session: Session, records: HeaderRecords, received_at: datetime, size: int) -> object:
        from store import index as idx

        return idx.add_instance(
            session,
            study=records.study,
            series=records.series,
            instance=records.instance,
            received_at=received_at,
            size_bytes=size,
        )

    def _failed(self, uid: str, records: HeaderRecords, source: str, exc: Exception) -> Received:
        log.error("cannot store %s from %s: %s", uid, source, exc)
        self._count(Outcome.FAILED)
        return Received(Outcome.FAILED, uid, records.study.study_instance_uid, reason=str(exc))

    def _reject(self, data: bytes, reason: str, source: str, received_at: datetime) -> Received:
        """Keep the bytes aside and record the reason in the index; never raises."""
        self._count(Outcome.REJECTED)
        log.warning("rejected object: %s", reason)
        digest = hashlib.sha256(data).hexdigest()
        target = self.quarantine_dir / f"{received_at:%Y%m%dT%H%M%S}-{digest[:16]}.dcm"
        try:
            self.quarantine_dir.mkdir(parents=True, exist_ok=True)
            tmp = target.with_suffix(".tmp")
            tmp.write_bytes(data)
            os.replace(tmp, target)
        except OSError as exc:
            log.error("cannot keep rejected bytes from %s: %s", source, exc.strerror or exc)
        try:
            from store import index as idx

            with self.db.session() as session:
                idx.add_quarantine(
                    session, path=str(target), reason=reason, source=source, received_at=received_at, sha256=digest
                )
        except Exception as exc:
            log.error("cannot record quarantine entry from %s: %s", source, type(exc).__name__)
        return Received(Outcome.REJECTED, path=target, reason=reason)


RECOVERY_MARGIN = timedelta(minutes=10)


def reindex_stored(receiver: Receiver, *, since: datetime | None = None) -> int:
    """Index objects that are in the store but not in the index; returns how many were added.

    Files are fsynced before an object is acknowledged, index commits may not
    be (SQLite WAL with ``synchronous=NORMAL`` can roll back the last commits
    on power loss).  Run at start-up, this closes that gap: every stored file
    written since the newest indexed instance (less a margin; ``since``
    overrides) is indexed again, which is a no-op for the ones already there.
    """
    from sqlalchemy import func, select

    from store import index as idx
    from store.schema import InstanceRow

    if since is None:
        with receiver.db.session(readonly=True) as session:
            newest = session.scalar(select(func.max(InstanceRow.received_at)))
        since = newest - RECOVERY_MARGIN if newest is not None else None
    cutoff = since.timestamp() if since is not None else float("-inf")
    root = receiver.store.root
    added = 0
    for study_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))):
        for path in sorted(study_dir.glob("*/*.dcm")):
            try:
                if path.stat().st_mtime < cutoff:
                    continue
                data = path.read_bytes()
                ds = parse_dicom(data, str(path))
                records = records_from_dataset(ds, path=path, sha256=content_sha256(data), source="store:recovered")
            except (OSError, IngestError) as exc:
                log.warning("recovery: cannot re-index %s: %s", path, exc)
                continue
            with receiver.db.session() as session:
                result = idx.add_instance(
                    session,
                    study=records.study,
                    series=records.series,
                    instance=records.instance,
                    received_at=datetime.fromtimestamp(path.stat().st_mtime, UTC),
                )
            added += outcome_name(result) == "new"
    if added:
        log.warning("recovery: %d stored object(s) were missing from the index and were re-indexed", added)
    return added


def _finalise(records: HeaderRecords, path: Path, sha256: str) -> HeaderRecords:
    from dataclasses import replace

    return HeaderRecords(records.study, records.series, replace(records.instance, path=path, sha256=sha256))


__all__ = ["Outcome", "Received", "Receiver", "outcome_name", "reindex_stored"]
