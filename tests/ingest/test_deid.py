"""ingest.deid: PS3.15 Basic Profile, UID remapping, options, burned-in policy, dciodvfy, the mmdx deid command."""

from __future__ import annotations

import csv
import logging
import os
import re
import shutil
import subprocess
from pathlib import Path

import pydicom
import pytest
import typer
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from typer.testing import CliRunner

from app.commands.deid import register
from core.config import Settings, load_settings
from core.errors import ConfigError, IngestError
from ingest.deid import Deidentifier, DeidOptions, _clean_text, _phi_terms, deidentify_files, resolve_action
from ingest.deid_profile import PROFILE, PROFILE_TAGS

DATA = Path(__file__).resolve().parents[1] / "data" / "pixels"
DCIODVFY = shutil.which("dciodvfy")

PHI = {
    "PatientName": "DOE^JOHNATHAN",
    "PatientID": "MRN77441",
    "PatientBirthDate": "19610317",
    "OtherPatientIDs": "OLDMRN5512",
    "PatientAddress": "12 Elm Street Springfield",
    "InstitutionName": "Saint Mungo Hospital",
    "InstitutionAddress": "1 Hospital Road",
    "ReferringPhysicianName": "HOUSE^GREGORY",
    "PerformingPhysicianName": "QUINN^MICHAELA",
    "OperatorsName": "CHASE^ROBERT",
    "AccessionNumber": "ACC990011",
    "StationName": "CTROOM7",
    "DeviceSerialNumber": "SN-4411-XY",
    "StudyID": "STU8812",
}


def _settings(**deid: object) -> Settings:
    return load_settings(
        use_project_defaults=False, uid_root="1.2.826.0.1.3680043.10.999", deid={"salt": "pepper", **deid}
    )


def _phi_dataset(name: str = "CT_small.dcm") -> Dataset:
    ds = pydicom.dcmread(DATA / name)
    for keyword, value in PHI.items():
        setattr(ds, keyword, value)
    ds.StudyDescription = "CT HEAD for DOE JOHNATHAN 2021-03-04"
    ds.SeriesDescription = "axial MRN77441"
    ds.ImageComments = "patient Johnathan moved"
    ds.StudyDate = "20210304"
    ds.ContentDate = "20210304"
    ds.DateOfLastDetectorCalibration = "20210211"  # not in the table: still a date
    ds.CurrentObserverTrial = "KUTNER^LAWRENCE"  # not in the table: still a person name
    ds.OtherPatientIDsSequence = Sequence([Dataset()])
    ds.OtherPatientIDsSequence[0].PatientID = "OTHERID42"
    req = Dataset()
    req.RequestingPhysician = "WILSON^JAMES"
    req.RequestedProcedureID = "RP123"
    ds.RequestAttributesSequence = Sequence([req])
    ds.add_new((0x0009, 0x0010), "LO", "ACME PRIVATE")
    ds.add_new((0x0009, 0x1001), "LO", "private DOE note")
    ds.add_new((0x6000, 0x0010), "US", 4)
    ds.add_new((0x6000, 0x0011), "US", 4)
    ds.add_new((0x6000, 0x3000), "OW", b"\x00" * 2)
    ds.add_new((0x5000, 0x0005), "US", 1)
    return ds


def _write(ds: Dataset, path: Path) -> Path:
    ds.save_as(path, enforce_file_format=True)
    return path


def _two_instances_of_one_study(tmp: Path) -> tuple[Path, Path, Dataset, Dataset]:
    a = _phi_dataset()
    b = _phi_dataset()
    b.SOPInstanceUID = a.SOPInstanceUID + ".2"
    b.InstanceNumber = 2
    ref = Dataset()
    ref.ReferencedSOPClassUID = a.SOPClassUID
    ref.ReferencedSOPInstanceUID = a.SOPInstanceUID
    b.SourceImageSequence = Sequence([ref])
    b.ReferencedImageSequence = Sequence([ref])
    return _write(a, tmp / "a.dcm"), _write(b, tmp / "b.dcm"), a, b


