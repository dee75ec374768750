"""Read DICOM from disk: files, folders, zip archives and DICOMDIR file-sets.

:func:`scan` only reads: it sorts every input into DICOM objects (with their
records and content digest, of the dataset without its file meta, so the
same object read from a folder or received by DIMSE or WADO digests the same),
rejected objects (broken DICOM, with a reason that names the tag or the
problem) and other files that are not DICOM at all.  The caller decides what to
do with the last group (the app first offers them to the ECG readers, then
quarantines what nobody could read).  :func:`index_scan` puts a scan into the
index, idempotently.

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

import functools
import io
import logging
import os
import stat
import struct
import zipfile
from collections.abc import Container, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import pydicom
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_dataset
from pydicom.tag import BaseTag, Tag
from pydicom.uid import UID

from core.config import LimitsConfig
from core.errors import IngestError, StoreError
from core.records import Instance, Series, Study
from ingest.element_walk import interned_tag, walk_dataset
from ingest.filestore import FileStore, Placement, content_digest
from ingest.headers import int_value, missing_required, records_from_dataset, text_value

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

#: Media Storage Directory Storage: the SOP class of a DICOMDIR.
DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"
#: The limits a scan applies when its caller names none (the configuration's defaults).
DEFAULT_LIMITS = LimitsConfig()
_UNDEFINED_LENGTH = 0xFFFFFFFF
NOT_DICOM = "not a DICOM file (no DICM preamble, no parsable dataset)"


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
        return tuple(r.path for r in self.rejected if _offerable(r))

    @property
    def broken_dicom(self) -> tuple[Rejected, ...]:
        return tuple(r for r in self.rejected if r.dicom)


def _offerable(rejected: Rejected) -> bool:
    return not rejected.dicom and not rejected.refused and _regular(rejected.path)


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


@dataclass(frozen=True, slots=True)
class IndexCounts:
    """What :func:`index_scan` did."""

    new: int = 0
    duplicate: int = 0
    conflict: int = 0
    quarantined: int = 0


# --------------------------------------------------------------------------- parsing one object


def _looks_like_raw_dataset(data: bytes) -> bool:
    """A file without preamble is tried only if it starts with a group 0002/0008 tag (as DCMTK does)."""
    return len(data) >= 8 and data[:2] in (b"\x02\x00", b"\x08\x00", b"\x00\x02", b"\x00\x08")


def _truncation(ds: Dataset) -> str | None:
    """Name the element cut short by the end of the file, if any.

    Only the last top-level element can be: the file ends inside it, so
    nothing follows.  (Earlier elements are complete or pydicom fails outright.)
    """
    if not len(ds):
        return None
    tag = Tag(next(reversed(ds.keys())))  # type: ignore[call-overload]  # a dict view: reversible
    raw = ds.get_item(tag)
    length = getattr(raw, "length", None)
    value = getattr(raw, "value", None)
    if length is None or length == _UNDEFINED_LENGTH or not isinstance(value, bytes):
        return None
    if len(value) < length:
        return f"element ({tag.group:04X},{tag.element:04X}) declares {length} bytes, file has {len(value)}"
    return None


def _expected_native_pixel_bytes(ds: Dataset) -> int | None:
    rows, cols, bits = int_value(ds, "Rows"), int_value(ds, "Columns"), int_value(ds, "BitsAllocated")
    if rows is None or cols is None or bits is None:
        return None
    spp = int_value(ds, "SamplesPerPixel") or 1  # absent, empty or zero: one sample
    frames = int_value(ds, "NumberOfFrames") or 1
    total_bits = rows * cols * spp * bits * max(frames, 1)
    return (total_bits + 7) // 8


_BIG_ENDIAN = "1.2.840.10008.1.2.2"
_IMPLICIT = "1.2.840.10008.1.2"
_DEFLATED = frozenset({"1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.8.1"})
_LONG_VRS = frozenset({b"OB", b"OW", b"OF", b"OD", b"OL", b"OV", b"UN"})
_SEQ_DELIMITER = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
_PIXEL_EXPLAINED = "(Rows x Columns x SamplesPerPixel x BitsAllocated x NumberOfFrames)"


def _pixel_tail_ok(data: bytes, pos: int, ts: str, ds: Dataset, where: str) -> bool:
    """Check the Pixel Data element that starts at ``pos`` without decoding it.

    True: complete.  False: unusual layout, the caller parses the whole file
    instead.  Raises IngestError when the file is cut short inside it.
    """
    return pixel_element_ok(bytes(data[pos : pos + 12]), len(data) - pos, bytes(data[-8:]), ts, ds, where)


def pixel_element_ok(head: bytes, available: int, tail: bytes, ts: str, ds: Dataset, where: str) -> bool:
    """Check a Pixel Data element from its first 12 bytes, the bytes left from its start, and the object's end.

    ``tail``: the object's last 8 bytes (an encapsulated Pixel Data element must
    end with a sequence delimiter).  Lets a streaming receiver check an
    object whose bytes it never joined.  Returns and raises as :func:`_pixel_tail_ok`.
    """
    if available <= 0:
        return True  # no pixel data
    if available < 12 or len(head) < 12:
        return False
    fmt = ">" if ts == _BIG_ENDIAN else "<"
    if struct.unpack_from(fmt + "HH", head, 0) != (0x7FE0, 0x0010):
        return False  # stopped at float/double pixel data: let the full parse judge
    if ts == _IMPLICIT:
        (length,), start = struct.unpack_from("<L", head, 4), 8
    elif head[4:6] in _LONG_VRS:
        (length,), start = struct.unpack_from(fmt + "L", head, 8), 12
    else:
        (length,), start = struct.unpack_from(fmt + "H", head, 6), 8
    if length == _UNDEFINED_LENGTH:
        return tail == _SEQ_DELIMITER  # encapsulated: complete when the sequence is closed
    if start + length > available:
        raise IngestError(
            f"truncated DICOM: element (7FE0,0010) declares {length} bytes, file has {available - start}",
            source=where,
        )
    expected = _expected_native_pixel_bytes(ds)
    if expected is not None and length < expected:
        raise IngestError(
            f"truncated DICOM: (7FE0,0010) PixelData has {length} bytes, expected {expected} {_PIXEL_EXPLAINED}",
            source=where,
        )
    return True


_META_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"})
_PIXEL_TAGS = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009})


def _at_pixel_data(tag: BaseTag, vr: str | None, length: int) -> bool:
    return tag in _PIXEL_TAGS


def _quick_header(data: bytes) -> tuple[Dataset, int] | None:
    """``pydicom.dcmread(stop_before_pixels=True)`` for the usual layout, about a third cheaper.

    The file meta (group 0002, always explicit VR little endian) is read here
    into raw elements instead of by pydicom's validating meta pass, and the
    dataset by pydicom's own ``read_dataset``.  Returns the dataset and where
    it stopped (the Pixel Data element, or the end); ``None`` for anything
    unusual (big endian, deflate, private transfer syntax, command elements,
    damage), which the caller then leaves to ``dcmread``.
    """
    n = len(data)
    if n < 144 or data[128:132] != b"DICM":
        return None
    meta: dict[BaseTag, DataElement | RawDataElement] = {}
    pos = 132
    while pos + 8 <= n:
        group, elem = struct.unpack_from("<HH", data, pos)
        if group != 0x0002:
            break
        vr = data[pos + 4 : pos + 6]
        if vr in _META_LONG_VRS:
            if pos + 12 > n:
                return None
            (length,), start = struct.unpack_from("<L", data, pos + 8), pos + 12
        else:
            (length,), start = struct.unpack_from("<H", data, pos + 6), pos + 8
        if length == _UNDEFINED_LENGTH or start + length > n or not vr.isalpha():
            return None
        tag = interned_tag((group << 16) | elem)
        meta[tag] = RawDataElement(tag, vr.decode("ascii"), length, data[start : start + length], start, False, True)
        pos = start + length
    ts_element = meta.get(BaseTag(0x00020010))
    raw_ts = ts_element.value if isinstance(ts_element, RawDataElement) else None
    if not isinstance(raw_ts, bytes) or pos + 4 > n or data[pos : pos + 2] == b"\x00\x00":  # command elements
        return None
    implicit = _little_endian_implicit(raw_ts.decode("ascii", "replace").strip(" \x00"))
    if implicit is None:
        return None
    fp = io.BytesIO(data)
    walked = walk_dataset(data, pos, implicit=implicit, stop_at=_PIXEL_TAGS)
    try:
        if walked is not None:
            body, end = walked
            charset = body.original_character_set  # the walk settled it as read_dataset would
        else:
            fp.seek(pos)
            body = read_dataset(fp, implicit, True, stop_when=_at_pixel_data)
            end = fp.tell()
            charset = body._character_set
        ds = FileDataset(fp, body, data[:128], FileMetaDataset(meta), implicit, True)
    except Exception:
        return None
    ds.set_original_encoding(implicit, True, charset)
    return ds, end


def parse_header_prefix(prefix: bytes, where: str) -> tuple[Dataset, int] | None:
    """The headers of an object from its first bytes, when these hold everything before Pixel Data.

    Returns the dataset (stopped before Pixel Data) and where the Pixel Data
    element starts, for :func:`pixel_element_ok` once the object is complete;
    ``None`` when the prefix is too short or the layout is unusual (the caller
    then parses the whole object with :func:`parse_dicom`).  Never raises: a
    prefix may end anywhere.
    """
    if len(prefix) < 132 or prefix[128:132] != b"DICM":
        return None
    found = _headers(prefix)
    if found is None:
        return None
    ds, pos = found
    ts = text_value(ds.file_meta, "TransferSyntaxUID") or ""
    if not ts or ts in _DEFLATED or len(ds) == 0 or pos + 12 > len(prefix):
        return None
    fmt = ">" if ts == _BIG_ENDIAN else "<"
    # pydicom stopped *at* Pixel Data, not at the end of the prefix: the headers are complete
    if struct.unpack_from(fmt + "HH", prefix, pos) != (0x7FE0, 0x0010):
        return None
    if _truncation(ds) or missing_required(ds):
        return None
    return ds, pos


def parse_dataset_prefix(
    prefix: bytes, transfer_syntax: str, where: str, *, keep: Container[int] | None = None
) -> tuple[Dataset, int] | None:
    """:func:`parse_header_prefix` for a dataset without preamble or file meta, in a known transfer syntax.

    What a Storage SCP has while an object arrives: it negotiated the transfer
    syntax and writes the file meta itself, so nothing is read but the
    dataset.  ``keep`` restricts the result to those elements (the receiver
    passes :data:`ingest.headers.RECORD_TAGS`).  Returns the dataset and where
    Pixel Data starts in it; ``None`` for a prefix that is too short, an
    encoding other than little endian without deflate, or any irregularity
    (the caller then parses the whole object with :func:`parse_dicom`, which
    names the problem).  Never raises.
    """
    implicit = _little_endian_implicit(transfer_syntax)
    if implicit is None:
        return None
    walked = walk_dataset(prefix, 0, implicit=implicit, stop_at=_PIXEL_TAGS, keep=keep)
    if walked is None:
        return None
    ds, pos = walked
    if len(ds) == 0 or pos + 12 > len(prefix) or struct.unpack_from("<HH", prefix, pos) != (0x7FE0, 0x0010):
        return None
    if missing_required(ds):
        return None
    return ds, pos


@functools.lru_cache(maxsize=64)
def _little_endian_implicit(transfer_syntax: str) -> bool | None:
    """True: implicit VR little endian; False: explicit VR little endian (native or encapsulated); None: other."""
    if transfer_syntax == _IMPLICIT:
        return True
    ts = UID(transfer_syntax)
    if ts.is_transfer_syntax and ts.is_little_endian and not ts.is_deflated and not ts.is_implicit_VR:
        return False
    return None


def _headers(data: bytes) -> tuple[Dataset, int] | None:
    """Headers up to Pixel Data and where they stopped: :func:`_quick_header`, else ``dcmread``; None if neither."""
    quick = _quick_header(data)
    if quick is not None:
        return quick
    fp = io.BytesIO(data)
    try:
        ds = pydicom.dcmread(fp, stop_before_pixels=True)
    except Exception:
        return None
    return ds, fp.tell()


def _header_only(data: bytes, where: str) -> Dataset | None:
    """Fast path: headers parsed, Pixel Data checked in place; None when the full parse must decide."""
    found = _headers(data)
    if found is None:
        return None
    ds, pos = found
    ts = text_value(ds.file_meta, "TransferSyntaxUID") or ""
    if not ts or ts in _DEFLATED or len(ds) == 0 or _truncation(ds):
        return None
    return ds if _pixel_tail_ok(data, pos, ts, ds, where) else None


def _full_parse(data: bytes, where: str, has_preamble: bool) -> Dataset:
    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=not has_preamble)
    except InvalidDicomError:
        raise IngestError(NOT_DICOM, source=where) from None
    except EOFError as exc:
        raise IngestError(f"truncated DICOM: {exc}", source=where) from None
    except Exception as exc:  # pydicom raises many types on damaged input
        reason = "truncated DICOM" if has_preamble else NOT_DICOM
        raise IngestError(f"{reason}: {type(exc).__name__}: {exc}", source=where) from None
    if len(ds) == 0 and has_preamble:
        # pydicom drops the whole dataset when the file ends inside an undefined-length element
        try:
            header: Dataset = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
        except Exception:
            header = Dataset()
        if len(header):
            raise IngestError(
                "truncated DICOM: the file ends inside an undefined-length element (no delimiter)", source=where
            )
        raise IngestError("DICOM file with an empty dataset", source=where)
    truncated = _truncation(ds)
    if truncated:
        raise IngestError(f"truncated DICOM: {truncated}", source=where)
    pixel = ds.get_item("PixelData") if "PixelData" in ds else None
    if pixel is not None and getattr(pixel, "length", _UNDEFINED_LENGTH) != _UNDEFINED_LENGTH:
        expected = _expected_native_pixel_bytes(ds)
        actual = len(ds.PixelData)
        if expected is not None and actual < expected:
            raise IngestError(
                f"truncated DICOM: (7FE0,0010) PixelData has {actual} bytes, expected {expected} {_PIXEL_EXPLAINED}",
                source=where,
            )
    return ds


def parse_dicom(data: bytes, where: str) -> Dataset:
    """Parse an object's headers and check it is complete and indexable.

    Pixel Data is checked for completeness in place, not decoded; the
    returned dataset may stop before it.  Unusual layouts (no preamble,
    deflate, trailing elements) get a full parse.

    Raises
    ------
    IngestError
        With a reason a reader can act on: not DICOM, truncated, missing tag.
    """
    has_preamble = len(data) >= 132 and data[128:132] == b"DICM"
    if not has_preamble and not _looks_like_raw_dataset(data):
        raise IngestError(NOT_DICOM, source=where)
    ds = _header_only(data, where) if has_preamble else None
    if ds is None:
        ds = _full_parse(data, where, has_preamble)
    missing = missing_required(ds)
    if missing:
        if not has_preamble:
            raise IngestError(NOT_DICOM, source=where)
        raise IngestError(f"missing required tag {missing}", source=where)
    meta = getattr(ds, "file_meta", None)
    if has_preamble and (meta is None or "TransferSyntaxUID" not in meta):
        raise IngestError("missing required tag (0002,0010) TransferSyntaxUID in the file meta", source=where)
    return ds


def examine(
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
            self.dicom.append(examine(data, path, archive=archive, member=member))
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


def index_scan(
    session: Session,
    result: ScanResult,
    received_at: datetime,
    *,
    store: FileStore | None = None,
    quarantine_other: bool = False,
) -> IndexCounts:
    """Add a scan to the index; running it twice adds nothing the second time.

    Parameters
    ----------
    store:
        Copy every object into the file store first (required for zip members,
        which have no file of their own); without it files are indexed where they are.
    quarantine_other:
        Also quarantine non-DICOM files on disk (by default the caller does, after the ECG readers had a go);
        broken DICOM, zip members and missing paths are always quarantined here.
    """
    from store import index as idx

    new = duplicate = conflict = quarantined = 0
    batch: list[idx.NewInstance] = []
    for item in result.dicom:
        instance = item.instance
        if store is not None:
            try:
                placed = store.put(
                    item.read_bytes(),
                    study_uid=instance.study_instance_uid,
                    series_uid=instance.series_instance_uid,
                    sop_instance_uid=instance.sop_instance_uid,
                    digest=instance.content_digest,
                )
            except (StoreError, OSError) as exc:
                idx.add_quarantine(
                    session,
                    path=display_path(item.path),
                    reason=f"cannot store: {display_path(str(exc))}",
                    source="file",
                    received_at=received_at,
                )
                quarantined += 1
                continue
            if placed.placement is Placement.CONFLICT:
                log.warning("content %s: its SOP Instance UID is stored with other content", instance.content_digest)
            instance = _with_path(instance, placed.path)
        elif item.archive is not None or display_path(item.path) != str(item.path):
            reason = (
                "zip member needs a file store to be indexed"
                if item.archive is not None
                else "file name is not valid UTF-8 text: needs a file store to be indexed"
            )
            if not _already_quarantined(session, display_path(item.path), reason):
                idx.add_quarantine(
                    session, path=display_path(item.path), reason=reason, source="file", received_at=received_at
                )
                quarantined += 1
            continue
        batch.append(idx.NewInstance(item.study, item.series, instance, item.size))
    for outcome in idx.add_instances(session, batch, received_at=received_at):
        kind = outcome_name(outcome)
        if kind == "new":
            new += 1
        elif kind == "duplicate":
            duplicate += 1
        else:
            conflict += 1
    for rej in result.rejected:
        quarantine = rej.dicom or quarantine_other or not _offerable(rej)
        shown = display_path(rej.path)
        if quarantine and not _already_quarantined(session, shown, rej.reason):
            idx.add_quarantine(session, path=shown, reason=rej.reason, source="file", received_at=received_at)
            quarantined += 1
    return IndexCounts(new=new, duplicate=duplicate, conflict=conflict, quarantined=quarantined)


def _already_quarantined(session: Session, path: str, reason: str) -> bool:
    """A re-scan must not repeat quarantine entries for the same file and reason."""
    from sqlalchemy import select

    from store.schema import QuarantineRow

    stmt = select(QuarantineRow.id).where(QuarantineRow.path == path, QuarantineRow.reason == reason).limit(1)
    return session.scalars(stmt).first() is not None


def _with_path(instance: Instance, path: Path) -> Instance:
    from dataclasses import replace

    return replace(instance, path=path)


def outcome_name(outcome: Any) -> str:
    """``new`` / ``duplicate`` / ``conflict`` from the store's IndexResult (enum or object with ``.status``)."""
    value = getattr(outcome, "status", outcome)
    name = getattr(value, "name", None) or getattr(value, "value", None) or str(value)
    return str(name).lower()
