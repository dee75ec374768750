"""Fixtures for the store tests: real SQLite files in tmp_path, a throwaway PostgreSQL cluster when installed."""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import xxhash

from core.records import Instance, Patient, PatientIdentifier, Series, Sex, Study
from store.db import Database

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
STUDY_UID = "1.2.826.0.1.3680043.10.999.1"
SERIES_UID = "1.2.826.0.1.3680043.10.999.1.1"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def digest(text: str) -> str:
    """A content digest as ingest labels it."""
    return "xxh3-128:" + xxhash.xxh3_128_hexdigest(text.encode())


def make_patient(pid: str = "PID-001", issuer: str | None = "HOSP") -> Patient:
    return Patient(
        identifiers=(PatientIdentifier(pid, issuer),),
        name="Doe^Jane",
        birth_date=datetime(1970, 1, 2).date(),
        sex=Sex.FEMALE,
        age_years=56.0,
    )


def make_study(uid: str = STUDY_UID, patient: Patient | None = None) -> Study:
    return Study(
        study_instance_uid=uid,
        patient=patient if patient is not None else make_patient(),
        accession_number="ACC001",
        study_datetime=datetime(2026, 11, 26, 9, 30),
        description="CT CHEST",
        referring_physician="Who^Doctor",
    )


def make_series(study_uid: str = STUDY_UID, uid: str = SERIES_UID, number: int = 1, modality: str = "CT") -> Series:
    return Series(uid, study_uid, modality, series_number=number, description="AXIAL", body_part="CHEST")


def make_instance(
    n: int, *, study_uid: str = STUDY_UID, series_uid: str = SERIES_UID, content: str | None = None
) -> Instance:
    return Instance(
        sop_instance_uid=f"{series_uid}.{n}",
        sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
        series_instance_uid=series_uid,
        study_instance_uid=study_uid,
        path=Path(f"/var/store/{series_uid}.{n}.dcm"),
        content_digest=digest(content if content is not None else f"bytes-{n}"),
        transfer_syntax_uid="1.2.840.10008.1.2.1",
        instance_number=n,
        number_of_frames=1,
        rows=512,
        columns=512,
        source="scp:MODALITY",
    )


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'var' / 'mmdx.db'}"


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    from core.config import DatabaseConfig, Settings

    database = Database.from_settings(Settings(database=DatabaseConfig(url=db_url)))
    yield database
    database.dispose()


# --------------------------------------------------------------------------- PostgreSQL


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A throwaway PostgreSQL cluster on a free loopback port, stopped by PID at the end.

    Skipped only where PostgreSQL is not installed and not in CI (``CI`` set makes it a failure).
    """
    bindir = _pg_bin()
    if bindir is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL binaries (initdb, postgres) are required in CI")
        pytest.skip("PostgreSQL server binaries not installed (apt-get install postgresql)")
    try:
        import psycopg
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("psycopg is required in CI for the PostgreSQL tests")
        pytest.skip("psycopg (PostgreSQL driver) not installed")
    # initdb/postgres refuse to run as root: run them as the 'postgres' system user then.
    user = "postgres" if os.geteuid() == 0 else None
    base = Path(tempfile.mkdtemp(prefix="mmdx-pg-"))
    data = base / "data"
    if user:
        shutil.chown(base, user=user)
    subprocess.run(
        [str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8"],
        user=user,
        check=True,
        capture_output=True,
    )
    port = _free_port()
    proc = subprocess.Popen(
        [
            str(bindir / "postgres"),
            "-D",
            str(data),
            "-p",
            str(port),
            "-h",
            "127.0.0.1",
            "-k",
            str(base),
            "-c",
            "fsync=off",
            "-c",
            "max_connections=50",
        ],
        user=user,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        import psycopg

        deadline = time.monotonic() + 30
        while True:
            try:
                psycopg.connect(f"host=127.0.0.1 port={port} user=postgres dbname=postgres").close()
                break
            except psycopg.OperationalError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("PostgreSQL test cluster did not start") from None
                time.sleep(0.1)
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        proc.send_signal(signal.SIGINT)  # fast shutdown: disconnect clients, stop
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def pg_db(pg_url: str) -> Iterator[Database]:
    """A migrated PostgreSQL database, emptied (schema dropped) after the test."""
    from sqlalchemy import text

    database = Database(pg_url)
    with database.engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    database.migrate()
    yield database
    database.dispose()