# --------------------------------------------------------------------------- the table


def test_profile_table_is_well_formed() -> None:
    codes = {"D", "Z", "X", "K", "C", "U", "X/Z", "X/D", "Z/D", "X/Z/D", "X/Z/U*"}
    assert len(PROFILE) > 250
    for keyword, (basic, retain, clean) in PROFILE.items():
        assert basic in codes, keyword
        assert retain in ("", "K"), keyword
        assert clean in ("", "C"), keyword
    assert len(PROFILE_TAGS) == len(PROFILE)
    for keyword in ("PatientName", "StudyInstanceUID", "ReferencedSOPInstanceUID", "ContentSequence", "StudyDate"):
        assert keyword in PROFILE


def test_option_resolution() -> None:
    basic = DeidOptions(retain_longitudinal_temporal=False, clean_descriptors=False)
    both = DeidOptions(retain_longitudinal_temporal=True, clean_descriptors=True)
    assert resolve_action("StudyDate", "DA", basic) == "Z"
    assert resolve_action("StudyDate", "DA", both) == "K"
    assert resolve_action("StudyDescription", "LO", basic) == "X"
    assert resolve_action("StudyDescription", "LO", both) == "C"
    assert resolve_action("ContentDate", "DA", basic) == "D"
    assert resolve_action("SOPInstanceUID", "UI", both) == "U"


def test_clean_text_removes_names_ids_and_dates() -> None:
    assert _clean_text("CT HEAD for DOE JOHNATHAN 2021-03-04", {"DOE", "JOHNATHAN"}) == "CT HEAD for"
    assert _clean_text("axial MRN77441", {"MRN77441"}) == "axial"
    assert _clean_text("Chest PA 20210304", set()) == "Chest PA"
    assert _clean_text("PNAME", {"NAME"}) == "PNAME"  # whole words only


def test_phi_terms_split_person_names_only() -> None:
    ds = Dataset()
    ds.PatientName = "DOE^JOHN"
    ds.StationName = "CT 1"
    ds.PatientID = "12345"
    terms = _phi_terms(ds)
    assert {"DOE", "JOHN", "CT 1", "12345"} <= terms
    assert "CT" not in terms  # a station name is not split: "CT HEAD" keeps its "CT"


# --------------------------------------------------------------------------- what comes out


def test_no_phi_survives_anywhere_in_the_output_bytes(tmp_path: Path) -> None:
    src = _write(_phi_dataset(), tmp_path / "in.dcm")
    report = deidentify_files([src], tmp_path / "out", _settings())
    assert report.written == 1 and not report.failed
    out = report.outputs[0]
    raw = out.read_bytes()
    extra = ["OTHERID42", "WILSON", "JAMES", "RP123", "private DOE note", "Johnathan", "KUTNER", "LAWRENCE", "20210211"]
    for value in [*PHI.values(), *extra]:
        for token in re.split(r"[\^ ]", value):
            if len(token) >= 3:
                assert token.upper().encode() not in raw.upper(), token
    ds = pydicom.dcmread(out)
    assert ds.PatientIdentityRemoved == "YES"
    assert not any(elem.tag.is_private for elem in ds.iterall())
    assert not any(0x5000 <= elem.tag.group <= 0x60FF for elem in ds)
    assert "OtherPatientIDsSequence" not in ds and "RequestAttributesSequence" not in ds
    assert ds.PatientName == ds.PatientID and str(ds.PatientID).startswith("ANON")
    assert ds.StudyDescription == "CT HEAD for"  # clean descriptors (default on)
    assert ds.AccessionNumber == "" and ds.PatientBirthDate == ""
    assert ds.InstitutionName == "ANONYMIZED" and ds.StationName == "ANONYMIZED"
    codes = [item.CodeValue for item in ds.DeidentificationMethodCodeSequence]
    assert codes == ["113100", "113104", "113105"]
    # pixels untouched
    assert ds.pixel_array.tobytes() == pydicom.dcmread(src).pixel_array.tobytes()


