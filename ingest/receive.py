"""One received object -> durable file + index row (shared by the SCP and the pull client).

The order is what makes an acknowledgement trustworthy: parse (reject what
cannot be understood), write the file atomically and durably, index it in one
committed transaction, and only then report success.  A failure at any step
leaves nothing half-written and is reported with a status the caller maps to
DIMSE (``0xC000`` cannot understand, ``0xA700`` out of resources).

Only the disk and the database can fail transiently; anything about the
object itself (a header value no parser or record accepts, an object over
``limits.max_object_bytes``) is a rejection with its reason, quarantined,
never ``0xA700``: the sender would retry it forever.
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import logging
import os
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from core.config import LimitsConfig
from core.errors import IngestError, StoreError
from core.identifiers import Clock, SystemClock
from ingest.filestore import (
    CONTENT_DIGEST,
    ContentHasher,
    FileStore,
    Placement,
    StoredFile,
    TemporaryFile,
    content_digest,
    content_offset,
)
from ingest.headers import RECORD_TAGS, HeaderRecords, records_from_dataset, text_value
from ingest.parse import parse_dataset_prefix, parse_dicom, parse_header_prefix, pixel_element_ok
from store import index
from store.index_writer import IndexResult, IndexWriter

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

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
    limits:
        ``settings.limits``: an object over ``max_object_bytes`` is rejected
        (its bytes are dropped as they arrive, not kept).
    lanes:
        Whether a big object is hashed and written on a lane thread beside the
        network reads (see :meth:`Incoming._flush`); by default only where
        there are at least 4 CPUs.  With fewer, the lane finds no free CPU
        while the reads run: measured on 2 CPUs with storescu on the same
        machine, every batch it was given waited until the last byte, so its
        work landed between the last byte and the answer; on the receiving
        thread it is done during the arrival.
    """

    def __init__(
        self,
        store: FileStore,
        db: Database,
        quarantine_dir: Path,
        *,
        clock: Clock | None = None,
        lanes: bool | None = None,
        limits: LimitsConfig | None = None,
    ) -> None:
        self.store = store
        self.max_object_bytes = (limits or LimitsConfig()).max_object_bytes
        self.lanes = _lanes_by_default() if lanes is None else lanes
        self.db = db
        self.quarantine_dir = Path(quarantine_dir)
        self.clock = clock or SystemClock()
        self._lock = threading.Lock()
        self._writer = IndexWriter(db)
        self._lanes = _Lanes()
        self.counts: dict[Outcome, int] = dict.fromkeys(Outcome, 0)

    def _count(self, outcome: Outcome) -> None:
        with self._lock:
            self.counts[outcome] += 1

    def lane(self, job: Callable[[], None]) -> _Lane:
        """Run ``job`` on a lane thread (see ``lanes``); the returned lane's ``wait`` waits for it."""
        return self._lanes.run(job)

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
        offset = content_offset(data)
        incoming = self.accept(
            data[:offset],
            source=source,
            transfer_syntax_uid=transfer_syntax_uid,
            expected_sop_instance_uid=expected_sop_instance_uid,
        )
        incoming.add(memoryview(data)[offset:], last=True)
        return incoming.finish()

    def accept(
        self,
        head: bytes,
        *,
        source: str,
        transfer_syntax_uid: str | None = None,
        expected_sop_instance_uid: str | None = None,
    ) -> Incoming:
        """Start receiving an object whose dataset arrives in pieces (see :class:`Incoming`).

        ``head`` is the preamble and file meta (empty for a raw dataset); the
        other parameters are those of :meth:`receive`.
        """
        return Incoming(self, head, source, transfer_syntax_uid, expected_sop_instance_uid)

    def commit(
        self,
        records: HeaderRecords,
        placed: StoredFile,
        digest: str,
        received_at: datetime,
        size: int,
        source: str,
    ) -> Received:
        """Index the object whose durable file is now in place; its outcome (a newcomer under a held UID: conflict)."""
        uid = records.instance.sop_instance_uid
        try:
            result = self.index(_finalise(records, placed.path, digest), received_at=received_at, size=size)
        except StoreError as exc:
            return self.fail(str(exc), source=source, records=records)
        except Exception as exc:  # any database failure: the sender retries (a re-sent object is identical)
            log.error("cannot index %s from %s: %s", uid, source, type(exc).__name__)
            return self.fail(f"index: {exc}", source=source, records=records, path=placed.path, logged=True)
        if placed.placement is Placement.CONFLICT or result is IndexResult.CONFLICT:
            log.warning("conflict: %s from %s has other content than the stored copy; original kept", uid, source)
            outcome = Outcome.CONFLICT
        elif result is IndexResult.DUPLICATE:
            outcome = Outcome.DUPLICATE
        else:
            outcome = Outcome.STORED
        self._count(outcome)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s %s from %s (%d bytes)", outcome.value, uid, source, size)
        return Received(outcome, uid, records.study.study_instance_uid, placed.path)

    def index(self, records: HeaderRecords, *, received_at: datetime, size: int | None = None) -> IndexResult:
        """Index an object already in the store (raises what the index raises)."""
        return self._writer.add(
            study=records.study,
            series=records.series,
            instance=records.instance,
            received_at=received_at,
            size_bytes=size,
        )

    def recover(self, *, since: datetime | None = None) -> int:
        """Index objects that are in the store but not in the index; returns how many were added.

        Files are fsynced before an object is acknowledged, index commits may not be (SQLite WAL with
        ``synchronous=NORMAL`` can roll back the last commits on power loss).  Run at start-up, this closes
        that gap: every stored file written since the newest indexed instance (less :data:`RECOVERY_MARGIN`;
        ``since`` overrides) is indexed again, which is a no-op for the ones already there.
        """
        return _recover(self, since)

    def fail(
        self,
        reason: str,
        *,
        source: str,
        records: HeaderRecords | None = None,
        path: Path | None = None,
        logged: bool = False,
    ) -> Received:
        """A disk or database failure: nothing acknowledged, the sender retries (a re-sent object is identical)."""
        uid = records.instance.sop_instance_uid if records is not None else None
        if not logged:
            log.error("cannot store %s from %s: %s", uid or "an object", source, reason)
        self._count(Outcome.FAILED)
        study = records.study.study_instance_uid if records is not None else None
        return Received(Outcome.FAILED, uid, study, path, reason)

    def reject(
        self, reason: str, *, source: str, data: bytes | None = None, received_at: datetime | None = None
    ) -> Received:
        """Keep the bytes aside (owner-only: they hold patient data) and record the reason; never raises.

        ``data`` None: the bytes were not kept (over a limit while they arrived); only the reason is recorded.
        """
        received_at = received_at or self.clock.now()
        self._count(Outcome.REJECTED)
        log.warning("rejected object from %s: %s", source, reason)
        digest = hashlib.sha256(data if data is not None else reason.encode()).hexdigest()
        target = self.quarantine_dir / f"{received_at:%Y%m%dT%H%M%S}-{digest[:16]}.dcm"
        if data is not None:
            try:
                _keep_private(self.quarantine_dir, data, target)
            except OSError as exc:
                log.error("cannot keep rejected bytes from %s: %s", source, exc.strerror or exc)
        try:
            with self.db.session() as session:
                index.add_quarantine(
                    session, path=str(target), reason=reason, source=source, received_at=received_at, sha256=digest
                )
        except Exception as exc:
            log.error("cannot record quarantine entry from %s: %s", source, type(exc).__name__)
        return Received(Outcome.REJECTED, path=target, reason=reason)


