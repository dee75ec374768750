"""The lean header walk equals pydicom's ``read_dataset`` wherever it answers, and declines the rest."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag

from ingest.element_walk import walk_dataset

from .conftest import DATA

PIXEL_TAGS = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009})

_texts = st.text(alphabet="ABCDEFGHIJ 0123456789^", max_size=20)
_uids = st.lists(st.integers(0, 999), min_size=2, max_size=6).map(lambda parts: ".".join(map(str, parts)))


@st.composite
def _datasets(draw: st.DrawFn, depth: int = 0) -> Dataset:
    ds = Dataset()
    if draw(st.booleans()):
        ds.SpecificCharacterSet = draw(st.sampled_from(["ISO_IR 100", "ISO_IR 192", ""]))
    ds.PatientName = draw(_texts)
    ds.StudyInstanceUID = draw(_uids)
    if draw(st.booleans()):
        ds.StudyDescription = draw(_texts)  # LO
    if draw(st.booleans()):
        ds.SliceThickness = draw(st.sampled_from(["", "1.25", "5"]))  # DS, may be empty
    if draw(st.booleans()):
        ds.Rows, ds.Columns = draw(st.integers(0, 4096)), draw(st.integers(0, 4096))  # US
    if draw(st.booleans()):
        ds.ImagePositionPatient = draw(st.lists(st.sampled_from(["-1.5", "0", "120.25"]), min_size=3, max_size=3))
    if draw(st.booleans()):
        ds.add_new(0x00091010, "LO", draw(_texts))  # a private element
    if draw(st.booleans()):
        ds.add_new(0x00290010, "OB", draw(st.binary(max_size=40)))
    if depth < 2 and draw(st.booleans()):
        items = draw(st.lists(_datasets(depth + 1), max_size=3))
        ds.ReferencedImageSequence = Sequence(items)
        ds["ReferencedImageSequence"].is_undefined_length = draw(st.booleans())
        for item in items:
            item.is_undefined_length_sequence_item = draw(st.booleans())
    if depth == 0 and draw(st.booleans()):
        ds.add_new(0x7FE00010, "OW", b"\x00\x01" * draw(st.integers(0, 8)))
        ds.add_new(0xFFFAFFFA, "OB", b"")  # after Pixel Data: never reached
    return ds


def _encode(ds: Dataset, implicit: bool) -> bytes:
    out = DicomBytesIO()
    out.is_little_endian, out.is_implicit_VR = True, implicit
    write_dataset(out, ds)
    return out.getvalue()


def _reference(data: bytes, implicit: bool) -> tuple[Dataset, int]:
    fp = io.BytesIO(data)
    ds = read_dataset(fp, implicit, True, stop_when=lambda tag, vr, length: tag in PIXEL_TAGS)
    return ds, fp.tell()


def _plain(ds: Dataset) -> list[tuple[int, object]]:
    """Every element converted, sequences item by item; a value that cannot be converted as its error's type."""
    out: list[tuple[int, object]] = []
    for tag in ds.keys():  # noqa: SIM118  (iterating a Dataset yields elements, not tags)
        try:
            element = ds[tag]
            value = [_plain(item) for item in element.value] if element.VR == "SQ" else element.value
            out.append((tag, (element.VR, value)))
        except Exception as exc:  # a damaged value: both must fail alike
            out.append((tag, type(exc)))
    return out


def _same(walked: Dataset, reference: Dataset) -> None:
    assert _plain(walked) == _plain(reference)
    assert walked._character_set == reference._character_set
    assert walked.original_character_set == reference._character_set  # what the header reader passes on


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_datasets(), st.booleans())
def test_walk_equals_pydicom_read_dataset(ds: Dataset, implicit: bool) -> None:
    data = _encode(ds, implicit)
    found = walk_dataset(data, 0, implicit=implicit, stop_at=PIXEL_TAGS)
    assert found is not None  # well-formed little endian: the walk answers
    walked, end = found
    reference, ref_end = _reference(data, implicit)
    assert end == ref_end
    _same(walked, reference)
    if "PixelData" in ds:  # stopped at Pixel Data, which is where its element starts
        assert struct.unpack_from("<HH", data, end) == (0x7FE0, 0x0010)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_datasets(), st.booleans(), st.data())
def test_cut_or_damaged_bytes_are_declined_or_read_alike(ds: Dataset, implicit: bool, data: st.DataObject) -> None:
    """A prefix ending anywhere, or a flipped byte: None, or exactly what pydicom reads (never a guess)."""
    encoded = bytearray(_encode(ds, implicit))
    cut = data.draw(st.integers(0, len(encoded)))
    if encoded and data.draw(st.booleans()):
        at = data.draw(st.integers(0, len(encoded) - 1))
        encoded[at] = data.draw(st.integers(0, 255))
    prefix = bytes(encoded[:cut])
    found = walk_dataset(prefix, 0, implicit=implicit, stop_at=PIXEL_TAGS)
    if found is None:
        return
    walked, end = found
    try:
        reference, ref_end = _reference(prefix, implicit)
    except Exception:
        pytest.fail("the walk read what pydicom cannot")
    assert end == ref_end
    _same(walked, reference)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_datasets(), st.booleans(), st.data())
