"""Durable, content-addressed placement of received DICOM objects.

An object is acknowledged only once it is durable, so every write goes to a
temporary file in ``<store_dir>/.tmp`` (same filesystem), is fsynced, and is then linked into
place (``os.link`` never overwrites: two associations racing on one SOP
Instance UID cannot clobber each other) and the folder entry is fsynced too.
A crash at any point leaves either no file or the complete file under its
final name; stray ``.tmp-*`` files are swept by :meth:`FileStore.sweep_temporary`.

Layout: ``<store_dir>/<StudyUID>/<SeriesUID>/<SOPInstanceUID>.dcm``.  When a
different object arrives under a SOP Instance UID already stored, the original
is kept and the newcomer goes to ``<store_dir>/_conflicts/`` for review.
"""

from __future__ import annotations

import contextlib
import ctypes
import enum
import errno
import itertools
import mmap
import os
import queue
import secrets
import struct
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import xxhash

from core._validate import check_uid
from core.durable import fsync_dir
from core.errors import RecordError, StoreError


class Placement(enum.Enum):
    """What :meth:`FileStore.put` did with the bytes."""

    WRITTEN = "written"  #: a new file was created
    IDENTICAL = "identical"  #: the same bytes were already stored under that UID
    CONFLICT = "conflict"  #: other bytes were stored under that UID; the newcomer went to ``_conflicts``


@dataclass(frozen=True, slots=True)
class StoredFile:
    """Where the bytes are now, their content digest (:func:`content_digest`), and what happened."""

    path: Path
    digest: str
    size: int
    placement: Placement


_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"})


def content_offset(data: bytes | memoryview) -> int:
    """Where the dataset starts: after the preamble and the group 0002 file meta (0 without a preamble).

    The file meta is written by whoever stored the file (implementation UID,
    source AE...), so the same object received by two routes differs there
    and nowhere else.
    """
    if len(data) < 132 or bytes(data[128:132]) != b"DICM":
        return 0
    pos = 132
    while pos + 8 <= len(data):
        group = data[pos] | (data[pos + 1] << 8)
        if group != 0x0002:
            break
        if bytes(data[pos + 4 : pos + 6]) in _LONG_VRS:
            if pos + 12 > len(data):
                break
            pos += 12 + struct.unpack_from("<L", data, pos + 8)[0]
        else:
            pos += 8 + struct.unpack_from("<H", data, pos + 6)[0]
    return min(pos, len(data))


CONTENT_DIGEST = "xxh3-128"
"""The algorithm of :func:`content_digest`.

The digest tells whether two objects under one SOP Instance UID hold the same
content (deduplication) and when a study's content changed; it guards against
accidents, not against an adversary: a forged collision could only make a
changed object pass for a duplicate, and the original is kept either way.
So it is XXH3-128 (2^-128 chance of an accidental collision), about 10 us per
0.5 MB object, rather than sha256 at about 300 us: a fifth of what receiving
such an object costs on loopback.
"""


class ContentHasher:
    """:func:`content_digest` over a dataset that arrives in pieces (fed in order)."""

    __slots__ = ("_hash", "update")

    def __init__(self) -> None:
        self._hash = xxhash.xxh3_128()
        self.update = self._hash.update

    def digest(self) -> str:
        return f"{CONTENT_DIGEST}:{self._hash.hexdigest()}"


#: Piece size of a file copied into the store from a path (:meth:`FileStore.put_recording`).
_COPY_PIECE = 8 << 20


def _same_content(stored: Path, data: bytes | Path) -> bool:
    """Whether the stored file holds ``data`` (bytes, or the content of a file), compared a piece at a time."""
    if isinstance(data, bytes):
        return stored.stat().st_size == len(data) and stored.read_bytes() == data
    if stored.stat().st_size != data.stat().st_size:
        return False
    with stored.open("rb") as a, data.open("rb") as b:
        while True:
            x, y = a.read(_COPY_PIECE), b.read(_COPY_PIECE)
            if x != y:
                return False
            if not x:
                return True


def content_digest(data: bytes | memoryview) -> str:
    """The content digest of an object: of the dataset, without preamble and file meta, as ``"xxh3-128:<hex>"``.

    This is the dedupe key beside the SOP Instance UID: the same object sent
    by another AE, pulled by WADO or read from a folder digests the same.
    """
    hasher = ContentHasher()
    hasher.update(memoryview(data)[content_offset(data) :])
    return hasher.digest()


def _file_content_digest(path: Path) -> str:
    """:func:`content_digest` of a stored file, mapped rather than read (a big object is not copied to the heap)."""
    with path.open("rb") as fh:
        if os.fstat(fh.fileno()).st_size == 0:
            return content_digest(b"")
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            return content_digest(memoryview(mapped))


