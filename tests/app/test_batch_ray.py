"""``mmdx batch --engine ray --address``: a Ray head started on loopback by the test gives the local engine's table."""

from __future__ import annotations

import contextlib
import logging
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
from app.batch.engines import ray_workers
from app.context import AppContext
from core.errors import ConfigError
from tests.app.batch_inputs import dicom_ecg_copies, wfdb_copies

pytestmark = [pytest.mark.slow, pytest.mark.integration]

RAY = Path(os.environ.get("VIRTUAL_ENV", Path(__file__).resolve().parents[2] / ".venv")) / "bin" / "ray"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def ray_head(request: pytest.FixtureRequest) -> Iterator[str]:
    """A one-node Ray cluster on 127.0.0.1 (its own process group and temp dir), stopped by PID.

    Parametrised indirectly with a number of GPUs, it declares them (Ray's logical resources: no device needed).
    """
    import ray  # noqa: F401  # a test extra (pip install 'mmdx[ray]'): missing, the test fails rather than skips

    port = _free_port()
    workers = 10000 + port % 9900  # 100 ports for the worker processes, below the ephemeral range
    temp = tempfile.mkdtemp(prefix="ray")  # short: Ray's socket paths must stay under 107 characters
    cmd = [
        str(RAY), "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={port}",
        "--num-cpus=2", f"--num-gpus={getattr(request, 'param', 0)}", "--include-dashboard=false",
        "--disable-usage-stats", f"--temp-dir={temp}",
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


@pytest.mark.parametrize("ray_head", [1], indirect=True)
def test_ray_workers_are_actors_given_the_gpu_share_they_request(
    workdir: Path, ray_head: str, caplog: pytest.LogCaptureFixture
):
    src = workdir / "in"
    wfdb_copies(src / "wfdb", 2)
    local = run_batch(AppContext.create(), BatchOptions(str(src), workdir / "local", workers=2))
    ctx = AppContext.create(None, batch={"ray_gpus_per_worker": 0.5})
    with caplog.at_level(logging.INFO, logger="app.batch.runner"):
        ray = run_batch(ctx, BatchOptions(str(src), workdir / "ray", workers=2, engine="ray", address=ray_head))
    assert ray.counts == local.counts and ray.counts["done"] == 2
    # two actors of half a GPU each share the cluster's one GPU; Ray told each which it is
    assert "ray: 2 worker actor(s), GPUs given: [[0], [0]]" in caplog.text
    # a share no node can give is refused before anything waits for it
    greedy = AppContext.create(None, batch={"ray_gpus_per_worker": 2})
    with pytest.raises(
        ConfigError, match=r"batch.ray_gpus_per_worker: each worker asks for 2 GPU, the Ray cluster has 1"
    ):
        run_batch(greedy, BatchOptions(str(src), workdir / "greedy", workers=1, engine="ray", address=ray_head))


def test_ray_workers_fit_the_cluster_gpus():
    assert ray_workers(0, 4, 0) == 4  # CPU only: as asked
    assert ray_workers(1, 4, 0.5) == 2  # what the GPUs hold
    assert ray_workers(2, 1, 0.5) == 1
    with pytest.raises(ConfigError, match="the Ray cluster has 0"):
        ray_workers(0, 2, 1)