def _keep_private(folder: Path, data: bytes, target: Path) -> None:
    """Write ``data`` to ``target`` in ``folder`` atomically, the folder 0700 and the file 0600."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        os.chmod(folder, 0o700)
    tmp = target.with_name(f".{target.name}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _lanes_by_default() -> bool:
    """Lane threads pay off where the sender, the reader and the lane can each have a CPU."""
    return (os.cpu_count() or 1) >= 4


class _Lane:
    """One job on a lane thread: :meth:`wait` returns when it has ended, re-raising what it raised."""

    __slots__ = ("done", "error", "job")

    def __init__(self, job: Callable[[], None]) -> None:
        self.job = job
        self.done = threading.Event()
        self.error: BaseException | None = None

    def wait(self) -> None:
        self.done.wait()
        if self.error is not None:
            raise self.error


class _Lanes:
    """Persistent threads for :class:`Incoming`'s lanes.

    A thread is started only when none is idle, and a finished job counts its
    thread idle *before* it reports the end, so the next object of the same
    association always finds it (a ``ThreadPoolExecutor`` learns of the idle
    worker after the waiter has moved on, and its ``submit`` then spends a
    measurable share of the receive path's time checking for one).  Beyond
    ``limit`` busy lanes a job waits for the next free thread.
    """

    def __init__(self, limit: int = 32) -> None:
        self._jobs: queue.SimpleQueue[_Lane] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0
        self._threads = 0
        self._limit = limit

    def run(self, job: Callable[[], None]) -> _Lane:
        lane = _Lane(job)
        with self._lock:
            if self._idle:
                self._idle -= 1
                start = False
            else:
                start = self._threads < self._limit
                self._threads += start
        if start:
            threading.Thread(target=self._work, name="mmdx-store-lane", daemon=True).start()
        self._jobs.put(lane)
        return lane

    def _work(self) -> None:
        while True:
            lane = self._jobs.get()
            try:
                lane.job()
            except BaseException as exc:  # re-raised by the waiter
                lane.error = exc
            with self._lock:
                self._idle += 1
            lane.done.set()


#: Dataset sizes at which the headers are parsed while the rest still arrives.
_PARSE_AT = (8 << 10, 32 << 10, 128 << 10)
#: Pending bytes written to the temporary file in one ``writev``; an object that reaches it gets a lane (if on).
_FLUSH_AT = 256 << 10
#: Pending bytes handed to a running lane at once: small, so that little is left for it after the last piece.
_LANE_FLUSH_AT = 64 << 10
#: Dataset bytes held in memory beyond which the pieces already written are let go (the rest is in the temporary
#: file): a big object does not stay in memory while it streams to disk.  Smaller objects never reach it.
_HOLD_AT = 4 << 20
#: The digest of records built from the early headers, replaced once the last piece is in.
_UNKNOWN_DIGEST = f"{CONTENT_DIGEST}:" + "0" * 32


class Incoming:
    """One object arriving in pieces (a C-STORE's P-DATA fragments).

    The work that does not need the whole object is done as it arrives, while
    the sender is still busy sending: the bytes stream into a temporary file
    and into the content digest, and the headers are parsed as soon as they are
    all there.  Left for :meth:`finish`, between the last fragment and the
    answer: the completeness check, fsync, linking into place and the index
    transaction, in the order that makes an acknowledgement trustworthy.  Not
    thread-safe: one per C-STORE.
    """

    def __init__(
        self,
        receiver: Receiver,
        head: bytes,
        source: str,
        transfer_syntax_uid: str | None,
        expected_sop_instance_uid: str | None,
    ) -> None:
        self._receiver = receiver
        self._head = head
        self._source = source
        self._ts = transfer_syntax_uid
        self._expected = expected_sop_instance_uid
        self._received_at = receiver.clock.now()
        self._pieces: list[bytes | memoryview] = []  # the dataset from byte ``_dropped`` on
        self._size = 0  # dataset bytes so far
        self._dropped = 0  # dataset bytes let go (in the temporary file only), see _HOLD_AT
        self._pixel_head = b""  # the Pixel Data element's first 12 bytes, kept when the bytes around it are let go
        self._digest = ContentHasher()
        self._digest_ok = True  # False when the dataset itself starts with group 0002: hashed whole at the end
        self._pending: list[bytes | memoryview] = [head] if head else []  # to write
        self._pending_hash: list[bytes | memoryview] = []  # to fold into the digest (the dataset, not the head)
        self._pending_size = len(head)
        self._lane: _Lane | None = None  # hashes and writes big objects beside the network reads
        self._lane_queue: queue.SimpleQueue[tuple[list[bytes | memoryview], list[bytes | memoryview]] | None] = (
            queue.SimpleQueue()
        )
        self._tmp: TemporaryFile | None = None
        self._write_error: StoreError | None = None
        self._header: tuple[Dataset, int] | None = None  # early headers, where Pixel Data starts in the dataset
        self._records: HeaderRecords | None = None  # from the early headers, while the rest arrives
        self._parse_step = 0 if head else len(_PARSE_AT)  # a raw dataset (no preamble) gets the full parse
        self._limit = receiver.max_object_bytes - len(head)  # dataset bytes beyond it: rejected, dropped

    def add(self, piece: bytes | memoryview, *, last: bool = False) -> None:
        """Take the next piece of the dataset; never raises (a failure is reported by :meth:`finish`).

        ``last``: no piece follows, so nothing is gained by parsing the headers before :meth:`finish` does.
        """
        self.add_many((piece,), last=last)

    def add_many(self, pieces: Sequence[bytes | memoryview], *, last: bool = False) -> None:
        """:meth:`add` for several pieces in order (the acceptor hands over what one socket read brought)."""
        if not self._pieces:
            first = next((piece for piece in pieces if piece), b"")
            if len(first) >= 2 and first[0] == 0x02 and first[1] == 0x00:
                self._digest_ok = False
        size = sum(map(len, pieces))
        if not size:
            return
        if self._size + size > self._limit:
            self._overflow(size)
            return
        self._pieces.extend(pieces)
        self._size += size
        self._pending.extend(pieces)
        self._pending_hash.extend(pieces)
        self._pending_size += size
        if self._pending_size >= (_FLUSH_AT if self._lane is None else _LANE_FLUSH_AT):
            self._flush(last=False)
        while not last and self._parse_step < len(_PARSE_AT) and self._size >= _PARSE_AT[self._parse_step]:
            self._parse_step += 1
            self._header = self._parse_prefix(_PARSE_AT[self._parse_step - 1])
            if self._header is not None:
                self._parse_step = len(_PARSE_AT)
                with contextlib.suppress(Exception):  # finish() reports it, once the object is complete
                    self._records = self._records_from(self._header[0])
        if self._size - self._dropped > _HOLD_AT and self._header is not None and self._digest_ok:
            self._let_go()

    def _let_go(self) -> None:
        """Drop the pieces a big object no longer needs in memory: the early headers are parsed, the bytes are
        (or are about to be) in the temporary file; kept are the Pixel Data element's head and the last bytes."""
        start = self._header[1] if self._header is not None else 0
        if not self._pixel_head:
            if start + 12 > self._size:
                return
            self._pixel_head = self._slice(start, 12)
        keep: list[bytes | memoryview] = []
        kept = 0
        for piece in reversed(self._pieces):  # the object's last 8 bytes are checked at the end
            keep.append(piece)
            kept += len(piece)
            if kept >= 8:
                break
        keep.reverse()
        self._pieces, self._dropped = keep, self._size - kept

    def _overflow(self, size: int) -> None:
        """The object passed ``limits.max_object_bytes``: drop what it brought and will bring."""
        if self._size <= self._limit:  # the first time
            log.warning("object from %s passes limits.max_object_bytes: its bytes are dropped", self._source)
            self.abort()
            self._parse_step = len(_PARSE_AT)
        self._size += size

    def _flush(self, *, last: bool) -> None:
        """Hand what arrived to the digest and the temporary file.

        A big object gets a lane, a thread that hashes and writes while this
        one reads the next PDUs (both release the GIL); once the sender has
        sent the whole object it waits for the answer, so that work would
        otherwise sit between its last byte and the answer.  A small object,
        and every object where lanes are off (:attr:`Receiver.lanes`), is done
        here.
        """
        batch, hashed = self._pending, self._pending_hash
        self._pending, self._pending_hash, self._pending_size = [], [], 0
        if not batch:
            return
        if self._lane is None and not last and self._receiver.lanes:
            self._lane = self._receiver.lane(self._run_lane)
        if self._lane is not None:
            self._lane_queue.put((batch, hashed))
        else:
            self._consume(batch, hashed)

    def _run_lane(self) -> None:
        while (item := self._lane_queue.get()) is not None:
            self._consume(*item)

    def _drain(self) -> None:
        """Wait until the lane has hashed and written everything handed to it."""
        lane, self._lane = self._lane, None
        if lane is not None:
            self._lane_queue.put(None)
            lane.wait()

    def _consume(self, batch: list[bytes | memoryview], hashed: list[bytes | memoryview]) -> None:
        for piece in hashed:
            self._digest.update(piece)
        if self._write_error is not None:
            return
        try:
            if self._tmp is None:
                self._tmp = self._receiver.store.open_temporary()
            self._tmp.write(batch)
        except StoreError as exc:
            self._write_error = exc
        except OSError as exc:
            self._write_error = StoreError(f"cannot write a temporary file: {exc.strerror or exc}")

    def abort(self) -> None:
        """The object will not complete (association lost): drop what was written."""
        self._pending, self._pending_hash, self._pieces = [], [], []
        with contextlib.suppress(Exception):
            self._drain()
        if self._tmp is not None:
            self._tmp.discard()
            self._tmp = None

    def _parse_prefix(self, size: int) -> tuple[Dataset, int] | None:
        """The headers from the first ``size`` bytes or so, and where Pixel Data starts in the dataset; None: not yet.

        Where the sender negotiated the transfer syntax (an SCP) only the
        dataset is read, and only the elements the records need.
        """
        if self._ts and self._digest_ok:  # a dataset that starts with file meta is left to the full parse
            pieces, have = [], 0
            for piece in self._pieces:  # not all that arrived: one read may have brought the whole object
                pieces.append(piece)
                have += len(piece)
                if have >= size:
                    break
            try:
                return parse_dataset_prefix(b"".join(pieces), self._ts, self._source, keep=RECORD_TAGS)
            except Exception:  # "never raises" by contract; whatever it met, the full parse names it
                return None
        try:
            found = parse_header_prefix(self._data(), self._source)
        except Exception:
            return None
        return None if found is None else (found[0], found[1] - len(self._head))

    def _data(self, tmp: TemporaryFile | None = None) -> bytes:
        """The whole object (head and dataset); read back from the temporary file when pieces were let go."""
        if not self._dropped:
            return b"".join((self._head, *self._pieces))
        self._flush(last=True)
        self._drain()
        source = tmp or self._tmp
        if source is None or self._write_error is not None:
            raise IngestError("the object's bytes could not be read back", source=self._source)
        return source.path.read_bytes()

    def _slice(self, start: int, n: int) -> bytes:
        """Bytes ``start:start+n`` of the dataset, across pieces."""
        if start < self._dropped:
            if self._header is not None and start == self._header[1] and n <= len(self._pixel_head):
                return self._pixel_head[:n]
            offset = len(self._head) + start
            return self._data()[offset : offset + n]
        out: list[bytes] = []
        pos = self._dropped
        for piece in self._pieces:
            end = pos + len(piece)
            if end > start and pos < start + n:
                out.append(bytes(piece[max(start - pos, 0) : min(start + n - pos, len(piece))]))
            pos = end
            if pos >= start + n:
                break
        return b"".join(out)

    def _parse(self) -> Dataset:
        """The headers, checked complete; raises IngestError as :func:`ingest.parse.parse_dicom` does."""
        if self._header is not None:
            ds, start = self._header
            tail = self._slice(self._size - 8, 8) if self._size >= 8 else b""
            ts = self._ts or text_value(ds.file_meta, "TransferSyntaxUID") or ""
            if pixel_element_ok(self._slice(start, 12), self._size - start, tail, ts, ds, self._source):
                return ds
        return parse_dicom(self._data(), self._source)

    def _records_from(self, ds: Dataset) -> HeaderRecords:
        return records_from_dataset(
            ds, path=Path("."), content_digest=_UNKNOWN_DIGEST, source=self._source, transfer_syntax_uid=self._ts
        )

    def _checked_records(self) -> HeaderRecords:
        """The object's records from its checked headers; raises IngestError when it cannot be understood.

        Whatever the parser or the records raise is about the object, so it is an IngestError too (a
        rejection, never a transient failure); only the exception class is kept (its text may quote a value).
        """
        try:
            return self._checked_records_unguarded()
        except IngestError:
            raise
        except Exception as exc:
            raise IngestError(
                f"unreadable DICOM: the parser failed ({type(exc).__name__})", source=self._source
            ) from None

    def _checked_records_unguarded(self) -> HeaderRecords:
        ds = self._parse()
        early = self._header is not None and ds is self._header[0]
        records = self._records if early and self._records is not None else self._records_from(ds)
        uid, expected = records.instance.sop_instance_uid, self._expected
        if expected is not None and uid != expected.strip():
            raise IngestError(
                f"(0008,0018) SOPInstanceUID {uid} differs from the request's Affected SOP Instance UID {expected}",
                source=self._source,
            )
        return records

    def finish(self) -> Received:
        """The object is complete: check, make durable, index; then (and only then) it may be acknowledged."""
        try:
            return self._finish()
        except BaseException:
            self.abort()  # whatever happened, no temporary file (a full copy of the object) stays open or behind
            raise

    def _finish(self) -> Received:
        receiver, source, received_at = self._receiver, self._source, self._received_at
        if self._size > self._limit:
            reason = (
                f"{source}: object of {len(self._head) + self._size} bytes exceeds limits.max_object_bytes "
                f"({receiver.max_object_bytes})"
            )
            return receiver.reject(reason, source=source, received_at=received_at)
        self._flush(last=True)
        try:  # while a lane hashes and writes its last batch
            records, failure = self._checked_records(), None
        except IngestError as err:
            records, failure = None, err
        self._drain()
        tmp, self._tmp = self._tmp, None
        if self._write_error is not None or tmp is None:
            if tmp is not None:
                tmp.discard()
            problem = self._write_error or StoreError("cannot store an empty object")
            return receiver.fail(str(problem), source=source)
        if records is None:
            try:
                data: bytes | None = self._data(tmp)
            except (IngestError, OSError):
                data = None
            tmp.discard()
            return receiver.reject(str(failure), source=source, data=data, received_at=received_at)
        size = len(self._head) + self._size
        uid = records.instance.sop_instance_uid
        digest = self._digest.digest() if self._digest_ok else content_digest(self._data())
        inst = records.instance
        # On this thread, in order: the file durable, linked into place and its folder durable; then the index
        # row commits; only then may the object be acknowledged.  (A writer thread for the fsync beside the
        # index work was measured slower: the GIL hand-offs cost more than the overlap saved.)
        try:
            try:
                path = tmp.close()
            except OSError as exc:
                tmp.discard()
                raise StoreError(f"cannot write {tmp.path}: {exc.strerror or exc}") from None
            placed = receiver.store.place(
                path,
                size,
                study_uid=inst.study_instance_uid,
                series_uid=inst.series_instance_uid,
                sop_instance_uid=uid,
                digest=digest,
            )
        except StoreError as exc:
            return receiver.fail(str(exc), source=source, records=records)
        return receiver.commit(records, placed, digest, received_at, size, source)


RECOVERY_MARGIN = timedelta(minutes=10)


def _stored_since(root: Path, cutoff: float | None) -> Iterator[Path]:
    """The store's object files modified at or after ``cutoff`` (a POSIX time; None: all), study by study."""
    for study_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))):
        for path in sorted(study_dir.glob("*/*.dcm")):
            try:
                if cutoff is None or path.stat().st_mtime >= cutoff:
                    yield path
            except OSError:  # gone meanwhile
                continue


def _recover(receiver: Receiver, since: datetime | None) -> int:
    if since is None:
        with receiver.db.session(readonly=True) as session:
            newest = index.newest_received_at(session)
        since = newest - RECOVERY_MARGIN if newest is not None else None
    added = 0
    for path in _stored_since(receiver.store.root, since.timestamp() if since is not None else None):
        try:
            data = path.read_bytes()
            ds = parse_dicom(data, str(path))
            records = records_from_dataset(ds, path=path, content_digest=content_digest(data), source="store:recovered")
            received_at = datetime.fromtimestamp(path.stat().st_mtime, UTC)
        except (OSError, IngestError) as exc:
            log.warning("recovery: cannot re-index %s: %s", path, exc)
            continue
        added += receiver.index(records, received_at=received_at) is IndexResult.NEW
    if added:
        log.warning("recovery: %d stored object(s) were missing from the index and were re-indexed", added)
    return added


def _finalise(records: HeaderRecords, path: Path, digest: str) -> HeaderRecords:
    from dataclasses import replace

    return HeaderRecords(records.study, records.series, replace(records.instance, path=path, content_digest=digest))


__all__ = ["Incoming", "Outcome", "Received", "Receiver"]
