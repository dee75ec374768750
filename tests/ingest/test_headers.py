"""DICOM header -> core records: UIDs, dates, age, missing tags, no PHI in errors."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pydicom
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydicom.dataset import Dataset

from core.errors import IngestError
from core.records import Sex
from ingest.headers import (
    _age_at,
    _parse_age,
    _parse_tm,
    _patient_from_dataset,
    parse_da,
    records_from_dataset,
    study_datetime,
)

from .conftest import DATA

DIGEST = "xxh3-128:" + "a" * 32


def _ds(**kw: object) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.SOPInstanceUID = "1.2.3.4.5"
    ds.StudyInstanceUID = "1.2.3"
    ds.SeriesInstanceUID = "1.2.3.4"
    ds.Modality = "CT"
    ds.PatientName = "Doe^Jane"
    ds.PatientID = "MRN-0042"
    for k, v in kw.items():
        setattr(ds, k, v)
    return ds


def test_real_file_gives_consistent_records() -> None:
    path = DATA / "net" / "CT_small.dcm"
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    rec = records_from_dataset(ds, path=path, content_digest=DIGEST)
    assert rec.instance.sop_instance_uid == ds.SOPInstanceUID
    assert rec.instance.study_instance_uid == rec.study.study_instance_uid == ds.StudyInstanceUID
    assert rec.series.series_instance_uid == rec.instance.series_instance_uid == ds.SeriesInstanceUID
    assert rec.series.modality == "CT"
    assert (rec.instance.rows, rec.instance.columns) == (128, 128)
    assert rec.instance.transfer_syntax_uid == "1.2.840.10008.1.2.1"
    assert rec.study.study_datetime is not None and rec.study.study_datetime.year == 2004
    assert rec.study.patient.identifiers and rec.study.patient.identifiers[0].value == ds.PatientID


def test_age_from_patient_age_wins_over_birth_date() -> None:
    ds = _ds(PatientAge="045Y", PatientBirthDate="19000101", StudyDate="20200101")
    assert _patient_from_dataset(ds).age_years == pytest.approx(45.0)


def test_age_from_birth_date_and_study_date() -> None:
    ds = _ds(PatientBirthDate="19800615", StudyDate="20200614")
    age = _patient_from_dataset(ds).age_years
    assert age is not None and 39.99 < age < 40.0


def test_age_unknown_when_dates_contradict_or_missing() -> None:
    assert _patient_from_dataset(_ds(PatientBirthDate="20300101", StudyDate="20200101")).age_years is None
    assert _patient_from_dataset(_ds(PatientBirthDate="19800101")).age_years is None
    assert _patient_from_dataset(_ds(PatientAge="bogus")).age_years is None


def test_sex_and_other_ids() -> None:
    other = Dataset()
    other.PatientID = "ALT-1"
    other.IssuerOfPatientID = "OTHERHOSP"
    ds = _ds(PatientSex="F", IssuerOfPatientID="HOSP", OtherPatientIDsSequence=[other])
    p = _patient_from_dataset(ds)
    assert p.sex is Sex.FEMALE
    assert [(i.value, i.issuer) for i in p.identifiers] == [("MRN-0042", "HOSP"), ("ALT-1", "OTHERHOSP")]
    assert "Jane" not in repr(p) and "MRN" not in repr(p)


@pytest.mark.parametrize(
    ("keyword", "tag"),
    [
        ("SOPClassUID", "(0008,0016)"),
        ("SOPInstanceUID", "(0008,0018)"),
        ("StudyInstanceUID", "(0020,000D)"),
        ("SeriesInstanceUID", "(0020,000E)"),
    ],
)
def test_missing_required_tag_is_named_without_phi(keyword: str, tag: str) -> None:
    ds = _ds()
    delattr(ds, keyword)
    with pytest.raises(IngestError) as err:
        records_from_dataset(ds, path=Path("x.dcm"), content_digest=DIGEST)
    msg = str(err.value)
    assert tag in msg and keyword in msg and "x.dcm" in msg
    assert "Jane" not in msg and "MRN" not in msg


def test_malformed_uid_is_named() -> None:
    with pytest.raises(IngestError, match=r"\(0008,0018\) SOPInstanceUID"):
        records_from_dataset(_ds(SOPInstanceUID="1.02.abc"), path=Path("x.dcm"), content_digest=DIGEST)


def test_missing_modality_falls_back_to_sop_class() -> None:
    ds = _ds(SOPClassUID="1.2.840.10008.5.1.4.1.1.9.1.1")
    del ds.Modality
    assert records_from_dataset(ds, path=Path("x"), content_digest=DIGEST).series.modality == "ECG"


def test_bad_is_values_become_none() -> None:
    # badVR.dcm: NumberOfFrames is "1A" (invalid IS); the object is still indexable
    ds = pydicom.dcmread(DATA / "odd" / "badVR.dcm", stop_before_pixels=True)
    rec = records_from_dataset(ds, path=Path("x"), content_digest=DIGEST)
    assert rec.instance.number_of_frames == 1
    assert rec.series.modality == "RTDOSE"
    zero = records_from_dataset(_ds(NumberOfFrames="0", InstanceNumber="7"), path=Path("x"), content_digest=DIGEST)
    assert (zero.instance.number_of_frames, zero.instance.instance_number) == (1, 7)


def test_study_datetime_with_timezone_and_fallback() -> None:
    dt = study_datetime(_ds(StudyDate="20240131", StudyTime="235959.5", TimezoneOffsetFromUTC="-0500"))
    assert dt == datetime(2024, 1, 31, 23, 59, 59, 500000, tzinfo=timezone(-timedelta(hours=5)))
    assert study_datetime(_ds(SeriesDate="20240102")) == datetime(2024, 1, 2)
    assert study_datetime(_ds()) is None


# --------------------------------------------------------------------------- properties


@given(st.integers(0, 149), st.sampled_from("DWMY"))
def test_parse_age_round_trips_units(n: int, unit: str) -> None:
    age = _parse_age(f"{n:03d}{unit}")
    factor = {"D": 1 / 365.25, "W": 7 / 365.25, "M": 1 / 12, "Y": 1.0}[unit]
    assert age is not None and age == pytest.approx(n * factor, abs=1e-3)


@given(st.text(max_size=12))
def test_parse_age_never_raises(text: str) -> None:
    age = _parse_age(text)
    assert age is None or 0 <= age < 150


@given(st.dates(min_value=date(1900, 1, 1), max_value=date(2100, 12, 31)))
def test_parse_da_round_trips(d: date) -> None:
    assert parse_da(d.strftime("%Y%m%d")) == d
    assert parse_da(d.strftime("%Y.%m.%d")) == d


@given(st.text(max_size=16))
def test_parse_da_tm_never_raise(text: str) -> None:
    parse_da(text)
    h, m, s, us = _parse_tm(text)
    assert 0 <= h < 24 and 0 <= m < 60 and 0 <= s < 60 and 0 <= us < 1_000_000


@given(st.dates(min_value=date(1900, 1, 1), max_value=date(2040, 1, 1)), st.integers(0, 40000))
def test_age_at_is_monotonic_and_non_negative(birth: date, days: int) -> None:
    when = birth + timedelta(days=days)
    age = _age_at(birth, when)
    assert age is not None and abs(age - days / 365.25) < 1e-3
    if days > 0:
        assert _age_at(when, birth) is None
