"""GE MUSE XML reader, on synthetic files from tests/ecg/synth_formats.py (real samples are GPL)."""

from __future__ import annotations

import base64
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from core.codes import LOINC
from core.errors import EcgError
from core.records import STANDARD_LEADS, Sex
from ecg.readers import EcgFormat, detect_format, read_ecg, read_ecg_file
from ecg.readers._common import measurement_of
from tests.ecg.synth_formats import MUSE_8_LEADS, write_muse_xml


def _leads(n: int = 5000, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {name: rng.integers(-400, 400, n).astype(np.int16) for name in MUSE_8_LEADS}


MEASUREMENTS = {
    "VentricularRate": 72,
    "AtrialRate": 72,
    "PRInterval": 158,
    "QRSDuration": 92,
    "QTInterval": 388,
    "QTCorrected": 425,
    "PAxis": 55,
    "RAxis": -12,
    "TAxis": 40,
    "QOnset": 220,
    "QOffset": 266,
    "POnset": 141,
    "POffset": 196,
    "TOffset": 414,
    "QTcFrederica": 412,
}


@settings(max_examples=25, deadline=None)
@given(
    counts=arrays(np.int16, st.tuples(st.just(8), st.integers(2, 600))),
    per_bit=st.sampled_from([1.0, 2.5, 4.88, 5.0]),
)
def test_random_int16_leads_survive_exactly(counts: np.ndarray, per_bit: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = write_muse_xml(Path(tmp) / "m.xml", dict(zip(MUSE_8_LEADS, counts, strict=True)), units_per_bit=per_bit)
        rec = read_ecg(path)
    assert rec.lead_names == STANDARD_LEADS
    for i, name in enumerate(MUSE_8_LEADS):
        # float32 mV of count * per_bit uV: exact up to float32 rounding
        np.testing.assert_allclose(rec.lead(name), counts[i] * per_bit / 1000.0, rtol=1e-6, atol=1e-7)
    i_mv, ii_mv = counts[0] * per_bit / 1000.0, counts[1] * per_bit / 1000.0
    # derived leads are float32 differences of float32 leads: exact up to the operands' float32 spacing
    tol = 4 * np.finfo(np.float32).eps * max(float(np.abs(i_mv).max()), float(np.abs(ii_mv).max()), 1.0)
    np.testing.assert_allclose(rec.lead("III"), ii_mv - i_mv, atol=tol)
    np.testing.assert_allclose(rec.lead("aVR"), -(i_mv + ii_mv) / 2, atol=tol)


def test_full_document(tmp_path: Path) -> None:
    path = write_muse_xml(
        tmp_path / "full.txt",
        _leads(),
        median={k: v[:600] for k, v in _leads(600, 1).items()},
        measurements=MEASUREMENTS,
        statements=[("Normal sinus rhythm", True), ("Septal infarct", False), (", age undetermined", True)],
        age=64,
        gender="FEMALE",
    )
    assert detect_format(path) is EcgFormat.GE_MUSE
    f = read_ecg_file(path)
    rec = f.record
    assert rec.sampling_rate_hz == 500.0 and rec.signal.shape == (12, 5000)
    assert rec.patient.sex is Sex.FEMALE and rec.patient.age_years == 64
    assert rec.acquired_at is not None and rec.acquired_at.isoformat() == "2023-04-29T22:41:16"
    assert measurement_of(rec, LOINC.HEART_RATE) == 72
    assert measurement_of(rec, LOINC.PR_INTERVAL) == 158
    assert measurement_of(rec, LOINC.QRS_DURATION) == 92
    assert measurement_of(rec, LOINC.QT_INTERVAL) == 388
    assert measurement_of(rec, LOINC.QTC_INTERVAL) == 425
    assert measurement_of(rec, LOINC.QTC_FRIDERICIA) == 412
    assert measurement_of(rec, LOINC.QRS_AXIS) == -12
    assert rec.device_statements == ("Normal sinus rhythm", "Septal infarct, age undetermined")
    assert f.representative_beat is not None and f.representative_beat.signal.shape == (12, 600)
    fid = {x.name: x.sample for x in f.fiducials}
    assert (fid["QRS Offset"] - fid["QRS Onset"]) * 2 == 92
    assert "SYNTH" not in repr(rec) and "SYNTHETIC" not in repr(rec.patient)


def test_bad_base64_fails_naming_the_lead(tmp_path: Path) -> None:
    path = write_muse_xml(tmp_path / "b.xml", _leads(100))
    good = base64.b64encode(_leads(100)["V4"].astype("<i2").tobytes()).decode()[:40]
    text = path.read_text(encoding="iso-8859-1")
    assert good in text
    path.write_text(text.replace(good, "!!!!" + good[4:], 1), encoding="iso-8859-1")
    with pytest.raises(EcgError, match="lead V4: WaveFormData is not valid base64"):
        read_ecg(path)


def test_crc_mismatch_is_detected(tmp_path: Path) -> None:
    path = write_muse_xml(tmp_path / "c.xml", _leads(100))
    text = path.read_text(encoding="iso-8859-1")
    start = text.index("<LeadDataCRC32>") + len("<LeadDataCRC32>")
    end = text.index("<", start)
    path.write_text(text[:start] + str((int(text[start:end]) + 1) % 2**32) + text[end:], encoding="iso-8859-1")
    with pytest.raises(EcgError, match="lead I: CRC-32"):
        read_ecg(path)


def test_without_crc_is_accepted(tmp_path: Path) -> None:
    rec = read_ecg(write_muse_xml(tmp_path / "n.xml", _leads(100), crc=False))
    assert rec.signal.shape == (12, 100)


def test_missing_rhythm_waveform_fails(tmp_path: Path) -> None:
    path = write_muse_xml(tmp_path / "r.xml", _leads(100))
    path.write_text(path.read_text(encoding="iso-8859-1").replace(">Rhythm<", ">Median<"), encoding="iso-8859-1")
    with pytest.raises(EcgError, match="no Rhythm waveform"):
        read_ecg(path)


def test_unequal_lead_lengths_fail(tmp_path: Path) -> None:
    leads = _leads(100)
    leads["V6"] = leads["V6"][:50]
    with pytest.raises(EcgError, match="different lengths"):
        read_ecg(write_muse_xml(tmp_path / "u.xml", leads))


def test_sentinel_measurements_are_dropped(tmp_path: Path) -> None:
    rec = read_ecg(
        write_muse_xml(
            tmp_path / "s.xml", _leads(100), measurements={"PRInterval": 0, "QRSDuration": "", "QTInterval": 400}
        )
    )
    assert measurement_of(rec, LOINC.PR_INTERVAL) is None
    assert measurement_of(rec, LOINC.QRS_DURATION) is None
    assert measurement_of(rec, LOINC.QT_INTERVAL) == 400
