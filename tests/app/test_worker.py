"""Service mode: index without analysing, let the study become stable, the worker runs the pipeline once."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select
from typer.testing import CliRunner

from app.cli import cli
from app.context import AppContext
from app.worker import run_one
from core.identifiers import FixedClock
from store import schema
from tests.app.conftest import FIXED_NOW

runner = CliRunner()


def test_worker_claims_stable_studies_and_runs_the_pipeline(workdir: Path, samples_copy: Path) -> None:
    result = runner.invoke(cli, ["run", str(samples_copy / "ecg_wfdb"), "--index-only"])
    assert result.exit_code == 0, result.output
    base = AppContext.create()
    # not yet stable: nothing to do
    early = AppContext(base.settings, base.db, FixedClock(FIXED_NOW.replace(year=2000)))
    assert run_one(early, out_dir=workdir / "out") is None
    # well after the quiet period: one job, run once, then nothing pending
    late = AppContext(base.settings, base.db, FixedClock(FIXED_NOW.replace(year=2099)))
    done = run_one(late, out_dir=workdir / "out")
    assert done is not None and done.error is None and done.outcome is not None
    assert done.outcome.report is not None and done.outcome.report.status.value == "preliminary"
    assert run_one(late, out_dir=workdir / "out") is None
    with base.db.session() as s:
        states = s.scalars(select(schema.JobRow.state)).all()
    assert [str(getattr(st, "value", st)) for st in states] == ["done"]


def test_worker_command_once(workdir: Path, samples_copy: Path) -> None:
    runner.invoke(cli, ["run", str(samples_copy / "ecg_dicom"), "--index-only"])
    env = {"MMDX_SCP__STABLE_AGE_S": "0.001"}
    result = runner.invoke(cli, ["worker", "--once", "--out", "out"], env=env)
    assert result.exit_code == 0, result.output
    assert "after 1 job" in result.output
