"""Conditioning: resampling, powerline auto-detection and notch, baseline removal, pacing spikes, quality."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import signal as sps

from core.codes import SCT
from core.errors import EcgError
from core.records import EcgRecord
from ecg.analysis import analyze
from ecg.signal.conditioning import condition, detect_pacing_spikes, detect_powerline, fill_nans, resample
from ecg.signal.filters import butter_sos, sosfiltfilt
from ecg.signal.quality import LeadProblem, assess_leads
from tests.ecg._synth import synth_ecg


def _band_power(x: np.ndarray, fs: float, lo: float, hi: float) -> float:
    f, p = sps.welch(x, fs=fs, nperseg=int(4 * fs), axis=-1)
    return float(p[..., (f >= lo) & (f <= hi)].sum())


def test_resample_keeps_a_sine() -> None:
    fs = 360.0
    t = np.arange(int(10 * fs)) / fs
    x = np.sin(2 * np.pi * 5 * t)[None, :]
    y = resample(x, fs, 500.0)
    assert y.shape == (1, 5000)
    assert np.max(np.abs(y[0, 100:-100])) == pytest.approx(1.0, abs=0.02)


@settings(max_examples=12, deadline=None)
@given(
    pl=st.sampled_from([50.0, 60.0, None]),
    fs=st.sampled_from([500.0, 1000.0]),
    seed=st.integers(0, 2**16),
    hr=st.floats(45, 130),
)
def test_powerline_auto_detection_and_notch(pl: float | None, fs: float, seed: int, hr: float) -> None:
    rng = np.random.default_rng(seed)
    x, _ = synth_ecg(rng, fs=fs, hr_bpm=hr, powerline_hz=pl, powerline_mv=0.1, n_leads=3)
    assert detect_powerline(x, fs) == pl
    c = condition(x, fs)
    assert c.powerline_hz == pl
    if pl is not None:
        before = _band_power(resample(x, fs, 500.0), 500.0, pl - 0.5, pl + 0.5)
        after = _band_power(c.signal, 500.0, pl - 0.5, pl + 0.5)
        assert after < 0.01 * before  # > 20 dB attenuation at the powerline frequency


def test_baseline_wander_is_removed() -> None:
    rng = np.random.default_rng(3)
    x, _ = synth_ecg(rng, wander_mv=1.0, n_leads=2, duration_s=20)
    c = condition(x, 500.0)
    assert _band_power(c.signal, 500.0, 0.1, 0.4) < 0.02 * _band_power(x, 500.0, 0.1, 0.4)


def test_nans_are_filled_and_counted() -> None:
    x = np.tile(np.sin(np.linspace(0, 20, 2000)), (2, 1))
    x[0, 100:300] = np.nan
    y, frac = fill_nans(x)
    assert np.isfinite(y).all()
    assert frac[0] == pytest.approx(0.1) and frac[1] == 0.0


@pytest.mark.parametrize(
    ("shape", "fs", "match"),
    [((1000,), 500.0, "leads x samples"), ((2, 100), 500.0, "at least 1 s"), ((2, 1000), 50.0, "too low")],
)
def test_bad_input_raises_clear_errors(shape: tuple[int, ...], fs: float, match: str) -> None:
    with pytest.raises(EcgError, match=match):
        condition(np.zeros(shape), fs, source="x.hea")


def test_pacing_spikes_are_detected_and_blanked() -> None:
    fs = 1000.0
    rng = np.random.default_rng(5)
    x, truth = synth_ecg(rng, fs=fs, n_leads=3, hr_bpm=70)
    spikes = truth.qrs_on - int(0.01 * fs)
    for s in spikes:
        x[:, s] += 5.0  # a 1 ms, 5 mV pacing artefact on every lead
    found = detect_pacing_spikes(x, fs)
    assert len(found) == len(spikes)
    assert np.max(np.abs(found - spikes)) <= 2
    c = condition(x, fs)
    assert c.pacing_spikes.size == len(spikes)
    assert np.max(np.abs(c.signal)) < 3.0  # spikes gone from the conditioned signal


def _recorded_at_360_hz(x: np.ndarray, fs: float) -> np.ndarray:
    """What a band-limited recorder keeps (MIT-BIH: 0.1-100 Hz analog band, 360 Hz)."""
    return resample(sosfiltfilt(butter_sos(4, 100.0, "lowpass", fs), x), fs, 360.0)


def test_pacing_spikes_of_a_band_limited_360_hz_record_are_found_and_make_a_paced_rhythm() -> None:
    """At 360 Hz a 2 ms spike is smeared into a 10-20 ms pulse no steeper than a QRS (MIT-BIH 102/104/107 were
    read as sinus rhythm with first-degree block, or AF): its energy above the ECG band still marks it."""
    fs = 1000.0
    x, truth = synth_ecg(np.random.default_rng(5), fs=fs, n_leads=2, hr_bpm=70, qrs_ms=140, duration_s=20.0)
    clean = _recorded_at_360_hz(x, fs)
    spikes = truth.qrs_on - int(0.01 * fs)
    for s in spikes:
        x[:, s : s + 2] += 5.0  # a 2 ms, 5 mV pacing pulse on every lead
    y = _recorded_at_360_hz(x, fs)
    found = detect_pacing_spikes(y, 360.0)
    assert len(found) == len(spikes)
    assert np.max(np.abs(found - np.round(spikes * 0.36))) <= 3
    assert detect_pacing_spikes(clean, 360.0).size == 0
    res = analyze(EcgRecord(y.astype(np.float32), ("V5", "V2"), 360.0, "paced-360"))
    codes = {f.concept for f in res.statements}
    assert SCT.PACED_RHYTHM in codes
    # no statement read from P waves or RR irregularity of paced beats
    assert not codes & {SCT.ATRIAL_FIBRILLATION, SCT.FIRST_DEGREE_AV_BLOCK, SCT.COMPLETE_AV_BLOCK, SCT.SINUS_RHYTHM}


def test_no_pacing_spikes_in_a_normal_record() -> None:
    x, _ = synth_ecg(np.random.default_rng(9), fs=1000.0, n_leads=3, qrs_ms=80, scale=3.0)
    assert detect_pacing_spikes(x, 1000.0).size == 0


def test_quality_flags_flat_clipped_and_noisy_leads() -> None:
    rng = np.random.default_rng(11)
    x, _ = synth_ecg(rng, n_leads=4)
    x[1] = 0.0  # lead off
    x[2] = np.clip(x[2], -0.05, 0.05)  # saturated ADC
    x[3] += 0.5 * rng.standard_normal(x.shape[1])  # EMG-like noise
    c = condition(x, 500.0)
    q = assess_leads(x, c.signal, c.fs, ("I", "II", "V1", "V2"), c.nan_fraction)
    assert [v.problem for v in q] == [None, LeadProblem.FLAT, LeadProblem.SATURATED, LeadProblem.NOISY]
    assert q[0].usable and not q[1].usable


def test_long_record_conditioned_in_chunks_matches_whole() -> None:
    fs = 360.0
    x, _ = synth_ecg(np.random.default_rng(12), fs=fs, n_leads=2, duration_s=200.0, wander_mv=0.3, powerline_hz=60)
    whole = condition(x, fs)
    chunked = condition(x, fs, chunk_s=60.0)  # four chunks on this 200 s record
    assert chunked.signal.shape == whole.signal.shape
    assert chunked.powerline_hz == whole.powerline_hz == 60.0
    inner = slice(5 * 500, -(5 * 500))
    assert np.max(np.abs(chunked.signal[:, inner] - whole.signal[:, inner])) < 0.01


@settings(max_examples=30, deadline=None)
@given(
    order=st.integers(1, 4),
    band=st.sampled_from(["lowpass", "highpass", "bandpass"]),
    shape=st.sampled_from([(700,), (3, 400), (12, 2500), (2, 2, 300)]),
    pad=st.sampled_from([None, 0, 30, 150]),
    seed=st.integers(0, 2**16),
)
def test_cached_sosfiltfilt_is_bit_identical_to_scipy(
    order: int, band: str, shape: tuple[int, ...], pad: int | None, seed: int
) -> None:
    """The cached-zi filter used by the signal modules changes no result, to the last bit."""
    from ecg.signal.filters import butter_sos, sosfiltfilt

    wn: float | tuple[float, float] = (5.0, 18.0) if band == "bandpass" else (40.0 if band == "highpass" else 20.0)
    sos = butter_sos(order, wn, band, 500.0)
    x = np.random.default_rng(seed).normal(size=shape) + 3.0  # an offset: the steady-state start matters
    assert np.array_equal(sosfiltfilt(sos, x, padlen=pad), sps.sosfiltfilt(sos, x, axis=-1, padlen=pad))
    with pytest.raises(ValueError, match="padlen"):
        sosfiltfilt(sos, x[..., :10], padlen=50)
