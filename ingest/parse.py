"""Parse one DICOM object held in memory: headers first, the whole dataset when asked, checked complete.

The checks name the tag or the problem (a truncated Pixel Data says how many bytes it expected,
as Rows x Columns x SamplesPerPixel x BitsAllocated x NumberOfFrames); a file without preamble is
tried only when it starts like a dataset, as DCMTK does. Used by the folder scan
(:mod:`ingest.scan`) and by the network receiver (:mod:`ingest.receive`), so a file and a
C-STORE of the same object are judged alike.
"""

from __future__ import annotations

import functools
import io
import logging
import struct
from collections.abc import Container
from typing import TYPE_CHECKING

import pydicom
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_dataset
from pydicom.tag import BaseTag, Tag
from pydicom.uid import UID

from core.errors import IngestError
from ingest.element_walk import interned_tag, walk_dataset
from ingest.headers import int_value, missing_required, text_value

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)

_UNDEFINED_LENGTH = 0xFFFFFFFF
NOT_DICOM = "not a DICOM file (no DICM preamble, no parsable dataset)"


# --------------------------------------------------------------------------- parsing one object


def could_be_dicom(head: bytes) -> bool:
    """Whether a file whose first bytes (at least 1 KiB, or all of it) are ``head`` may be DICOM at all.

    :func:`parse_dicom` rejects anything else as not DICOM from these bytes alone, so a scan need not read
    the rest of a big file that is not DICOM (a Holter's signal file).
    """
    return (len(head) >= 132 and head[128:132] == b"DICM") or _looks_like_raw_dataset(head)


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