def test_uids_remapped_consistently_across_a_study_and_references_follow(tmp_path: Path) -> None:
    pa, pb, a, b = _two_instances_of_one_study(tmp_path)
    report = deidentify_files([pa, pb], tmp_path / "out", _settings())
    assert report.written == 2
    oa, ob = (pydicom.dcmread(p) for p in report.outputs)
    if oa.InstanceNumber == 2:
        oa, ob = ob, oa
    assert oa.StudyInstanceUID == ob.StudyInstanceUID != a.StudyInstanceUID
    assert oa.SeriesInstanceUID == ob.SeriesInstanceUID != a.SeriesInstanceUID
    assert oa.FrameOfReferenceUID == ob.FrameOfReferenceUID != a.FrameOfReferenceUID
    assert oa.SOPInstanceUID != ob.SOPInstanceUID
    assert ob.SourceImageSequence[0].ReferencedSOPInstanceUID == oa.SOPInstanceUID
    assert ob.ReferencedImageSequence[0].ReferencedSOPInstanceUID == oa.SOPInstanceUID
    assert ob.SourceImageSequence[0].ReferencedSOPClassUID == a.SOPClassUID  # well-known UIDs kept
    assert oa.file_meta.MediaStorageSOPInstanceUID == oa.SOPInstanceUID
    assert oa.SOPInstanceUID.startswith("1.2.826.0.1.3680043.10.999.")
    originals = {str(e.value) for d in (a, b) for e in d.iterall() if e.VR == "UI"}
    originals -= {u for u in originals if u.startswith("1.2.840.10008.")}
    for out in (oa, ob):
        for elem in out.iterall():
            if elem.VR == "UI":
                assert str(elem.value) not in originals, elem.keyword
    # the output tree is named by new UIDs only
    assert all(a.StudyInstanceUID not in str(p) for p in report.outputs)


def test_same_input_and_salt_give_same_uids_other_salt_does_not(tmp_path: Path) -> None:
    pa, _, _, _ = _two_instances_of_one_study(tmp_path)
    r1 = deidentify_files([pa], tmp_path / "o1", _settings())
    r2 = deidentify_files([pa], tmp_path / "o2", _settings())
    r3 = deidentify_files([pa], tmp_path / "o3", _settings(salt="other"))
    d1, d2, d3 = (pydicom.dcmread(r.outputs[0]) for r in (r1, r2, r3))
    assert d1.SOPInstanceUID == d2.SOPInstanceUID and d1.StudyInstanceUID == d2.StudyInstanceUID
    assert d1.PatientID == d2.PatientID
    assert d3.SOPInstanceUID != d1.SOPInstanceUID and d3.PatientID != d1.PatientID
    assert r1.outputs[0].relative_to(tmp_path / "o1") == r2.outputs[0].relative_to(tmp_path / "o2")
    assert not r1.salt_is_random
    unsalted = Deidentifier("2.25")
    assert unsalted.salt_is_random


def test_dates_removed_by_default_and_kept_with_longitudinal_option(tmp_path: Path) -> None:
    src = _write(_phi_dataset(), tmp_path / "in.dcm")
    basic = pydicom.dcmread(deidentify_files([src], tmp_path / "b", _settings()).outputs[0])
    kept = pydicom.dcmread(
        deidentify_files([src], tmp_path / "k", _settings(retain_longitudinal_temporal=True)).outputs[0]
    )
    assert basic.StudyDate == "" and basic.ContentDate == "19000101"
    assert basic.LongitudinalTemporalInformationModified == "REMOVED"
    assert kept.StudyDate == "20210304" and kept.ContentDate == "20210304"
    assert kept.LongitudinalTemporalInformationModified == "UNMODIFIED"
    assert "113106" in [i.CodeValue for i in kept.DeidentificationMethodCodeSequence]
    assert kept.PatientBirthDate == ""  # birth date is not a longitudinal date: still removed
    assert basic.DateOfLastDetectorCalibration == "19000101" and kept.DateOfLastDetectorCalibration == "20210211"


