"""DICOM outputs (SR TID 1500 / 2000 / 3700, SC, Encapsulated PDF, KOS): dciodvfy-clean, re-readable, right flags."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import highdicom as hd
import pydicom
import pytest

from core.codes import SCT, Code
from core.errors import ReportError
from core.records import Finding, Presence
from reports import sr_ecg, sr_tid1500, sr_tid2000
from reports.encapsulated_pdf import build_encapsulated_pdf_bytes
from reports.kos import DicomRef, build_rejection_note_bytes
from reports.outputs import _earlier_dicom_objects, build_outputs
from reports.secondary_capture import DRAFT_BANNER, build_secondary_capture_bytes
from reports.signoff import amend, sign, withdraw
from tests.reports import helpers as h

Validator = Callable[[Path], list[str]]


def _read(data: bytes) -> pydicom.Dataset:
    return pydicom.dcmread(io.BytesIO(data))


def _cv(c: pydicom.Dataset) -> str:
    return str(c.get("CodeValue") or c.get("LongCodeValue") or c.get("URNCodeValue"))


def _codes(ds: pydicom.Dataset) -> set[str]:
    """Every CodeValue anywhere in the content tree."""
    found: set[str] = set()

    def walk(items: pydicom.Sequence) -> None:
        for it in items:
            for attr in ("ConceptNameCodeSequence", "ConceptCodeSequence", "MeasurementUnitsCodeSequence"):
                for c in it.get(attr, []):
                    found.add(_cv(c))
            walk(it.get("ContentSequence", []))

    walk(ds.ContentSequence)
    return found


def _texts(ds: pydicom.Dataset) -> list[str]:
    out: list[str] = []

    def walk(items: pydicom.Sequence) -> None:
        for it in items:
            if "TextValue" in it:
                out.append(str(it.TextValue))
            walk(it.get("ContentSequence", []))

    walk(ds.ContentSequence)
    return out


def _check(tmp_path: Path, dciodvfy: Validator, name: str, data: bytes) -> pydicom.Dataset:
    path = tmp_path / name
    path.write_bytes(data)
    assert dciodvfy(path) == [], f"{name} has dciodvfy errors"
    return _read(data)


def _versions(kind: str):
    draft = h.chest_report() if kind == "chest" else h.ecg_report()
    final = sign(draft, h.RADIOLOGIST, h.SIGNED)
    amended = amend(final, h.RADIOLOGIST, h.AMENDED, findings=final.findings[:2])
    return draft, final, amended


@pytest.mark.parametrize("kind", ["chest", "ecg"])
def test_every_dicom_output_of_every_version_passes_dciodvfy(
    kind: str, tmp_path: Path, dciodvfy: Validator, dsrdump: Validator
) -> None:
    study = h.chest_study() if kind == "chest" else h.ecg_study()
    images = (h.chest_key_image(),) if kind == "chest" else ()
    png = h.ecg_printout_png() if kind == "ecg" else None
    draft, final, amended = _versions(kind)
    withdrawn = withdraw(amended, h.RADIOLOGIST, h.AMENDED, "wrong patient")
    seen = 0
    for report in (draft, final, amended, withdrawn):
        out = build_outputs(report, study, h.context(), images=images, ecg_printout_png=png)
        for a in out.artefacts:
            if a.is_dicom:
                ds = _check(tmp_path, dciodvfy, f"v{report.version}_{a.name}", a.data)
                assert ds.StudyInstanceUID == study.study_instance_uid
                if a.name.startswith("sr"):  # highdicom re-reads the SR documents too
                    assert hd.sr.srread(io.BytesIO(a.data)).SOPInstanceUID == a.sop_instance_uid
                if a.kind == "sr":  # and DCMTK parses the document tree (SR and KOS)
                    assert dsrdump(tmp_path / f"v{report.version}_{a.name}") == []
                elif a.name.startswith("sc"):
                    assert hd.imread(io.BytesIO(a.data)).SOPInstanceUID == a.sop_instance_uid
                assert ds.SeriesInstanceUID not in {s.series_instance_uid for s in study.series}  # new series
                seen += 1
    assert seen >= 10


def test_tid1500_content_and_flags(tmp_path: Path, dciodvfy: Validator) -> None:
    data = sr_tid1500.build_tid1500_bytes(h.chest_report(), h.chest_study(), h.context())
    ds = _check(tmp_path, dciodvfy, "tid1500.dcm", data)
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34"
    assert ds.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    assert (ds.PreliminaryFlag, ds.VerificationFlag, ds.CompletionFlag) == ("PRELIMINARY", "UNVERIFIED", "COMPLETE")
    assert "VerifyingObserverSequence" not in ds
    codes = _codes(ds)
    for f in h.chest_findings():
        assert f.concept.value in codes
    assert {"52101004", "272519000", "82334004"} <= codes  # present, absent, indeterminate
    assert {"363698007", "111001", "111003", "103339001", "121112"} <= codes  # site, algorithm, long axis, source
    # highdicom reads it back as a TID 1500 measurement report with one group per coded finding
    sr = hd.sr.Comprehensive3DSR.from_dataset(ds)
    assert len(sr.content[0].ContentSequence) > 0
    assert sr.get_evidence()[0][2] == h.CR_INSTANCE_UID


def test_signed_sr_is_verified_and_amendment_references_predecessor(tmp_path: Path, dciodvfy: Validator) -> None:
    _draft, final, amended = _versions("chest")
    ctx = h.context()
    f = _check(tmp_path, dciodvfy, "final.dcm", sr_tid1500.build_tid1500_bytes(final, h.chest_study(), ctx))
    assert (f.PreliminaryFlag, f.VerificationFlag) == ("FINAL", "VERIFIED")
    obs = f.VerifyingObserverSequence[0]
    assert str(obs.VerifyingObserverName) == "Müller^Anna^^Dr."
    assert obs.VerificationDateTime.startswith("20261120110500")
    assert f.SpecificCharacterSet == "ISO_IR 192"
    a = _check(tmp_path, dciodvfy, "amended.dcm", sr_tid1500.build_tid1500_bytes(amended, h.chest_study(), ctx))
    pred = a.PredecessorDocumentsSequence[0].ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
    assert pred.ReferencedSOPInstanceUID == f.SOPInstanceUID
    assert a.SeriesInstanceUID == f.SeriesInstanceUID and a.SOPInstanceUID != f.SOPInstanceUID
    assert a.InstanceNumber == 3


def test_tid2000_narrative(tmp_path: Path, dciodvfy: Validator) -> None:
    ds = _check(
        tmp_path,
        dciodvfy,
        "tid2000.dcm",
        sr_tid2000.build_tid2000_bytes(h.chest_report(), h.chest_study(), h.context()),
    )
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.22"
    assert ds.ConceptNameCodeSequence[0].CodeValue == "18748-4"
    assert {"59776-5", "19005-8", "18783-1", "121071", "121073", "121075"} <= _codes(ds)
    texts = _texts(ds)
    assert any("Small left pleural effusion" in t for t in texts)
    # the draft status is the document's flags, never a content item that reads like a finding
    assert not any(t.startswith("PRELIMINARY") for t in texts) and ds.PreliminaryFlag == "PRELIMINARY"
    assert not any("FINAL" in t for t in texts)


def test_ecg_sr_tid3700(tmp_path: Path, dciodvfy: Validator) -> None:
    ds = _check(tmp_path, dciodvfy, "ecg.dcm", sr_ecg.build_ecg_sr_bytes(h.ecg_report(), h.ecg_study(), h.context()))
    assert ds.ContentTemplateSequence[0].TemplateIdentifier == "3700"
    codes = _codes(ds)
    assert {"122158", "122159", "122148", "2:4", "122145", "121111"} <= codes
    # TID 3713: MDC codes of CID 3228/3229/3227, the QTc with its algorithm (CID 3678) as a modifier
    assert {"8867-4", "2:15872", "2:16156", "2:16160", "2:15876", "2:16132", "370129005", "122730"} <= codes
    (glob,) = [i for i in ds.ContentSequence if _cv(i.ConceptNameCodeSequence[0]) == "122158"]
    global_codes = {_cv(i.ConceptNameCodeSequence[0]) for i in glob.ContentSequence}
    assert not {"8625-6", "8633-0", "8634-8", "76635-2", "8632-2"} & global_codes
    assert {SCT.SINUS_RHYTHM.value, SCT.FIRST_DEGREE_AV_BLOCK.value, SCT.LVH.value} <= codes
    nums = []

    def walk(items):
        for it in items:
            if it.ValueType == "NUM":
                nums.append((_cv(it.ConceptNameCodeSequence[0]), float(it.MeasuredValueSequence[0].NumericValue)))
            walk(it.get("ContentSequence", []))

    walk(ds.ContentSequence)
    assert ("2:15872", 212.0) in nums and ("2:16156", 94.0) in nums and ("8633-0", 96.0) in nums  # V2 (TID 3714)
    with pytest.raises(ReportError, match="expected 'ecg'"):
        sr_ecg.build_ecg_sr(h.chest_report(), h.chest_study(), h.context())


def test_ecg_sr_keeps_measurements_of_non_standard_leads(tmp_path: Path, dciodvfy: Validator) -> None:
    from core.codes import LOINC, UCUM
    from core.records import Measurement

    holter = Measurement(LOINC.QRS_DURATION, 88.0, UCUM.MS, site="MLII")
    r = h.ecg_report(measurements=(*h.ecg_measurements(), holter))
    ds = _check(tmp_path, dciodvfy, "holter.dcm", sr_ecg.build_ecg_sr_bytes(r, h.ecg_study(), h.context()))
    assert "lead-MLII" in _codes(ds)
    assert ds.CodingSchemeIdentificationSequence[0].CodingSchemeDesignator == "99MMDX"


def test_secondary_capture_has_burned_in_banner(tmp_path: Path, dciodvfy: Validator) -> None:
    png = h.ecg_printout_png()
    scs = build_secondary_capture_bytes(
        h.ecg_report(), h.ecg_study(), h.context(), ecg_printout_png=png, images=[h.chest_key_image()]
    )
    assert len(scs) == 2
    for n, data in enumerate(scs):
        ds = _check(tmp_path, dciodvfy, f"sc{n}.dcm", data)
        assert ds.BurnedInAnnotation == "YES" and ds.PhotometricInterpretation == "RGB"
        assert ds.ImageComments == DRAFT_BANNER
        px = ds.pixel_array
        band = px[:10, :, :].reshape(-1, 3)
        assert (band[:, 0] > 120).mean() > 0.7 and (band[:, 1] < 60).mean() > 0.5  # the red draft band
        assert (band.max(axis=1) > 240).any()  # white banner text
    first = _read(scs[0]).pixel_array
    assert first.shape[1] == 640 and first.shape[0] > 240


def test_encapsulated_pdf(tmp_path: Path, dciodvfy: Validator) -> None:
    pdf = b"%PDF-1.4\n%%EOF\n"
    ds = _check(
        tmp_path, dciodvfy, "pdf.dcm", build_encapsulated_pdf_bytes(h.chest_report(), h.chest_study(), h.context(), pdf)
    )
    assert ds.MIMETypeOfEncapsulatedDocument == "application/pdf"
    assert bytes(ds.EncapsulatedDocument)[: ds.EncapsulatedDocumentLength] == pdf
    with pytest.raises(ReportError, match="%PDF"):
        build_encapsulated_pdf_bytes(h.chest_report(), h.chest_study(), h.context(), b"not a pdf")


def test_withdrawal_rejects_earlier_objects_with_kos(tmp_path: Path, dciodvfy: Validator) -> None:
    draft, final, _amended = _versions("chest")
    withdrawn = withdraw(final, h.RADIOLOGIST, h.AMENDED, "wrong side")
    ctx = h.context()
    refs = _earlier_dicom_objects(withdrawn, ctx, n_captures=1)
    v1 = build_outputs(draft, h.chest_study(), ctx, images=[h.chest_key_image()])
    v2 = build_outputs(final, h.chest_study(), ctx, images=[h.chest_key_image()])
    sent = {a.sop_instance_uid for o in (v1, v2) for a in o.artefacts if a.is_dicom}
    assert {r.sop_instance_uid for r in refs} == sent  # the note covers exactly what was sent
    ds = _check(tmp_path, dciodvfy, "kos.dcm", build_rejection_note_bytes(withdrawn, h.chest_study(), ctx, refs))
    assert ds.ConceptNameCodeSequence[0].CodeValue == "113037"
    referenced = {
        s.ReferencedSOPInstanceUID
        for st in ds.CurrentRequestedProcedureEvidenceSequence
        for se in st.ReferencedSeriesSequence
        for s in se.ReferencedSOPSequence
    }
    assert referenced == sent
    with pytest.raises(ReportError, match="entered-in-error"):
        build_rejection_note_bytes(final, h.chest_study(), ctx, [DicomRef("1.2.3", "1.2.3.4", "1.2.3.5")])


def test_dicom_outputs_are_deterministic() -> None:
    a = build_outputs(h.ecg_report(), h.ecg_study(), h.context(), ecg_printout_png=h.ecg_printout_png())
    b = build_outputs(h.ecg_report(), h.ecg_study(), h.context(), ecg_printout_png=h.ecg_printout_png())
    assert [x.data for x in a.artefacts] == [x.data for x in b.artefacts]


# --------------------------------------------------------------------------- bad input


def test_non_ascii_names_get_utf8_charset(tmp_path: Path, dciodvfy: Validator) -> None:
    study = h.chest_study(patient_name="李^小龙")
    for name, data in (
        ("t1500.dcm", sr_tid1500.build_tid1500_bytes(h.chest_report(), study, h.context())),
        ("t2000.dcm", sr_tid2000.build_tid2000_bytes(h.chest_report(), study, h.context())),
    ):
        ds = _check(tmp_path, dciodvfy, name, data)
        assert ds.SpecificCharacterSet == "ISO_IR 192"
        assert str(ds.PatientName) == "李^小龙"


def test_study_without_patient_id_and_no_findings(tmp_path: Path, dciodvfy: Validator) -> None:
    study = h.chest_study(with_patient_id=False)
    r = h.chest_report(findings=(), measurements=())
    out = build_outputs(r, study, h.context())
    assert not [a for a in out.artefacts if a.name == "sr_tid1500.dcm"]  # nothing coded to say
    for a in out.artefacts:
        if a.is_dicom:
            ds = _check(tmp_path, dciodvfy, a.name, a.data)
            assert ds.PatientID == ""
    with pytest.raises(ReportError, match="no coded finding"):
        sr_tid1500.build_tid1500(r, study, h.context())


def test_free_text_and_local_code_findings(tmp_path: Path, dciodvfy: Validator) -> None:
    local = Finding(Code("cxr-lung-opacity", "MMDX", "Lung opacity"), "opacity", h.CXR_MODEL, probability=0.7)
    free = Finding(None, "Old healed rib fracture", h.CXR_MODEL, Presence.PRESENT)
    r = h.chest_report(findings=(local, free), measurements=())
    ds = _check(tmp_path, dciodvfy, "local.dcm", sr_tid1500.build_tid1500_bytes(r, h.chest_study(), h.context()))
    assert "cxr-lung-opacity" in _codes(ds)
    assert ds.CodingSchemeIdentificationSequence[0].CodingSchemeDesignator == "99MMDX"
    t = _read(sr_tid2000.build_tid2000_bytes(r, h.chest_study(), h.context()))
    assert "Old healed rib fracture" in _texts(t)  # uncoded findings travel as narrative


def test_unknown_code_scheme_is_refused_before_any_object() -> None:
    bad = Finding(Code("2:4", "MDC", "Lead V2"), "lead", h.CXR_MODEL)
    with pytest.raises(ReportError, match=r"findings\[0\]\.concept"):
        build_outputs(h.chest_report(findings=(bad,)), h.chest_study(), h.context())


def test_identifier_too_long_for_dicom_is_refused_not_truncated() -> None:
    from dataclasses import replace

    study = replace(h.chest_study(), accession_number="A" * 17)
    with pytest.raises(ReportError, match="AccessionNumber: 17 characters"):
        sr_tid2000.build_tid2000_bytes(h.chest_report(), study, h.context())
