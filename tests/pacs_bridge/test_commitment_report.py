"""Applying a storage commitment report: committed -> delivered, failed -> dead or retried by failure reason."""

from __future__ import annotations

from pathlib import Path

from core.identifiers import FixedClock
from pacs_bridge.commitment import settle
from store import outbox
from store.db import Database
from store.outbox import OutboxState
from tests.pacs_bridge.conftest import T0, Versions, settings_with, store_versions


def test_report_settles_only_its_transactions_items_by_uid(
    tmp_path: Path, versions: Versions, bridge_db: Database
) -> None:
    settings = settings_with(
        tmp_path,
        {"pacs": {"type": "dicom", "host": "h", "port": 104, "ae_title": "P", "storage_commitment": True}},
        commitment_port=11115,
    )
    store_versions(bridge_db, versions.all[:1], {"sr": ["pacs"], "sc": ["pacs"], "dicom-pdf": ["pacs"]})
    with bridge_db.session() as s:
        items = outbox.list_items(s)
        for i in items:
            outbox.mark_awaiting_commitment(s, i.id, "2.25.1" if i.kind != "dicom-pdf" else "2.25.2", T0)
    by_kind = {i.kind: i for i in items}
    sr, sc = by_kind["sr"].sop_instance_uid or "", by_kind["sc"].sop_instance_uid or ""
    settled = settle(bridge_db, settings, FixedClock(T0), "2.25.1", {sr}, {sc: 0x0110})
    assert settled == 2
    with bridge_db.session() as s:
        after = {i.kind: i for i in outbox.list_items(s)}
    assert after["sr"].state is OutboxState.DELIVERED
    assert after["sc"].state is OutboxState.PENDING and "0x0110" in (after["sc"].last_error or "")
    assert after["dicom-pdf"].state is OutboxState.AWAITING_COMMITMENT  # another transaction: untouched
    pdf = after["dicom-pdf"].sop_instance_uid or ""
    settle(bridge_db, settings, FixedClock(T0), "2.25.2", set(), {pdf: 0x0122})
    with bridge_db.session() as s:
        (dead,) = outbox.list_items(s, state=OutboxState.DEAD)
    assert dead.kind == "dicom-pdf" and "0x0122" in (dead.last_error or "")


def test_a_second_loop_on_the_same_host_leaves_the_commitment_port_to_the_first(
    tmp_path: Path, bridge_db: Database
) -> None:
    from pacs_bridge.loop import OutboxLoop
    from tests.peers import free_port

    settings = settings_with(
        tmp_path,
        {"pacs": {"type": "dicom", "host": "h", "port": 104, "ae_title": "P", "storage_commitment": True}},
        commitment_port=free_port(),
    )
    first, second = OutboxLoop(bridge_db, settings, FixedClock(T0)), OutboxLoop(bridge_db, settings, FixedClock(T0))
    try:
        assert first.run_once().idle
        assert second.run_once().idle  # no "address in use" failure on every pass
        assert second._listener_elsewhere and first._listener is not None
    finally:
        first.close()
        second.close()


def test_a_report_that_comes_before_its_transaction_is_recorded_is_applied_after(
    tmp_path: Path, versions: Versions, bridge_db: Database
) -> None:
    from types import SimpleNamespace

    from pydicom.dataset import Dataset

    from pacs_bridge.commitment import CommitmentListener

    settings = settings_with(
        tmp_path,
        {"pacs": {"type": "dicom", "host": "h", "port": 104, "ae_title": "P", "storage_commitment": True}},
        commitment_port=11116,
    )
    store_versions(bridge_db, versions.all[:1], {"sr": ["pacs"]})
    listener = CommitmentListener(bridge_db, settings, FixedClock(T0))  # not started: the handler is called directly
    with bridge_db.session() as s:
        (item,) = outbox.list_items(s)
    report = Dataset()
    report.TransactionUID = "2.25.77"
    ref = Dataset()
    ref.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.22"
    ref.ReferencedSOPInstanceUID = item.sop_instance_uid
    report.ReferencedSOPSequence = [ref]
    assert listener._on_report(SimpleNamespace(event_information=report)) == (0x0000, None)
    assert listener.settle_unmatched() == 0  # the sender has not recorded the transaction yet
    with bridge_db.session() as s:
        outbox.mark_awaiting_commitment(s, item.id, "2.25.77", T0)
    assert listener.settle_unmatched() == 1
    with bridge_db.session() as s:
        assert outbox.get_item(s, item.id).state is OutboxState.DELIVERED  # type: ignore[union-attr]
