from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.codes import LOINC, SCT, UCUM, Code
from core.errors import RecordError
from core.records import (
    STANDARD_LEADS,
    Clinician,
    DraftReport,
    EcgRecord,
    Finding,
    Image,
    Instance,
    Measurement,
    Patient,
    PatientIdentifier,
    Presence,
    Priority,
    PriorityLevel,
    Producer,
    ProducerKind,
    ReportKind,
    ReportStatus,
    Series,
    Sex,
    Signature,
    Study,
    Volume,
    normalise_lead_name,
)

RULES = Producer(ProducerKind.RULE_ENGINE, "mmdx-ecg", "1.0", digest="ab" * 32)
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_patient_repr_never_shows_identifiers_or_name() -> None:
    p = Patient(identifiers=(PatientIdentifier("MRN-12345", "HOSP"),), name="Doe^Jane", sex=Sex.FEMALE, age_years=51)
    text = repr(p) + str(p) + repr(p.identifiers)
    assert "12345" not in text and "Doe" not in text and "Jane" not in text
    assert "F" in text


def test_sex_from_dicom_is_lenient() -> None:
    assert Sex.from_dicom("F") is Sex.FEMALE
    assert Sex.from_dicom("male") is Sex.MALE
    assert Sex.from_dicom("") is Sex.UNKNOWN
    assert Sex.from_dicom("?") is Sex.UNKNOWN


@pytest.mark.parametrize("uid", ["", "1.2.03", "1..2", "1.2.a", "1." + "2" * 70])
def test_invalid_uids_are_rejected_naming_the_field(uid: str) -> None:
    with pytest.raises(RecordError, match="Study.study_instance_uid"):
        Study(study_instance_uid=uid)


def test_series_rejects_instance_of_another_series(tmp_path: Path) -> None:
    inst = Instance("1.2.3.4", "1.2.840.10008.5.1.4.1.1.2", "1.2.3.9", "1.2.3", tmp_path, "xxh3-128:" + "0" * 32)
    with pytest.raises(RecordError, match="Series.instances"):
        Series("1.2.3.5", "1.2.3", "CT", instances=(inst,))


@pytest.mark.parametrize("digest", ["xxh3-128:" + "0" * 32, "sha256:" + "ab" * 32])
def test_instance_takes_labelled_digests(tmp_path: Path, digest: str) -> None:
    assert (
        Instance("1.2.3.4", "1.2.840.10008.5.1.4.1.1.2", "1.2.3.5", "1.2.3", tmp_path, digest).content_digest == digest
    )


@pytest.mark.parametrize(
    "digest", ["0" * 64, "xxh3-128:" + "0" * 64, "sha256:" + "0" * 32, "md5:" + "0" * 32, "xxh3-128:" + "G" * 32, ""]
)
def test_instance_rejects_unlabelled_or_misfit_digests(tmp_path: Path, digest: str) -> None:
    with pytest.raises(RecordError, match="Instance.content_digest"):
        Instance("1.2.3.4", "1.2.840.10008.5.1.4.1.1.2", "1.2.3.5", "1.2.3", tmp_path, digest)


def test_study_modalities_and_counts(tmp_path: Path) -> None:
    inst = Instance("1.2.3.4", "1.2.840.10008.5.1.4.1.1.2", "1.2.3.5", "1.2.3", tmp_path, "xxh3-128:" + "0" * 32)
    study = Study(
        "1.2.3", series=(Series("1.2.3.5", "1.2.3", "CT", instances=(inst,)), Series("1.2.3.6", "1.2.3", "CR"))
    )
    assert study.modalities == ("CR", "CT")
    assert study.instance_count == 1


def test_image_is_read_only_and_validated() -> None:
    arr = np.zeros((4, 5), dtype=np.int16)
    img = Image(arr, pixel_spacing_mm=(0.5, 0.5))
    with pytest.raises(ValueError):
        img.pixels[0, 0] = 1
    assert arr.flags.writeable  # the caller's array is untouched
    with pytest.raises(RecordError, match="pixel_spacing_mm"):
        Image(arr, pixel_spacing_mm=(0.0, 1.0))
    with pytest.raises(RecordError, match="channels"):
        Image(np.zeros((4, 5, 2)))


def test_volume_checks_direction_and_spacing() -> None:
    eye = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))
    vol = Volume(np.zeros((2, 3, 3)), (2.5, 0.5, 0.5), (0.0, 0.0, 0.0), eye, "1.2.3")
    assert vol.voxels.shape == (2, 3, 3)
    with pytest.raises(RecordError, match="direction"):
        Volume(np.zeros((2, 3, 3)), (2.5, 0.5, 0.5), (0, 0, 0), ((2, 0, 0), (0, 1, 0), (0, 0, 1)), "1.2.3")
    with pytest.raises(RecordError, match="spacing_mm"):
        Volume(np.zeros((2, 3, 3)), (0.0, 0.5, 0.5), (0, 0, 0), eye, "1.2.3")