def test_keep_builds_only_those_elements_and_declines_alike(ds: Dataset, implicit: bool, data: st.DataObject) -> None:
    """``keep`` leaves out the other elements (never the character set) and declines exactly what the full walk does."""
    encoded = bytearray(_encode(ds, implicit))
    if encoded and data.draw(st.booleans()):  # damage anywhere: in a kept element or a skipped one
        encoded[data.draw(st.integers(0, len(encoded) - 1))] = data.draw(st.integers(0, 255))
    prefix = bytes(encoded[: data.draw(st.integers(0, len(encoded)))])
    tags = [int(t) for t in ds.keys()]  # noqa: SIM118  (iterating a Dataset yields elements)
    keep = frozenset(data.draw(st.lists(st.sampled_from(tags or [0x00100010]))))
    full = walk_dataset(prefix, 0, implicit=implicit, stop_at=PIXEL_TAGS)
    part = walk_dataset(prefix, 0, implicit=implicit, stop_at=PIXEL_TAGS, keep=keep)
    assert (full is None) == (part is None)
    if full is None or part is None:
        return
    assert part[1] == full[1]
    wanted = keep | {0x00080005}
    assert _plain(part[0]) == [item for item in _plain(full[0]) if item[0] in wanted]
    assert part[0].original_character_set == full[0].original_character_set


def test_explicit_bytes_under_an_implicit_claim_are_left_to_pydicom() -> None:
    ds = Dataset()
    ds.PatientName = "A^B"
    assert walk_dataset(_encode(ds, False), 0, implicit=True, stop_at=PIXEL_TAGS) is None


def _dataset_start(data: bytes) -> tuple[int, bool] | None:
    """Where a little-endian Part 10 file's dataset starts, and whether it is implicit VR; else None."""
    if len(data) < 144 or data[128:132] != b"DICM":
        return None
    pos, implicit = 132, None
    while pos + 8 <= len(data) and struct.unpack_from("<H", data, pos)[0] == 2:
        tag = struct.unpack_from("<HH", data, pos)
        long = data[pos + 4 : pos + 6] in (b"OB", b"UN", b"UT", b"UC", b"UR", b"SQ", b"OW")
        start = pos + (12 if long else 8)
        length = struct.unpack_from("<L" if long else "<H", data, pos + (8 if long else 6))[0]
        if tag == (2, 0x10):
            value = data[start : start + length].rstrip(b"\x00 ")
            if value in (b"1.2.840.10008.1.2.2", b"1.2.840.10008.1.2.1.99"):
                return None  # big endian, deflate: pydicom's job
            implicit = value == b"1.2.840.10008.1.2"
        pos = start + length
    return (pos, implicit) if implicit is not None else None


_SAMPLES = [(p, s) for p in sorted(DATA.rglob("*.dcm")) if (s := _dataset_start(p.read_bytes())) is not None]


def test_the_samples_include_both_encodings_and_are_walked() -> None:
    assert {implicit for _, (_, implicit) in _SAMPLES} == {True, False}
    walked = [walk_dataset(p.read_bytes(), pos, implicit=imp, stop_at=PIXEL_TAGS) for p, (pos, imp) in _SAMPLES]
    assert all(found is not None for found in walked)  # real modality files take the lean path


@pytest.mark.parametrize(("path", "start"), _SAMPLES, ids=[p.name for p, _ in _SAMPLES])
def test_sample_files_walk_like_pydicom(path: Path, start: tuple[int, bool]) -> None:
    data = path.read_bytes()
    pos, implicit = start
    found = walk_dataset(data, pos, implicit=implicit, stop_at=PIXEL_TAGS)
    try:
        reference, ref_end = _reference(data[pos:], implicit)
    except Exception:
        assert found is None
        return
    if found is None:  # declined (damaged or unusual): pydicom reads it
        return
    walked, end = found
    assert end - pos == ref_end
    _same(walked, reference)


def test_walked_keys_are_the_shared_tags_that_header_lookups_use() -> None:
    from ingest.element_walk import interned_tag

    ds = Dataset()
    ds.PatientID = "ABC"
    ds.Rows = 4
    data = _encode(ds, implicit=False)
    first, second = (walk_dataset(data, 0, implicit=False, stop_at=PIXEL_TAGS) for _ in range(2))
    assert first is not None and second is not None
    keys = [next(k for k in walked[0]._dict if k == 0x00100020) for walked in (first, second)]
    assert keys[0] is keys[1] is interned_tag(0x00100020)
    assert isinstance(keys[0], BaseTag) and keys[0] == BaseTag(0x00100020)
