"""Atomic, content-checked placement of received objects."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import xxhash

from core.errors import StoreError
from ingest import filestore
from ingest.filestore import FileStore, Placement, _file_content_digest

UIDS = {"study_uid": "1.2.3", "series_uid": "1.2.3.4", "sop_instance_uid": "1.2.3.4.5"}


@pytest.fixture(params=[True, False], ids=["rename", "link"])
def rename(request: pytest.FixtureRequest) -> bool:
    """Both ways into place: ``renameat2(RENAME_NOREPLACE)``, and the link a system without it gets."""
    if request.param:
        assert filestore._RENAMEAT2 is not None, "this Linux has renameat2"
    return bool(request.param)


def test_put_writes_by_uid_with_digest(tmp_path: Path, rename: bool) -> None:
    store = FileStore(tmp_path / "s", rename=rename)
    placed = store.put(b"abc" * 100, **UIDS)
    assert placed.placement is Placement.WRITTEN
    assert placed.path == tmp_path / "s" / "1.2.3" / "1.2.3.4" / "1.2.3.4.5.dcm"
    assert placed.path.read_bytes() == b"abc" * 100
    assert placed.digest == "xxh3-128:" + xxhash.xxh3_128_hexdigest(b"abc" * 100) == _file_content_digest(placed.path)
    assert not list(store.tmp_dir.iterdir())


def test_same_bytes_again_is_identical_other_bytes_conflict(tmp_path: Path, rename: bool) -> None:
    store = FileStore(tmp_path, fsync=False, rename=rename)
    first = store.put(b"one", **UIDS)
    again = store.put(b"one", **UIDS)
    other = store.put(b"two", **UIDS)
    assert again.placement is Placement.IDENTICAL and again.path == first.path
    assert other.placement is Placement.CONFLICT and other.path != first.path
    assert first.path.read_bytes() == b"one"  # the original is kept
    assert other.path.read_bytes() == b"two" and other.path.parent.name == "_conflicts"
    store.close()
    assert not list(store.tmp_dir.iterdir())  # no temporary name outlives its object


@pytest.mark.parametrize("bad", ["../../etc", "1.2/../3", "", "1.2.x"])
def test_non_uid_names_cannot_escape_root(tmp_path: Path, bad: str) -> None:
    store = FileStore(tmp_path)
    with pytest.raises(StoreError, match="not a valid DICOM UID|expected a DICOM UID"):
        store.put(b"x", study_uid=bad, series_uid="1.2", sop_instance_uid="1.2.3")
    assert not any(p.is_file() for p in tmp_path.rglob("*"))


def test_disk_failure_raises_store_error_and_leaves_nothing(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "s")
    (tmp_path / "s" / "1.2.3").write_bytes(b"a file where the study folder should be")
    with pytest.raises(StoreError, match=r"cannot write .*1\.2\.3\.4\.5\.dcm"):
        store.put(b"data", **UIDS)
    assert sorted(p.name for p in (tmp_path / "s").rglob("*")) == [".tmp", "1.2.3"]  # .tmp is empty


def test_racing_writers_of_one_uid_keep_exactly_one_original(tmp_path: Path, rename: bool) -> None:
    store = FileStore(tmp_path, fsync=False, rename=rename)
    results = []
    barrier = threading.Barrier(8)

    def put(i: int) -> None:
        barrier.wait()
        results.append(store.put(f"payload-{i % 2}".encode(), **UIDS))

    threads = [threading.Thread(target=put, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    written = [r for r in results if r.placement is Placement.WRITTEN]
    assert len(written) == 1
    original = written[0].path.read_bytes()
    for r in results:
        if r.placement is Placement.IDENTICAL:
            assert r.path.read_bytes() == original
        elif r.placement is Placement.CONFLICT:
            assert r.path.read_bytes() != original


def test_sweep_removes_crash_leftovers_only(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    placed = store.put(b"keep", **UIDS)
    (store.tmp_dir / ".tmp-abc.dcm").write_bytes(b"half")
    assert store.sweep_temporary() == 1
    assert placed.path.read_bytes() == b"keep"


def test_content_digest_ignores_the_file_meta(tmp_path: Path) -> None:
    """The same object stored by another implementation (other meta) has the same content digest."""
    import pydicom
    from pydicom.uid import UID

    from ingest.filestore import content_digest, content_offset

    from .conftest import DATA

    original = DATA / "net" / "CT_small.dcm"
    ds = pydicom.dcmread(original)
    ds.file_meta.ImplementationClassUID = UID("1.2.3.4.5.6.7")
    ds.file_meta.ImplementationVersionName = "OTHER_SW_1"
    ds.file_meta.SourceApplicationEntityTitle = "SOMEONE"
    copy = tmp_path / "copy.dcm"
    ds.save_as(copy, enforce_file_format=True)
    a, b = original.read_bytes(), copy.read_bytes()
    assert a != b and content_offset(a) != content_offset(b)
    assert content_digest(a) == content_digest(b) == _file_content_digest(copy)
    ds.PatientWeight = 71  # a changed dataset is other content
    ds.save_as(copy, enforce_file_format=True)
    assert content_digest(copy.read_bytes()) != content_digest(a)
    assert content_offset(b"not dicom") == 0


def test_recording_file_given_as_a_path_is_copied_in_pieces(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Holter's samples are streamed into the store (pieces of _COPY_PIECE), stored once, never replaced."""
    monkeypatch.setattr(filestore, "_COPY_PIECE", 1000)
    store = FileStore(tmp_path / "s", fsync=False)
    source = tmp_path / "rec.dat"
    source.write_bytes(bytes(range(256)) * 40)  # 10,240 bytes: 11 pieces
    uids = {"study_uid": "1.2.3", "series_uid": "1.2.3.4", "sop_instance_uid": "1.2.3.4.5"}
    folder = store.put_recording([("rec.hea", b"rec 1 500 5120\n"), ("rec.dat", source)], **uids)
    assert (folder / "rec.dat").read_bytes() == source.read_bytes()
    assert store.put_recording([("rec.dat", source)], **uids) == folder  # the same content again: a no-op
    other = tmp_path / "other.dat"
    other.write_bytes(source.read_bytes()[:-1] + b"\x00")
    with pytest.raises(StoreError, match="other content"):
        store.put_recording([("rec.dat", other)], **uids)
    assert list(store.tmp_dir.glob(".tmp-*")) == []
