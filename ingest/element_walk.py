"""A lean walk over a little-endian dataset's top-level elements, up to Pixel Data.

The receive path parses the headers of every object it acknowledges; pydicom's
``read_dataset`` spends most of that time in its general element generator
(hooks, heuristics, deferred reads).  For the layout nearly every modality
writes (explicit or implicit VR little endian, well-formed), this walk produces
the same raw elements with plain ``struct`` reads; values stay raw and pydicom
converts the ones that are used, as it would after ``read_dataset``.  Anything
unusual (a VR that is not two capital letters, an element running past the
end, an undefined length that is not a sequence of items) returns ``None`` and
the caller uses pydicom, which knows the heuristics and reports the damage.
"""

from __future__ import annotations

import struct
from collections.abc import Container, MutableMapping
from typing import Any

from pydicom.charset import convert_encodings, default_encoding
from pydicom.dataelem import DataElement, RawDataElement, empty_value_for_VR
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32
from pydicom.values import convert_string

_UNDEFINED = 0xFFFFFFFF
_ITEM, _ITEM_END, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
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


def _new_raw(cls: type[RawDataElement], fields: tuple[Any, ...]) -> RawDataElement:
    return cls(*fields)


if RawDataElement._fields == _RAW_FIELDS:  # the named tuple's own constructor costs a third of the walk
    _new_raw = tuple.__new__  # type: ignore[assignment]


def walk_dataset(data: bytes, pos: int, *, implicit: bool, stop_at: Container[int]) -> tuple[Dataset, int] | None:
    """The top-level elements from ``pos`` as a pydicom dataset, and where the walk stopped.

    Stops *at* the first element whose tag is in ``stop_at`` (the returned
    position is that element's start) or at the end of ``data``.  Returns
    ``None`` for anything but a well-formed little-endian dataset; the result
    otherwise equals ``pydicom.filereader.read_dataset`` with the same
    ``stop_when``.
    """
    if implicit and pos + 6 <= len(data) and data[pos + 4 : pos + 6] in _VR_NAMES:
        return None  # looks explicit: pydicom's reader decides which it is
    elements = _elements(data, pos, implicit, stop_at)
    if elements is None:
        return None
    raw, end = elements
    ds = Dataset(raw)
    encoding: str | list[str] = default_encoding
    charset = raw.get(BaseTag(_CHARSET))
    if charset is not None:
        encoding = convert_encodings(convert_string(charset.value or b"", True))
    ds.set_original_encoding(implicit, True, encoding)
    return ds, end


def _elements(
    data: bytes, pos: int, implicit: bool, stop_at: Container[int]
) -> tuple[MutableMapping[BaseTag, DataElement | RawDataElement], int] | None:
    n = len(data)
    raw: dict[BaseTag, DataElement | RawDataElement] = {}
    new = _new_raw
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
            if vr not in (None, "SQ", "UN"):
                return None
            end = _sequence_end(data, start, implicit)
            if end is None:
                return None
            key = BaseTag(tag)
            raw[key] = RawDataElement(key, "SQ", length, data[start:end], start, implicit, True)
            pos = end
            continue
        end = start + length
        if end > n:
            return None
        value = data[start:end] if length else empty_value_for_VR(vr, raw=True)
        key = BaseTag(tag)
        raw[key] = new(RawDataElement, (key, vr, length, value, start, implicit, True, True, False))
        pos = end
    return raw, pos


def _sequence_end(data: bytes, pos: int, implicit: bool) -> int | None:
    """Just past the sequence delimiter of an undefined-length sequence starting at ``pos``."""
    n = len(data)
    while pos + 8 <= n:
        group, elem, length = _TAG_LENGTH.unpack_from(data, pos)
        tag = (group << 16) | elem
        pos += 8
        if tag == _SEQUENCE_END:
            return pos
        if tag != _ITEM:
            return None
        if length != _UNDEFINED:
            pos += length
            continue
        found = _item_end(data, pos, implicit)
        if found is None:
            return None
        pos = found
    return None


def _item_end(data: bytes, pos: int, implicit: bool) -> int | None:
    """Just past the item delimiter of an undefined-length item starting at ``pos``."""
    n = len(data)
    while pos + 8 <= n:
        group, elem, length = _TAG_LENGTH.unpack_from(data, pos)
        tag = (group << 16) | elem
        if tag == _ITEM_END:
            return pos + 8
        if implicit:
            start = pos + 8
        else:
            vr_bytes = data[pos + 4 : pos + 6]
            if vr_bytes not in _VR_NAMES:
                return None
            if vr_bytes in _LONG:
                if pos + 12 > n:
                    return None
                (length,) = _LONG_LENGTH.unpack_from(data, pos + 8)
                start = pos + 12
            else:
                length = _TAG_VR_SHORT.unpack_from(data, pos)[3]
                start = pos + 8
        if length == _UNDEFINED:
            found = _sequence_end(data, start, implicit)
            if found is None:
                return None
            pos = found
        else:
            pos = start + length
    return None


__all__ = ["walk_dataset"]
