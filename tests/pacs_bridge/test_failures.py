"""Nothing lost, nothing duplicated: the PACS down, the PACS SIGKILLed mid-batch, the sender SIGKILLed mid-batch."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import httpx
import pydicom
import yaml

from core.config import load_settings
from core.identifiers import FixedClock
from pacs_bridge.loop import OutboxLoop
from store import outbox
from store import reports as report_store
from store.db import Database
from store.outbox import OutboxState
from store.reports import ArtefactRecord
from tests.pacs_bridge.conftest import T0, Versions, settings_with, store_versions
from tests.pacs_bridge.test_orthanc import new_instances
from tests.peers import DCMTK_ENV, Orthanc, _wait_http, free_port, start_orthanc, stop_pid


def restart_orthanc(orthanc: Orthanc) -> subprocess.Popen[bytes]:
    """Start Orthanc again on its old ports and storage (after a stop or a SIGKILL)."""
    log = (orthanc.workdir / "orthanc.log").open("ab")
    proc = subprocess.Popen(
        ["/usr/sbin/Orthanc", str(orthanc.workdir / "orthanc.json")],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=DCMTK_ENV,
        cwd=orthanc.workdir,
    )
    _wait_http(orthanc.url, proc)
    return proc


def _dest(orthanc: Orthanc, **extra: object) -> dict[str, object]:
    return {"type": "dicom", "host": "127.0.0.1", "port": orthanc.dicom_port, "ae_title": "ORTHANC", **extra}


def test_pacs_down_before_sending_gets_everything_once_it_returns(
    tmp_path: Path, versions: Versions, bridge_db: Database
) -> None:
    orthanc, proc = start_orthanc(tmp_path / "orthanc", mmdx_port=free_port())
    stop_pid(proc)
    settings = settings_with(tmp_path, {"pacs": _dest(orthanc, base_delay_s=5)})
    store_versions(bridge_db, versions.all[:1], {k: ["pacs"] for k in ("sr", "sc", "dicom-pdf")})
    down = OutboxLoop(bridge_db, settings, FixedClock(T0)).run_once()
    assert down.retried == down.claimed > 0 and down.delivered == 0
    assert any("no association" in e or "cannot reach" in e for e in down.errors), down.errors
    proc = restart_orthanc(orthanc)
    try:
        back = OutboxLoop(bridge_db, settings, FixedClock(T0 + timedelta(minutes=5))).run_once()
        assert back.delivered == down.claimed
        assert len(new_instances(orthanc)) == down.claimed
    finally:
        stop_pid(proc)


def _many_objects(tmp_path: Path, versions: Versions, n: int) -> list[ArtefactRecord]:
    """``n`` distinct SR objects (new SOP Instance UIDs) cut from the fixture's SR."""
    template = next(a for a in versions.all[0].artefacts if a.kind == "sr")
    ds = pydicom.dcmread(template.path)
    out = tmp_path / "many"
    out.mkdir()
    records = []
    for i in range(n):
        uid = pydicom.uid.generate_uid(entropy_srcs=[str(template.sop_instance_uid), str(i)])
        ds.SOPInstanceUID = uid
        ds.file_meta.MediaStorageSOPInstanceUID = uid
        path = out / f"sr_{i:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        records.append(
            ArtefactRecord("sr", path, hashlib.sha256(path.read_bytes()).hexdigest(), "application/dicom", uid)
        )
    return records


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _count(orthanc: Orthanc) -> int:
    try:
        return int(httpx.get(f"{orthanc.url}/statistics", timeout=2).json()["CountInstances"])
    except httpx.HTTPError:
        return -1


def test_pacs_and_sender_sigkilled_mid_batch_every_result_arrives_exactly_once(
    tmp_path: Path, versions: Versions
) -> None:
    n = 200
    orthanc, pacs = start_orthanc(tmp_path / "orthanc", mmdx_port=free_port())
    cfg = tmp_path / "send.yaml"
    db_url = f"sqlite:///{tmp_path / 'send.db'}"
    cfg.write_text(
        yaml.safe_dump(
            {
                "database": {"url": db_url},
                "storage": {"fsync": False},
                "destinations": {"pacs": _dest(orthanc, base_delay_s=0.2, max_delay_s=1, max_attempts=1000)},
                "bridge": {"poll_s": 0.1, "batch_size": 5, "lease_s": 2},
            }
        )
    )
    db = Database.from_settings(load_settings(cfg, use_project_defaults=False))
    with db.session() as s:
        report_store.save_report_version(
            s, versions.all[0].report, _many_objects(tmp_path, versions, n), {"sr": ["pacs"]}, T0
        )
    mmdx = str(Path(sys.executable).parent / "mmdx")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MMDX_")}
    log = (tmp_path / "sender.log").open("ab")

    def sender() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [mmdx, "send", "-c", str(cfg)], stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp_path
        )

    send = sender()
    try:
        _wait(lambda: _count(orthanc) >= 40, 120, "40 objects in the PACS")
        assert _count(orthanc) < n  # really mid-batch
        os.kill(pacs.pid, signal.SIGKILL)  # the PACS dies mid-batch
        pacs.wait()
        time.sleep(1.0)  # the sender meets a dead peer for a while
        pacs = restart_orthanc(orthanc)
        _wait(lambda: _count(orthanc) >= 120, 120, "120 objects in the PACS")
        assert _count(orthanc) < n
        os.kill(send.pid, signal.SIGKILL)  # the sender dies mid-batch, holding leased claims
        send.wait()
        send = sender()

        def all_delivered() -> bool:
            with db.session(readonly=True) as s:
                return outbox.counts_by_state(s)[OutboxState.DELIVERED] == n

        _wait(all_delivered, 180, "every item delivered")
    finally:
        stop_pid(send)
        log.close()
    try:
        changes = new_instances(orthanc)
        assert len(changes) == n == len(set(changes))
        assert _count(orthanc) == n
        with db.session() as s:
            counts = outbox.counts_by_state(s)
        assert counts[OutboxState.DELIVERED] == n and counts[OutboxState.DEAD] == 0
    finally:
        stop_pid(pacs)
        db.dispose()
