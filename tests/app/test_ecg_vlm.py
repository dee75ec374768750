"""PULSE (a VLM served remotely) reads ECG studies from `mmdx run` and the worker, from the documented
example config, and is cross-checked with the rule engine (issue 20, item 6 / PULSE reach)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import yaml
from sqlalchemy import select
from typer.testing import CliRunner

from app.cli import cli
from app.context import AppContext
from app.worker import run_one
from core.codes import LOINC, MMDX, SCT
from core.identifiers import FixedClock
from core.records import PriorityLevel
from store import reports as report_store
from store import schema
from tests.app.conftest import FIXED_NOW
from tests.models.openai_server import OpenAIServer, ServerState, _decode_image

DOC = Path(__file__).resolve().parents[2] / "docs" / "models.md"
ECG_DRAFT = {
    "findings": [
        {"label": "other", "text": "Atrial fibrillation", "presence": "present", "certainty": 0.7},
        {"label": "other", "text": "Complete right bundle branch block", "presence": "present"},
        {"label": "other", "text": "No first degree AV block", "presence": "absent"},
    ],
    "impression": "Atrial fibrillation with right bundle branch block.",
    "recommendation": "",
}


def _config(path: Path, url: str) -> Path:
    """The documented PULSE example (docs/models.md), pointed at the loopback server."""
    block = next(b for b in re.findall(r"```yaml\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
                 if "{kind: ecg, models: [pulse-ecg]}" in b)  # fmt: skip
    cfg = yaml.safe_load(block)
    cfg["models"]["backends"]["pulse-ecg"]["url"] = url
    cfg["models"]["backends"]["pulse-ecg"]["options"].update(retries=0, backoff_s=0.01)
    path.write_text(json.dumps(cfg))
    return path


def test_pulse_reads_the_printout_of_an_ecg_study_and_is_checked_against_the_rules(
    workdir: Path, samples_copy: Path
) -> None:
    state = ServerState(mode="valid", served_model="pulse-7b", answer=json.dumps(ECG_DRAFT))
    with OpenAIServer(state) as srv:
        cfg = _config(workdir / "site.yaml", srv.url)
        result = CliRunner().invoke(cli, ["run", str(samples_copy / "ecg_wfdb"), "--out", "out", "--config", str(cfg)])
    assert result.exit_code == 0, result.output
    (summary,) = json.loads((workdir / "out" / "studies.json").read_text())
    assert summary["model_failures"] == []

    # what reached the server: the ECG prompt with the measured intervals and one printout image
    (request,) = state.requests
    assert request["model"] == "pulse-7b"
    parts = request["messages"][0]["content"]
    text = " ".join(p["text"] for p in parts if p["type"] == "text")
    assert "12-lead ECG" in text and "P-R Interval 222 ms" in text
    (image,) = [_decode_image(p["image_url"]["url"]) for p in parts if p["type"] == "image_url"]
    assert image.shape[1] > 1000 and image.shape[0] > 500, image.shape  # the 280 mm page at 100 dpi
    assert (image.sum(axis=2) < 100).sum() > 5000, "the traces are drawn"

    ctx = AppContext.create(cfg)
    with ctx.db.session() as s:
        report = report_store.latest_report(s, summary["study_instance_uid"])
    assert report is not None and report.is_ai_generated
    names = {p.name for p in report.provenance}
    assert {"pulse-ecg", "mmdx-safety-checks"} <= names
    (call,) = report.model_calls
    assert call.ok and call.prompt_template == "ecg" and call.raw_answer == json.dumps(ECG_DRAFT)
    coded = {f.text: f.concept for f in report.findings if f.producer.name == "pulse-ecg"}
    assert coded["Atrial fibrillation"] == SCT.ATRIAL_FIBRILLATION, "the draft's statement is coded like the rules'"
    assert coded["No first degree AV block"] == SCT.FIRST_DEGREE_AV_BLOCK
    impression = report.section(LOINC.IMPRESSION)
    assert impression is not None and "Atrial fibrillation" in impression.text
    assert report.section(LOINC.EKG_NARRATIVE) is not None, "the rule-based interpretation stays"
    flags = sorted(f.text for f in report.findings if f.concept == MMDX.MODEL_DISAGREEMENT)
    assert len(flags) == 2, flags  # RBBB agrees with the rules
    assert flags[0].startswith("Atrial fibrillation: in the AI ECG draft, not in the rule-based")
    assert flags[1].startswith("First degree atrioventricular block: in the rule-based interpretation")
    assert report.priority.level <= PriorityLevel.URGENT
    bundle = next((workdir / "out" / summary["study_instance_uid"]).glob("*.json")).read_text()
    assert "AIAST" in bundle and "pulse-ecg" in bundle, "the FHIR bundle labels and attributes the AI text"


def test_the_worker_sends_ecg_studies_to_pulse_and_a_failure_keeps_the_rule_based_report(
    workdir: Path, samples_copy: Path
) -> None:
    cfg = _config(workdir / "site.yaml", "http://127.0.0.1:9")  # nothing listens there
    result = CliRunner().invoke(cli, ["run", str(samples_copy / "ecg_wfdb"), "--index-only", "--config", str(cfg)])
    assert result.exit_code == 0, result.output
    base = AppContext.create(cfg)
    late = AppContext(base.settings, base.db, FixedClock(FIXED_NOW.replace(year=2099)))
    done = run_one(late, out_dir=workdir / "out")
    assert done is not None and done.outcome is not None and done.outcome.report is not None
    assert done.error is not None and "model 'pulse-ecg' failed" in done.error
    report = done.outcome.report
    assert report.section(LOINC.EKG_NARRATIVE) is not None
    text = " ".join(sec.text for sec in report.sections)
    assert "Model 'pulse-ecg' failed" in text and "rule-based engine's alone" in text
    with base.db.session() as s:
        (job,) = s.scalars(select(schema.JobRow)).all()
    assert str(getattr(job.state, "value", job.state)) == "done" and "pulse-ecg" in (job.error or "")


def test_the_model_printout_carries_no_identity_and_no_statements(samples_copy: Path) -> None:
    from ecg.readers import read_ecg
    from ecg.render import render_array

    record = read_ecg(samples_copy / "ecg_wfdb" / "s0010_re.hea")
    page, blind = render_array(record, dpi=100), render_array(record, dpi=100, blind=True)
    assert page.shape == blind.shape
    header = int(page.shape[0] * 0.05)  # the identity line is the first ~5 mm of a ~160 mm page
    assert not np.array_equal(page[:header], blind[:header]), "the identity line is replaced"
    assert np.array_equal(page[-header * 8 :], blind[-header * 8 :]), "the tracings are the same"


def test_mmdx_batch_sends_ecg_studies_to_pulse(workdir: Path, samples_copy: Path) -> None:
    import pyarrow.parquet as pq

    from app.batch import BatchOptions, run_batch

    state = ServerState(mode="valid", served_model="pulse-7b", answer=json.dumps(ECG_DRAFT))
    with OpenAIServer(state) as srv:
        ctx = AppContext.create(_config(workdir / "site.yaml", srv.url))
        result = run_batch(ctx, BatchOptions(str(samples_copy / "ecg_wfdb"), workdir / "cohort", workers=1))
    assert result.counts["done"] == 1, result.counts
    (row,) = pq.read_table(workdir / "cohort" / "cohort.parquet").to_pylist()
    assert "pulse-ecg" in row["model_ids"], row["model_ids"]
    assert len(state.requests) == 1 and row["priority"] in ("urgent", "stat")