_datasync = getattr(os, "fdatasync", os.fsync)


def _load_renameat2() -> Callable[..., int] | None:
    """glibc's ``renameat2`` (Linux 3.15+, glibc 2.28+), or None where there is none."""
    try:
        func = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    func.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint)
    func.restype = ctypes.c_int
    return func


_RENAMEAT2 = _load_renameat2()
_AT_FDCWD, _RENAME_NOREPLACE = -100, 1


def _move_no_replace(src: Path, dst: Path) -> bool:
    """Give ``src`` the name ``dst`` unless ``dst`` exists (raises FileExistsError); False: not supported here.

    One directory operation (``renameat2(RENAME_NOREPLACE)``) instead of a
    link and a later unlink; a filesystem or kernel without it answers False
    and the caller links.
    """
    if _RENAMEAT2 is None:
        return False
    if _RENAMEAT2(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), _RENAME_NOREPLACE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(dst))


#: ``os.writev`` takes at most IOV_MAX (1024 on Linux) buffers per call.
_IOV_BATCH = 512


class TemporaryFile:
    """A file under ``.tmp`` being written in pieces; :meth:`close` makes it durable (when fsync is on)."""

    def __init__(self, fd: int, path: Path, fsync: bool) -> None:
        self.fd: int | None = fd
        self.path = path
        self.fsync = fsync

    def write(self, chunks: list[bytes | memoryview] | tuple[bytes | memoryview, ...]) -> None:
        """Append ``chunks`` with as few system calls as possible (``writev``)."""
        if self.fd is None:
            raise OSError(f"{self.path} is already closed")
        for i in range(0, len(chunks), _IOV_BATCH):
            batch = chunks[i : i + _IOV_BATCH]
            total = sum(len(c) for c in batch)
            done = os.writev(self.fd, batch)
            if done < total:  # a short write (rare on regular files): finish it piece by piece
                rest = memoryview(b"".join(bytes(c) for c in batch))[done:]
                while rest:
                    rest = rest[os.write(self.fd, rest) :]

    def close(self) -> Path:
        """Make the content durable (fsync when configured) and close; returns the path for :meth:`FileStore.place`."""
        if self.fd is not None:
            fd, self.fd = self.fd, None
            try:
                if self.fsync:
                    _datasync(fd)  # the data and the size; a new name is made durable by the folder's fsync
            finally:
                os.close(fd)
        return self.path

    def discard(self) -> None:
        """Close and remove: the object will not be kept."""
        if self.fd is not None:
            fd, self.fd = self.fd, None
            os.close(fd)
        self.path.unlink(missing_ok=True)


