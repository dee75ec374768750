"""The receiver fed in pieces (as the fast SCP engine feeds it): same outcome as whole, nothing half-kept."""

from __future__ import annotations

import io
import itertools
import time
from pathlib import Path

import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.config import Settings
from ingest.filestore import FileStore, content_digest, content_offset
from ingest.receive import Outcome, Received, Receiver
from store.db import Database
from tests.ingest.conftest import BAD_FILES, DATA, make_settings

CT = DATA / "net" / "CT_small.dcm"  # 39 KB: headers parsed from the first pieces while the rest arrives
TRUNCATED = next(f for f in BAD_FILES if f.name == "MR_truncated.dcm")


@pytest.fixture(params=[True, False], ids=["lanes", "inline"])
def lanes(request: pytest.FixtureRequest) -> bool:
    """Every test with lane threads and without (the default under 4 CPUs)."""
    return bool(request.param)


def _receiver(tmp: Path, lanes: bool) -> tuple[Receiver, Database, Settings]:
    s = make_settings(tmp)
    db = Database.from_settings(s)
    store = FileStore(s.storage.store_dir, fsync=s.storage.fsync)
    return Receiver(store, db, s.storage.quarantine_dir, lanes=lanes), db, s


def _feed(receiver: Receiver, data: bytes, cuts: list[int], uid: str | None = None) -> Received:
    head = content_offset(data)
    incoming = receiver.accept(data[:head], source="scp:TEST", expected_sop_instance_uid=uid)
    body = memoryview(bytearray(data[head:]))
    edges = [0, *sorted({c % (len(body) + 1) for c in cuts}), len(body)]
    for a, b in itertools.pairwise(edges):
        incoming.add(body[a:b], last=b == len(body) and a % 2 == 0)  # the sender may or may not say "last"
    return incoming.finish()


def _leftovers(store: Path) -> list[Path]:
    return [p for p in (store / ".tmp").iterdir()]


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cuts=st.lists(st.integers(0, 1 << 16), max_size=12))
def test_any_split_stores_the_same_bytes_and_digest(
    tmp_path_factory: pytest.TempPathFactory, cuts: list[int], lanes: bool
) -> None:
    tmp = tmp_path_factory.mktemp("split")
    receiver, db, s = _receiver(tmp, lanes)
    data = CT.read_bytes()
    try:
        received = _feed(receiver, data, cuts)
        assert received.outcome is Outcome.STORED, received.reason
        assert received.path is not None and received.path.read_bytes() == data
        with db.session(readonly=True) as session:
            from store.schema import InstanceRow

            row = session.query(InstanceRow).one()
            assert row.content_digest == content_digest(data) and row.size_bytes == len(data)
        assert not _leftovers(s.storage.store_dir)
    finally:
        db.dispose()


def _with_long_header(data: bytes) -> bytes:
    """The CT with 40 KB of private data before Pixel Data: its headers end past the first parse attempts."""
    ds = pydicom.dcmread(io.BytesIO(data))
    ds.add_new(0x00091010, "LO", "MMDX TEST")
    ds.add_new(0x00091001, "OB", bytes(40_000))
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


