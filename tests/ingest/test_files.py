"""Files, folders, zip archives and DICOMDIR -> scan result -> index (idempotent)."""

from __future__ import annotations

import shutil
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.errors import IngestError
from ingest.filestore import FileStore
from ingest.indexing import index_scan
from ingest.parse import NOT_DICOM, parse_dataset_prefix, parse_dicom
from ingest.scan import scan
from store import index as idx
from store.db import Database

from .conftest import BAD_FILES, DATA, NET_FILES

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def test_folder_scan_sorts_good_bad_and_other(tmp_path: Path) -> None:
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    (tmp_path / "empty").mkdir()
    for f in NET_FILES[:3]:
        shutil.copy(f, tmp_path / "sub" / "deeper" / f.name)
    shutil.copy(DATA / "bad" / "MR_truncated.dcm", tmp_path / "sub")
    (tmp_path / "notes.xml").write_text("<ecg/>")
    result = scan([tmp_path])
    assert [s.path.name for s in result.dicom] == sorted(f.name for f in NET_FILES[:3])
    assert result.other_files == (tmp_path / "notes.xml",)
    (broken,) = result.broken_dicom
    assert broken.path.name == "MR_truncated.dcm"
    assert broken.reason.startswith("truncated DICOM: element (7FE0,0010) declares 8192 bytes, file has 8130")
    assert tmp_path / "empty" in result.empty_folders


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("MR_truncated.dcm", "truncated DICOM: element (7FE0,0010)"),
        ("emri_small_jpeg_2k_lossless_too_short.dcm", "truncated DICOM: the file ends inside"),
        ("meta_missing_tsyntax.dcm", "missing required tag (0008,0016) SOPClassUID"),
        ("JPEGLSNearLossless_08.dcm", "missing required tag (0020,000D) StudyInstanceUID"),
        ("no_meta.dcm", NOT_DICOM),
    ],
)
def test_each_broken_file_gets_a_clear_reason(name: str, expected: str) -> None:
    (rej,) = scan([DATA / "bad" / name]).rejected
    assert rej.reason.startswith(expected), rej.reason
    assert rej.dicom is (expected != NOT_DICOM)


def test_missing_path_is_rejected_and_quarantined(db: Database) -> None:
    result = scan([Path("/nonexistent/x.dcm")])
    (rej,) = result.rejected
    assert rej.reason == "no such file or folder"
    assert result.other_files == ()
    with db.session() as s:
        assert index_scan(s, result, NOW).quarantined == 1


def test_zip_members_read_in_memory_without_traversal(tmp_path: Path) -> None:
    archive = tmp_path / "study.zip"
    outside = tmp_path / "escaped.dcm"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(NET_FILES[0], "a/one.dcm")
        zf.writestr("../escaped.dcm", NET_FILES[1].read_bytes())
        zf.writestr("/abs/two.txt", b"hello")
        zf.write(BAD_FILES[0], "bad.dcm")
    result = scan([archive])
    assert not outside.exists()
    names = sorted(str(s.path) for s in result.dicom)
    assert names == sorted([f"{archive}!/../escaped.dcm", f"{archive}!/a/one.dcm"])
    assert {s.member for s in result.dicom} == {"a/one.dcm", "../escaped.dcm"}
    assert result.dicom[0].read_bytes() in (NET_FILES[0].read_bytes(), NET_FILES[1].read_bytes())
    text_member = Path(f"{archive}!/abs/two.txt")
    assert any(r.path == text_member and not r.dicom for r in result.rejected)
    assert text_member not in result.other_files  # no other reader can open a zip member: quarantined here
    assert any(r.path == Path(f"{archive}!/bad.dcm") for r in result.broken_dicom)


def test_dicomdir_is_followed_not_indexed() -> None:
    root = DATA / "dicomdir" / "TINY_ALPHA"
    from_dir = scan([root / "DICOMDIR"])
    from_folder = scan([root])
    assert from_dir.dicomdirs == (root / "DICOMDIR",)
    assert len(from_dir.dicom) == 50
    assert all(s.path.name != "DICOMDIR" for s in from_dir.dicom)
    # walking the folder reads each referenced file once, through the DICOMDIR
    assert sorted(s.instance.sop_instance_uid for s in from_folder.dicom) == sorted(
        s.instance.sop_instance_uid for s in from_dir.dicom
    )
    assert from_folder.other_files == (root / "README",)


def test_index_scan_twice_adds_nothing_new(distinct_files: list[Path], db: Database) -> None:
    folder = distinct_files[0].parent
    result = scan([folder, DATA / "bad"])
    with db.session() as s:
        first = index_scan(s, result, NOW)
    with db.session() as s:
        second = index_scan(s, scan([folder, DATA / "bad"]), NOW)
    assert first.new == len(result.dicom) == len(distinct_files)
    assert first.quarantined == len(result.broken_dicom) == 4
    assert (second.new, second.duplicate, second.quarantined) == (0, len(result.dicom), 0)
    with db.session(readonly=True) as s:
        studies = idx.list_studies(s)
        assert sum(st.instance_count for st in studies) == len(distinct_files)
        quarantine = idx.list_quarantine(s)
        assert len(quarantine) == 4
        assert all("Doe" not in q.reason for q in quarantine)
        indexed = {i.path for st in studies for se in st.series for i in se.instances}
        assert indexed == set(distinct_files)


def test_one_image_re_encoded_under_one_uid_conflicts(db: Database) -> None:
    """pydicom's MR_small samples carry one SOP Instance UID in five encodings: one wins, four conflict."""
    variants = sorted((DATA / "net").glob("MR_small*.dcm"))
    with db.session() as s:
        counts = index_scan(s, scan(variants), NOW)
    assert (counts.new, counts.conflict) == (1, len(variants) - 1)
    with db.session(readonly=True) as s:
        assert len(idx.list_conflicts(s)) == len(variants) - 1


