"""Every ECG reader keeps the patient the file names (ID with issuer, name, birth date, sex) and the
acquisition time in the file's own zone."""

from __future__ import annotations

import struct
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import numpy as np

from core.records import Sex
from ecg.readers import read_ecg
from ecg.readers._common import parse_hl7_ts_zoned, patient_of, person_name
from tests.ecg.synth_formats import MUSE_8_LEADS, write_muse_xml, write_scp

DATA = Path(__file__).parent.parent / "data" / "ecg"


def _muse_leads() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    return {name: rng.integers(-300, 300, 5000).astype(np.int16) for name in MUSE_8_LEADS}


def test_muse_keeps_id_name_birth_date_and_local_acquisition_time(tmp_path: Path) -> None:
    path = write_muse_xml(
        tmp_path / "m.xml",
        _muse_leads(),
        gender="FEMALE",
        demographics={"PatientFirstName": "Zoë", "DateofBirth": "03-14-1961"},
    )
    rec = read_ecg(path)
    p = rec.patient
    assert [(i.value, i.issuer) for i in p.identifiers] == [("SYNTH-0001", None)]
    assert p.name == "SYNTHETIC^Zoë"
    assert p.birth_date == date(1961, 3, 14)
    assert p.sex is Sex.FEMALE
    assert p.age_years is not None and 62 < p.age_years < 63  # from the birth date at the acquisition
    assert rec.acquired_at == datetime(2023, 4, 29, 22, 41, 16)  # MUSE: the cart's wall clock, no zone


def test_scp_section1_identity_and_time_zone(tmp_path: Path) -> None:
    def text(tag: int, value: str) -> bytes:
        raw = value.encode("latin-1") + b"\0"
        return struct.pack("<BH", tag, len(raw)) + raw

    tags = text(0, "Müller") + text(1, "Anna") + text(2, "MRN-77|^&")
    tags += struct.pack("<BHHBB", 5, 4, 1950, 6, 1)  # date of birth
    tags += struct.pack("<BHhHB", 34, 5, 60, 0, 0)  # +60 minutes from UTC
    rng = np.random.default_rng(2)
    leads = {i: rng.integers(-200, 200, 1000).astype(np.int16) for i in (1, 2, 3, 4, 5, 6, 7, 8)}
    path = write_scp(tmp_path / "a.scp", leads, sex=2, acquired=(2024, 2, 3, 9, 34, 0), patient_tags=tags)
    rec = read_ecg(path)
    p = rec.patient
    assert [(i.value, i.issuer) for i in p.identifiers] == [("MRN-77|^&", None)]
    assert p.name == "Müller^Anna" and p.birth_date == date(1950, 6, 1) and p.sex is Sex.FEMALE
    assert rec.acquired_at == datetime(2024, 2, 3, 9, 34, tzinfo=timezone(timedelta(hours=1)))
    assert rec.acquired_at.isoformat() == "2024-02-03T09:34:00+01:00"


def test_scp_unknown_time_zone_leaves_the_wall_clock(tmp_path: Path) -> None:
    tags = struct.pack("<BHhHB", 34, 5, 0x7FFF, 0, 0)
    rng = np.random.default_rng(3)
    leads = {i: rng.integers(-200, 200, 500).astype(np.int16) for i in (1, 2)}
    rec = read_ecg(write_scp(tmp_path / "b.scp", leads, acquired=(2024, 2, 3, 9, 34, 0), patient_tags=tags))
    assert rec.acquired_at == datetime(2024, 2, 3, 9, 34) and rec.patient.identifiers == ()


def test_aecg_subject_id_with_its_root_as_issuer() -> None:
    rec = read_ecg(DATA / "hl7_aecg" / "subject1_0.xml")
    p = rec.patient
    assert [(i.value, i.issuer) for i in p.identifiers] == [("subject1", "2.16.840.1.113883.3.400")]
    assert p.name == "Clark" and p.birth_date == date(1953, 5, 8) and p.sex is Sex.MALE
    assert rec.acquired_at == datetime(2002, 11, 22, 9, 10)


def test_sierra_mrn_name_and_birth_date() -> None:
    rec = read_ecg(DATA / "philips" / "1_04__3191723_ZZDEMOPTONLY_1-04_orig.xml")
    p = rec.patient
    assert [i.value for i in p.identifiers] == ["9999"]
    assert p.name == "ZZDEMOPTONLY^ADULT" and p.birth_date == date(1950, 1, 1) and p.sex is Sex.MALE
    # a 1.03 file with an empty name: the ID is kept, no name is made up
    old = read_ecg(DATA / "philips" / "1_03__129DYPRG.XML").patient
    assert [i.value for i in old.identifiers] == ["1112010721168bdc"] and old.name is None


def test_dicom_waveform_keeps_the_patient_module() -> None:
    p = read_ecg(DATA / "dicom" / "waveform_ecg.dcm").patient
    assert [i.value for i in p.identifiers] == ["642341"] and p.birth_date == date(1971, 1, 23)


def test_helpers_refuse_what_would_name_someone_else() -> None:
    assert person_name(None, "", None) is None
    assert person_name("O^Brien", "Pat") == "O Brien^Pat"  # a PN delimiter in a part is not a component
    too_long = patient_of(identifier="x" * 65)
    assert too_long.identifiers == ()
    future_birth = patient_of(identifier="1", birth_date=date(2030, 1, 1), acquired=datetime(2024, 1, 1))
    assert future_birth.birth_date is None
    assert parse_hl7_ts_zoned("20240203093400-0500") == datetime(
        2024, 2, 3, 9, 34, tzinfo=timezone(-timedelta(hours=5))
    )
    assert parse_hl7_ts_zoned("20240203093400+2500") == datetime(2024, 2, 3, 9, 34)  # not an offset
