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
import ssl
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


# --------------------------------------------------------------------------- bridge peers (MLLP, FHIR)

PEERS_DIR = Path(__file__).resolve().parent / "peers"


def _wait_line(proc: subprocess.Popen[bytes], log: Path, marker: str, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}: {log.read_text(errors='replace')[-500:]}")
        if log.exists() and marker in log.read_text(errors="replace"):
            return
        time.sleep(0.05)
    stop_pid(proc)
    raise RuntimeError(f"{what} did not start in time")


@dataclass
class MllpListener:
    """A running MLLP listener (``tests/peers/mllp_listener.py``) and the messages it logged."""

    port: int
    log: Path
    proc: subprocess.Popen[bytes]

    def received(self) -> list[dict[str, str]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]


def start_mllp_listener(
    workdir: Path,
    mode: str = "AA",
    port: int | None = None,
    *,
    tls: tuple[Path, Path] | None = None,
    client_ca: Path | None = None,
) -> MllpListener:
    """Start the test MLLP listener answering every message with ``mode`` (AA, AE, AR or none).

    ``tls``: (certificate, private key) to listen with TLS; ``client_ca``: also require a client certificate.
    """
    import sys

    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    log = workdir / f"mllp-{port}.jsonl"
    out = workdir / f"mllp-{port}.out"
    extra = ["--certificate", str(tls[0]), "--private-key", str(tls[1])] if tls else []
    extra += ["--client-ca", str(client_ca)] if client_ca else []
    script = [sys.executable, str(PEERS_DIR / "mllp_listener.py")]
    proc = subprocess.Popen(
        [*script, "--port", str(port), "--mode", mode, "--log", str(log), *extra],
        stdout=out.open("wb"),
        stderr=subprocess.STDOUT,
    )
    _wait_line(proc, out, "listening", "MLLP listener")
    return MllpListener(port, log, proc)


@dataclass
class FhirServer:
    """Medplum's FHIR router with its in-memory repository (``tests/peers/medplum/server.mjs``)."""

    url: str
    proc: subprocess.Popen[bytes]
    token: str | None = None
    #: how the test reaches it: True over HTTP, a client context (its CA, the client certificate) over HTTPS
    verify: ssl.SSLContext | bool = True

    def search(self, resource_type: str, **params: str) -> list[dict[str, object]]:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        r = httpx.get(
            f"{self.url}/{resource_type}",
            params={"_count": "1000", **params},
            headers=headers,
            timeout=30,
            verify=self.verify,
        )
        r.raise_for_status()
        return [e["resource"] for e in r.json().get("entry", [])]


def start_fhir_server(
    workdir: Path,
    token: str | None = None,
    *,
    https: tuple[Path, Path] | None = None,
    client_cert: tuple[Path, Path] | None = None,
) -> FhirServer:
    """Start the Medplum FHIR server on a free port (``npm ci`` in tests/peers/medplum installs it).

    ``https``: (certificate, key) PEMs to serve HTTPS with; ``client_cert``: (certificate, key) of the
    only client it then accepts (mutual TLS; the test's own searches present it).
    """
    node = require_binary("node")
    if not (PEERS_DIR / "medplum" / "node_modules" / "@medplum" / "fhir-router").is_dir():
        if os.environ.get("CI"):
            pytest.fail("tests/peers/medplum is not installed: run make test (npm ci there)")
        pytest.skip("tests/peers/medplum not installed (cd tests/peers/medplum && npm ci)")
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    out = workdir / f"fhir-{port}.out"
    env = dict(os.environ, FHIR_TOKEN=token) if token else dict(os.environ)
    verify: ssl.SSLContext | bool = True
    if https is not None:
        env |= {"FHIR_TLS_CERT": str(https[0]), "FHIR_TLS_KEY": str(https[1])}
        verify = ssl.create_default_context(cafile=str(https[0]))
        if client_cert is not None:
            env["FHIR_CLIENT_CA"] = str(client_cert[0])
            verify.load_cert_chain(str(client_cert[0]), str(client_cert[1]))
    proc = subprocess.Popen(
        [node, "server.mjs", str(port)],
        cwd=PEERS_DIR / "medplum",
        stdout=out.open("wb"),
        stderr=subprocess.STDOUT,
        env=env,
    )
    _wait_line(proc, out, "listening", "Medplum FHIR server", timeout=60)
    return FhirServer(f"{'https' if https else 'http'}://127.0.0.1:{port}", proc, token, verify)
