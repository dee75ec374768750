"""``mmdx scp`` logs what an operator needs (issue 19): INFO by default, each object with -v, JSON lines, no PHI."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest
import yaml

from tests.peers import free_port, require_binary

from .conftest import DATA, MODALITY_AE, storescu

pytestmark = pytest.mark.integration

_CLI = "from app.cli import main\nmain()\n"  # the console script's own start-up, logging included


def _run_scp(tmp: Path, *args: str, log_format: str = "text") -> str:
    require_binary("storescu")
    port = free_port()
    cfg = {
        "database": {"url": f"sqlite:///{tmp / 'mmdx.db'}"},
        "storage": {"store_dir": str(tmp / "store"), "quarantine_dir": str(tmp / "quarantine")},
        "scp": {"port": port, "allowed_calling_aes": [MODALITY_AE], "stable_age_s": 0.5},
        "service": {"log_format": log_format},
    }
    config = tmp / "mmdx.yaml"
    config.write_text(yaml.safe_dump(cfg))
    command = [sys.executable, "-c", _CLI, "scp", "--config", str(config), "--engine", "fast"]
    command += ["--dispatch-every", "0.2"]
    proc = subprocess.Popen(
        [*command, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if "listening on" in line:
            break
    else:
        raise AssertionError(f"mmdx scp did not start: {''.join(lines)}")
    try:
        runs = storescu([DATA / "net" / "CT_small.dcm"], port)
        assert runs[0].returncode == 0, runs[0].stderr
        import time

        time.sleep(1.5)  # the study becomes stable and is dispatched
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    return "".join(lines) + out


def _no_phi(log: str) -> None:
    ds = pydicom.dcmread(DATA / "net" / "CT_small.dcm")
    for value in (str(ds.PatientName), str(ds.PatientID), str(ds.get("PatientBirthDate", ""))):
        if value:
            assert value not in log


def test_default_log_shows_associations_objects_and_dispatch(tmp_path: Path) -> None:
    log = _run_scp(tmp_path)
    assert "INFO" in log and "association accepted from" in log
    assert "1 object(s) received (0x0000 x1)" in log
    assert "dispatched 1 stable study" in log
    assert "C-STORE" not in log  # per-object detail only with -v
    _no_phi(log)


def test_verbose_logs_every_object(tmp_path: Path) -> None:
    uid = str(pydicom.dcmread(DATA / "net" / "CT_small.dcm").SOPInstanceUID)
    log = _run_scp(tmp_path, "-v")
    assert f"C-STORE {uid} from" in log and f"stored {uid} from scp:" in log
    _no_phi(log)


def test_json_log_lines(tmp_path: Path) -> None:
    log = _run_scp(tmp_path, log_format="json")
    entries = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    assert entries and {"time", "level", "logger", "message"} <= set(entries[0])
    assert any("object(s) received" in e["message"] for e in entries)
    _no_phi(log)