def test_descriptors_removed_without_clean_option(tmp_path: Path) -> None:
    src = _write(_phi_dataset(), tmp_path / "in.dcm")
    out = pydicom.dcmread(deidentify_files([src], tmp_path / "o", _settings(clean_descriptors=False)).outputs[0])
    assert "StudyDescription" not in out and "SeriesDescription" not in out and "ImageComments" not in out
    assert [i.CodeValue for i in out.DeidentificationMethodCodeSequence] == ["113100"]


@pytest.mark.parametrize("name", ["highdicom_sr_document_tid1500.dcm", "reportsi.dcm"])
def test_sr_structured_content_is_cleaned_not_dropped(tmp_path: Path, name: str) -> None:
    ds = pydicom.dcmread(DATA / name)
    ds.PatientName = "ROEBUCK^JANETTE"
    enumerated = ("ValueType", "CodeValue", "RelationshipType")
    value_types = [e.value for item in ds.ContentSequence for e in item.iterall() if e.keyword in enumerated]
    out_path = deidentify_files([_write(ds, tmp_path / "sr.dcm")], tmp_path / "o", _settings()).outputs[0]
    out = pydicom.dcmread(out_path)
    assert "ContentSequence" in out and len(out.ContentSequence) == len(ds.ContentSequence)
    # enumerated values and codes are never "cleaned"
    assert [e.value for item in out.ContentSequence for e in item.iterall() if e.keyword in enumerated] == value_types
    assert all(str(e.value) == "ANONYMIZED" for e in out.iterall() if e.keyword == "PersonName")
    assert b"ROEBUCK" not in out_path.read_bytes() and b"JANETTE" not in out_path.read_bytes()


# --------------------------------------------------------------------------- burned-in annotation


def test_burned_in_annotation_refused_or_marked(tmp_path: Path) -> None:
    ds = _phi_dataset()
    ds.BurnedInAnnotation = "YES"
    src = _write(ds, tmp_path / "burned.dcm")
    refused = deidentify_files([src], tmp_path / "r", _settings())
    assert refused.written == 0 and refused.refused_burned_in == [str(src)]
    assert "(0028,0301)" in refused.failed[0][1]
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").rglob("*.dcm"))
    with pytest.raises(IngestError, match="Burned In Annotation"):
        Deidentifier("2.25", DeidOptions(burned_in_annotation="refuse"), salt="x").deidentify(pydicom.dcmread(src))
    marked = deidentify_files([src], tmp_path / "m", _settings(burned_in_annotation="mark"))
    assert marked.written == 1 and marked.marked_burned_in == [str(src)]
    assert pydicom.dcmread(marked.outputs[0]).BurnedInAnnotation == "YES"


# --------------------------------------------------------------------------- mapping table, bad input


def test_mapping_table_only_when_configured(tmp_path: Path) -> None:
    pa, pb, a, _ = _two_instances_of_one_study(tmp_path)
    none = deidentify_files([pa], tmp_path / "o1", _settings())
    assert none.mapping_path is None and not list(tmp_path.glob("*.csv"))
    with pytest.raises(ConfigError, match="mapping_path"):
        deidentify_files([pa], tmp_path / "o2", _settings(keep_mapping=True))
    mapping = tmp_path / "keys" / "map.csv"
    report = deidentify_files([pa, pb], tmp_path / "o3", _settings(keep_mapping=True, mapping_path=str(mapping)))
    assert report.mapping_path == mapping
    assert oct(mapping.stat().st_mode & 0o777) == "0o600"
    rows = list(csv.DictReader(mapping.open()))
    uid_rows = {r["original"]: r["replacement"] for r in rows if r["kind"] == "uid"}
    out_a = next(pydicom.dcmread(p) for p in report.outputs if pydicom.dcmread(p).InstanceNumber != 2)
    assert uid_rows[a.SOPInstanceUID] == out_a.SOPInstanceUID
    assert any(r["kind"] == "patient" and r["original"] == PHI["PatientID"] for r in rows)


