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

import enum
import hashlib
import itertools
import os
import secrets
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

from core._validate import check_uid
from core.errors import RecordError, StoreError


class Placement(enum.Enum):
    """What :meth:`FileStore.put` did with the bytes."""

    WRITTEN = "written"  #: a new file was created
    IDENTICAL = "identical"  #: the same bytes were already stored under that UID
    CONFLICT = "conflict"  #: other bytes were stored under that UID; the newcomer went to ``_conflicts``


@dataclass(frozen=True, slots=True)
class StoredFile:
    """Where the bytes are now, their content digest (:func:`content_sha256`), and what happened."""

    path: Path
    sha256: str
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


def content_sha256(data: bytes) -> str:
    """Hex sha256 of the object's content: the dataset, without preamble and file meta.

    This is the dedupe key beside the SOP Instance UID: the same object sent
    by another AE, pulled by WADO or read from a folder hashes the same.
    """
    return hashlib.sha256(memoryview(data)[content_offset(data) :]).hexdigest()


def sha256_file(path: Path) -> str:
    """:func:`content_sha256` of a stored file."""
    return content_sha256(path.read_bytes())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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
    """

    def __init__(self, root: Path, *, fsync: bool = True) -> None:
        self.root = Path(root)
        self.fsync = fsync
        self.root.mkdir(parents=True, exist_ok=True)
        self.tmp_dir = self.root / ".tmp"  #: one folder for partial writes: a crash sweep never walks the store
        self.tmp_dir.mkdir(exist_ok=True)
        self._known_dirs: set[Path] = set()
        self._counter = itertools.count()  # thread-safe in CPython: next() on a count is atomic
        self._token = secrets.token_hex(4)

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
        folder.mkdir(parents=True, exist_ok=True)
        if created and self.fsync:
            for d in (folder, folder.parent, folder.parent.parent):
                if d == self.root.parent:
                    break
                _fsync_dir(d)
        self._known_dirs.add(folder)

    def _new_temp(self) -> tuple[int, str]:
        """Create a new temporary file exclusively (cheaper than ``tempfile.mkstemp``'s random names)."""
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
        for _ in range(100):
            name = str(self.tmp_dir / f".tmp-{os.getpid()}-{self._token}-{next(self._counter)}.dcm")
            try:
                return os.open(name, flags, 0o600), name
            except FileExistsError:  # left by an earlier process: take the next number
                continue
        return tempfile.mkstemp(prefix=".tmp-", suffix=".dcm", dir=self.tmp_dir)

    def _write_temp(self, data: bytes) -> Path:
        fd, name = self._new_temp()
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                if self.fsync:
                    os.fsync(fh.fileno())
        except BaseException:
            Path(name).unlink(missing_ok=True)
            raise
        return Path(name)

    def put(
        self, data: bytes, *, study_uid: str, series_uid: str, sop_instance_uid: str, sha256: str | None = None
    ) -> StoredFile:
        """Store ``data`` durably under its UIDs (``sha256``: its :func:`content_sha256`, when already known).

        Raises
        ------
        StoreError
            A UID cannot name a file, or the disk refused the write (full, read-only...).
        """
        final = self.path_for(study_uid, series_uid, sop_instance_uid)
        digest = sha256 or content_sha256(data)
        try:
            self._ensure_dir(final.parent)
            if final.exists():
                return self._resolve_existing(final, data, digest)
            tmp = self._write_temp(data)
            try:
                os.link(tmp, final)
            except FileExistsError:
                return self._resolve_existing(final, data, digest)
            finally:
                tmp.unlink(missing_ok=True)
            if self.fsync:
                _fsync_dir(final.parent)
        except OSError as exc:
            raise StoreError(f"cannot write {final}: {exc.strerror or exc}") from None
        return StoredFile(final, digest, len(data), Placement.WRITTEN)

    def write_temporary(self, data: bytes) -> Path:
        """Write ``data`` to a new temporary file in the store (fsynced when ``fsync``), to :meth:`place` later.

        Lets a receiver start the write (and its fsync) before it has parsed the object's UIDs.

        Raises
        ------
        StoreError
            The disk refused the write.
        """
        try:
            return self._write_temp(data)
        except OSError as exc:
            raise StoreError(f"cannot write a temporary file in {self.tmp_dir}: {exc.strerror or exc}") from None

    def place(
        self, tmp: Path, data: bytes, *, study_uid: str, series_uid: str, sop_instance_uid: str, sha256: str
    ) -> StoredFile:
        """Link a durable temporary file from :meth:`write_temporary` (holding ``data``) into place, as :meth:`put`.

        The temporary file is removed in every case.
        """
        try:
            final = self.path_for(study_uid, series_uid, sop_instance_uid)
            try:
                self._ensure_dir(final.parent)
                if final.exists():
                    return self._resolve_existing(final, data, sha256)
                try:
                    os.link(tmp, final)
                except FileExistsError:
                    return self._resolve_existing(final, data, sha256)
                if self.fsync:
                    _fsync_dir(final.parent)
            except OSError as exc:
                raise StoreError(f"cannot write {final}: {exc.strerror or exc}") from None
        finally:
            tmp.unlink(missing_ok=True)
        return StoredFile(final, sha256, len(data), Placement.WRITTEN)

    def _resolve_existing(self, final: Path, data: bytes, digest: str) -> StoredFile:
        if sha256_file(final) == digest:
            return StoredFile(final, digest, len(data), Placement.IDENTICAL)
        folder = self.root / "_conflicts"
        self._ensure_dir(folder)
        target = folder / f"{final.stem}.{digest[:16]}.dcm"
        if not target.exists():
            tmp = self._write_temp(data)
            try:
                os.replace(tmp, target)
            finally:
                tmp.unlink(missing_ok=True)
            if self.fsync:
                _fsync_dir(folder)
        return StoredFile(target, digest, len(data), Placement.CONFLICT)

    def sweep_temporary(self) -> int:
        """Remove temporary files left by a crash; returns how many. Call at start-up only."""
        count = 0
        for tmp in self.tmp_dir.glob(".tmp-*"):
            tmp.unlink(missing_ok=True)
            count += 1
        return count
