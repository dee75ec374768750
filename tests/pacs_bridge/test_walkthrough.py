"""The README walk-through as a user runs it: mmdx scp + mmdx worker, a modality sends a study, the results
reach the PACS (C-STORE with storage commitment), the FHIR server, the RIS (MLLP) and a share; mmdx outbox
shows each delivered."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import yaml

from core.config import load_settings
from store import outbox
from store.db import Database
from store.outbox import OutboxState
from tests.pacs_bridge.conftest import REPO
from tests.peers import (
    DCMTK_ENV,
    free_port,
    require_binary,
    start_fhir_server,
    start_mllp_listener,
    start_orthanc,
    stop_pid,
)


def test_scp_worker_and_every_peer_kind(tmp_path: Path) -> None:
    storescu = require_binary("storescu")
    commit_port, scp_port = free_port(), free_port()
    orthanc, pacs = start_orthanc(tmp_path / "orthanc", mmdx_port=commit_port, mmdx_ae="MMDX-BRIDGE")
    fhir = start_fhir_server(tmp_path / "fhir", token="t0k")
    ris = start_mllp_listener(tmp_path / "mllp", "AA")
    cfg = tmp_path / "site.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "database": {"url": f"sqlite:///{tmp_path / 'var' / 'mmdx.db'}"},
                "storage": {
                    "store_dir": str(tmp_path / "var/store"),
                    "out_dir": str(tmp_path / "var/out"),
                    "quarantine_dir": str(tmp_path / "var/q"),
                },
                "scp": {"ae_title": "MMDX", "port": scp_port, "stable_age_s": 1},
                "service": {"worker_poll_s": 0.2},
                "destinations": {
                    "pacs": {
                        "type": "dicom",
                        "host": "127.0.0.1",
                        "port": orthanc.dicom_port,
                        "ae_title": "ORTHANC",
                        "artefacts": ["sr", "sc", "dicom-pdf"],
                        "storage_commitment": True,
                    },
                    "ehr": {
                        "type": "fhir",
                        "url": fhir.url,
                        "authorization": "Bearer t0k",
                        "artefacts": ["fhir"],
                    },
                    "ris": {"type": "mllp", "host": "127.0.0.1", "port": ris.port, "artefacts": ["oru"]},
                    "share": {"type": "folder", "path": str(tmp_path / "share"), "artefacts": ["pdf"]},
                },
                "bridge": {"commitment_port": commit_port, "poll_s": 0.2},
            }
        )
    )
    mmdx = str(Path(sys.executable).parent / "mmdx")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MMDX_")}
    logs = (tmp_path / "scp.log").open("wb"), (tmp_path / "worker.log").open("wb")
    scp = subprocess.Popen(
        [mmdx, "scp", "-c", str(cfg), "--dispatch-every", "0.5"], stdout=logs[0], stderr=subprocess.STDOUT, env=env
    )
    worker = subprocess.Popen([mmdx, "worker", "-c", str(cfg)], stdout=logs[1], stderr=subprocess.STDOUT, env=env)
    db = Database.from_settings(load_settings(cfg, use_project_defaults=False))
    try:
        deadline = time.monotonic() + 120
        while True:  # the modality sends as soon as the SCP answers
            sent = subprocess.run(
                [
                    storescu,
                    "-aec",
                    "MMDX",
                    "127.0.0.1",
                    str(scp_port),
                    str(REPO / "samples/ecg_dicom/waveform_ecg.dcm"),
                ],
                env=DCMTK_ENV,
                capture_output=True,
            )
            if sent.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert sent.returncode == 0, sent.stderr
        while time.monotonic() < deadline:
            with db.session(readonly=True) as s:
                items = outbox.list_items(s)
            if items and all(i.state is OutboxState.DELIVERED for i in items):
                break
            time.sleep(0.5)
        assert items and {i.state for i in items} == {OutboxState.DELIVERED}, [
            (i.destination, i.state, i.last_error) for i in items
        ]
        assert {i.destination for i in items} == {"pacs", "ehr", "ris", "share"}
        listed = subprocess.run([mmdx, "outbox", "-c", str(cfg)], capture_output=True, text=True, env=env)
        assert listed.returncode == 0 and f"delivered: {len(items)}" in listed.stdout
        # what each peer holds
        sops = httpx.get(f"{orthanc.url}/instances", timeout=10).json()
        assert len(sops) == sum(1 for i in items if i.destination == "pacs")
        assert len(fhir.search("DiagnosticReport")) == 1
        assert [m["result_status"] for m in ris.received()] == ["P"]
        assert len(list((tmp_path / "share").rglob("report.pdf"))) == 1
    finally:
        for proc in (worker, scp):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
        for log in logs:
            log.close()
        db.dispose()
        stop_pid(pacs)
        stop_pid(fhir.proc)
        stop_pid(ris.proc)