def test_bad_files_are_listed_and_good_ones_written(tmp_path: Path) -> None:
    junk = tmp_path / "in" / "junk.bin"
    junk.parent.mkdir()
    junk.write_bytes(b"\x00" * 50 + b"not dicom")
    _write(_phi_dataset("MR_small.dcm"), tmp_path / "in" / "mr.dcm")
    shutil.copy(DATA / "bad" / "nested_priv_SQ.dcm", tmp_path / "in" / "nosop.dcm")
    report = deidentify_files([tmp_path / "in"], tmp_path / "out", _settings())
    assert report.files_in == 3 and report.written == 1
    reasons = dict(report.failed)
    assert "not a DICOM Part 10 file" in reasons[str(junk)]
    assert "(0008,0018)" in reasons[str(tmp_path / "in" / "nosop.dcm")]
    assert all("DOE" not in r for r in reasons.values())


# --------------------------------------------------------------------------- outside validator


def _dciodvfy_errors(path: Path) -> set[str]:
    assert DCIODVFY is not None
    proc = subprocess.run(
        [DCIODVFY, str(path)], capture_output=True, text=True, errors="replace", timeout=60, check=False
    )
    lines = (proc.stdout + proc.stderr).splitlines()
    # UIDs differ by design after de-identification: compare messages with UIDs masked
    masked = (re.sub(r"(UID) \S+$", r"\1 <uid>", re.sub(r"\b\d+(\.\d+){2,}\b", "<uid>", ln)) for ln in lines)
    return {ln.strip() for ln in masked if ln.startswith("Error")}


@pytest.mark.parametrize(
    "name",
    [
        "CT_small.dcm",
        "MR_small.dcm",
        "highdicom_dx_image.dcm",
        "emri_small.dcm",
        "examples_ybr_color.dcm",
        "reportsi.dcm",
        "highdicom_sr_document_tid1500.dcm",
    ],
)
def test_output_passes_dciodvfy_without_new_errors(tmp_path: Path, name: str) -> None:
    if DCIODVFY is None:
        if os.environ.get("CI"):
            pytest.fail("dciodvfy (dicom3tools) is required in CI")
        pytest.skip("dciodvfy not installed")
    src = DATA / name
    report = deidentify_files([src], tmp_path / "out", _settings())
    assert report.written == 1
    out = report.outputs[0]
    reread = pydicom.dcmread(out)
    if "PixelData" in reread:
        reread.pixel_array  # noqa: B018 - re-reads and decodes
    new = _dciodvfy_errors(out) - _dciodvfy_errors(src)
    assert not new, new


# --------------------------------------------------------------------------- CLI


def test_mmdx_deid_command(tmp_path: Path) -> None:
    app = typer.Typer()
    register(app)

    @app.command("noop")
    def _noop() -> None:  # a second command keeps Typer in sub-command mode
        """Nothing."""

    src = _write(_phi_dataset(), tmp_path / "in.dcm")
    cfg = tmp_path / "mmdx.yaml"
    cfg.write_text("deid:\n  salt: pepper\n  retain_longitudinal_temporal: true\n")
    result = CliRunner().invoke(
        app,
        [
            "deid",
            str(src),
            str(DATA / "bad" / "nested_priv_SQ.dcm"),
            "--out",
            str(tmp_path / "out"),
            "--config",
            str(cfg),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "written" in result.output and "UIDs replaced" in result.output
    outputs = list((tmp_path / "out").rglob("*.dcm"))
    assert len(outputs) == 1
    assert pydicom.dcmread(outputs[0]).StudyDate == "20210304"  # option from --config
    assert "DOE" not in result.output


def test_pydicom_value_warnings_are_redacted_in_logs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    ds = _phi_dataset()
    with pytest.warns(UserWarning, match="Invalid value for VR DA"):
        ds.PatientBirthDate = "17-03-1961 DOE"  # invalid DA: pydicom logs the value when it meets it
    src = _write(ds, tmp_path / "in.dcm")
    with caplog.at_level(logging.DEBUG, logger="pydicom"):
        report = deidentify_files([src], tmp_path / "out", _settings())
    assert report.written == 1
    assert "1961" not in caplog.text and "DOE" not in caplog.text
