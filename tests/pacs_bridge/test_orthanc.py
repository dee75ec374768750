"""C-STORE, STOW-RS and storage commitment against a real Orthanc; counted by its change log."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from subprocess import Popen

import httpx
import pydicom
import pytest

from core.identifiers import FixedClock
from pacs_bridge.loop import OutboxLoop
from store import outbox
from store.db import Database
from store.outbox import OutboxState
from tests.pacs_bridge.conftest import T0, Versions, settings_with, store_versions
from tests.peers import Orthanc, free_port, start_orthanc, stop_pid

DICOM_KINDS = ("sr", "sc", "dicom-pdf")


@dataclass
class Pacs:
    orthanc: Orthanc
    proc: Popen[bytes]
    commit_port: int


@pytest.fixture
def pacs(tmp_path: Path) -> Iterator[Pacs]:
    commit_port = free_port()
    orthanc, proc = start_orthanc(tmp_path / "orthanc", mmdx_port=commit_port, mmdx_ae="MMDX-BRIDGE")
    yield Pacs(orthanc, proc, commit_port)
    stop_pid(proc)


def new_instances(orthanc: Orthanc) -> list[str]:
    """Every NewInstance in Orthanc's change log (a duplicate SOP Instance UID would not appear twice in
    /instances, so the log is what proves exactly-once)."""
    changes, since = [], 0
    while True:
        r = httpx.get(f"{orthanc.url}/changes", params={"since": since, "limit": 1000}, timeout=10).json()
        changes += [c["ID"] for c in r["Changes"] if c["ChangeType"] == "NewInstance"]
        since = r["Last"]
        if r["Done"]:
            return changes


def sop_uids(orthanc: Orthanc) -> list[str]:
    uids = []
    for oid in httpx.get(f"{orthanc.url}/instances", timeout=10).json():
        tags = httpx.get(f"{orthanc.url}/instances/{oid}/simplified-tags", timeout=10).json()
        uids.append(tags["SOPInstanceUID"])
    return sorted(uids)


def dicom_uids(versions: Versions, upto: int) -> list[str]:
    return sorted(
        a.sop_instance_uid
        for v in versions.all[:upto]
        for a in v.artefacts
        if a.kind in DICOM_KINDS and a.sop_instance_uid
    )


def _dest(pacs: Pacs, **extra: object) -> dict[str, object]:
    return {"type": "dicom", "host": "127.0.0.1", "port": pacs.orthanc.dicom_port, "ae_title": "ORTHANC", **extra}


def test_cstore_delivers_every_dicom_artefact_once_even_when_resent(
    tmp_path: Path, versions: Versions, bridge_db: Database, pacs: Pacs
) -> None:
    settings = settings_with(tmp_path, {"pacs": _dest(pacs, skip_superseded=False)})
    store_versions(bridge_db, versions.all, {k: ["pacs"] for k in DICOM_KINDS})
    loop = OutboxLoop(bridge_db, settings, FixedClock(T0))
    for _ in range(5):
        if loop.run_once().idle:
            break
    with bridge_db.session() as s:
        items = outbox.list_items(s)
    assert {i.state for i in items} == {OutboxState.DELIVERED}, [(i.id, i.last_error) for i in items]
    expected = dicom_uids(versions, 4)
    assert sop_uids(pacs.orthanc) == expected
    assert len(new_instances(pacs.orthanc)) == len(expected)
    # the SR arrived intact (the PACS reads back what was stored)
    sr = next(a for a in versions.all[0].artefacts if a.kind == "sr")
    oid = httpx.post(f"{pacs.orthanc.url}/tools/lookup", content=sr.sop_instance_uid, timeout=10).json()[0]["ID"]
    body = httpx.get(f"{pacs.orthanc.url}/instances/{oid}/file", timeout=10).content
    assert pydicom.dcmread(io.BytesIO(body)) == pydicom.dcmread(sr.path)  # the data set; the PACS writes its own meta
    # everything sent again (as after a crash between sending and recording): no second copy in the change log
    (tmp_path / "again").mkdir()
    again = Database.from_settings(settings_with(tmp_path / "again", {"pacs": _dest(pacs)}))
    try:
        store_versions(again, versions.all, {k: ["pacs"] for k in DICOM_KINDS})
        resend = OutboxLoop(again, settings, FixedClock(T0))
        while not resend.run_once().idle:
            pass
    finally:
        again.dispose()
    assert len(new_instances(pacs.orthanc)) == len(expected)


def test_wrong_called_ae_is_dead_lettered_with_the_pacs_reason(
    tmp_path: Path, versions: Versions, bridge_db: Database, pacs: Pacs
) -> None:
    settings = settings_with(
        tmp_path,
        {
            "pacs": _dest(pacs, ae_title="NOT-ORTHANC", max_attempts=2, base_delay_s=1),
            "share": {"type": "folder", "path": tmp_path / "share"},
        },
    )
    store_versions(bridge_db, versions.all[:1], {"sr": ["pacs", "share"]})
    now = T0
    for _ in range(2):
        OutboxLoop(bridge_db, settings, FixedClock(now)).run_once()
        now += timedelta(seconds=10)
    with bridge_db.session() as s:
        (dead,) = outbox.list_items(s, destination="pacs")
        (ok,) = outbox.list_items(s, destination="share")
    assert dead.state is OutboxState.DEAD and dead.attempts == 2
    assert "association rejected" in (dead.last_error or "") and "gave up after 2" in (dead.last_error or "")
    assert ok.state is OutboxState.DELIVERED
    assert new_instances(pacs.orthanc) == []


def test_stow_rs_delivers_every_version_to_orthanc_dicomweb(
    tmp_path: Path, versions: Versions, bridge_db: Database, pacs: Pacs
) -> None:
    web = {
        "type": "stow",
        "url": f"{pacs.orthanc.url}/dicom-web",
        "authorization": "Bearer t",
        "skip_superseded": False,
    }
    settings = settings_with(tmp_path, {"web": web})
    store_versions(bridge_db, versions.all, {k: ["web"] for k in DICOM_KINDS})
    loop = OutboxLoop(bridge_db, settings, FixedClock(T0))
    delivered = 0
    while not (summary := loop.run_once()).idle:
        delivered += summary.delivered
    assert delivered == len(dicom_uids(versions, 4))
    assert sop_uids(pacs.orthanc) == dicom_uids(versions, 4)
    assert len(new_instances(pacs.orthanc)) == delivered


def test_stow_rs_refusal_is_permanent_with_the_servers_reason(
    tmp_path: Path, versions: Versions, bridge_db: Database, pacs: Pacs
) -> None:
    settings = settings_with(tmp_path, {"web": {"type": "stow", "url": f"{pacs.orthanc.url}/no-such-root"}})
    store_versions(bridge_db, versions.all[:1], {"sr": ["web"]})
    assert OutboxLoop(bridge_db, settings, FixedClock(T0)).run_once().dead == 1
    with bridge_db.session() as s:
        (item,) = outbox.list_items(s)
    assert "HTTP 404" in (item.last_error or "")


def test_storage_commitment_delivers_only_after_the_pacs_report(
    tmp_path: Path, versions: Versions, bridge_db: Database, pacs: Pacs
) -> None:
    settings = settings_with(
        tmp_path,
        {"pacs": _dest(pacs, storage_commitment=True, commitment_timeout_s=60)},
        commitment_port=pacs.commit_port,
    )
    store_versions(bridge_db, versions.all[:1], {k: ["pacs"] for k in DICOM_KINDS})
    loop = OutboxLoop(bridge_db, settings, FixedClock(T0))
    try:
        first = loop.run_once()
        n = len(dicom_uids(versions, 1))
        assert first.awaiting_commitment == n, first
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with bridge_db.session() as s:
                counts = outbox.counts_by_state(s)
            if counts[OutboxState.DELIVERED] == n:
                break
            time.sleep(0.2)
        assert counts[OutboxState.DELIVERED] == n, counts
    finally:
        loop.close()


def test_an_unanswered_commitment_is_retried_after_its_timeout(
    tmp_path: Path, versions: Versions, bridge_db: Database, pacs: Pacs
) -> None:
    settings = settings_with(
        tmp_path,
        {"pacs": _dest(pacs, storage_commitment=True, commitment_timeout_s=60)},
        commitment_port=free_port(),  # the PACS reports to another port: nobody hears the answer
    )
    store_versions(bridge_db, versions.all[:1], {"sr": ["pacs"]})
    loop = OutboxLoop(bridge_db, settings, FixedClock(T0))
    assert loop.run_once().awaiting_commitment == 1
    loop.close()
    later = OutboxLoop(bridge_db, settings, FixedClock(T0 + timedelta(seconds=61)))
    summary = later.run_once()
    later.close()
    assert summary.retried == 1 and summary.awaiting_commitment == 1  # sent and requested again
    with bridge_db.session() as s:
        (item,) = outbox.list_items(s)
    assert item.attempts == 2


def test_stow_rs_http_400_is_dead_with_the_servers_reason_and_other_destinations_unaffected(
    tmp_path: Path, versions: Versions, bridge_db: Database, pacs: Pacs
) -> None:
    import hashlib

    from store.reports import ArtefactRecord
    from tests.pacs_bridge.conftest import Version

    junk = tmp_path / "not_dicom.dcm"
    junk.write_bytes(b"this is not a DICOM object" * 10)
    art = ArtefactRecord("sr", junk, hashlib.sha256(junk.read_bytes()).hexdigest(), "application/dicom", "2.25.999")
    settings = settings_with(
        tmp_path,
        {
            "web": {"type": "stow", "url": f"{pacs.orthanc.url}/dicom-web", "max_attempts": 3},
            "share": {"type": "folder", "path": tmp_path / "share"},
        },
    )
    store_versions(bridge_db, [Version(versions.all[0].report, (art,))], {"sr": ["web", "share"]})
    summary = OutboxLoop(bridge_db, settings, FixedClock(T0)).run_once()
    assert summary.delivered == 1 and summary.dead == 1, summary
    with bridge_db.session() as s:
        (web,) = outbox.list_items(s, destination="web")
    assert web.attempts == 1 and "HTTP 400" in (web.last_error or ""), web.last_error
