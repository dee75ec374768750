"""Read DICOM from disk: files, folders, zip archives and DICOMDIR file-sets.

:func:`scan` only reads: it sorts every input into DICOM objects (with their
records and content digest, of the dataset without its file meta, so the
same object read from a folder or received by DIMSE or WADO digests the same),
rejected objects (broken DICOM, with a reason that names the tag or the
problem) and other files that are not DICOM at all.  The caller decides what to
do with the last group (the app first offers them to the ECG readers, then
quarantines what nobody could read).  :func:`ingest.indexing.index_scan` puts a
scan into the index, idempotently; :mod:`ingest.parse` parses one object.

Zip members are read in memory and never extracted, so a member named
``../../etc/passwd`` cannot write anywhere; its display path is
``<archive>!/<member>``.  A DICOMDIR is followed to the files it references and
is not itself indexed.

This is the input boundary: every file and member is read within
``limits`` (:class:`core.config.LimitsConfig`: object size, archive expansion
ratio and total) and only if it is a regular file (a FIFO, a device or a link
to one is refused unread), and any failure to parse one input, whatever its
kind, becomes a :class:`Rejected` entry with its reason; nothing one input
does stops the scan of the others.
"""

from __future__ import annotations

import logging
import os
import stat
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import pydicom

from core.config import LimitsConfig
from core.errors import IngestError
from core.records import Instance, Series, Study
from ingest.filestore import content_digest
from ingest.headers import records_from_dataset, text_value
from ingest.parse import NOT_DICOM, could_be_dicom, parse_dicom

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)

#: Media Storage Directory Storage: the SOP class of a DICOMDIR.
DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"
#: The limits a scan applies when its caller names none (the configuration's defaults).
DEFAULT_LIMITS = LimitsConfig()


@dataclass(frozen=True, slots=True)
class ScannedInstance:
    """A readable DICOM object found by :func:`scan`.

    ``study`` and ``series`` carry no children; ``instance.path`` is the file,
    or ``<archive>!/<member>`` for a zip member (then ``archive``/``member`` say where).
    """

    study: Study
    series: Series
    instance: Instance
    size: int
    archive: Path | None = None
    member: str | None = None

    @property
    def path(self) -> Path:
        return self.instance.path

    def read_bytes(self) -> bytes:
        """The object's bytes, from disk or from its archive."""
        if self.archive is not None and self.member is not None:
            with zipfile.ZipFile(self.archive) as zf:
                return zf.read(self.member)
        return self.instance.path.read_bytes()


@dataclass(frozen=True, slots=True)
class Rejected:
    """An input that could not be used, and why.

    ``dicom`` is True when it looked like DICOM (preamble or parsable dataset)
    but was broken; False when it is some other kind of file, which another
    reader (ECG formats) may still accept.
    """

    path: Path
    reason: str
    dicom: bool = True
    refused: bool = False  #: refused unread (not a regular file, over a limit): no other reader gets it

    @property
    def offerable(self) -> bool:
        """Whether another reader (the ECG formats) may still try it: a regular file that is not broken DICOM."""
        return not self.dicom and not self.refused and _regular(self.path)


@dataclass(frozen=True, slots=True)
class ScanResult:
    """What :func:`scan` found, in a stable (sorted) order."""

    dicom: tuple[ScannedInstance, ...] = ()
    rejected: tuple[Rejected, ...] = ()
    empty_folders: tuple[Path, ...] = ()
    dicomdirs: tuple[Path, ...] = ()

    @property
    def other_files(self) -> tuple[Path, ...]:
        """Non-DICOM files on disk, for the other format readers to try before they are quarantined.

        Zip members and missing paths are not offered (no reader can open them):
        :func:`index_scan` quarantines those itself.
        """
        return tuple(r.path for r in self.rejected if r.offerable)

    @property
    def broken_dicom(self) -> tuple[Rejected, ...]:
        return tuple(r for r in self.rejected if r.dicom)


