"""wrk against mmdx's API (auth + database in the path) and a minimal FastAPI app returning the same JSON.

    .venv/bin/python bench/api/bench_api.py [--studies 200] [--duration 10] [--connections 32]

Builds a database of N studies with reports (one analysed ECG, cloned), starts both apps under uvicorn on
loopback (one process each), runs wrk on ``GET /api/v1/worklist`` and ``GET .../reports/latest`` and on the
peer's same-size documents, then measures the worklist page's first paint in headless Chromium.
Prints requests/s, p99 latency and the mmdx/peer ratio.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from app.api.auth import Role, mint_token  # noqa: E402
from app.context import AppContext  # noqa: E402
from app.inputs import collect  # noqa: E402
from app.pipeline import process_study  # noqa: E402
from core.records import Priority, PriorityLevel  # noqa: E402
from store import reports as report_store  # noqa: E402
from store.schema import SeriesRow, StudyRow  # noqa: E402
from tests.peers import free_port  # noqa: E402

SECRET = "bench-secret-0123456789abcdef0123456789abcdef"


def build(root: Path, studies: int) -> tuple[dict[str, str], str]:
    env = {
        "MMDX_DATABASE__URL": f"sqlite:///{root / 'mmdx.db'}",
        "MMDX_STORAGE__STORE_DIR": str(root / "store"),
        "MMDX_STORAGE__OUT_DIR": str(root / "out"),
        "MMDX_STORAGE__QUARANTINE_DIR": str(root / "q"),
        "MMDX_AUTH__MODE": "token",
        "MMDX_AUTH__TOKEN_SECRET": SECRET,
    }
    os.environ.update(env)
    ctx = AppContext.create(None)
    shutil.copytree(REPO / "samples" / "ecg_wfdb", root / "in")
    (uid,) = collect(ctx, [root / "in"]).study_uids
    process_study(ctx, uid)
    with ctx.db.session() as session:
        template = report_store.latest_report(session, uid)
    assert template is not None
    rng = random.Random(7)
    now = datetime.now(UTC)
    for i in range(studies - 1):
        sid = f"2.25.{10**20 + i}"
        level = rng.choice(list(PriorityLevel))
        received = now - timedelta(minutes=rng.randint(1, 600))
        with ctx.db.session() as session:
            study = StudyRow(
                study_instance_uid=sid,
                accession_number=f"ACC{i:05d}",
                description="Resting ECG",
                first_received_at=received,
                last_received_at=received,
                content_version="0" * 64,
            )
            study.series.append(SeriesRow(series_instance_uid=f"{sid}.1", modality="ECG", body_part=None))
            session.add(study)
            session.flush()
            priority = Priority(level, "bench" if level is not PriorityLevel.ROUTINE else "")
            report = dataclasses.replace(template, study_instance_uid=sid, priority=priority, created_at=now)
            report_store.save_report_version(session, report, [], {}, now)
    ctx.db.dispose()
    return env, uid


def start(args: list[str], env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            *args,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
            "--app-dir",
            str(Path(__file__).parent),
        ],
        env={**os.environ, **env, "PYTHONPATH": str(REPO)},
        cwd=REPO,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
            return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"server on {port} did not start")


def wrk(url: str, token: str | None, duration: int, connections: int) -> tuple[float, float]:
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency", url]
    if token:
        cmd[1:1] = ["-H", f"Authorization: Bearer {token}"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    value, unit = re.search(r"99%\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
    p99_ms = float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    if "Non-2xx" in out:
        raise RuntimeError(f"non-2xx answers from {url}:\n{out}")
    return rps, p99_ms


def first_paint(base: str, token: str) -> float:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        context = browser.new_context()
        context.add_cookies([{"name": "mmdx_session", "value": token, "url": base}])
        page = context.new_page()
        page.goto(f"{base}/ui/worklist")  # warm (templates compiled, connections open)
        page.goto(f"{base}/ui/worklist")
        fcp = page.evaluate(
            """() => new Promise(resolve => {
                new PerformanceObserver(list => {
                    const e = list.getEntries().find(x => x.name === 'first-contentful-paint');
                    if (e) resolve(e.startTime);
                }).observe({type: 'paint', buffered: true});
                setTimeout(() => resolve(-performance.getEntriesByType('navigation')[0].loadEventEnd), 3000);
            })"""
        )
        rows = page.locator("#worklist-rows tr").count()
        browser.close()
    if rows < 200:
        raise RuntimeError(f"the worklist page showed {rows} rows")
    return float(fcp)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--studies", type=int, default=200)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--connections", type=int, default=32)
    a = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="mmdx-bench-api-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        env, uid = build(root, a.studies)
        token = mint_token(
            AppContext.create(None).settings.auth,
            "bench",
            [Role.CLINICIAN],
            now=datetime.now(UTC),
            ttl_s=3600,
        )
        mport, pport = free_port(), free_port()
        procs.append(start(["apps:mmdx_app"], env, mport))
        mbase = f"http://127.0.0.1:{mport}"
        h = {"Authorization": f"Bearer {token}"}
        worklist = httpx.get(f"{mbase}/api/v1/worklist", headers=h).json()
        report = httpx.get(f"{mbase}/api/v1/studies/{uid}/reports/latest", headers=h).json()
        assert len(worklist) == a.studies, len(worklist)
        (root / "peer.json").write_text(json.dumps({"worklist": worklist, "report": report}))
        procs.append(start(["apps:peer_app"], {"BENCH_PEER_JSON": str(root / "peer.json")}, pport))
        pbase = f"http://127.0.0.1:{pport}"
        sizes = {"worklist": len(json.dumps(worklist)), "report": len(json.dumps(report))}
        rows = []
        for name, murl, purl in (
            ("GET /api/v1/worklist", f"{mbase}/api/v1/worklist", f"{pbase}/worklist"),
            ("GET report JSON (latest)", f"{mbase}/api/v1/studies/{uid}/reports/latest", f"{pbase}/report"),
        ):
            m_rps, m_p99 = wrk(murl, token, a.duration, a.connections)
            p_rps, p_p99 = wrk(purl, None, a.duration, a.connections)
            rows.append((name, m_rps, m_p99, p_rps, p_p99))
        fcp = first_paint(mbase, token)
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=20)
        shutil.rmtree(root, ignore_errors=True)
    print(
        f"studies {a.studies}, wrk -t2 -c{a.connections} -d{a.duration}s, bodies: worklist {sizes['worklist']} B, "
        f"report {sizes['report']} B"
    )
    print(f"{'work':28} {'mmdx req/s':>10} {'p99 ms':>8} {'peer req/s':>10} {'p99 ms':>8} {'ratio':>6}")
    for name, m_rps, m_p99, p_rps, p_p99 in rows:
        print(f"{name:28} {m_rps:10.1f} {m_p99:8.1f} {p_rps:10.1f} {p_p99:8.1f} {m_rps / p_rps:6.2f}")
    what = "first contentful paint" if fcp >= 0 else "load event (no paint entry)"
    print(f"worklist page {what} ({a.studies} rows): {abs(fcp):.0f} ms")


if __name__ == "__main__":
    main()
