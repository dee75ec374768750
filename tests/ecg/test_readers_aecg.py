"""HL7 aECG reader on the FDA CC0 examples."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from core.codes import LOINC, MDC
from core.errors import EcgError
from core.records import STANDARD_LEADS, Sex
from ecg.readers import EcgFormat, detect_format, read_ecg, read_ecg_file
from ecg.readers._common import measurement_of

DATA = Path(__file__).parents[1] / "data" / "ecg" / "hl7_aecg"
SUBJECT = DATA / "subject1_0.xml"


def _digits(text: str, lead: str) -> tuple[float, float, list[float]]:
    """Origin, scale and digits of a lead in the rhythm series, read with a regex (independent of the reader)."""
    m = re.search(
        rf'code="MDC_ECG_LEAD_{lead}".*?<origin value="([-\d.]+)".*?<scale value="([-\d.]+)".*?<digits>(.*?)</digits>',
        text,
        re.DOTALL,
    )
    assert m is not None
    return float(m.group(1)), float(m.group(2)), [float(x) for x in m.group(3).split()]


def test_rhythm_series_values() -> None:
    rec = read_ecg(SUBJECT)
    assert rec.lead_names == STANDARD_LEADS
    assert rec.sampling_rate_hz == pytest.approx(500.0)
    assert rec.signal.shape == (12, 5000)
    origin, scale, digits = _digits(SUBJECT.read_text(), "V2")
    np.testing.assert_allclose(rec.lead("V2"), (origin + scale * np.array(digits)) / 1000.0, atol=1e-6)
    assert np.abs(rec.lead("III") - (rec.lead("II") - rec.lead("I"))).max() < 0.01
    assert 0.5 < np.ptp(rec.lead("II")) < 5
    assert rec.patient.sex is Sex.MALE and rec.patient.age_years == 46
    assert rec.acquired_at is not None and rec.acquired_at.isoformat() == "2002-11-22T09:10:00"


def test_device_global_measurements_and_statement() -> None:
    rec = read_ecg(SUBJECT)
    expected = {
        MDC.P_DURATION: 102,
        LOINC.PR_INTERVAL: 148,
        LOINC.QRS_DURATION: 120,
        LOINC.QT_INTERVAL: 420,
        LOINC.QTC_INTERVAL: 443,
        LOINC.P_AXIS: 44,
        LOINC.QRS_AXIS: -61,
        LOINC.T_AXIS: 86,
    }
    assert {code: measurement_of(rec, code) for code in expected} == expected
    assert rec.device_statements == ("Sinus Rhythm",)


def test_representative_beat_and_per_beat_marks() -> None:
    f = read_ecg_file(SUBJECT)
    assert f.representative_beat is not None and f.representative_beat.signal.shape == (12, 599)
    median = {x.name: x.sample for x in f.fiducials if x.waveform == "median"}
    # 500 Hz: QRS 434..554 ms -> 120 ms, as the device's QRS duration
    assert (median["QRS Offset"] - median["QRS Onset"]) * 2 == 120
    first = [x for x in f.fiducials if x.waveform == "rhythm" and x.beat == 1]
    qrs_on = next(x.sample for x in first if x.name == "QRS Onset")
    assert qrs_on == round(0.270 * 500)  # 20021122091000.270 from the series start


def test_minimum_file_one_lead() -> None:
    rec = read_ecg(DATA / "minimum_aecg.xml")
    assert rec.lead_names == ("II",) and rec.signal.shape == (1, 13)
    np.testing.assert_allclose(rec.signal[0, :3], [-0.005, -0.005, -0.005], atol=1e-7)


def test_empty_file_fails_cleanly() -> None:
    path = DATA / "empty.xml"
    assert detect_format(path) is EcgFormat.HL7_AECG
    with pytest.raises(EcgError, match="empty.xml: no component/series"):
        read_ecg(path)


def test_wrong_namespace_is_rejected_naming_it(tmp_path: Path) -> None:
    p = tmp_path / "ns.xml"
    p.write_text(SUBJECT.read_text().replace('xmlns="urn:hl7-org:v3"', 'xmlns="urn:example:other"', 1))
    assert detect_format(p) is None
    with pytest.raises(EcgError, match="urn:example:other"):
        read_ecg(p)


def test_non_numeric_digits_fail_naming_the_lead(tmp_path: Path) -> None:
    text = SUBJECT.read_text()
    m = re.search(r'(code="MDC_ECG_LEAD_V3".*?<digits>)', text, re.DOTALL)
    assert m is not None
    p = tmp_path / "bad.xml"
    p.write_text(text[: m.end()] + "12 x7 " + text[m.end() :])
    with pytest.raises(EcgError, match="MDC_ECG_LEAD_V3"):
        read_ecg(p)


def test_truncated_xml_fails_cleanly(tmp_path: Path) -> None:
    p = tmp_path / "trunc.bin"
    p.write_bytes(SUBJECT.read_bytes()[:20000])
    assert detect_format(p) is EcgFormat.HL7_AECG  # by its root element
    with pytest.raises(EcgError, match="not well-formed XML"):
        read_ecg(p)
