"""Sign-off versions, the build_outputs façade, atomic writing, and golden files for every output kind.

Golden files live in tests/reports/golden/.  After an intended change, refresh them with
``MMDX_UPDATE_GOLDEN=1 .venv/bin/pytest tests/reports`` and review ``git diff tests/reports/golden``
before committing.  ORU and HTML are stored whole; every output kind is also stored by its semantic
content in ``content.json`` (``tests/semantic.py``: DICOM attributes and SR tree, PDF text, FHIR resources,
pictures as thumbnails), so a library upgrade that re-encodes bytes without changing content passes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from core.codes import LOINC
from core.errors import RecordError, ReportError
from core.records import ReportSection, ReportStatus
from reports.outputs import build_outputs, write_outputs
from reports.signoff import amend, edit, sign, withdraw
from tests import semantic
from tests.reports import helpers as h

GOLDEN = Path(__file__).parent / "golden"
UPDATE = bool(os.environ.get("MMDX_UPDATE_GOLDEN"))


# --------------------------------------------------------------------------- sign-off


def test_sign_amend_withdraw_make_new_linked_versions() -> None:
    draft = h.chest_report()
    final = sign(draft, h.RADIOLOGIST, h.SIGNED)
    assert (final.status, final.version, final.replaces_version) == (ReportStatus.FINAL, 2, 1)
    assert final.signature is not None and final.signature.clinician == h.RADIOLOGIST
    assert draft.status is ReportStatus.PRELIMINARY and draft.signature is None  # the old version is untouched
    new_impr = ReportSection(LOINC.IMPRESSION, "Cardiomegaly. Effusion resolved on review.")
    amended = amend(final, h.RADIOLOGIST, h.AMENDED, sections=(*final.sections[:3], new_impr))
    assert (amended.status, amended.version, amended.replaces_version) == (ReportStatus.AMENDED, 3, 2)
    assert amended.section(LOINC.IMPRESSION) == new_impr
    gone = withdraw(amended, h.RADIOLOGIST, h.AMENDED, "wrong patient")
    assert (gone.status, gone.version) == (ReportStatus.ENTERED_IN_ERROR, 4)
    assert gone.section(LOINC.IMPRESSION).text == "Withdrawn: wrong patient"


def test_sign_off_rules() -> None:
    draft = h.chest_report()
    with pytest.raises(ReportError, match="only a signed report"):
        amend(draft, h.RADIOLOGIST, h.AMENDED, findings=())
    final = sign(draft, h.RADIOLOGIST, h.SIGNED)
    with pytest.raises(ReportError, match="only a preliminary"):
        sign(final, h.RADIOLOGIST, h.AMENDED)
    with pytest.raises(ReportError, match="changes nothing"):
        amend(final, h.RADIOLOGIST, h.AMENDED)
    with pytest.raises(ReportError, match="before version"):
        sign(draft, h.RADIOLOGIST, h.CREATED.replace(hour=1))
    with pytest.raises(ReportError, match="use amend"):
        edit(final, h.SIGNED, findings=())
    with pytest.raises(ReportError, match="reason"):
        withdraw(draft, h.RADIOLOGIST, h.SIGNED, " ")
    edited = edit(draft, h.SIGNED, findings=draft.findings[:1])
    assert (edited.version, edited.replaces_version, edited.status) == (2, 1, ReportStatus.PRELIMINARY)
    assert len(edited.findings) == 1 and edited.signature is None
    with pytest.raises(ReportError, match="changes nothing"):
        edit(draft, h.SIGNED)
    with pytest.raises(RecordError):  # the record itself refuses a signed preliminary
        type(draft)(**{**{f: getattr(draft, f) for f in draft.__slots__}, "signature": final.signature})


# --------------------------------------------------------------------------- façade


@pytest.mark.parametrize("kind", ["chest", "ecg"])
def test_build_outputs_gives_every_kind_with_hashes(kind: str, tmp_path: Path) -> None:
    study = h.chest_study() if kind == "chest" else h.ecg_study()
    report = h.chest_report() if kind == "chest" else h.ecg_report()
    out = build_outputs(
        report,
        study,
        h.context(),
        images=(h.chest_key_image(),) if kind == "chest" else (),
        ecg_printout_png=h.ecg_printout_png() if kind == "ecg" else None,
    )
    kinds = {a.kind for a in out.artefacts}
    assert {"fhir", "oru", "sr", "sc", "dicom-pdf", "pdf", "html"} <= kinds
    assert len({a.name for a in out.artefacts}) == len(out.artefacts)
    for a in out.artefacts:
        assert len(a.sha256) == 64 and a.data
        assert a.is_dicom == (a.media_type == "application/dicom")
    paths = write_outputs(out, tmp_path / "out")
    assert sorted(p.name for p in paths) == sorted(a.name for a in out.artefacts)
    assert all(p.read_bytes() == out.get(p.name).data for p in paths)
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]  # no temp files left
    names = {a.name for a in out.artefacts}
    assert ({"sr_tid1500.dcm", "sr_tid2000.dcm"} if kind == "chest" else {"sr_ecg.dcm"}) <= names


def test_withdrawn_outputs_carry_kos_and_no_new_sr() -> None:
    gone = withdraw(sign(h.ecg_report(), h.CARDIOLOGIST, h.SIGNED), h.CARDIOLOGIST, h.AMENDED, "lead reversal")
    out = build_outputs(gone, h.ecg_study(), h.context(), ecg_printout_png=h.ecg_printout_png())
    assert {a.kind for a in out.artefacts} == {"fhir", "oru", "sr", "pdf", "html"}
    (kos,) = out.by_kind("sr")
    assert kos.name == "kos_rejection.dcm" and kos.sop_class_uid == "1.2.840.10008.5.1.4.1.1.88.59"


def test_bad_input_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="does not match"):
        build_outputs(h.chest_report(), h.ecg_study(), h.context())
    assert not (tmp_path / "out").exists()
    out = build_outputs(h.chest_report(), h.chest_study(), h.context())
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ReportError, match="cannot write"):
        write_outputs(out, blocker)


# --------------------------------------------------------------------------- golden files


def _golden_text(name: str, data: bytes) -> None:
    path = GOLDEN / name
    if UPDATE:
        path.write_bytes(data)
    assert data == path.read_bytes(), f"{name} changed: see the module docstring to refresh golden files"


def test_golden_files_for_every_output_kind() -> None:
    signed_ecg = sign(h.ecg_report(), h.CARDIOLOGIST, h.SIGNED)
    runs = {
        "chest_preliminary": build_outputs(
            h.chest_report(), h.chest_study(), h.context(), images=(h.chest_key_image(),)
        ),
        "ecg_final": build_outputs(signed_ecg, h.ecg_study(), h.context(), ecg_printout_png=h.ecg_printout_png()),
    }
    content: dict[str, object] = {}
    for run, out in runs.items():
        for a in out.artefacts:
            if a.name in ("oru.hl7", "report.html"):
                _golden_text(f"{run}_{a.name}", a.data)
            content[f"{run}/{a.name}"] = semantic.summary(a.name, a.data)
    path = GOLDEN / "content.json"
    if UPDATE:
        path.write_text(json.dumps(content, indent=1, sort_keys=True, ensure_ascii=False) + "\n")
    diffs = semantic.differences(json.loads(path.read_text()), content)
    assert not diffs, "outputs changed (see the module docstring to refresh golden files):\n" + "\n".join(diffs[:20])
