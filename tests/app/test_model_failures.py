"""A failed model never means a silently missing report (issue 20, item 2); a normal AI draft is labelled (item 1)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from app.cli import cli
from app.context import AppContext
from app.worker import run_one
from core.codes import LOINC
from core.identifiers import FixedClock
from core.records import ModelCallOutcome
from store import reports as report_store
from store import schema
from tests.app.conftest import FIXED_NOW
from tests.models.openai_server import OpenAIServer, ServerState

SHA = "cd" * 32
NORMAL = {"findings": [], "impression": "No acute cardiopulmonary abnormality.", "recommendation": ""}


def _config(path: Path, url: str) -> Path:
    cfg = {
        "models": {
            "backends": {
                "cxr-vlm": {
                    "backend": "remote_vlm",
                    "url": url,
                    "served_model": "tiny",
                    "sha256": SHA,
                    "options": {"retries": 0, "backoff_s": 0.01},
                }
            }
        },
        "model_routing": [{"modality": "CR", "models": ["cxr-vlm"]}],
    }
    path.write_text(json.dumps(cfg))
    return path


def test_a_failed_model_gives_the_fallback_draft_saying_so(
    workdir: Path, samples_copy: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = _config(workdir / "site.yaml", "http://127.0.0.1:9")  # nothing listens there
    with caplog.at_level(logging.WARNING, logger="app.pipeline"):
        result = CliRunner().invoke(cli, ["run", str(samples_copy / "chest_cr"), "--out", "out", "--config", str(cfg)])
    assert result.exit_code == 0, result.output
    (summary,) = json.loads((workdir / "out" / "studies.json").read_text())
    assert summary["report"] is not None and summary["report"]["status"] == "preliminary"
    (failure,) = summary["model_failures"]
    assert failure.startswith("model 'cxr-vlm' failed: ") and "127.0.0.1:9" in failure
    ctx = AppContext.create(cfg)
    uid = summary["study_instance_uid"]
    with ctx.db.session() as s:
        report = report_store.latest_report(s, uid)
        audit = s.scalars(select(schema.AuditRow).where(schema.AuditRow.action == "model.failed")).all()
    assert report is not None and not report.is_ai_generated
    assert report.section(LOINC.TECHNIQUE) is not None, "the exam-and-technique fallback is written"
    texts = " ".join(sec.text for sec in report.sections)
    assert "Model 'cxr-vlm' failed: " in texts and "a radiologist must read the images" in texts
    assert len(audit) == 1 and "cxr-vlm" in audit[0].detail
    assert "model 'cxr-vlm' failed" in report.priority.reason and "read without AI" in report.priority.reason
    assert any("model 'cxr-vlm' failed" in r.getMessage() for r in caplog.records)


def test_a_normal_ai_draft_is_labelled_in_every_output(workdir: Path, samples_copy: Path) -> None:
    state = ServerState(mode="valid", answer=json.dumps(NORMAL))
    args = ["run", str(samples_copy / "chest_cr"), "--out", "out", "--config"]
    with OpenAIServer(state) as srv:
        cfg = _config(workdir / "site.yaml", srv.url)
        result = CliRunner().invoke(cli, [*args, str(cfg)])
        assert result.exit_code == 0, result.output
        (summary,) = json.loads((workdir / "out" / "studies.json").read_text())
        bundle = next((workdir / "out" / summary["study_instance_uid"]).glob("*.json")).read_text()
        again = CliRunner().invoke(cli, [*args, str(cfg)])  # the same answer again, with other timings
    assert again.exit_code == 0, again.output
    (second,) = json.loads((workdir / "out" / "studies.json").read_text())
    assert second["report"]["version"] == 1, "an unchanged answer stores no new version"
    ctx = AppContext.create(cfg)
    with ctx.db.session() as s:
        report = report_store.latest_report(s, summary["study_instance_uid"])
    assert report is not None and report.findings == () and report.is_ai_generated
    (call,) = report.model_calls
    assert call.outcome is ModelCallOutcome.OK and call.raw_answer == json.dumps(NORMAL)
    assert "AIAST" in bundle, "the FHIR bundle labels the AI text of a normal study"


def test_worker_marks_the_failed_step_on_the_job(workdir: Path, samples_copy: Path) -> None:
    cfg = _config(workdir / "site.yaml", "http://127.0.0.1:9")
    runner = CliRunner()
    result = runner.invoke(cli, ["run", str(samples_copy / "chest_cr"), "--index-only", "--config", str(cfg)])
    assert result.exit_code == 0, result.output
    base = AppContext.create(cfg)
    late = AppContext(base.settings, base.db, FixedClock(FIXED_NOW.replace(year=2099)))
    done = run_one(late, out_dir=workdir / "out")
    assert done is not None and done.outcome is not None and done.outcome.report is not None
    assert done.error is not None and "model 'cxr-vlm' failed" in done.error
    with base.db.session() as s:
        (job,) = s.scalars(select(schema.JobRow)).all()
    assert str(getattr(job.state, "value", job.state)) == "done"
    assert job.error is not None and "model 'cxr-vlm' failed" in job.error


def test_the_worklist_shows_a_model_failure_in_the_api_the_page_and_the_terminal(
    workdir: Path, samples_copy: Path
) -> None:
    from fastapi.testclient import TestClient

    from app.service import create_app

    cfg = _config(workdir / "site.yaml", "http://127.0.0.1:9")  # nothing listens there
    args = ["run", str(samples_copy / "chest_cr"), str(samples_copy / "ecg_wfdb"), "--out", "out", "--config"]
    result = CliRunner().invoke(cli, [*args, str(cfg)])
    assert result.exit_code == 0, result.output
    ctx = AppContext.create(cfg)
    client = TestClient(create_app(ctx))
    rows = {r["study_instance_uid"]: r for r in client.get("/api/v1/worklist").json()}
    assert len(rows) == 2
    (failed,) = [r for r in rows.values() if r["ai_status"] == "failed"]
    (reason,) = failed["model_errors"]
    assert reason.startswith("model 'cxr-vlm' failed: ") and "127.0.0.1:9" in reason
    (other,) = [r for r in rows.values() if r is not failed]
    assert other["ai_status"] is None and other["model_errors"] == [], "the ECG had no model routed: nothing failed"

    page = client.get("/ui/worklist/rows").text
    assert page.count('class="badge ai-failed"') == 1 and "model &#39;cxr-vlm&#39; failed" in page
    row = next(tr for tr in page.split("<tr")[1:] if failed["study_instance_uid"] in tr)
    assert "AI FAILED" in row

    terminal = CliRunner().invoke(cli, ["worklist", "--config", str(cfg)], env={"COLUMNS": "400"})
    assert terminal.exit_code == 0, terminal.output
    assert "failed: model 'cxr-vlm' failed" in terminal.output
    ctx.db.dispose()
