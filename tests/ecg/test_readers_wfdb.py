"""WFDB reader: real PhysioNet records, unit conversion, record naming, bad records."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import wfdb

from core.errors import EcgError
from core.records import STANDARD_LEADS, Sex
from ecg.readers import EcgFormat, detect_format, read_ecg

DATA = Path(__file__).parents[1] / "data" / "ecg" / "wfdb"
LUDB = DATA / "ludb_1" / "1"
MITDB = DATA / "mitdb_100" / "100"


def test_ludb_record_12_leads_in_millivolts() -> None:
    rec = read_ecg(LUDB)
    assert rec.lead_names == STANDARD_LEADS
    assert rec.sampling_rate_hz == 500.0
    assert rec.signal.shape == (12, 5000) and rec.signal.dtype == np.float32
    # an independent read with wfdb, lead by lead
    ref = wfdb.rdrecord(str(LUDB)).p_signal.T
    np.testing.assert_allclose(rec.signal, ref, atol=1e-5)
    # ECG in mV: QRS amplitudes of a few tenths to a few mV
    assert 0.3 < np.ptp(rec.lead("II")) < 6
    # This LUDB copy (from the EGM package) was rescaled lead by lead to a 1 mV range, so
    # Einthoven's law does not hold in it; III is only correlated with II - I.
    assert np.ptp(rec.lead("III")) == pytest.approx(1.0, abs=1e-3)
    assert np.corrcoef(rec.lead("III"), rec.lead("II") - rec.lead("I"))[0, 1] > 0.8
    assert rec.patient.sex is Sex.FEMALE and rec.patient.age_years == 51
    assert rec.source.endswith("1")


@pytest.mark.parametrize("suffix", ["", ".hea", ".dat"])
def test_record_named_by_base_header_or_signal_file(suffix: str) -> None:
    path = Path(f"{LUDB}{suffix}")
    assert detect_format(path) is EcgFormat.WFDB
    assert read_ecg(path).signal.shape == (12, 5000)


def test_mitdb_keeps_mlii_and_file_order() -> None:
    rec = read_ecg(MITDB)
    assert rec.lead_names == ("MLII", "V5")
    assert rec.sampling_rate_hz == 360.0 and rec.signal.shape == (2, 650000)
    assert -5 < rec.signal.min() < rec.signal.max() < 5


def _write(tmp: Path, name: str, sig: np.ndarray, units: list[str], names: list[str]) -> Path:
    wfdb.wrsamp(name, fs=250, units=units, sig_name=names, p_signal=sig, fmt=["16"] * len(names), write_dir=str(tmp))
    return tmp / name


def test_microvolt_header_is_converted_to_millivolts(tmp_path: Path) -> None:
    t = np.arange(1000) / 250
    mv = np.stack([np.sin(2 * np.pi * t), 0.5 * np.cos(2 * np.pi * t)], axis=1)
    path = _write(tmp_path, "uv", mv * 1000.0, ["uV", "uV"], ["I", "II"])
    rec = read_ecg(path)
    np.testing.assert_allclose(rec.lead("I"), mv[:, 0], atol=2e-3)
    np.testing.assert_allclose(rec.lead("aVF"), mv[:, 1] - mv[:, 0] / 2, atol=3e-3)  # derived, in mV
    assert rec.lead_names == ("I", "II", "III", "aVR", "aVL", "aVF")  # not 12-lead: file order, derived after


def test_non_voltage_channels_are_left_out(tmp_path: Path) -> None:
    sig = np.stack([np.linspace(-1, 1, 500), np.linspace(60, 120, 500)], axis=1)
    rec = read_ecg(_write(tmp_path, "mixed", sig, ["mV", "mmHg"], ["II", "ABP"]))
    assert rec.lead_names == ("II",)


def test_unitless_respiration_channel_is_not_a_lead(tmp_path: Path) -> None:
    # WFDB assumes mV when a header gives no unit: names such as RESP still mark non-ECG signals
    sig = np.stack([np.linspace(-1, 1, 500), np.linspace(0, 3, 500)], axis=1)
    path = _write(tmp_path, "resp", sig, ["mV", "mV"], ["MCL1", "RESP"])
    assert read_ecg(path).lead_names == ("MCL1",)


def test_format_with_byte_offset_is_recognised(tmp_path: Path) -> None:
    # signal format fields such as "16+24" (byte offset into a .mat file) are valid headers
    (tmp_path / "m.hea").write_text("m 1 250 10\nm.mat 16+24 200/mV 16 0 0 0 0 II\n")
    assert detect_format(tmp_path / "m") is EcgFormat.WFDB


def test_only_non_voltage_channels_fail(tmp_path: Path) -> None:
    sig = np.linspace(60, 120, 500)[:, None]
    with pytest.raises(EcgError, match="no voltage"):
        read_ecg(_write(tmp_path, "abp", sig, ["mmHg"], ["ABP"]))


def test_missing_signal_file_fails_cleanly(tmp_path: Path) -> None:
    shutil.copy(f"{LUDB}.hea", tmp_path / "1.hea")
    with pytest.raises(EcgError, match=r"1\.dat"):
        read_ecg(tmp_path / "1")


def test_header_without_samples_fails_cleanly(tmp_path: Path) -> None:
    (tmp_path / "z.hea").write_text("z 1 500 0\nz.dat 16 200/mV 16 0 0 0 0 II\n")
    (tmp_path / "z.dat").write_bytes(b"")
    with pytest.raises(EcgError, match="z"):
        read_ecg(tmp_path / "z")


def test_garbage_header_is_not_wfdb(tmp_path: Path) -> None:
    (tmp_path / "x.hea").write_text("this is not a header\n")
    assert detect_format(tmp_path / "x") is None
    with pytest.raises(EcgError, match=r"not a recognised ECG file: x\.hea is not a WFDB header"):
        read_ecg(tmp_path / "x")
