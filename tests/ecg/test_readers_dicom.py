"""DICOM ECG waveform reader on the pydicom sample (Mortara ELI 250, 12 leads, 1000 Hz)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from core.codes import LOINC, UCUM
from core.errors import EcgError
from core.records import STANDARD_LEADS, Sex
from ecg.readers import EcgFormat, detect_format, read_ecg, read_ecg_file
from ecg.readers._common import measurement_of

SAMPLE = Path(__file__).parents[1] / "data" / "ecg" / "dicom" / "waveform_ecg.dcm"


def test_rhythm_record_values() -> None:
    rec = read_ecg(SAMPLE)
    assert rec.lead_names == STANDARD_LEADS
    assert rec.sampling_rate_hz == 1000.0 and rec.signal.shape == (12, 10000)
    # independent read: pydicom's own scaling of group 0 gives microvolts (sensitivity unit uV)
    ds = pydicom.dcmread(SAMPLE)
    ref_uv = ds.waveform_array(0).T
    np.testing.assert_allclose(rec.signal, ref_uv / 1000.0, atol=1e-6)
    assert 0.5 < np.ptp(rec.lead("II")) < 5
    assert np.abs(rec.lead("III") - (rec.lead("II") - rec.lead("I"))).max() < 0.01
    assert rec.patient.sex is Sex.FEMALE and rec.patient.age_years == 42
    assert rec.study_instance_uid == ds.StudyInstanceUID
    assert rec.acquired_at is not None and rec.acquired_at.isoformat() == "2013-01-25T10:59:19"


def test_device_measurements_and_statements() -> None:
    rec = read_ecg(SAMPLE)
    assert measurement_of(rec, LOINC.PR_INTERVAL) == 161
    assert measurement_of(rec, LOINC.QRS_DURATION) == 75
    assert measurement_of(rec, LOINC.QT_INTERVAL) == 368
    assert measurement_of(rec, LOINC.QTC_INTERVAL) == 370
    assert measurement_of(rec, LOINC.RR_INTERVAL) == 982
    assert (
        measurement_of(rec, LOINC.P_AXIS),
        measurement_of(rec, LOINC.QRS_AXIS),
        measurement_of(rec, LOINC.T_AXIS),
    ) == (
        74,
        52,
        57,
    )
    units = {m.code: m.unit for m in rec.device_measurements}
    assert units[LOINC.PR_INTERVAL] == UCUM.MS and units[LOINC.QRS_AXIS] == UCUM.DEG
    assert all(m.method == "device" for m in rec.device_measurements)
    assert rec.device_statements == ("RITMO SINUSALE", "ECG NORMALE")
    assert rec.device_name is not None and "Mortara" in rec.device_name


def test_median_beat_and_fiducials_agree_with_device_intervals() -> None:
    f = read_ecg_file(SAMPLE)
    assert f.representative_beat is not None and f.representative_beat.signal.shape == (12, 1200)
    median = {x.name: x.sample for x in f.fiducials if x.waveform == "median"}
    # the device's fiducials on its median beat reproduce its global intervals (1000 Hz: 1 sample = 1 ms)
    assert median["QRS Onset"] - median["P Onset"] == 161
    assert median["QRS Offset"] - median["QRS Onset"] == 75
    assert median["T Offset"] - median["QRS Onset"] == 368
    beats = {x.beat for x in f.fiducials if x.waveform == "rhythm"}
    assert len(beats) >= 5


def _modified(tmp_path: Path, name: str, change) -> Path:  # type: ignore[no-untyped-def]
    ds = pydicom.dcmread(SAMPLE)
    change(ds)
    out = tmp_path / name
    ds.save_as(out)
    return out


def test_millivolt_units_and_mdc_lead_codes(tmp_path: Path) -> None:
    def to_mv(ds: Dataset) -> None:
        for ch in ds.WaveformSequence[0].ChannelDefinitionSequence:
            ch.ChannelSensitivity = float(ch.ChannelSensitivity) / 1000.0
            ch.ChannelSensitivityUnitsSequence[0].CodeValue = "mV"
            src = ch.ChannelSourceSequence[0]
            src.CodeValue = src.CodeValue.replace("5.6.3-9-", "2:")
            src.CodingSchemeDesignator = "MDC"
            src.CodeMeaning = "x"

    rec = read_ecg(_modified(tmp_path, "mv.dcm", to_mv))
    ref = read_ecg(SAMPLE)
    assert rec.lead_names == STANDARD_LEADS
    np.testing.assert_allclose(rec.signal, ref.signal, atol=1e-6)


def test_detected_by_content_under_another_extension(tmp_path: Path) -> None:
    p = tmp_path / "ecg.xml"
    p.write_bytes(SAMPLE.read_bytes())
    assert detect_format(p) is EcgFormat.DICOM_WAVEFORM


def test_truncated_waveform_data_fails_naming_the_group(tmp_path: Path) -> None:
    def cut(ds: Dataset) -> None:
        ds.WaveformSequence[0].WaveformData = ds.WaveformSequence[0].WaveformData[:1000]

    with pytest.raises(EcgError, match=r"multiplex group 1: Waveform Data \(5400,1010\) holds 1000 bytes"):
        read_ecg(_modified(tmp_path, "cut.dcm", cut))


def test_missing_sensitivity_fails(tmp_path: Path) -> None:
    def drop(ds: Dataset) -> None:
        del ds.WaveformSequence[0].ChannelDefinitionSequence[3].ChannelSensitivity

    with pytest.raises(EcgError, match="channel 4: no Channel Sensitivity"):
        read_ecg(_modified(tmp_path, "nosens.dcm", drop))


def test_non_ecg_dicom_is_not_an_ecg(tmp_path: Path) -> None:
    def to_ct(ds: Dataset) -> None:
        ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.SOPInstanceUID = generate_uid()

    p = _modified(tmp_path, "ct.dcm", to_ct)
    assert detect_format(p) is None
    with pytest.raises(EcgError, match="SOP class is not an ECG waveform class"):
        read_ecg(p)


def test_truncated_file_fails_cleanly(tmp_path: Path) -> None:
    p = tmp_path / "trunc.dcm"
    p.write_bytes(SAMPLE.read_bytes()[:5000])
    assert detect_format(p) is EcgFormat.DICOM_WAVEFORM  # by its file meta information
    with pytest.raises(EcgError, match=f"{p.name}: (not a readable DICOM file|.*Waveform Data)"):
        read_ecg(p)


def test_age_from_birth_date_when_age_is_absent(tmp_path: Path) -> None:
    def drop_age(ds: Dataset) -> None:
        del ds.PatientAge  # birth 1971-01-23, acquired 2013-01-25

    rec = read_ecg(_modified(tmp_path, "noage.dcm", drop_age))
    assert rec.patient.age_years == pytest.approx(42.0, abs=0.1)
    assert "642341" not in repr(rec) and "Anonymous" not in repr(rec)


def test_malformed_study_uid_does_not_block_reading(tmp_path: Path) -> None:
    def bad_uid(ds: Dataset) -> None:
        ds.StudyInstanceUID = "1.2.03.abc"

    rec = read_ecg(_modified(tmp_path, "baduid.dcm", bad_uid))
    assert rec.study_instance_uid is None and rec.signal.shape == (12, 10000)


def test_group_without_samples_fails_cleanly(tmp_path: Path) -> None:
    def empty(ds: Dataset) -> None:
        ds.WaveformSequence[0].NumberOfWaveformSamples = 0
        ds.WaveformSequence[0].WaveformData = b""

    with pytest.raises(EcgError, match=r"multiplex group 1: 12 channels x 0 samples; expected at least 1 x 2"):
        read_ecg(_modified(tmp_path, "empty.dcm", empty))
