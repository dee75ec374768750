"""A lean walk over a little-endian dataset's top-level elements, up to Pixel Data.

The receive path parses the headers of every object it acknowledges; pydicom's
``read_dataset`` spends most of that time in its general element generator
(hooks, heuristics, deferred reads).  For the layout nearly every modality
writes (explicit or implicit VR little endian, well-formed), this walk produces
the same raw elements with plain ``struct`` reads; values stay raw and pydicom
converts the ones that are used, as it would after ``read_dataset``; a
sequence of undefined length is parsed there and then by pydicom's
``read_sequence``, as ``read_dataset`` does.  Anything unusual (a VR that is
not two capital letters, an element running past the end, an undefined length
on anything but a sequence, a sequence pydicom cannot read) returns ``None``
and the caller uses pydicom, which knows the heuristics and reports the damage.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Container, MutableMapping, MutableSequence
from typing import Any

from pydicom.charset import convert_encodings, default_encoding
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement, convert_raw_data_element, empty_value_for_VR
from pydicom.dataset import Dataset
from pydicom.filereader import read_sequence
from pydicom.tag import BaseTag
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32
from pydicom.values import convert_string

_UNDEFINED = 0xFFFFFFFF
_LONG = frozenset(vr.encode("ascii") for vr in EXPLICIT_VR_LENGTH_32)
_TAG_LENGTH = struct.Struct("<HHL")  # implicit VR element header, and every item/delimiter header
_TAG_VR_SHORT = struct.Struct("<HH2sH")
_LONG_LENGTH = struct.Struct("<L")
_VR_NAMES = {vr: vr.decode("ascii") for vr in (bytes((a, b)) for a in range(65, 91) for b in range(65, 91))}
_CHARSET = 0x00080005
_RAW_FIELDS = (
    "tag",
    "VR",
    "length",
    "value",
    "value_tell",
    "is_implicit_VR",
    "is_little_endian",
    "is_raw",
    "is_buffered",
)


_INTERNED: dict[int, BaseTag] = {}
_INTERN_LIMIT = 8192  # a flood of private tags must not grow the table without bound


def interned_tag(value: int) -> BaseTag:
    """One shared ``BaseTag`` per tag value.

    A dataset's keys are ``BaseTag`` objects, whose ``__eq__`` is Python code
    that a dict lookup calls on every hash match unless the key it is given is
    the very object stored; keys from here and lookups with keys from here
    (``ingest.headers``) skip it, and the walk skips building a tag per element.
    """
    tag = _INTERNED.get(value)
    if tag is None:
        tag = BaseTag(value)
        if len(_INTERNED) < _INTERN_LIMIT:
            _INTERNED[value] = tag
    return tag


def _new_raw(cls: type[RawDataElement], fields: tuple[Any, ...]) -> RawDataElement:
    return cls(*fields)


if RawDataElement._fields == _RAW_FIELDS:  # the named tuple's own constructor costs a third of the walk
    _new_raw = tuple.__new__  # type: ignore[assignment]


def walk_dataset(
    data: bytes, pos: int, *, implicit: bool, stop_at: Container[int], keep: Container[int] | None = None
) -> tuple[Dataset, int] | None:
    """The top-level elements from ``pos`` as a pydicom dataset, and where the walk stopped.

    Stops *at* the first element whose tag is in ``stop_at`` (the returned
    position is that element's start) or at the end of ``data``.  Returns
    ``None`` for anything but a well-formed little-endian dataset; the result
    otherwise equals ``pydicom.filereader.read_dataset`` with the same
    ``stop_when``.  With ``keep``, only those elements (and the character
    set) are in the result; the others are checked alike but not built,
    which is most of the walk's cost when a caller reads a few attributes.
    """
    if implicit and pos + 6 <= len(data) and data[pos + 4 : pos + 6] in _VR_NAMES:
        return None  # looks explicit: pydicom's reader decides which it is
    try:
        elements = _elements(data, pos, implicit, stop_at, keep)
    except Exception:  # damage pydicom may judge otherwise (or report better): its call
        return None
    if elements is None:
        return None
    raw, end = elements
    encoding: str | MutableSequence[str] = default_encoding
    charset = raw.get(interned_tag(_CHARSET))
    if isinstance(charset, RawDataElement):  # as read_dataset settles the dataset's encoding (and fails)
        try:
            encoding = convert_encodings(convert_raw_data_element(charset).value)
        except Exception:
            return None
    ds = Dataset(raw)
    ds.set_original_encoding(implicit, True, encoding)
    return ds, end


def _elements(
    data: bytes, pos: int, implicit: bool, stop_at: Container[int], keep: Container[int] | None
) -> tuple[MutableMapping[BaseTag, DataElement | RawDataElement], int] | None:
    """The raw elements and where the walk stopped; ``encoding`` follows the character set for nested sequences."""
    n = len(data)
    raw: dict[BaseTag, DataElement | RawDataElement] = {}
    encoding: str | MutableSequence[str] = default_encoding
    new, intern = _new_raw, interned_tag
    tag_length, tag_vr_short, long_length, long_vrs, names = (
        _TAG_LENGTH.unpack_from,
        _TAG_VR_SHORT.unpack_from,
        _LONG_LENGTH.unpack_from,
        _LONG,
        _VR_NAMES,
    )
    while pos < n:
        if pos + 8 > n:
            return None
        vr: str | None
        if implicit:
            group, elem, length = tag_length(data, pos)
            vr, start = None, pos + 8
        else:
            group, elem, vr_bytes, length = tag_vr_short(data, pos)
            vr = names.get(vr_bytes)
            if vr is None:
                return None
            if vr_bytes in long_vrs:
                if pos + 12 > n:
                    return None
                (length,) = long_length(data, pos + 8)
                start = pos + 12
            else:
                start = pos + 8
        tag = (group << 16) | elem
        if tag in stop_at:
            return raw, pos
        if group == 0xFFFE:
            return None
        if length == _UNDEFINED:
            # what read_dataset does: an undefined-length sequence is parsed there and then (it cannot be
            # delimited otherwise), with the character set seen so far; anything else is pydicom's to judge
            if vr is None:
                vr = _implicit_sq(tag, data, start)
            if vr != "SQ":
                return None
            fp = io.BytesIO(data)
            fp.seek(start)
            try:
                seq = read_sequence(fp, implicit, True, length, encoding)
            except Exception:
                return None
            if keep is None or tag in keep:
                key = intern(tag)
                raw[key] = DataElement(key, "SQ", seq, start, is_undefined_length=True)
            pos = fp.tell()
            continue
        end = start + length
        if end > n:
            return None
        if keep is not None and tag not in keep and tag != _CHARSET:
            pos = end
            continue
        value = data[start:end] if length else empty_value_for_VR(vr, raw=True)
        if tag == _CHARSET:
            encoding = convert_encodings(convert_string(value if isinstance(value, bytes) else b"", True))
        key = intern(tag)
        raw[key] = new(RawDataElement, (key, vr, length, value, start, implicit, True, True, False))
        pos = end
    return raw, pos


def _implicit_sq(tag: int, data: bytes, start: int) -> str | None:
    """The VR pydicom gives an implicit-VR element of undefined length: its dictionary VR, else SQ if items follow."""
    try:
        return str(dictionary_VR(tag))
    except KeyError:
        if start + 4 <= len(data) and struct.unpack_from("<HH", data, start) == (0xFFFE, 0xE000):
            return "SQ"
        return None


__all__ = ["interned_tag", "walk_dataset"]
