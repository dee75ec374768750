"""``mmdx batch --engine ray --address``: a Ray head started on loopback by the test gives the local engine's table."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from app.batch import BatchOptions, run_batch
from app.context import AppContext
from tests.app.batch_inputs import dicom_ecg_copies, wfdb_copies

pytestmark = [pytest.mark.slow, pytest.mark.integration]

RAY = Path(os.environ.get("VIRTUAL_ENV", Path(__file__).resolve().parents[2] / ".venv")) / "bin" / "ray"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def ray_head() -> Iterator[str]:
    """A one-node Ray cluster on 127.0.0.1 (its own process group and temp dir), stopped by PID."""
    import ray  # noqa: F401  # a test extra (pip install 'mmdx[ray]'): missing, the test fails rather than skips

    port = _free_port()
    workers = 10000 + port % 9900  # 100 ports for the worker processes, below the ephemeral range
    temp = tempfile.mkdtemp(prefix="ray")  # short: Ray's socket paths must stay under 107 characters
    cmd = [
        str(RAY), "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={port}",
        "--num-cpus=2", "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}",
        f"--node-manager-port={_free_port()}", f"--object-manager-port={_free_port()}",
        f"--min-worker-port={workers}", f"--max-worker-port={workers + 99}",
    ]  # fmt: skip
    log = Path(temp) / "ray-start.log"
    proc = subprocess.Popen(
        cmd, start_new_session=True, stdout=log.open("wb"), stderr=subprocess.STDOUT,
        # its own HOME: a token in ~/.ray/auth_token (left by another Ray) would make the head demand it
        env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "HOME": temp},
    )  # fmt: skip
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        # ready when ray start says so (the GCS port accepts connections before the GCS serves clients)
        while "Ray runtime started" not in log.read_text(errors="replace"):
            assert proc.poll() is None, "ray start exited: " + log.read_text(errors="replace")[-2000:]
            assert time.monotonic() < deadline, "the Ray head did not start: " + log.read_text(errors="replace")[-2000:]
            time.sleep(0.5)
        yield address
    finally:
        # the whole process group (ray start, gcs_server, raylet, workers): SIGTERM, then SIGKILL what is left
        for sig, wait_s in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=wait_s)
        shutil.rmtree(temp, ignore_errors=True)


def test_ray_engine_gives_the_local_table(workdir: Path, ray_head: str):
    src = workdir / "in"
    wfdb_copies(src / "wfdb", 2)
    dicom_ecg_copies(src / "dicom", 2)
    (src / "broken.dcm").write_bytes(b"\0" * 128 + b"DICM")
    ctx = AppContext.create()
    local = run_batch(ctx, BatchOptions(str(src), workdir / "local", workers=2))
    ray = run_batch(ctx, BatchOptions(str(src), workdir / "ray", workers=2, engine="ray", address=ray_head))
    assert ray.counts == local.counts and ray.counts["done"] == 4
    t_local = sorted(pq.read_table(workdir / "local" / "cohort.parquet").to_pylist(), key=lambda r: r["item"])
    t_ray = sorted(pq.read_table(workdir / "ray" / "cohort.parquet").to_pylist(), key=lambda r: r["item"])
    assert t_ray == t_local
    assert sorted(p.name for p in (workdir / "ray" / "fhir").iterdir()) == sorted(
        p.name for p in (workdir / "local" / "fhir").iterdir()
    )
