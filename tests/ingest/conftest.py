"""Fixtures for the ingest tests: settings on tmp folders, a real SQLite index, a
running Storage SCP on a free loopback port, DCMTK tools as the modality and
an Orthanc started from a temp config as the PACS (stopped by PID).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pydicom
import pytest

from core.config import Settings, load_settings
from ingest.scp import StorageServer
from store.db import Database

DATA = Path(__file__).resolve().parent.parent / "data" / "dicom"
NET_FILES = sorted((DATA / "net").glob("*.dcm"))
BAD_FILES = sorted((DATA / "bad").glob("*.dcm"))
MODALITY_AE = "MODALITY"
ORTHANC_AE = "ORTHANC"
DCMTK_ENV = dict(os.environ, TCP_NODELAY="1")

#: storescu proposes one compressed transfer syntax per run: the flag for each.
STORESCU_TS_FLAG = {
    "1.2.840.10008.1.2.4.50": "-xy",
    "1.2.840.10008.1.2.4.51": "-xx",
    "1.2.840.10008.1.2.4.57": "-xs",
    "1.2.840.10008.1.2.4.70": "-xs",
    "1.2.840.10008.1.2.4.80": "-xt",
    "1.2.840.10008.1.2.4.81": "-xu",
    "1.2.840.10008.1.2.4.90": "-xv",
    "1.2.840.10008.1.2.4.91": "-xw",
    "1.2.840.10008.1.2.5": "-xr",
    "1.2.840.10008.1.2.1.99": "-xd",
}


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


def make_settings(tmp: Path, **overrides: Any) -> Settings:
    sections: dict[str, Any] = {
        "database": {"url": f"sqlite:///{tmp / 'mmdx.db'}"},
        "storage": {"store_dir": tmp / "store", "out_dir": tmp / "out", "quarantine_dir": tmp / "quarantine"},
        "scp": {"ae_title": "MMDX", "allowed_calling_aes": [MODALITY_AE, ORTHANC_AE, "STORESCU", "ECHOSCU"]},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(sections.get(key), dict):
            sections[key] = {**sections[key], **value}
        else:
            sections[key] = value
    return load_settings(None, use_project_defaults=False, **sections)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
def db(settings: Settings) -> Iterator[Database]:
    database = Database.from_settings(settings)
    yield database
    database.dispose()


ENGINES = ("pynetdicom", "fast")


@pytest.fixture(params=ENGINES)
def scp(request: pytest.FixtureRequest, settings: Settings, db: Database) -> Iterator[StorageServer]:
    """A running SCP on a free port, once per engine (both must pass every test)."""
    server = StorageServer(settings, db, port=0, engine=request.param)
    server.start()
    yield server
    server.stop()


def make_distinct(files: Sequence[Path], out: Path, tag: str = "distinct") -> list[Path]:
    """Copies whose SOP Instance UIDs are unique (several samples are one image re-encoded under one UID)."""
    from core.identifiers import derive_uid

    out.mkdir(parents=True, exist_ok=True)
    result = []
    for f in files:
        ds = pydicom.dcmread(f)
        uid = derive_uid("2.25", tag, f.name)
        ds.SOPInstanceUID = uid
        ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.UID(uid)
        target = out / f.name
        ds.save_as(target, enforce_file_format=True)
        result.append(target)
    return result


@pytest.fixture(scope="session")
def distinct_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The sample files with unique UIDs, plus a JPEG-LS near-lossless one encoded here (pyjpegls)."""
    from pydicom.uid import JPEGLSNearLossless

    out = tmp_path_factory.mktemp("distinct")
    near = pydicom.dcmread(DATA / "net" / "CT_small.dcm")
    near.compress(JPEGLSNearLossless, jls_error=2)
    source = tmp_path_factory.mktemp("encoded")
    near.save_as(source / "CT_small_jls_near.dcm", enforce_file_format=True)
    return make_distinct([*NET_FILES, source / "CT_small_jls_near.dcm"], out)


def ts_of(path: Path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID)


def storescu(
    files: Sequence[Path], port: int, *, calling: str = MODALITY_AE, called: str = "MMDX", extra: Sequence[str] = ()
) -> list[subprocess.CompletedProcess[str]]:
    """Send files with DCMTK storescu, one run per compressed transfer syntax (it proposes one per run)."""
    exe = require_binary("storescu")
    groups: dict[str, list[Path]] = defaultdict(list)
    for f in files:
        groups[STORESCU_TS_FLAG.get(ts_of(f), "")].append(f)
    runs = []
    for flag, group in sorted(groups.items()):
        cmd = [exe, "-aet", calling, "-aec", called, *([flag] if flag else []), *extra, "127.0.0.1", str(port)]
        runs.append(subprocess.run([*cmd, *map(str, group)], env=DCMTK_ENV, capture_output=True, text=True, timeout=60))
    return runs


# --------------------------------------------------------------------------- Orthanc


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
