"""``mmdx batch``: identical tables whatever the parallelism, resume after SIGKILL, broken inputs listed."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from app.batch import BatchOptions, run_batch
from app.context import AppContext
from core.errors import ConfigError
from tests.app.batch_inputs import dicom_ecg_copies, wfdb_copies

pytestmark = pytest.mark.slow


@pytest.fixture
def ecg_folder(workdir: Path) -> Path:
    src = workdir / "in"
    wfdb_copies(src / "wfdb", 3)
    dicom_ecg_copies(src / "dicom", 2)
    (src / "broken").mkdir()
    (src / "broken" / "truncated.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00UI")
    (src / "broken" / "notes.txt").write_text("not an ECG\n", encoding="utf-8")
    return src


def _table(out: Path) -> list[dict]:
    return sorted(pq.read_table(out / "cohort.parquet").to_pylist(), key=lambda r: r["item"])


def test_one_and_two_workers_give_identical_tables_and_broken_files_are_listed(ecg_folder: Path, workdir: Path):
    ctx = AppContext.create()
    one = run_batch(ctx, BatchOptions(str(ecg_folder), workdir / "out1", workers=1))
    two = run_batch(ctx, BatchOptions(str(ecg_folder), workdir / "out2", workers=2))
    assert one.counts == two.counts
    assert one.counts["done"] == 5 and one.counts["failed"] == 2 and one.counts["pending"] == 0
    t1, t2 = _table(workdir / "out1"), _table(workdir / "out2")
    assert t1 == t2
    assert (
        pq.read_table(workdir / "out1" / "cohort.parquet").schema
        == pq.read_table(workdir / "out2" / "cohort.parquet").schema
    )

    done = [r for r in t1 if r["status"] == "done"]
    assert len(done) == 5 and len({r["study_instance_uid"] for r in done}) == 5
    for r in done:
        assert r["modality"] == "ECG"
        assert r["ecg_qrs_duration_ms"] is not None and r["ecg_heart_rate_per_min"] is not None
        assert r["statement_codes"].startswith("SCT:")
        assert r["priority"] in ("routine", "urgent", "stat")
        assert r["model_ids"] == "mmdx-ecg" and len(r["weights_hashes"]) == 64
        assert r["source_path"].startswith(("wfdb/", "dicom/"))
    schema = pq.read_table(workdir / "out1" / "cohort.parquet").schema
    assert schema.field("ecg_qrs_duration_ms").metadata[b"unit"] == b"ms"
    assert schema.field("ecg_heart_rate_per_min").metadata[b"unit"] == b"/min"

    failed = {r["source_path"]: r["errors"] for r in t1 if r["status"] == "failed"}
    assert set(failed) == {"broken/truncated.dcm", "broken/notes.txt"}
    assert all(failed.values())
    summary = json.loads((workdir / "out1" / "summary.json").read_text())
    assert {f["source_path"] for f in summary["failures"]} == set(failed)
    assert sum(summary["failures_by_reason"].values()) == 2
    md = (workdir / "out1" / "summary.md").read_text()
    assert "broken/truncated.dcm" in md and "| 7 | 5 | 5 | 2 | 0 |" in md
    # NDJSON, one file per resource type, one DiagnosticReport per study
    reports = (workdir / "out1" / "fhir" / "DiagnosticReport.ndjson").read_text().splitlines()
    assert len(reports) == 5 and all(json.loads(line)["resourceType"] == "DiagnosticReport" for line in reports)
    assert (workdir / "out1" / "cohort.csv").read_text().count("\n") == 8


def test_dry_run_counts_and_writes_nothing(ecg_folder: Path, workdir: Path):
    ctx = AppContext.create()
    result = run_batch(ctx, BatchOptions(str(ecg_folder), workdir / "dry"), dry_run=True)
    assert result.dry_run
    assert result.planned == {"study": 5, "unusable": 2}
    assert not (workdir / "dry").exists()
    with ctx.db.session(readonly=True) as session:
        from sqlalchemy import text

        assert session.execute(text("select count(*) from studies")).scalar() == 0
        assert session.execute(text("select count(*) from batch_runs")).scalar() == 0


def test_limit_and_refusing_a_second_run_into_the_same_folder(ecg_folder: Path, workdir: Path):
    ctx = AppContext.create()
    result = run_batch(ctx, BatchOptions(str(ecg_folder), workdir / "out", limit=2))
    assert result.counts["items"] == 2
    with pytest.raises(ConfigError, match="--resume"):
        run_batch(ctx, BatchOptions(str(ecg_folder), workdir / "out"))
    with pytest.raises(ConfigError, match="does not exist"):
        run_batch(ctx, BatchOptions(str(ecg_folder), workdir / "elsewhere"), resume=True)


def _without_digest(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "weights_hashes"} for r in rows]


def _finished(db: Path) -> int:
    try:
        with sqlite3.connect(db, timeout=5) as con:
            return con.execute("select count(*) from batch_items where state != 'pending'").fetchone()[0]
    except sqlite3.OperationalError:  # not created yet
        return 0


def test_sigkill_then_resume_equals_an_uninterrupted_run(workdir: Path):
    src = workdir / "in"
    wfdb_copies(src / "wfdb", 5)
    dicom_ecg_copies(src / "dicom", 3)
    ctx = AppContext.create()
    run_batch(ctx, BatchOptions(str(src), workdir / "ref", workers=1))
    reference = _table(workdir / "ref")
    ctx.db.dispose()

    # a separate database, so that nothing of the reference run is reused
    env = {**os.environ, "MMDX_DATABASE__URL": f"sqlite:///{workdir}/killed.db"}
    cli = [sys.executable, "-c", "from app.cli import main; main()"]
    cmd = [*cli, "batch", str(src), "--out", str(workdir / "out"), "--workers", "2", "--quiet", "--reports"]
    proc = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while _finished(workdir / "killed.db") < 3:
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        assert time.monotonic() < deadline, "the batch did not progress"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the run and its workers, mid-study
    proc.wait()
    assert _finished(workdir / "killed.db") < 8
    assert not (workdir / "out" / "cohort.parquet").exists()

    resumed = subprocess.run([*cmd, "--resume"], env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    # the ECG ruleset digest hashes the rule sources, which other work in a shared tree may edit between two
    # runs: every other column must be equal
    assert _without_digest(_table(workdir / "out")) == _without_digest(reference)
    with sqlite3.connect(workdir / "killed.db") as con:
        assert con.execute("select count(*) from batch_runs").fetchone()[0] == 1
        assert con.execute("select count(*), count(distinct key) from batch_items").fetchone() == (8, 8)
        assert con.execute("select max(attempts) from batch_items where state = 'done'").fetchone()[0] == 1
        # one report version per study: nothing was stored twice
        rows = con.execute("select study_instance_uid, count(*) from report_versions group by 1").fetchall()
        assert len(rows) == 8 and {n for _, n in rows} == {1}
    reports = (workdir / "out" / "fhir" / "DiagnosticReport.ndjson").read_text().splitlines()
    assert len(reports) == 8
    # each study's report files once, complete, and nothing half-written left from the killed try
    folders = sorted((workdir / "out" / "studies").iterdir())
    assert len(folders) == 8
    layouts = {tuple(sorted(str(p.relative_to(f)) for p in f.rglob("*"))) for f in folders}
    assert len(layouts) == 1  # the same files for every study: the interrupted one's were discarded and redone
    layout = next(iter(layouts))
    assert {"v1/bundle.json", "v1/report.pdf", "v1/sr_ecg.dcm"} <= set(layout)
    assert not [p for p in layout if any(part.startswith(".") for part in Path(p).parts)]  # no staging folder
    assert not [p for p in (workdir / "out").rglob("*") if ".tmp" in p.name]


def test_limit_indexes_only_the_first_items_and_they_are_the_first_rows_of_the_full_run(
    ecg_folder: Path, workdir: Path
):
    ctx = AppContext.create()
    limited = run_batch(ctx, BatchOptions(str(ecg_folder), workdir / "three", limit=3))
    assert limited.counts["items"] == 3
    with ctx.db.session(readonly=True) as session:
        from sqlalchemy import text

        assert session.execute(text("select count(*) from studies")).scalar() == 1  # broken/ (2 files) comes first
    full = run_batch(ctx, BatchOptions(str(ecg_folder), workdir / "all"))
    assert full.counts["items"] == 7
    assert _without_digest(_table(workdir / "three")) == _without_digest(_table(workdir / "all")[:3])
