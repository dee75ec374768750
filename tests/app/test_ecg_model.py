"""The ECG classifier runs for ECG studies when routed, cross-checked with the rules (issue 20, item 4)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from typer.testing import CliRunner

from app.cli import cli
from app.context import AppContext
from core.codes import MMDX
from core.records import PriorityLevel
from models.ecg_cnn import PTBXL_71, build_resnet1d_wang
from store import reports as report_store


def _weights(path: Path, present: str | None, num_classes: int = 71) -> Path:
    net = build_resnet1d_wang(num_classes=num_classes)
    sd = net.state_dict()
    sd["6.8.weight"].zero_()
    sd["6.8.bias"].fill_(-8.0)  # every statement confidently absent...
    if present is not None:
        sd["6.8.bias"][PTBXL_71.index(present)] = 8.0  # ...but this one
    torch.save(sd, path)
    return path


def _run(workdir: Path, samples: Path, weights: Path) -> tuple[dict[str, object], AppContext]:
    cfg = workdir / "site.yaml"
    cfg.write_text(
        json.dumps(
            {
                "models": {"backends": {"ecg-cnn": {"backend": "ecg_cnn", "path": str(weights)}}},
                "model_routing": [{"kind": "ecg", "models": ["ecg-cnn"]}],
            }
        )
    )
    result = CliRunner().invoke(cli, ["run", str(samples / "ecg_wfdb"), "--out", "out", "--config", str(cfg)])
    assert result.exit_code == 0, result.output
    (summary,) = json.loads((workdir / "out" / "studies.json").read_text())
    return summary, AppContext.create(cfg)


def test_ecg_model_runs_and_a_disagreement_with_the_rules_is_flagged(workdir: Path, samples_copy: Path) -> None:
    summary, ctx = _run(workdir, samples_copy, _weights(workdir / "ecg.pt", "AFIB"))
    with ctx.db.session() as s:
        report = report_store.latest_report(s, str(summary["study_instance_uid"]))
    assert report is not None and report.is_ai_generated
    names = {p.name for p in report.provenance}
    assert "ecg-cnn" in names and "mmdx-safety-checks" in names
    (call,) = report.model_calls
    assert call.ok and call.task == "ecg" and call.output_control == "classifier"
    flags = [f for f in report.findings if f.concept == MMDX.MODEL_DISAGREEMENT]
    assert any("not in the rule-based" in f.text for f in flags), [f.text for f in report.findings]
    assert report.priority.level <= PriorityLevel.URGENT


def test_a_failing_ecg_model_keeps_the_rule_based_report_and_says_so(workdir: Path, samples_copy: Path) -> None:
    summary, ctx = _run(workdir, samples_copy, _weights(workdir / "ecg.pt", None, num_classes=5))  # wrong head
    assert summary["report"] is not None
    (failure,) = summary["model_failures"]  # type: ignore[misc]
    assert failure.startswith("model 'ecg-cnn' failed: ")
    with ctx.db.session() as s:
        report = report_store.latest_report(s, str(summary["study_instance_uid"]))
    assert report is not None
    text = " ".join(sec.text for sec in report.sections)
    assert "Model 'ecg-cnn' failed" in text and "rule-based engine's alone" in text
