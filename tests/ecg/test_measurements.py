"""Global measurements: QTc formulas, frontal axes, per-lead amplitudes, the DICOM sample against its device."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.codes import LOINC, MMDX
from core.records import EcgRecord
from ecg.analysis import analyze
from ecg.readers import read_ecg
from ecg.signal.measurements import qtc
from tests.ecg._load import DICOM_ECG
from tests.ecg._synth import _lobe

#: Frontal-plane angle of each limb lead (hexaxial reference system).
LIMB_ANGLES = {"I": 0.0, "II": 60.0, "III": 120.0, "aVR": -150.0, "aVL": -30.0, "aVF": 90.0}
PRECORDIAL = ("V1", "V2", "V3", "V4", "V5", "V6")


def test_qtc_formulas() -> None:
    assert qtc(400.0, 1000.0) == pytest.approx((400.0, 400.0, 400.0, 400.0))
    b, f, fr, h = qtc(360.0, 640.0)
    assert b == pytest.approx(450.0)
    assert f == pytest.approx(360.0 / 0.64 ** (1 / 3))
    assert fr == pytest.approx(360.0 + 154.0 * 0.36)
    assert h == pytest.approx(360.0 + 1.75 * (93.75 - 60.0))


def _vector_ecg(qrs_axis: float, t_axis: float, p_axis: float, *, fs: float = 500.0, hr: float = 70.0) -> EcgRecord:
    """A 12-lead ECG whose limb leads are projections of P, QRS and T vectors with known frontal axes."""
    n = int(10 * fs)
    rr = 60.0 / hr
    p = np.zeros(n)
    q = np.zeros(n)
    t = np.zeros(n)
    t0 = 0.4
    while t0 + 0.5 < 10:
        p += _lobe(n, t0 - 0.16, 0.1, 0.15, fs)
        q += _lobe(n, t0, 0.09, 1.5, fs)
        t += _lobe(n, t0 + 0.15, 0.23, 0.4, fs, skew=0.62)
        t0 += rr
    leads = []
    for ang in LIMB_ANGLES.values():
        leads.append(
            np.cos(np.radians(p_axis - ang)) * p
            + np.cos(np.radians(qrs_axis - ang)) * q
            + np.cos(np.radians(t_axis - ang)) * t
        )
    for k in range(6):
        leads.append(0.5 * p + (0.4 + 0.2 * k) * q * (1 if k > 1 else -1) + 0.5 * t)
    sig = np.asarray(leads) + 0.005 * np.random.default_rng(0).standard_normal((12, n))
    return EcgRecord(sig.astype(np.float32), (*LIMB_ANGLES, *PRECORDIAL), fs, "synthetic-axis")


@settings(max_examples=10, deadline=None)
@given(qrs_axis=st.floats(-85, 175), t_axis=st.floats(-20, 100), p_axis=st.floats(0, 80))
def test_frontal_axes_from_net_areas(qrs_axis: float, t_axis: float, p_axis: float) -> None:
    a = analyze(_vector_ecg(qrs_axis, t_axis, p_axis))
    got = {c: a.measurement(c) for c in (LOINC.QRS_AXIS, LOINC.T_AXIS, LOINC.P_AXIS)}
    # the small P wave sits on the baseline left by the 0.67 Hz high-pass: a looser bound for the P axis
    for code, want, tol in ((LOINC.QRS_AXIS, qrs_axis, 8), (LOINC.T_AXIS, t_axis, 8), (LOINC.P_AXIS, p_axis, 15)):
        m = got[code]
        assert m is not None
        diff = (m.value - want + 180) % 360 - 180
        assert abs(diff) <= tol, (code.meaning, m.value, want)


def test_per_lead_amplitudes() -> None:
    a = analyze(_vector_ecg(60.0, 60.0, 60.0))
    r_ii = a.measurement(MMDX.ECG_R_AMPLITUDE, "II")
    r_avr = a.measurement(MMDX.ECG_R_AMPLITUDE, "aVR")
    s_avr = a.measurement(MMDX.ECG_Q_AMPLITUDE, "aVR")  # an all-negative complex is a QS: reported as Q
    t_ii = a.measurement(MMDX.ECG_T_AMPLITUDE, "II")
    assert r_ii is not None and r_ii.value == pytest.approx(1.5, rel=0.1)
    assert r_avr is not None and r_avr.value == 0.0
    assert s_avr is not None and s_avr.value == pytest.approx(-1.5 * np.cos(np.radians(210)) * -1, rel=0.1)
    assert t_ii is not None and t_ii.value == pytest.approx(0.4, rel=0.15)
    st_j = a.measurement(MMDX.ECG_ST_J, "II")
    assert st_j is not None and abs(st_j.value) < 0.05


def test_dicom_sample_against_device_within_iec_tolerances() -> None:
    """Mortara device: PR 161, QRS 75, QT 368 ms. IEC 60601-2-25: PR and QRS +-10 ms, QT +-25 ms."""
    rec = read_ecg(DICOM_ECG)
    a = analyze(rec)
    diffs = {d.code.value: d.difference for d in a.device_comparison}
    assert abs(diffs[LOINC.PR_INTERVAL.value]) <= 10
    assert abs(diffs[LOINC.QRS_DURATION.value]) <= 10
    assert abs(diffs[LOINC.QT_INTERVAL.value]) <= 25
    assert abs(diffs[LOINC.RR_INTERVAL.value]) <= 10
    assert abs(diffs[LOINC.QRS_AXIS.value]) <= 15