class _Spares:
    """Temporary files created ahead of need, and used temporary names removed later, on one thread.

    Creating or removing a directory entry is a metadata change the next
    fsync has to commit; a new file's first fsync costs two to three times
    that of an existing empty file's (measured here: ~0.4 vs ~0.9-1.4 ms for
    write + fsync + link + folder fsync).  So the files are created, and the
    used names removed, in bursts off the receive path: most objects' commits
    then carry only their own data, size and link.
    """

    def __init__(self, store: FileStore, count: int) -> None:
        self.store = store
        self.low, self.high = max(1, count // 4), count
        self.ready: queue.SimpleQueue[tuple[int, str]] = queue.SimpleQueue()
        self.work: queue.SimpleQueue[str | None] = queue.SimpleQueue()  # names to unlink; "" = top up; None = stop
        self.used: list[str] = []
        self.thread = threading.Thread(target=self._run, name="mmdx-store-spares", daemon=True)
        self.thread.start()
        self.work.put("")

    def take(self) -> tuple[int, str] | None:
        try:
            found = self.ready.get_nowait()
        except queue.Empty:
            self.work.put("")
            return None
        if self.ready.qsize() < self.low:
            self.work.put("")
        return found

    def _run(self) -> None:
        while True:
            item = self.work.get()
            if item is None:
                self._unlink_used()
                return
            if item:
                self.used.append(item)
                if len(self.used) >= self.high:
                    self._unlink_used()
                continue
            while self.ready.qsize() < self.high:
                try:
                    self.ready.put(self.store._create_temp())
                except OSError:
                    break  # disk trouble: the receive path creates its own and reports the error

    def _unlink_used(self) -> None:
        used, self.used = self.used, []
        for name in used:
            with contextlib.suppress(OSError):
                os.unlink(name)

    def close(self) -> None:
        self.work.put(None)
        self.thread.join(5)
        while True:
            try:
                fd, name = self.ready.get_nowait()
            except queue.Empty:
                return
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(name)


class FileStore:
    """Files under ``root`` named by Study/Series/SOP Instance UID.

    Parameters
    ----------
    root:
        ``settings.storage.store_dir``.
    fsync:
        Flush file and folder to disk before returning (the default, and the only
        mode that may acknowledge objects in production; off for benchmarks that
        compare against peers which do not fsync).
    rename:
        Move temporary files into place with ``renameat2(RENAME_NOREPLACE)``
        where the system has it (the default); False links them and removes
        the temporary name afterwards, as on a system without it.
    """

    def __init__(self, root: Path, *, fsync: bool = True, rename: bool = True) -> None:
        self.root = Path(root)
        self.fsync = fsync
        self._rename = rename and _RENAMEAT2 is not None
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)  # it holds patient data: owner only
        self.tmp_dir = self.root / ".tmp"  #: one folder for partial writes: a crash sweep never walks the store
        self.tmp_dir.mkdir(mode=0o700, exist_ok=True)
        for folder in (self.root, self.tmp_dir):
            with contextlib.suppress(OSError):  # a store folder owned by someone else stays as it is
                os.chmod(folder, 0o700)
        self._known_dirs: set[Path] = set()
        self._counter = itertools.count()  # thread-safe in CPython: next() on a count is atomic
        self._token = secrets.token_hex(4)
        self._spares: _Spares | None = None

    def keep_spares(self, count: int = 64) -> None:
        """Keep ``count`` temporary files created ahead, and remove used temporary names in the background.

        For a long-running receiver (the SCP); :meth:`close` stops it.
        """
        if self._spares is None and count > 0:
            self._spares = _Spares(self, count)

    def close(self) -> None:
        """Stop the background work of :meth:`keep_spares` and remove the spare files."""
        spares, self._spares = self._spares, None
        if spares is not None:
            spares.close()

    def _discard_name(self, path: Path) -> None:
        """Remove a temporary name that is no longer needed (in the background when spares are kept)."""
        if self._spares is not None:
            self._spares.work.put(str(path))
        else:
            path.unlink(missing_ok=True)

    def path_for(self, study_uid: str, series_uid: str, sop_instance_uid: str) -> Path:
        """The final path of an object; every part is checked to be a UID so no name escapes ``root``."""
        for name, uid in (
            ("study_instance_uid", study_uid),
            ("series_instance_uid", series_uid),
            ("sop_instance_uid", sop_instance_uid),
        ):
            try:
                check_uid("FileStore", name, uid)
            except RecordError as exc:
                raise StoreError(f"cannot place object: {exc}") from None
        return self.root / study_uid / series_uid / f"{sop_instance_uid}.dcm"

    def _ensure_dir(self, folder: Path) -> None:
        if folder in self._known_dirs:
            return
        created = not folder.is_dir()
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        if created and self.fsync:
            for d in (folder, folder.parent, folder.parent.parent):
                if d == self.root.parent:
                    break
                fsync_dir(d)
        self._known_dirs.add(folder)

    def _new_temp(self) -> tuple[int, str]:
        """A new, empty temporary file: a spare if one is ready, else created now."""
        spare = self._spares.take() if self._spares is not None else None
        return spare if spare is not None else self._create_temp()

    def _create_temp(self) -> tuple[int, str]:
        """Create a new temporary file exclusively (cheaper than ``tempfile.mkstemp``'s random names)."""
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
        for _ in range(100):
            name = str(self.tmp_dir / f".tmp-{os.getpid()}-{self._token}-{next(self._counter)}")
            try:
                return os.open(name, flags, 0o600), name
            except FileExistsError:  # left by an earlier process: take the next number
                continue
        return tempfile.mkstemp(prefix=".tmp-", dir=self.tmp_dir)

    def open_temporary(self) -> TemporaryFile:
        """A new temporary file in the store to stream an object into, then :meth:`place` it.

        Lets a receiver write (and fsync) the bytes while they arrive and before it
        knows the object's UIDs.

        Raises
        ------
        StoreError
            The disk refused to create the file.
        """
        try:
            fd, name = self._new_temp()
        except OSError as exc:
            raise StoreError(f"cannot create a temporary file in {self.tmp_dir}: {exc.strerror or exc}") from None
        return TemporaryFile(fd, Path(name), self.fsync)

    def _copy_temp(self, source: Path) -> Path:
        """A temporary copy of ``source``, written a piece at a time."""
        tmp = self.open_temporary()
        try:
            with source.open("rb") as fh:
                for piece in iter(lambda: fh.read(_COPY_PIECE), b""):
                    tmp.write((piece,))
            return tmp.close()
        except BaseException:
            tmp.discard()
            raise

    def _write_temp(self, data: bytes) -> Path:
        tmp = self.open_temporary()
        try:
            tmp.write((data,))
            return tmp.close()
        except BaseException:
            tmp.discard()
            raise

    def put(
        self, data: bytes, *, study_uid: str, series_uid: str, sop_instance_uid: str, digest: str | None = None
    ) -> StoredFile:
        """Store ``data`` durably under its UIDs (``digest``: its :func:`content_digest`, when already known).

        Raises
        ------
        StoreError
            A UID cannot name a file, or the disk refused the write (full, read-only...).
        """
        final = self.path_for(study_uid, series_uid, sop_instance_uid)
        digest = digest or content_digest(data)
        try:
            self._ensure_dir(final.parent)
            if final.exists() and _file_content_digest(final) == digest:  # a re-import: nothing to write
                return StoredFile(final, digest, len(data), Placement.IDENTICAL)
            tmp = self._write_temp(data)
        except OSError as exc:
            raise StoreError(f"cannot write {final}: {exc.strerror or exc}") from None
        return self.place(
            tmp, len(data), study_uid=study_uid, series_uid=series_uid, sop_instance_uid=sop_instance_uid, digest=digest
        )

    def place(
        self, tmp: Path, size: int, *, study_uid: str, series_uid: str, sop_instance_uid: str, digest: str
    ) -> StoredFile:
        """Link a closed temporary file (``size`` bytes, content digest ``digest``) into place, as :meth:`put`.

        The temporary file is removed in every case.
        """
        moved = False
        try:
            final = self.path_for(study_uid, series_uid, sop_instance_uid)
            try:
                self._ensure_dir(final.parent)
                try:
                    moved = self._rename and _move_no_replace(tmp, final)
                    if not moved:
                        os.link(tmp, final)
                except FileExistsError:
                    return self._resolve_existing(final, tmp, size, digest)
                if self.fsync:
                    fsync_dir(final.parent)
            except OSError as exc:
                raise StoreError(f"cannot write {final}: {exc.strerror or exc}") from None
        finally:
            if not moved:
                self._discard_name(tmp)  # after a link it is only a second name of the placed file
        return StoredFile(final, digest, size, Placement.WRITTEN)

    def _resolve_existing(self, final: Path, tmp: Path, size: int, digest: str) -> StoredFile:
        """Another file holds this UID: identical content is a no-op, other content goes to ``_conflicts``."""
        if _file_content_digest(final) == digest:
            return StoredFile(final, digest, size, Placement.IDENTICAL)
        folder = self.root / "_conflicts"
        self._ensure_dir(folder)
        target = folder / f"{final.stem}.{digest.partition(':')[2][:16]}.dcm"
        if not target.exists():
            with contextlib.suppress(FileExistsError):
                os.link(tmp, target)
            if self.fsync:
                fsync_dir(folder)
        return StoredFile(target, digest, size, Placement.CONFLICT)

    def put_recording(
        self, files: list[tuple[str, bytes | Path]], *, study_uid: str, series_uid: str, sop_instance_uid: str
    ) -> Path:
        """Store the files of one non-DICOM recording (an ECG file; a WFDB header and its signal files) durably.

        They go to ``<study>/<series>/<sop>/`` under their own names (a WFDB header names its signal
        files), each written like :meth:`put` and never replaced; returns that folder.  The UIDs of such
        a recording derive from its content, so a file already there with other bytes is a StoreError.
        A file given as a path (a Holter's gigabyte of samples) is copied in pieces, never held whole.
        """
        folder = self.path_for(study_uid, series_uid, sop_instance_uid).with_suffix("")
        try:
            self._ensure_dir(folder)
            for name, data in files:
                if not name or name in (".", "..") or "/" in name or "\x00" in name:
                    raise StoreError(f"cannot store a recording file named {name!r}")
                final = folder / name
                if final.exists():
                    if not _same_content(final, data):
                        raise StoreError(f"cannot store {final}: other content is stored under that name")
                    continue
                tmp = self._write_temp(data) if isinstance(data, bytes) else self._copy_temp(data)
                try:
                    os.link(tmp, final)
                except FileExistsError:
                    if not _same_content(final, data):
                        raise StoreError(f"cannot store {final}: other content is stored under that name") from None
                finally:
                    self._discard_name(tmp)
            if self.fsync:
                fsync_dir(folder)
        except OSError as exc:
            raise StoreError(f"cannot write into {folder}: {exc.strerror or exc}") from None
        return folder

    def sweep_temporary(self) -> int:
        """Remove temporary files left by a crash; returns how many. Call at start-up only."""
        count = 0
        for tmp in self.tmp_dir.glob(".tmp-*"):
            tmp.unlink(missing_ok=True)
            count += 1
        return count