@pytest.mark.parametrize("long_header", [False, True], ids=["header-2k", "header-42k"])
@pytest.mark.parametrize("negotiated", [False, True], ids=["file-meta", "negotiated-ts"])
def test_headers_from_the_first_pieces_match_the_whole_parse(
    tmp_path: Path, lanes: bool, negotiated: bool, long_header: bool
) -> None:
    """Pieces of 4 KiB: the headers are parsed long before the end (from the dataset alone where the transfer
    syntax was negotiated, as by the SCP) and index exactly as a whole parse."""
    data = CT.read_bytes()
    if long_header:
        data = _with_long_header(data)
    ts = str(pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True).file_meta.TransferSyntaxUID)
    whole_receiver, whole_db, _ = _receiver(tmp_path / "whole", lanes)
    streamed_receiver, streamed_db, _ = _receiver(tmp_path / "streamed", lanes)
    try:
        whole_receiver.receive(data, source="scp:TEST")
        head = content_offset(data)
        incoming = streamed_receiver.accept(
            data[:head], source="scp:TEST", transfer_syntax_uid=ts if negotiated else None
        )
        for k in range(head, len(data), 4096):
            incoming.add(data[k : k + 4096])
            if k - head >= (128 << 10 if long_header else 8192):
                assert incoming._header is not None  # parsed while the rest was still arriving
        assert incoming.finish().outcome is Outcome.STORED
        rows = []
        for db in (whole_db, streamed_db):
            with db.session(readonly=True) as session:
                from store.schema import InstanceRow, SeriesRow, StudyRow

                i, se, st_ = (
                    session.query(InstanceRow, SeriesRow, StudyRow)
                    .filter(InstanceRow.series_id == SeriesRow.id, SeriesRow.study_id == StudyRow.id)
                    .one()
                )
                rows.append(
                    (i.sop_instance_uid, i.content_digest, i.rows, i.columns, i.transfer_syntax_uid, se.modality,
                     st_.study_instance_uid, st_.content_version, st_.accession_number)
                )  # fmt: skip
        assert rows[0] == rows[1]
    finally:
        whole_db.dispose()
        streamed_db.dispose()


@pytest.mark.parametrize("piece", [512, 4096, 1 << 20])
def test_truncated_pixel_data_is_rejected_with_the_lengths(tmp_path: Path, piece: int, lanes: bool) -> None:
    receiver, db, s = _receiver(tmp_path, lanes)
    data = TRUNCATED.read_bytes()
    try:
        received = _feed(receiver, data, list(range(piece, len(data), piece)))
        assert received.outcome is Outcome.REJECTED
        assert received.reason is not None and "truncated" in received.reason and "(7FE0,0010)" in received.reason
        assert received.path is not None and received.path.read_bytes() == data  # kept aside for review
        assert not list(Path(s.storage.store_dir).rglob("*.dcm")) and not _leftovers(s.storage.store_dir)
    finally:
        db.dispose()


def test_mismatched_uid_from_the_request_is_rejected(tmp_path: Path, lanes: bool) -> None:
    receiver, db, s = _receiver(tmp_path, lanes)
    try:
        received = _feed(receiver, CT.read_bytes(), [9000, 20000], uid="1.2.3.4")
        assert received.outcome is Outcome.REJECTED and "Affected SOP Instance UID 1.2.3.4" in (received.reason or "")
        assert not _leftovers(s.storage.store_dir)
    finally:
        db.dispose()


def test_abort_midway_keeps_nothing(tmp_path: Path, lanes: bool) -> None:
    receiver, db, s = _receiver(tmp_path, lanes)
    data = CT.read_bytes()
    head = content_offset(data)
    try:
        incoming = receiver.accept(data[:head], source="scp:TEST")
        for k in range(head, head + 300_000, 65536):  # enough to be written to a temporary file
            incoming.add(data[k : k + 65536] or b"\0" * 65536)
        deadline = time.monotonic() + 5
        while not _leftovers(s.storage.store_dir) and time.monotonic() < deadline:
            time.sleep(0.01)  # written by the object's lane thread (or already, inline)
        assert _leftovers(s.storage.store_dir)  # it streamed to disk while arriving
        incoming.abort()
        assert not _leftovers(s.storage.store_dir)
        with db.session(readonly=True) as session:
            from store.schema import InstanceRow

            assert session.query(InstanceRow).count() == 0
    finally:
        db.dispose()


def test_spares_are_used_and_removed_on_close(tmp_path: Path, lanes: bool) -> None:
    receiver, db, s = _receiver(tmp_path, lanes)
    store = receiver.store
    store.keep_spares(4)
    try:
        ds = pydicom.dcmread(CT)
        for i in range(10):
            ds.SOPInstanceUID = f"1.2.826.0.1.3680043.8.498.{i + 1}"
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            from io import BytesIO

            buf = BytesIO()
            ds.save_as(buf, enforce_file_format=True)
            assert receiver.receive(buf.getvalue(), source="scp:TEST").outcome is Outcome.STORED
    finally:
        store.close()
        db.dispose()
    assert len(list(Path(s.storage.store_dir).rglob("*.dcm"))) == 10
    assert not _leftovers(s.storage.store_dir)  # spares removed, used names unlinked
