"""``mmdx run`` on a recording over ``limits.max_ecg_samples``: analysed in windows, its summary in every output."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from app.cli import cli
from app.context import AppContext
from app.review import ecg_printout
from store import index
from tests.ecg.holter_synth import FS, write_holter

runner = CliRunner()


def test_run_reports_a_long_recording_in_windows(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = workdir / "in"
    folder.mkdir()
    peaks = write_holter(folder, 12 * 60, pause_at_s=400)  # 12 x 360,000 samples
    monkeypatch.setenv("MMDX_LIMITS__MAX_ECG_SAMPLES", "1000000")  # whole-record analysis would refuse it
    result = runner.invoke(cli, ["run", str(folder), "--out", "out"])
    assert result.exit_code == 0, result.output
    assert "1 new" in result.output
    [study] = json.loads((workdir / "out" / "studies.json").read_text())
    assert study["report"] is not None and study["problems"] == []
    assert any("first at +0:00:00" in s for s in study["report"]["statements"])
    [latest] = (workdir / "out").glob("*/v1")
    pause = int(np.argmax(np.diff(peaks)))
    at = f"+0:06:{round(peaks[pause] / FS) - 360:02d}"
    expected = (
        f"Total beats: {len(peaks):,}.",
        f"Longest RR interval 3.00 s at {at}; 1 pause(s) of 2 s or longer.",
        "Atrial fibrillation/flutter burden: 0.0% of analysed time.",
    )
    bundle = json.loads((latest / "bundle.json").read_text())
    [dr] = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "DiagnosticReport"]
    html = (latest / "report.html").read_text()
    oru = (latest / "oru.hl7").read_text()
    for line in expected:
        assert line in dr["conclusion"]
        assert line in html
    assert "Long ECG recording (Holter)" in oru
    rates = [
        e["resource"]["valueQuantity"]["value"]
        for e in bundle["entry"]
        if e["resource"]["resourceType"] == "Observation"
        and e["resource"]["code"]["coding"][0]["code"] == "8867-4"
        and "valueQuantity" in e["resource"]
    ]
    assert rates and rates[0] == pytest.approx(60.0, abs=2)  # the recording's mean heart rate
    assert {"report.pdf", "sr_ecg.dcm", "sc_1.dcm"} <= {p.name for p in latest.iterdir()}  # the reference strip drawn
    ctx = AppContext.create()  # a sign-off (and the printout page) redraws it from the hourly strips, no full pass
    with ctx.db.session() as session:
        loaded = index.load_study(session, study["study_instance_uid"])
    assert loaded is not None
    png = ecg_printout(ctx, loaded)
    assert png is not None and png.startswith(b"\x89PNG")


def test_ecg_analyze_prints_the_holter_summary(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    peaks = write_holter(workdir, 6 * 60, pause_at_s=200)
    monkeypatch.setenv("MMDX_LIMITS__MAX_ECG_SAMPLES", "1000000")
    result = runner.invoke(cli, ["ecg", "analyze", str(workdir / "holter"), "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output.strip().splitlines()[-1])["holter"]
    assert out["beats"] == len(peaks) and out["windows"] == 6 and out["pauses"] == 1
    assert out["longest_rr"]["s"] == pytest.approx(3.0, abs=0.01)
    monkeypatch.setenv("MMDX_LIMITS__MAX_ECG_HOURS", "0.05")  # 3 minutes: too long even in windows
    refused = runner.invoke(cli, ["ecg", "analyze", str(workdir / "holter"), "--json"])
    assert refused.exit_code == 1
    assert "over limits.max_ecg_hours (0.05 h)" in json.loads(refused.output.strip().splitlines()[-1])["error"]
