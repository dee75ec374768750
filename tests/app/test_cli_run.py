"""`mmdx run` end to end on the bundled samples, bad inputs and re-runs (real SQLite, real files)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from sqlalchemy import func, select
from typer.testing import CliRunner

from app.cli import cli
from app.context import AppContext
from store import schema

runner = CliRunner()


def _text(output: str) -> str:
    """The table text without box drawing and line folding, for substring checks."""
    for ch in "│┃┏┓┗┛━┡┩┳┻╇┼─└┘┴┬┌┐":
        output = output.replace(ch, " ")
    return " ".join(output.split())


def _counts(ctx: AppContext) -> dict[str, int]:
    out = {}
    with ctx.db.session() as s:
        for name in ("StudyRow", "SeriesRow", "InstanceRow", "QuarantineRow", "ReportVersionRow"):
            table = getattr(schema, name)
            out[name.removesuffix("Row")] = s.scalar(select(func.count()).select_from(table))
    return out


def test_help_lists_only_working_commands() -> None:
    result = runner.invoke(cli, ["--help"])
    assert result.exit_code == 0
    for cmd in ("run", "worker", "serve"):
        assert cmd in result.output


def test_run_on_samples_prints_every_study_and_writes_reports(workdir: Path, samples_copy: Path) -> None:
    result = runner.invoke(cli, ["run", str(samples_copy), "--out", str(workdir / "out")])
    assert result.exit_code == 0, result.output
    ctx = AppContext.create()
    c = _counts(ctx)
    # CT (4 slices, 1 series), CR, DICOM ECG, WFDB ECG -> 4 studies, 7 instances; NOTICE.md is not an input
    assert c["Study"] == 4 and c["Instance"] == 7 and c["Quarantine"] == 1
    assert "NOTICE.md" in result.output
    for modality in ("CT", "CR", "ECG"):
        assert modality in result.output
    summary = {s["modalities"][0]: s for s in json.loads((workdir / "out" / "studies.json").read_text())}
    assert summary["CT"]["plan"][0]["detail"] == "no model configured for CT (see model_routing)"
    # without weights, imaging drafts say what was done and that no model read them: no findings, ever
    for modality in ("CT", "CR"):
        assert summary[modality]["plan"][0]["action"] == "exam_only"
        assert summary[modality]["report"]["status"] == "preliminary"
        assert summary[modality]["report"]["statements"] == []
    # every study has a report folder with the FHIR bundle, SR, PDF (also as DICOM), HTML and ORU
    report_dirs = [p for p in (workdir / "out").iterdir() if p.is_dir()]
    assert len(report_dirs) == 4
    for d in report_dirs:
        names = {p.name for p in d.iterdir()}
        assert {"bundle.json", "oru.hl7", "report.pdf", "report.html", "report_pdf.dcm"} <= names
        assert any(n.startswith("sr_") for n in names)
    assert c["ReportVersion"] == 4


def test_run_twice_duplicates_nothing(workdir: Path, samples_copy: Path) -> None:
    first = runner.invoke(cli, ["run", str(samples_copy), "--out", "out"])
    assert first.exit_code == 0, first.output
    before = _counts(AppContext.create())
    second = runner.invoke(cli, ["run", str(samples_copy), "--out", "out"])
    assert second.exit_code == 0, second.output
    assert "0 new, 7 already known" in second.output
    assert _counts(AppContext.create()) == before


def test_bad_inputs_are_reported_and_good_files_still_indexed(workdir: Path, samples_copy: Path) -> None:
    bad = workdir / "mixed"
    bad.mkdir()
    (bad / "notes.txt").write_text("not an image\n")
    good = samples_copy / "chest_cr" / "nema_RG1_J2KI_chest_cr.dcm"
    (bad / "good.dcm").write_bytes(good.read_bytes())
    (bad / "truncated.dcm").write_bytes(good.read_bytes()[:3000])
    (bad / "empty").mkdir()
    result = runner.invoke(cli, ["run", "mixed", "--out", "out", "--index-only"])
    assert result.exit_code == 0, result.output
    text = _text(result.output)
    assert "notes.txt" in text and "truncated.dcm" in text and "empty" in text
    assert "truncated DICOM" in text and "not a DICOM file" in text and "empty folder" in text
    c = _counts(AppContext.create())
    assert c["Instance"] == 1 and c["Quarantine"] == 2


def test_nothing_readable_exits_non_zero(workdir: Path) -> None:
    folder = workdir / "junk"
    folder.mkdir()
    (folder / "a.bin").write_bytes(b"\x00" * 200)
    result = runner.invoke(cli, ["run", str(folder)])
    assert result.exit_code == 1
    assert "nothing could be read" in result.output


def test_console_script_entry_point(workdir: Path) -> None:
    """The installed `mmdx` script starts and its help lists the commands."""
    exe = Path(sys.executable).with_name("mmdx")
    proc = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "run" in proc.stdout
    json.dumps(proc.stdout)  # printable


def test_changed_analysis_stores_a_new_version_replacing_the_old(workdir: Path, samples_copy: Path) -> None:
    from store import index
    from store import reports as report_store

    ecg_dir = str(samples_copy / "ecg_wfdb")
    assert runner.invoke(cli, ["run", ecg_dir, "--out", "out"]).exit_code == 0
    # same input, different conditioning settings -> different measurements -> version 2
    changed = runner.invoke(cli, ["run", ecg_dir, "--out", "out"], env={"MMDX_ECG__LOWPASS_HZ": "40"})
    assert changed.exit_code == 0, changed.output
    ctx = AppContext.create()
    with ctx.db.session() as s:
        (uid,) = [st.study_instance_uid for st in index.list_studies(s)]
        history = report_store.report_history(s, uid)
        latest = report_store.latest_report(s, uid)
    assert [h.version for h in history] == [1, 2]
    assert latest is not None and latest.replaces_version == 1 and latest.status.value == "preliminary"
