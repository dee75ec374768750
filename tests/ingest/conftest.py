"""Fixtures for the ingest tests: settings on tmp folders, a real SQLite index, a
running Storage SCP on a free loopback port, DCMTK tools as the modality and
an Orthanc started from a temp config as the PACS (stopped by PID).
"""

from __future__ import annotations

import subprocess
from collections import defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pydicom
import pytest

from core.config import Settings, load_settings
from ingest.scp import StorageServer
from store.db import Database
from tests.peers import DCMTK_ENV, ORTHANC_AE, require_binary

DATA = Path(__file__).resolve().parent.parent / "data" / "dicom"
NET_FILES = sorted((DATA / "net").glob("*.dcm"))
BAD_FILES = sorted((DATA / "bad").glob("*.dcm"))
MODALITY_AE = "MODALITY"

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
