"""Without weights: the imaging draft has exam, technique (from DICOM tags) and comparison with priors, and says
plainly that no model read the images — never a finding."""

from __future__ import annotations

from pathlib import Path

import pydicom
from typer.testing import CliRunner

from app.cli import cli
from app.context import AppContext
from core.codes import LOINC, MMDX
from store import reports as report_store
from tests.app.conftest import SAMPLES


def _prior_copy(dest: Path) -> str:
    ds = pydicom.dcmread(SAMPLES / "chest_cr" / "nema_RG1_J2KI_chest_cr.dcm")
    current_study = ds.StudyInstanceUID
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.10.999.1"
    ds.SeriesInstanceUID = "1.2.826.0.1.3680043.10.999.1.1"
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.10.999.1.1.1"
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyDate = "20010203"
    ds.save_as(dest)
    return str(current_study)


def test_exam_only_draft_with_technique_comparison_and_plain_notice(workdir: Path, samples_copy: Path) -> None:
    folder = samples_copy / "chest_cr"
    current = _prior_copy(folder / "prior.dcm")
    result = CliRunner().invoke(cli, ["run", str(folder), "--out", "out"])
    assert result.exit_code == 0, result.output
    ctx = AppContext.create()
    with ctx.db.session() as s:
        report = report_store.latest_report(s, current)
    assert report is not None and report.status.value == "preliminary"
    assert report.findings == () and report.provenance == () and not report.is_ai_generated
    technique = report.section(LOINC.TECHNIQUE)
    comparison = report.section(LOINC.COMPARISON)
    # the notice is a processing note, never a Findings section (it would go out as a finding)
    notice = report.section(MMDX.PROCESSING_NOTE)
    assert report.section(LOINC.FINDINGS) is None
    assert technique is not None and "CR" in technique.text and "kVp" in technique.text
    assert comparison is not None and "2001-02-03" in comparison.text
    assert notice is not None and "No radiology model is configured" in notice.text
    html = (workdir / "out" / current / "report.html").read_text()
    assert "No radiology model is configured" in html and "2001-02-03" in html
    assert "Not analysed" in html
    oru = (workdir / "out" / current / "oru.hl7").read_text()
    assert "59776-5" not in oru and "NTE|2|L|No radiology model is configured" in oru.replace("\n", "\r")
