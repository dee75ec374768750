"""Real peers for integration tests: free loopback ports, DCMTK tools and an Orthanc PACS.

Each peer is started from a temporary config on free ports and stopped by PID. A missing binary skips the
test locally and fails it under ``CI``, where ``make test`` installs it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

ORTHANC_AE = "ORTHANC"
#: DCMTK leaves Nagle's algorithm on unless this is set: every DIMSE message would wait tens of ms.
DCMTK_ENV = dict(os.environ, TCP_NODELAY="1")


def require_binary(name: str) -> str:
    """The binary's path; skip when missing locally, fail in CI (where it must be installed)."""
    path = shutil.which(name) or (name if Path(name).is_file() else None)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is required in CI but not installed")
        pytest.skip(f"{name} not installed")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Orthanc:
    """A running Orthanc: its REST base URL, DICOM port and AE title."""

    url: str
    dicom_port: int
    ae_title: str
    pid: int
    workdir: Path

    def upload(self, path: Path) -> str:
        r = httpx.post(f"{self.url}/instances", content=path.read_bytes(), timeout=30)
        r.raise_for_status()
        return str(r.json()["ID"])


def _wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"Orthanc exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/system", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError("Orthanc did not answer /system in time")


def start_orthanc(workdir: Path, *, mmdx_port: int, mmdx_ae: str = "MMDX") -> tuple[Orthanc, subprocess.Popen[bytes]]:
    exe = require_binary("/usr/sbin/Orthanc")
    http_port, dicom_port = free_port(), free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    config = {
        "Name": "TEST-PACS",
        "StorageDirectory": str(workdir / "db"),
        "IndexDirectory": str(workdir / "db"),
        "Plugins": ["/usr/share/orthanc/plugins/libOrthancDicomWeb.so"],
        "HttpPort": http_port,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "DicomAet": ORTHANC_AE,
        "DicomPort": dicom_port,
        "DicomCheckCalledAet": True,
        "DicomAlwaysAllowStore": True,
        "StableAge": 1,
        "DicomModalities": {
            "mmdx": {
                "AET": mmdx_ae,
                "Host": "127.0.0.1",
                "Port": mmdx_port,
                "AllowFind": True,
                "AllowMove": True,
                "AllowGet": True,
                "AllowStore": True,
            }
        },
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": True, "Host": "127.0.0.1"},
    }
    cfg = workdir / "orthanc.json"
    cfg.write_text(json.dumps(config))
    log = (workdir / "orthanc.log").open("wb")
    proc = subprocess.Popen([exe, str(cfg)], stdout=log, stderr=subprocess.STDOUT, env=DCMTK_ENV, cwd=workdir)
    url = f"http://127.0.0.1:{http_port}"
    try:
        _wait_http(url, proc)
    except Exception:
        stop_pid(proc)
        raise
    return Orthanc(url, dicom_port, ORTHANC_AE, proc.pid, workdir), proc


def stop_pid(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