def _regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(path.stat().st_mode)
    except (OSError, ValueError):
        return False


def display_path(path: Path | str) -> str:
    """A path as text that any database, log or terminal can take.

    A file name that is not valid UTF-8 (``os.fsdecode`` keeps its bytes as
    lone surrogates, which no encoder accepts) has those bytes written as
    ``\\xNN``; control characters (terminal escape sequences) as ``\\xNN`` too.
    """
    text = os.fsencode(str(path)).decode("utf-8", "backslashreplace")
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in text)


def _examine(
    data: bytes, path: Path, *, source: str = "file", archive: Path | None = None, member: str | None = None
) -> ScannedInstance:
    """Parse, check and describe one object held in memory."""
    where = str(path)
    ds = parse_dicom(data, where)
    sop_class = text_value(ds, "SOPClassUID") or ""
    if sop_class == DICOMDIR_SOP_CLASS:
        raise IngestError("DICOMDIR is a directory of a file-set, not an image", source=where)
    rec = records_from_dataset(ds, path=path, content_digest=content_digest(data), source=source)
    return ScannedInstance(rec.study, rec.series, rec.instance, len(data), archive, member)


# --------------------------------------------------------------------------- walking inputs


def _is_dicomdir(path: Path, head: bytes) -> bool:
    if path.name.upper() == "DICOMDIR":
        return True
    return DICOMDIR_SOP_CLASS.encode() in head[:1024] and head[128:132] == b"DICM"


def _dicomdir_files(path: Path) -> tuple[list[Path], list[Rejected]]:
    """Files a DICOMDIR references (only those inside its folder)."""
    from pydicom.fileset import FileSet

    try:
        fs = FileSet(pydicom.dcmread(path))
    except Exception as exc:
        return [], [Rejected(path, f"unreadable DICOMDIR: {type(exc).__name__}: {exc}")]
    root = path.parent.resolve()
    found: list[Path] = []
    rejected: list[Rejected] = []
    for inst in fs:
        target = Path(inst.path).resolve()
        if not target.is_relative_to(root):
            rejected.append(Rejected(target, "DICOMDIR references a file outside its folder"))
        elif not target.is_file():
            rejected.append(Rejected(target, "file referenced by DICOMDIR is missing"))
        else:
            found.append(target)
    return found, rejected


def _refusal(st: os.stat_result) -> str | None:
    """Why a file is not read at all (its type), or None for a regular file."""
    mode = st.st_mode
    if stat.S_ISREG(mode):
        return None
    kind = (
        "a FIFO" if stat.S_ISFIFO(mode)
        else "a character device" if stat.S_ISCHR(mode)
        else "a block device" if stat.S_ISBLK(mode)
        else "a socket" if stat.S_ISSOCK(mode)
        else "a directory" if stat.S_ISDIR(mode)
        else "not a regular file"
    )  # fmt: skip
    return f"not read: {kind}, expected a regular file"


