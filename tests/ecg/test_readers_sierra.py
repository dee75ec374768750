"""Philips Sierra XML reader (1.03 and 1.04 XLI-compressed fixtures from sierra-ecg-tools, MIT)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from core.codes import LOINC
from core.errors import EcgError
from core.records import STANDARD_LEADS, Sex
from ecg.readers import EcgFormat, detect_format, read_ecg
from ecg.readers._common import measurement_of

DATA = Path(__file__).parents[1] / "data" / "ecg" / "philips"
V103 = DATA / "1_03__129DYPRG.XML"
V104 = DATA / "1_04__3191723_ZZDEMOPTONLY_1-04_orig.xml"


def _text(path: Path) -> str:
    raw = path.read_bytes()
    return raw.decode("utf-16") if raw[:2] in (b"\xff\xfe", b"\xfe\xff") else raw.decode("utf-8")


def _value(text: str, tag: str) -> float:
    m = re.search(rf"<{tag}[^>]*>\s*(-?\d+)\s*</{tag}>", text)
    assert m is not None, tag
    return float(m.group(1))


@pytest.mark.parametrize("path", [V103, V104], ids=["1.03", "1.04-XLI"])
def test_leads_in_millivolts_without_the_calibration_pulse(path: Path) -> None:
    rec = read_ecg(path)
    assert rec.lead_names == STANDARD_LEADS and rec.sampling_rate_hz == 500.0
    # 10 s of ECG; the trailing 1 mV calibration pulse of the 11 s channel is cut off
    assert 5000 <= rec.signal.shape[1] < 5350
    assert np.abs(rec.signal[:, -20:]).max() < 5.0
    # XLI stores III, aVR, aVL, aVF as residuals: after decoding the laws hold (2 counts = 10 uV of rounding)
    assert np.abs(rec.lead("III") - (rec.lead("II") - rec.lead("I"))).max() <= 0.0101
    assert np.abs(rec.lead("aVR") + (rec.lead("I") + rec.lead("II")) / 2).max() <= 0.0101
    assert 0.3 < np.ptp(rec.lead("II")) < 6


def test_103_device_data_read_by_hand() -> None:
    rec = read_ecg(V103)
    text = _text(V103)
    interp = text[text.index("<interpretationmeasurements") :]
    assert measurement_of(rec, LOINC.HEART_RATE) == _value(interp, "heartrate") == 41
    assert measurement_of(rec, LOINC.PR_INTERVAL) == _value(interp, "meanprint") == 151
    assert measurement_of(rec, LOINC.QRS_DURATION) == _value(interp, "meanqrsdur") == 135
    assert measurement_of(rec, LOINC.QT_INTERVAL) == _value(interp, "meanqtint") == 476
    assert measurement_of(rec, LOINC.QTC_INTERVAL) == 393
    assert measurement_of(rec, LOINC.QRS_AXIS) == -21
    assert rec.device_statements[0] == "Sinus bradycardia (rate< 50)"
    assert "ABNORMAL ECG" in rec.device_statements
    assert rec.patient.sex is Sex.MALE and rec.patient.age_years == 50
    assert rec.device_name == "Philips HeartstartMRx"


def test_104_device_data_read_by_hand() -> None:
    rec = read_ecg(V104)
    text = _text(V104)
    glob = text[text.index("<globalmeasurements") :]
    assert measurement_of(rec, LOINC.HEART_RATE) == _value(glob, "heartrate")
    assert measurement_of(rec, LOINC.PR_INTERVAL) == _value(glob, "print")
    assert measurement_of(rec, LOINC.QRS_DURATION) == _value(glob, "qrsdur")
    assert measurement_of(rec, LOINC.QT_INTERVAL) == _value(glob, "qtint")
    assert measurement_of(rec, LOINC.QTC_BAZETT) == _value(glob, "qtcb")
    assert measurement_of(rec, LOINC.QTC_FRIDERICIA) == _value(glob, "qtcf")
    assert any("LEFT VENTRICULAR HYPERTROPHY" in s for s in rec.device_statements)


@pytest.mark.parametrize(
    ("name", "doc"),
    [
        ("invalid-doc-type.xml", "'MortaraECG' version '1.03'"),
        ("invalid-doc-version.xml", "'SierraECG' version '1.05'"),
    ],
)
def test_invalid_documents_fail_naming_type_and_version(name: str, doc: str) -> None:
    path = DATA / name
    assert detect_format(path) is EcgFormat.PHILIPS_SIERRA
    with pytest.raises(EcgError) as err:
        read_ecg(path)
    assert name in str(err.value) and doc in str(err.value) and "not supported" in str(err.value)


def test_utf16_file_detected_under_another_extension(tmp_path: Path) -> None:
    p = tmp_path / "scan.dat"
    p.write_bytes(V104.read_bytes())
    assert detect_format(p) is EcgFormat.PHILIPS_SIERRA
    assert read_ecg(p).signal.shape[0] == 12


@pytest.mark.parametrize(
    ("name", "corrupt"),
    [
        ("bad-chars", lambda b64: b64[:500] + "@@#" + b64[500:]),
        ("truncated", lambda b64: b64[: len(b64) // 3]),
        ("garbage", lambda b64: "QUJD" * 50),
        ("empty", lambda b64: ""),
    ],
)
def test_corrupt_waveform_fails_cleanly(tmp_path: Path, name: str, corrupt) -> None:  # type: ignore[no-untyped-def]
    text = _text(V103)
    m = re.search(r"(<parsedwaveforms[^>]*>)(.*?)(</parsedwaveforms>)", text, re.DOTALL)
    assert m is not None
    p = tmp_path / f"{name}.xml"
    p.write_text(text[: m.start(2)] + corrupt(m.group(2)) + text[m.end(2) :], encoding="utf-8")
    with pytest.raises(EcgError, match=f"{name}.xml: .*(base64|not decodable)"):
        read_ecg(p)
