"""The lean C-STORE requestor against pynetdicom's SCP: exact contexts, status classes, data set bytes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pynetdicom import AE, evt
from pynetdicom.sop_class import SecondaryCaptureImageStorage  # type: ignore[attr-defined]

from core.errors import BridgeError
from core.identifiers import FixedClock
from pacs_bridge.dicom_store import CStoreSender
from pacs_bridge.dimse_scu import read_file_meta
from pacs_bridge.loop import OutboxLoop
from pacs_bridge.outcome import Delivered, Failed
from store import outbox
from store.db import Database
from store.outbox import OutboxState
from tests.pacs_bridge.conftest import T0, Versions, settings_with, store_versions
from tests.peers import free_port


class Scp:
    def __init__(self, status: int) -> None:
        self.status = status
        self.requested: list[tuple[str, tuple[str, ...]]] = []
        self.received: list[pydicom.Dataset] = []
        self.associations = 0
        self.port = free_port()
        ae = AE(ae_title="TESTSCP")
        ae.add_supported_context(SecondaryCaptureImageStorage, ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"])
        for sr in ("1.2.840.10008.5.1.4.1.1.88.33", "1.2.840.10008.5.1.4.1.1.88.22", "1.2.840.10008.5.1.4.1.1.88.65"):
            ae.add_supported_context(sr, ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"])
        self.server = ae.start_server(
            ("127.0.0.1", self.port),
            block=False,
            evt_handlers=[(evt.EVT_C_STORE, self._store), (evt.EVT_REQUESTED, self._requested)],
        )

    def _requested(self, event: Any) -> None:
        self.associations += 1
        self.requested += [
            (str(c.abstract_syntax), tuple(str(t) for t in c.transfer_syntax))
            for c in event.assoc.requestor.requested_contexts
        ]

    def _store(self, event: Any) -> int:
        ds = event.dataset
        ds.file_meta = event.file_meta
        self.received.append(ds)
        return self.status


@pytest.fixture
def scp_factory() -> Iterator[Any]:
    servers: list[Scp] = []

    def make(status: int = 0x0000) -> Scp:
        servers.append(Scp(status))
        return servers[-1]

    yield make
    for s in servers:
        s.server.shutdown()


def _dicom_files(versions: Versions) -> list[Path]:
    return [a.path for a in versions.all[0].artefacts if a.kind in ("sr", "sc", "dicom-pdf")]


def test_proposes_exactly_the_batchs_contexts_and_sends_the_data_set_intact(
    tmp_path: Path, versions: Versions, bridge_db: Database, scp_factory: Any
) -> None:
    scp = scp_factory()
    dest = {"type": "dicom", "host": "127.0.0.1", "port": scp.port, "ae_title": "TESTSCP", "max_attempts": 1}
    settings = settings_with(tmp_path, {"pacs": dest})
    store_versions(bridge_db, versions.all[:1], {k: ["pacs"] for k in ("sr", "sc", "dicom-pdf")})
    OutboxLoop(bridge_db, settings, FixedClock(T0)).run_once()
    files = _dicom_files(versions)
    wanted = sorted({(str(m.sop_class_uid), (str(m.transfer_syntax_uid),)) for m in map(_meta, files)})
    assert sorted(scp.requested) == wanted
    with bridge_db.session() as s:
        by_kind = {i.kind: i for i in outbox.list_items(s)}
    # the SCP supports SR and SC but not Encapsulated PDF: that one is refused for good, with the reason
    assert by_kind["sr"].state is OutboxState.DELIVERED and by_kind["sc"].state is OutboxState.DELIVERED
    assert by_kind["dicom-pdf"].state is OutboxState.DEAD
    assert "accepted no presentation context" in (by_kind["dicom-pdf"].last_error or "")
    sr_path = next(p for p in files if "sr" in p.name)
    got = next(d for d in scp.received if d.SOPInstanceUID == pydicom.dcmread(sr_path).SOPInstanceUID)
    assert got == pydicom.dcmread(sr_path)


def _meta(path: Path) -> Any:
    return read_file_meta(path.read_bytes())


@pytest.mark.parametrize(
    ("status", "state"),
    [(0xB000, OutboxState.DELIVERED), (0xA700, OutboxState.PENDING), (0xC000, OutboxState.DEAD)],
)
def test_status_classes(
    tmp_path: Path, versions: Versions, bridge_db: Database, scp_factory: Any, status: int, state: OutboxState
) -> None:
    scp = scp_factory(status)
    settings = settings_with(
        tmp_path, {"pacs": {"type": "dicom", "host": "127.0.0.1", "port": scp.port, "ae_title": "TESTSCP"}}
    )
    store_versions(bridge_db, versions.all[:1], {"sr": ["pacs"]})
    OutboxLoop(bridge_db, settings, FixedClock(T0)).run_once()
    with bridge_db.session() as s:
        (item,) = outbox.list_items(s)
    assert item.state is state
    if state is not OutboxState.DELIVERED:
        assert f"0x{status:04X}" in (item.last_error or "")


def test_a_file_that_is_not_dicom_is_refused_by_name() -> None:
    with pytest.raises(BridgeError, match="not a DICOM file"):
        read_file_meta(b"\0" * 200)


def test_what_was_read_ahead_is_used_and_a_file_changed_since_is_still_caught(
    tmp_path: Path, versions: Versions, bridge_db: Database, scp_factory: Any
) -> None:
    scp = scp_factory()
    dest = {"type": "dicom", "host": "127.0.0.1", "port": scp.port, "ae_title": "TESTSCP"}
    settings = settings_with(tmp_path, {"pacs": dest})
    store_versions(bridge_db, versions.all[:1], {k: ["pacs"] for k in ("sr", "sc")})
    with bridge_db.session() as s:
        items = outbox.due(s, T0, 10)
    sender = CStoreSender(settings.destinations["pacs"], calling_ae_title="MMDX")
    sender.read_ahead(items)  # as the loop's claim thread does while an earlier batch is on the wire
    assert set(sender._heads) == {i.id for i in items}
    sc = next(i for i in items if i.kind == "sc")
    original = sc.path.read_bytes()  # the session's fixture file: put back afterwards
    try:
        sc.path.write_bytes(original[:-1] + bytes([original[-1] ^ 0xFF]))  # it changes after its header was read
        outcomes = dict(zip([i.kind for i in items], sender.send(items), strict=True))
    finally:
        sc.path.write_bytes(original)
    assert isinstance(outcomes["sr"], Delivered)
    assert isinstance(outcomes["sc"], Failed) and "changed since it was stored" in outcomes["sc"].reason
    assert sender._heads == {}  # each item's head is used once
    assert len(scp.received) == 1


def test_a_burst_of_batches_shares_one_association_and_a_dropped_one_is_replaced(
    tmp_path: Path, versions: Versions, bridge_db: Database, scp_factory: Any
) -> None:
    scp = scp_factory()
    dest = {"type": "dicom", "host": "127.0.0.1", "port": scp.port, "ae_title": "TESTSCP"}
    settings = settings_with(tmp_path, {"pacs": dest})
    store_versions(bridge_db, versions.all[:1], {"sr": ["pacs"]})
    with bridge_db.session() as s:
        (sr,) = outbox.due(s, T0, 10)
    sender = CStoreSender(settings.destinations["pacs"], calling_ae_title="MMDX")
    assert isinstance(sender.send([sr])[0], Delivered)
    assert isinstance(sender.send([sr])[0], Delivered)
    assert scp.associations == 1  # the second batch went over the first one's association
    sender.release_idle()  # the loop's call when the burst ends
    assert isinstance(sender.send([sr])[0], Delivered) and scp.associations == 2
    assert sender._kept is not None
    sender._kept[0].sock.close()  # the kept association is gone (the PACS timed it out)
    assert isinstance(sender.send([sr])[0], Delivered) and scp.associations == 3
    sender.close()
    assert sender._kept is None and len(scp.received) == 4