@given(st.sampled_from(STANDARD_LEADS), st.sampled_from(["{}", "{}".lower(), "Lead {}", "MDC_ECG_LEAD_{}", " {} "]))
def test_lead_names_normalise(lead: str, pattern: str) -> None:
    variant = pattern.format(lead)
    assert normalise_lead_name(variant) == lead
    assert normalise_lead_name(variant.upper()) == lead


def test_non_standard_leads_are_kept() -> None:
    assert normalise_lead_name("MLII") == "MLII"
    assert normalise_lead_name("vx") == "vx"


def test_ecg_record_is_float32_and_checked() -> None:
    sig = np.ones((2, 100), dtype=np.float64)
    rec = EcgRecord(sig, ("ii", "V5"), 360.0, source="x")
    assert rec.signal.dtype == np.float32 and rec.lead_names == ("II", "V5")
    assert rec.duration_s == pytest.approx(100 / 360)
    assert not rec.has_standard_12_leads
    assert rec.lead("II").shape == (100,)
    with pytest.raises(RecordError, match="lead_names"):
        rec.lead("V1")
    with pytest.raises(RecordError, match="duplicate"):
        EcgRecord(sig, ("II", "ii"), 360.0, source="x")
    with pytest.raises(RecordError, match="2 names for 3 leads|names for"):
        EcgRecord(np.ones((3, 10)), ("I", "II"), 500.0, source="x")


def test_measurement_needs_ucum_unit() -> None:
    Measurement(LOINC.QT_INTERVAL, 400.0, UCUM.MS)
    with pytest.raises(RecordError, match="UCUM"):
        Measurement(LOINC.QT_INTERVAL, 400.0, SCT.PRESENT)
    with pytest.raises(RecordError, match="finite"):
        Measurement(LOINC.QT_INTERVAL, float("nan"), UCUM.MS)


def test_model_producer_needs_weights_hash() -> None:
    with pytest.raises(RecordError, match="digest"):
        Producer(ProducerKind.MODEL, "medgemma", "4b")
    assert Producer(ProducerKind.DEVICE, "cart", "1").digest is None


def test_finding_probability_bounds() -> None:
    Finding(SCT.PNEUMOTHORAX, "", RULES, probability=0.3)
    with pytest.raises(RecordError, match="probability"):
        Finding(SCT.PNEUMOTHORAX, "", RULES, probability=1.3)
    with pytest.raises(RecordError, match="coded concept or a free text"):
        Finding(None, "  ", RULES)


def test_priority_orders_stat_first_and_needs_reason() -> None:
    stat = Priority(PriorityLevel.STAT, "STEMI")
    urgent = Priority(PriorityLevel.URGENT, "effusion")
    assert sorted([Priority.routine(), stat, urgent])[0] is stat
    assert Priority.highest([urgent, Priority.routine()]) is urgent
    assert Priority.highest([]).level is PriorityLevel.ROUTINE
    with pytest.raises(RecordError, match="reason"):
        Priority(PriorityLevel.STAT)


def test_draft_report_status_rules() -> None:
    finding = Finding(SCT.SINUS_RHYTHM, "Sinus rhythm", RULES, presence=Presence.PRESENT)
    draft = DraftReport("1.2.3", ReportKind.ECG, NOW, findings=(finding,), provenance=(RULES,))
    assert draft.status is ReportStatus.PRELIMINARY and not draft.is_ai_generated
    with pytest.raises(RecordError, match="signature"):
        DraftReport("1.2.3", ReportKind.ECG, NOW, status=ReportStatus.FINAL)
    sig = Signature(Clinician("Dr Who", "123"), NOW)
    with pytest.raises(RecordError, match="preliminary"):
        DraftReport("1.2.3", ReportKind.ECG, NOW, signature=sig)
    with pytest.raises(RecordError, match="provenance"):
        DraftReport("1.2.3", ReportKind.ECG, NOW, findings=(finding,))
    final = DraftReport("1.2.3", ReportKind.ECG, NOW, status=ReportStatus.FINAL, signature=sig, version=2)
    assert final.signature is sig


def test_code_validation() -> None:
    assert LOINC.QT_INTERVAL.system == "http://loinc.org"
    with pytest.raises(RecordError, match="scheme"):
        Code("1", "NOPE", "x")
    with pytest.raises(RecordError, match="display"):
        Code("1", "LN", "")
