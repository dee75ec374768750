"""A big object streams to disk without staying in memory (issue 19), and is stored or rejected exactly as before."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pydicom
import pytest

from ingest import receive
from ingest.filestore import FileStore, content_digest, content_offset
from ingest.receive import Outcome, Receiver
from store import index as idx
from store.db import Database
from tests.ingest.conftest import DATA, make_settings

PIECE = 64 << 10


def _big_object() -> bytes:
    """CT_small with 2048 x 2048 x 16-bit pixels (8 MiB): past the in-memory hold of the receiver."""
    ds = pydicom.dcmread(DATA / "net" / "CT_small.dcm")
    ds.Rows = ds.Columns = 2048
    ds.PixelData = (np.arange(2048 * 2048, dtype=np.uint16) % 4096).tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


@pytest.fixture(params=[True, False], ids=["lanes", "inline"])
def receiver(request: pytest.FixtureRequest, tmp_path: Path) -> Receiver:
    s = make_settings(tmp_path)
    db = Database.from_settings(s)
    return Receiver(FileStore(s.storage.store_dir), db, s.storage.quarantine_dir, lanes=request.param)


def _feed(receiver: Receiver, data: bytes) -> receive.Incoming:
    offset = content_offset(data)
    incoming = receiver.accept(data[:offset], source="scp:TEST", transfer_syntax_uid="1.2.840.10008.1.2.1")
    body = memoryview(data)[offset:]
    for i in range(0, len(body), PIECE):
        incoming.add(body[i : i + PIECE], last=i + PIECE >= len(body))
    return incoming


def test_big_object_is_let_go_while_it_streams_and_stored_whole(receiver: Receiver) -> None:
    data = _big_object()
    assert len(data) > 2 * receive._HOLD_AT
    incoming = _feed(receiver, data)
    held = sum(len(p) for p in incoming._pieces)
    assert incoming._dropped > 0 and held <= receive._HOLD_AT + PIECE
    received = incoming.finish()
    assert received.outcome is Outcome.STORED, received.reason
    assert (
        received.path is not None and received.path.read_bytes()[content_offset(data) :] == data[content_offset(data) :]
    )
    with receiver.db.session(readonly=True) as s:
        study = idx.load_study(s, received.study_instance_uid or "")
    assert study is not None
    (inst,) = [i for se in study.series for i in se.instances]
    assert inst.content_digest == content_digest(data)


def test_big_truncated_object_is_rejected_with_its_bytes_kept(receiver: Receiver) -> None:
    data = _big_object()[: -(1 << 20)]  # Pixel Data declares 1 MiB more than arrives
    received = _feed(receiver, data).finish()
    assert received.outcome is Outcome.REJECTED
    assert received.reason is not None and "truncated DICOM" in received.reason
    assert received.path is not None and received.path.read_bytes() == data  # read back from the temporary file
