"""End to end: a modality sends a study to ``mmdx serve`` (SCP inside); it is analysed and delivered by the same
process, appears on the worklist, and the process stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import yaml

from app.api.auth import Role, mint_token
from core.config import AuthConfig
from tests.peers import DCMTK_ENV, free_port, require_binary
from tests.service.conftest import REPO, SECRET

ECG_UID = "1.3.76.13.65829.2.20130125082826.1072139.2"  # samples/ecg_dicom/waveform_ecg.dcm

pytestmark = pytest.mark.integration


def test_modality_to_worklist_in_one_process(tmp_path: Path) -> None:
    storescu = require_binary("storescu")
    scp_port, http_port = free_port(), free_port()
    config = {
        "storage": {
            "store_dir": str(tmp_path / "store"),
            "out_dir": str(tmp_path / "out"),
            "quarantine_dir": str(tmp_path / "q"),
        },
        "database": {"url": f"sqlite:///{tmp_path / 'mmdx.db'}"},
        "scp": {"host": "127.0.0.1", "port": scp_port, "ae_title": "MMDX", "stable_age_s": 1},
        "service": {
            "host": "127.0.0.1",
            "port": http_port,
            "run_scp": True,
            "workers": 1,
            "run_sender": True,
            "worker_poll_s": 0.2,
        },
        "bridge": {"poll_s": 0.2},
        "auth": {"mode": "token", "token_secret": SECRET},
        "destinations": {"share": {"type": "folder", "path": str(tmp_path / "share")}},
        "delivery_routing": [{"artefacts": ["pdf"], "destinations": ["share"]}],
    }
    cfg = tmp_path / "site.yaml"
    cfg.write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MMDX_")}
    proc = subprocess.Popen(
        [sys.executable, "-c", "from app.cli import main; main()", "serve", "--config", str(cfg)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{http_port}"
    token = mint_token(AuthConfig(mode="token", token_secret=SECRET), "dr.e2e", [Role.CLINICIAN], now=datetime.now(UTC))
    headers = {"Authorization": f"Bearer {token}"}
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                ready = httpx.get(f"{base}/readyz", timeout=2)
                if ready.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            assert time.monotonic() < deadline, "mmdx serve did not become ready"
            time.sleep(0.2)
        checks = ready.json()["checks"]
        assert checks["scp"]["ok"] and checks["worker-1"]["ok"] and checks["sender"]["ok"]
        sent = subprocess.run(
            [
                storescu,
                "-aet",
                "MODALITY",
                "-aec",
                "MMDX",
                "127.0.0.1",
                str(scp_port),
                str(REPO / "samples" / "ecg_dicom" / "waveform_ecg.dcm"),
            ],
            env=DCMTK_ENV,
            capture_output=True,
            timeout=60,
        )
        assert sent.returncode == 0, sent.stderr.decode()
        deadline = time.monotonic() + 120
        while True:
            rows = httpx.get(f"{base}/api/v1/worklist", headers=headers, timeout=30).json()
            if any(r["study_instance_uid"] == ECG_UID for r in rows):
                break
            assert proc.poll() is None
            assert time.monotonic() < deadline, "the study never reached the worklist"
            time.sleep(0.3)
        found = httpx.get(f"{base}/api/v1/studies?patient_id=PAT-SECRET", headers=headers, timeout=30)
        assert found.status_code == 200 and found.json() == []  # the access log must not show the query
        row = next(r for r in rows if r["study_instance_uid"] == ECG_UID)
        assert row["report_status"] == "preliminary" and row["modalities"] == ["ECG"]
        deadline = time.monotonic() + 60  # the in-process sender delivers the PDF to the folder destination
        while not list((tmp_path / "share").rglob("*.pdf")):
            assert time.monotonic() < deadline, "the outbox sender did not deliver"
            time.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
    assert proc.returncode == 0, out.decode()[-3000:]
    log = out.decode()
    assert "GET /api/v1/worklist HTTP/1.1" in log and "patient_id" not in log and "PAT-SECRET" not in log