def check_regular(path: Path, limit: int) -> None:
    """IngestError (with the reason) unless ``path`` is a regular file of at most ``limit`` bytes (nothing read)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except (OSError, ValueError) as exc:
        raise IngestError(f"unreadable: {getattr(exc, 'strerror', None) or type(exc).__name__}") from None
    try:
        st = os.fstat(fd)
    finally:
        os.close(fd)
    refusal = _refusal(st)
    if refusal is not None:
        raise IngestError(refusal)
    if st.st_size > limit:
        raise IngestError(f"file of {st.st_size} bytes exceeds limits.max_object_bytes ({limit})")


def read_regular(path: Path, limit: int) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes; IngestError (with the reason) otherwise.

    For files another reader chose (a WFDB header's signal files), read with the scan's own rules.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except (OSError, ValueError) as exc:
        raise IngestError(f"unreadable: {getattr(exc, 'strerror', None) or type(exc).__name__}") from None
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        refusal = _refusal(st)
        if refusal is not None:
            raise IngestError(refusal)
        if st.st_size > limit:
            raise IngestError(f"file of {st.st_size} bytes exceeds limits.max_object_bytes ({limit})")
        os.set_blocking(fh.fileno(), True)
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise IngestError(f"file grew past limits.max_object_bytes ({limit}) while read")
    return data


class _Scanner:
    def __init__(self, limits: LimitsConfig) -> None:
        self.limits = limits
        self.dicom: list[ScannedInstance] = []
        self.rejected: list[Rejected] = []
        self.empty: list[Path] = []
        self.dicomdirs: list[Path] = []
        self.seen: set[tuple[int, int]] = set()

    def refuse(self, path: Path, reason: str) -> None:
        self.rejected.append(Rejected(path, reason, dicom=False, refused=True))

    def add_bytes(self, data: bytes, path: Path, *, archive: Path | None = None, member: str | None = None) -> None:
        try:
            self.dicom.append(_examine(data, path, archive=archive, member=member))
        except IngestError as exc:
            reason = str(exc)
            prefix = f"{path}: "
            reason = reason[len(prefix) :] if reason.startswith(prefix) else reason
            self.rejected.append(Rejected(path, reason, dicom=reason != NOT_DICOM))
        except Exception as exc:  # the boundary: no input, however damaged, stops the scan of the others
            # the exception class only: a parser's message may quote a header value
            log.warning("unexpected %s while parsing an input", type(exc).__name__)
            self.rejected.append(Rejected(path, f"unreadable DICOM: the parser failed ({type(exc).__name__})"))

    def add_file(self, path: Path) -> None:
        limit = self.limits.max_object_bytes
        try:
            # O_NONBLOCK: opening a FIFO must not wait for a writer; its type is refused just below
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        except (OSError, ValueError) as exc:
            self.refuse(path, f"unreadable: {getattr(exc, 'strerror', None) or type(exc).__name__}")
            return
        try:
            with os.fdopen(fd, "rb") as fh:
                st = os.fstat(fh.fileno())
                refusal = _refusal(st)
                if refusal is not None:
                    self.refuse(path, refusal)
                    return
                if st.st_size > limit:
                    self.refuse(path, f"file of {st.st_size} bytes exceeds limits.max_object_bytes ({limit})")
                    return
                key = (st.st_dev, st.st_ino)  # one file reached twice (DICOMDIR and folder walk, links)
                if key in self.seen:
                    return
                self.seen.add(key)
                os.set_blocking(fh.fileno(), True)
                head = fh.read(1024)
                # a zip starts with a local file header (or is an empty archive); a DICOM file never does
                if head[:4] in (b"PK\x03\x04", b"PK\x05\x06") and zipfile.is_zipfile(fh):
                    kind = "zip"
                elif _is_dicomdir(path, head):
                    kind = "dicomdir"
                elif not could_be_dicom(head):  # decided by the first bytes: the rest is never read
                    kind = "other"
                else:
                    kind, data = "file", head + fh.read(limit + 1 - len(head))  # a file still growing stops here
                    if len(data) > limit:
                        self.refuse(path, f"file grew past limits.max_object_bytes ({limit}) while read")
                        return
        except OSError as exc:
            self.refuse(path, f"unreadable: {exc.strerror or exc}")
            return
        if kind == "zip":
            self.add_zip(path)
        elif kind == "dicomdir":
            self.add_dicomdir(path)
        elif kind == "other":
            self.rejected.append(Rejected(path, NOT_DICOM, dicom=False))
        else:
            self.add_bytes(data, path)

    def add_dicomdir(self, path: Path) -> None:
        self.dicomdirs.append(path)
        files, rejected = _dicomdir_files(path)
        self.rejected.extend(rejected)
        for f in files:
            self.add_file(f)

    def add_zip(self, path: Path) -> None:
        try:
            zf = zipfile.ZipFile(path)
        except Exception as exc:  # BadZipFile, OSError, and whatever a damaged central directory raises
            self.refuse(path, f"unreadable zip archive: {type(exc).__name__}")
            return
        with zf:
            members = [m for m in zf.infolist() if not m.is_dir()]
            if not members:
                self.empty.append(path)
            expanded = 0
            for info in sorted(members, key=lambda m: m.filename):
                display = Path(f"{path}!") / PurePosixPath(info.filename).as_posix().lstrip("/")
                name = PurePosixPath(info.filename).name
                if name.startswith("__MACOSX") or "/__MACOSX/" in f"/{info.filename}" or name == ".DS_Store":
                    continue
                refusal = self._member_refusal(info, expanded)
                if refusal is not None:
                    self.refuse(display, refusal)
                    continue
                expanded += info.file_size
                try:
                    with zf.open(info) as member:  # reads at most the declared size, checks the CRC
                        data = member.read(info.file_size + 1)
                except Exception as exc:  # BadZipFile, NotImplementedError, zlib.error, OSError, EOFError...
                    self.refuse(display, f"unreadable zip member: {type(exc).__name__}")
                    continue
                if len(data) != info.file_size:
                    self.refuse(display, f"zip member holds {len(data)} bytes, declares {info.file_size}")
                    continue
                self.add_bytes(data, display, archive=path, member=info.filename)

    def _member_refusal(self, info: zipfile.ZipInfo, expanded: int) -> str | None:
        """Why a zip member is not expanded: encrypted, or over a limit by its declared sizes (zip bombs)."""
        limits = self.limits
        if info.flag_bits & 0x1:
            return "encrypted zip member"
        if info.file_size > limits.max_object_bytes:
            limit = limits.max_object_bytes
            return f"zip member declares {info.file_size} bytes, over limits.max_object_bytes ({limit})"
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > (1 << 20) and ratio > limits.max_archive_ratio:
            return f"zip member expands {ratio:.0f}-fold, over limits.max_archive_ratio ({limits.max_archive_ratio:g})"
        if expanded + info.file_size > limits.max_archive_bytes:
            return f"zip archive expands past limits.max_archive_bytes ({limits.max_archive_bytes})"
        return None

    def add_folder(self, folder: Path) -> None:
        any_file = False
        for dirpath, dirnames, filenames in os.walk(folder, onerror=self._walk_error):
            dirnames.sort()
            here = Path(dirpath)
            if not filenames and not dirnames:
                self.empty.append(here)
            # a DICOMDIR first, so its files are read once through it
            for name in sorted(filenames, key=lambda n: (n.upper() != "DICOMDIR", n)):
                any_file = True
                self.add_file(here / name)
        if not any_file and folder not in self.empty:
            self.empty.append(folder)

    def _walk_error(self, exc: OSError) -> None:
        self.refuse(Path(exc.filename or "?"), f"unreadable folder: {exc.strerror or type(exc).__name__}")

    def result(self) -> ScanResult:
        return ScanResult(
            dicom=tuple(sorted(self.dicom, key=lambda s: str(s.path))),
            rejected=tuple(sorted(self.rejected, key=lambda r: str(r.path))),
            empty_folders=tuple(sorted(self.empty)),
            dicomdirs=tuple(self.dicomdirs),
        )


def scan(paths: Sequence[Path], limits: LimitsConfig = DEFAULT_LIMITS) -> ScanResult:
    """Sort files, folders (recursively), zip archives and DICOMDIRs into DICOM objects and the rest.

    A path that does not exist is rejected with that reason; nothing is written.
    Every input is read within ``limits`` (``settings.limits``).
    """
    scanner = _Scanner(limits)
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            scanner.add_folder(path)
        elif path.exists():
            scanner.add_file(path)  # refuses what is not a regular file
        else:
            scanner.rejected.append(Rejected(path, "no such file or folder", dicom=False))
    return scanner.result()


# --------------------------------------------------------------------------- indexing