def test_index_scan_copies_zip_members_into_store(tmp_path: Path, db: Database) -> None:
    archive = tmp_path / "in.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in NET_FILES[:4]:
            zf.write(f, f"x/{f.name}")
    store = FileStore(tmp_path / "store", fsync=False)
    with db.session() as s:
        without = index_scan(s, scan([archive]), NOW)
    assert (without.new, without.quarantined) == (0, 4)
    with db.session() as s:
        counts = index_scan(s, scan([archive]), NOW, store=store)
    assert counts.new == 4
    with db.session(readonly=True) as s:
        paths = [i.path for st in idx.list_studies(s) for se in st.series for i in se.instances]
    assert len(paths) == 4 and all(p.is_relative_to(tmp_path / "store") and p.is_file() for p in paths)


def test_same_uid_other_bytes_is_a_conflict_original_kept(tmp_path: Path, db: Database) -> None:
    original = tmp_path / "a" / "x.dcm"
    changed = tmp_path / "b" / "x.dcm"
    original.parent.mkdir()
    changed.parent.mkdir()
    shutil.copy(DATA / "net" / "MR_small.dcm", original)
    data = bytearray(original.read_bytes())
    data[-1] ^= 0xFF  # flip one pixel byte: same UIDs, other content
    changed.write_bytes(bytes(data))
    with db.session() as s:
        assert index_scan(s, scan([original]), NOW).new == 1
    with db.session() as s:
        assert index_scan(s, scan([changed]), NOW).conflict == 1
    with db.session(readonly=True) as s:
        (study,) = idx.list_studies(s)
        assert study.series[0].instances[0].path == original


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.integers(min_value=0, max_value=9829), noise=st.binary(min_size=0, max_size=64))
def test_any_damaged_prefix_is_rejected_cleanly_or_parsed(cut: int, noise: bytes) -> None:
    """Truncating or corrupting a file never raises anything but IngestError."""
    from core.errors import IngestError

    data = (DATA / "net" / "MR_small.dcm").read_bytes()[:cut] + noise
    try:
        ds = parse_dicom(data, "fuzz.dcm")
    except IngestError as exc:
        assert str(exc).startswith("fuzz.dcm: ")
    else:
        assert "SOPInstanceUID" in ds


def test_huge_declared_length_is_rejected_without_reading_it(tmp_path: Path) -> None:
    import pydicom
    from pydicom.dataset import Dataset

    good = pydicom.dcmread(DATA / "net" / "CT_small.dcm", stop_before_pixels=True)
    head = Dataset()
    head.file_meta = good.file_meta
    head.SOPClassUID = good.SOPClassUID
    path = tmp_path / "huge.dcm"
    head.save_as(path, enforce_file_format=True)
    with path.open("ab") as fh:  # (0009,1010) OB declaring 4 GB - 16 bytes, followed by 10 bytes
        fh.write(b"\x09\x00\x10\x10OB\x00\x00\xf0\xff\xff\xff" + b"0123456789")
    (rej,) = scan([path]).rejected
    assert rej.dicom and rej.reason.startswith("truncated DICOM"), rej.reason


_PART10 = [p for p in sorted(DATA.parent.rglob("*.dcm")) if p.read_bytes()[128:132] == b"DICM"]


@pytest.mark.parametrize("path", _PART10, ids=[p.name for p in _PART10])
def test_received_dataset_headers_give_the_records_of_the_whole_file(path: Path) -> None:
    """What a receiver reads early (the dataset alone, RECORD_TAGS only) gives the records a full parse gives."""
    from ingest.filestore import content_offset
    from ingest.headers import RECORD_TAGS, records_from_dataset, text_value

    data = path.read_bytes()
    try:
        full = parse_dicom(data, str(path))
    except IngestError:
        return  # a broken sample: the receiver parses it whole at the end and rejects it alike
    ts = text_value(full.file_meta, "TransferSyntaxUID") or ""
    dataset = data[content_offset(data) :]
    found = parse_dataset_prefix(dataset[: max(len(dataset) - 8, 0)], ts, str(path), keep=RECORD_TAGS)
    if found is None:  # big endian, deflate, no Pixel Data, damage: left to the full parse
        return
    early, pos = found
    assert dataset[pos : pos + 4] == b"\xe0\x7f\x10\x00"

    def records(ds: object) -> object:
        try:
            return records_from_dataset(ds, path=path, content_digest="xxh3-128:" + "0" * 32, transfer_syntax_uid=ts)  # type: ignore[arg-type]
        except IngestError as exc:
            return str(exc)

    assert records(early) == records(full)


def test_received_samples_take_the_early_path_where_whole_files_do() -> None:
    """The dataset-only early parse answers wherever the file-level one does (it drops no sample to the slow path)."""
    from ingest.filestore import content_offset
    from ingest.headers import RECORD_TAGS, text_value
    from ingest.parse import parse_header_prefix

    answered = 0
    for path in _PART10:
        data = path.read_bytes()
        try:
            ts = text_value(parse_dicom(data, str(path)).file_meta, "TransferSyntaxUID") or ""
        except IngestError:
            continue
        early = parse_dataset_prefix(data[content_offset(data) :], ts, str(path), keep=RECORD_TAGS)
        whole = parse_header_prefix(data, str(path))
        if whole is not None and ts != "1.2.840.10008.1.2.2":  # big endian: the file-level parse only
            assert early is not None, path.name
        answered += early is not None
    assert answered >= 30
