"""The signal-quality-index readability gate: clean recordings stay readable, noise-dominated ones raise no alarm."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal as sps

from core.codes import MMDX, SCT
from core.records import EcgRecord
from ecg.analysis import EcgAnalysis, analyze
from ecg.signal.sqi import LeadSqi, bsqi, lead_sqi, pan_tompkins, record_readability
from tests.ecg._synth import fibrillation, synth_ecg

FS = 300.0
ALARMS = {
    SCT.ATRIAL_FIBRILLATION,
    SCT.ATRIAL_FLUTTER,
    SCT.VENTRICULAR_TACHYCARDIA,
    MMDX.ECG_WIDE_QRS_TACHYCARDIA,
    SCT.COMPLETE_AV_BLOCK,
    SCT.SECOND_DEGREE_AV_BLOCK,
}


def _single(x: np.ndarray) -> EcgAnalysis:
    return analyze(EcgRecord(np.asarray(x, dtype=np.float32)[None], ("II",), FS, "synthetic"))


def _codes(a: EcgAnalysis) -> set[object]:
    return {s.concept for s in a.statements}


def _motion(rng: np.random.Generator, n: int) -> np.ndarray:
    """Motion artefact of unit power in the QRS band (1-25 Hz, where filtering cannot remove it), with spikes."""
    sos = sps.butter(2, (1.0, 25.0), "bandpass", fs=FS, output="sos")
    v = sps.sosfiltfilt(sos, rng.normal(size=n))
    spikes = np.zeros(n)
    at = rng.choice(n, size=12, replace=False)
    spikes[at] = rng.normal(0.0, 8.0 * v.std(), at.size)
    v = v + np.convolve(spikes, np.hanning(9), mode="same")
    out: np.ndarray = np.asarray(v / v.std(), dtype=np.float64)
    return out


def _with_noise(x: np.ndarray, rng: np.random.Generator, snr_db: float) -> np.ndarray:
    p = float(np.mean((x - x.mean()) ** 2))
    out: np.ndarray = x + _motion(rng, x.size) * np.sqrt(p / 10 ** (snr_db / 10.0))
    return out


def test_bsqi_counts_each_beat_once() -> None:
    a = np.array([100, 400, 700, 1000])
    assert bsqi(a, a, FS) == 1.0
    assert bsqi(a, a + 30, FS) == 1.0  # 100 ms apart: the same beats (150 ms window)
    assert bsqi(a, a + 60, FS) == 0.0  # 200 ms apart: none
    # two detections near one beat of the other detector match once: 4 matched of 4 + 8 - 4
    both = np.sort(np.concatenate([a, a + 10]))
    assert bsqi(both, a, FS) == pytest.approx(4 / 8)
    assert bsqi(a, np.zeros(0, dtype=np.int64), FS) == 0.0


def test_second_detector_finds_every_synthetic_beat() -> None:
    x, truth = synth_ecg(np.random.default_rng(1), fs=FS, n_leads=1, duration_s=30.0, hr_bpm=75.0)
    found = pan_tompkins(x[0], FS)
    assert bsqi(truth.r_peaks, found, FS) > 0.95


@pytest.mark.parametrize("seed", [1, 2])
def test_clean_single_lead_recordings_stay_readable(seed: int) -> None:
    rng = np.random.default_rng(seed)
    sinus, truth = synth_ecg(rng, fs=FS, n_leads=1, duration_s=30.0, hr_bpm=72.0)
    q = lead_sqi(sinus[0], FS, truth.r_peaks, "II")
    assert q.unreadable is None and q.bsqi > 0.95 and q.ksqi > 5.0
    a = _single(sinus[0])
    assert MMDX.ECG_NOISE not in _codes(a)
    wide, _ = synth_ecg(rng, fs=FS, n_leads=1, duration_s=30.0, hr_bpm=72.0, qrs_ms=150.0)  # bundle branch block
    assert MMDX.ECG_NOISE not in _codes(_single(wide[0]))
    af, _, _ = fibrillation(rng, 95.0, duration_s=30.0, fs=FS)
    a = _single(af[1])
    assert MMDX.ECG_NOISE not in _codes(a) and SCT.ATRIAL_FIBRILLATION in _codes(a)


@pytest.mark.parametrize("seed", [3, 4, 5])
def test_motion_noise_dominated_recording_is_unreadable_and_raises_no_alarm(seed: int) -> None:
    """In-band noise at -6 dB (four times the ECG's power): the detectors disagree; no AF, VT or block is called."""
    rng = np.random.default_rng(seed)
    af, _, _ = fibrillation(rng, 95.0, duration_s=30.0, fs=FS)
    a = _single(_with_noise(af[1], rng, -6.0))
    codes = _codes(a)
    assert not codes & ALARMS
    assert not any(s.critical for s in a.statements)
    note = [s for s in a.statements if s.concept == MMDX.ECG_NOISE or "insufficient" in s.text.lower()]
    assert note, [s.text for s in a.statements]


def test_lead_off_segments_make_the_recording_unreadable() -> None:
    rng = np.random.default_rng(7)
    af, _, _ = fibrillation(rng, 95.0, duration_s=30.0, fs=FS)
    x = af[1].copy()
    x[int(5 * FS) : int(14 * FS)] = x[int(5 * FS)]  # 9 s held flat: the electrode came off
    a = _single(x)
    assert not _codes(a) & ALARMS
    note = next(s for s in a.statements if s.concept == MMDX.ECG_NOISE)
    assert any("lead-off" in c or "without a beat" in c for c in note.criteria), note.criteria


def test_a_record_is_readable_while_one_lead_is() -> None:
    good = LeadSqi("II", 0.98, 12.0, 0.6, 0.99, 0.0, None)
    bad = LeadSqi("V1", 0.4, 3.0, 0.3, 0.8, 0.0, "bSQI 0.40 < 0.6")
    assert record_readability((good, bad)) is None
    why = record_readability((bad,))
    assert why is not None and "lead V1" in why and "bSQI" in why


def test_a_twelve_lead_record_with_one_noisy_lead_stays_readable() -> None:
    """In-band noise in V1 alone: the record is read from its other leads, no poor-quality statement."""
    from tests.ecg._synth import LEADS_12

    rng = np.random.default_rng(9)
    x, _ = synth_ecg(rng, fs=500.0, n_leads=12, duration_s=10.0)
    v1 = x[6]
    sos = sps.butter(2, (1.0, 25.0), "bandpass", fs=500.0, output="sos")
    noise = sps.sosfiltfilt(sos, rng.normal(size=v1.size))
    x[6] = v1 + noise / noise.std() * 2.0 * v1.std()
    a = analyze(EcgRecord(x.astype(np.float32), LEADS_12, 500.0, "synthetic"))
    assert MMDX.ECG_NOISE not in _codes(a) and not _codes(a) & ALARMS
    assert not any("unreadable" in c for s in a.statements for c in s.criteria)
