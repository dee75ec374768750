"""The SCP never answers 0xA700 for an object it cannot understand, and never leaks its bytes (issue 19).

An unparseable value is about the object, not a transient failure: the answer
is success (the value is dropped) or 0xC000 with a quarantine entry, the
temporary copy is gone, and no file descriptor stays open however often the
sender retries.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import pydicom
import pytest
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage  # type: ignore[attr-defined]

import ingest.receive
from ingest.scp import STATUS_CANNOT_UNDERSTAND, StorageServer
from store import index as idx
from store.db import Database
from tests.robustness import crafted

from .conftest import MODALITY_AE

pytestmark = pytest.mark.integration


def _dataset(data: bytes) -> pydicom.Dataset:
    return pydicom.dcmread(io.BytesIO(data))


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _leftovers(server: StorageServer) -> list[Path]:
    """Temporary files holding bytes (the spares kept ready are empty)."""
    tmp = Path(server.settings.storage.store_dir) / ".tmp"
    return [p for p in tmp.iterdir() if p.stat().st_size > 0]


def _associate(port: int) -> object:
    ae = AE(ae_title=MODALITY_AE)
    ae.add_requested_context(CTImageStorage, "1.2.840.10008.1.2.1")
    assoc = ae.associate("127.0.0.1", port, ae_title="MMDX")
    assert assoc.is_established
    return assoc


@pytest.mark.parametrize(
    "values", [{"instance_number": "inf"}, {"series_number": "1e400"}, {"tz": "+2500"}], ids=["inf", "1e400", "+2500"]
)
def test_unparseable_header_values_are_stored_without_them(
    scp: StorageServer, db: Database, values: dict[str, str]
) -> None:
    ds = _dataset(crafted.dicom_with_values(**values))
    assoc = _associate(scp.port)
    try:
        assert assoc.send_c_store(ds).Status == 0x0000  # type: ignore[attr-defined]
    finally:
        assoc.release()  # type: ignore[attr-defined]
    with db.session(readonly=True) as s:
        assert idx.load_study(s, ds.StudyInstanceUID) is not None


def test_a_parser_failure_is_a_rejection_without_leaks(
    scp: StorageServer, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever a parser raises (here: an unforeseen ValueError) is 0xC000 and a quarantine entry, never 0xA700."""

    def broken(*_args: object, **_kwargs: object) -> None:
        raise ValueError("a value no record can hold")

    monkeypatch.setattr(ingest.receive, "records_from_dataset", broken)
    ds = _dataset(crafted.dicom_with_values())
    assoc = _associate(scp.port)
    try:
        assert assoc.send_c_store(ds).Status == STATUS_CANNOT_UNDERSTAND  # type: ignore[attr-defined]
        before = _open_fds()
        for _ in range(30):  # a modality retrying
            assert assoc.send_c_store(ds).Status == STATUS_CANNOT_UNDERSTAND  # type: ignore[attr-defined]
        assert _open_fds() <= before + 2
    finally:
        assoc.release()  # type: ignore[attr-defined]
    assert _leftovers(scp) == []
    with db.session(readonly=True) as s:
        reasons = {q.reason for q in idx.list_quarantine(s)}
    assert reasons == {"unreadable DICOM: the parser failed (ValueError)"} or all("ValueError" in r for r in reasons)
    quarantine = Path(scp.settings.storage.quarantine_dir)
    assert (quarantine.stat().st_mode & 0o077) == 0
    assert all((p.stat().st_mode & 0o077) == 0 for p in quarantine.iterdir())
