"""QRS detection: ANSI/AAMI EC57 on MIT-BIH 100, and invariance/robustness on synthetic ECGs."""

from __future__ import annotations

import numpy as np
import wfdb
from hypothesis import given, settings
from hypothesis import strategies as st
from wfdb import processing

from ecg.signal.conditioning import condition
from ecg.signal.qrs import detect_qrs
from tests.ecg._load import MITDB_100
from tests.ecg._synth import synth_ecg

#: MIT-BIH beat annotation symbols (EC57 counts only these; rhythm '+', noise '~' etc. are not beats).
BEAT_SYMBOLS = set("NLRBAaJSVrFejnE/fQ?")


def _detect(x: np.ndarray, fs: float) -> np.ndarray:
    c = condition(x, fs)
    return np.round(detect_qrs(c.signal, c.fs) * fs / c.fs).astype(int)


def _match(ref: np.ndarray, test: np.ndarray, fs: float) -> processing.Comparitor:
    return processing.compare_annotations(ref, test, int(0.15 * fs))


def test_mitdb_100_ec57_sensitivity_and_positive_predictivity() -> None:
    rec = wfdb.rdrecord(str(MITDB_100))
    ann = wfdb.rdann(str(MITDB_100), "atr")
    fs = float(rec.fs)
    beats = _detect(rec.p_signal.T, fs)
    start = int(300 * fs)  # EC57: the first 5 minutes are a learning period
    ref = np.array([s for s, y in zip(ann.sample, ann.symbol, strict=True) if y in BEAT_SYMBOLS and s >= start])
    test = beats[beats >= start]
    cmp = _match(ref, test, fs)
    assert cmp.sensitivity >= 0.995, (cmp.sensitivity, cmp.fn)
    assert cmp.positive_predictivity >= 0.995, (cmp.positive_predictivity, cmp.fp)


@settings(max_examples=20, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    hr=st.floats(40, 150),
    scale=st.floats(0.05, 10.0),
    n_leads=st.integers(1, 12),
    pl=st.sampled_from([None, 50.0, 60.0]),
    fs=st.sampled_from([250.0, 360.0, 500.0, 1000.0]),
)
def test_synthetic_beats_found_for_any_rate_amplitude_and_lead_set(
    seed: int, hr: float, scale: float, n_leads: int, pl: float | None, fs: float
) -> None:
    rng = np.random.default_rng(seed)
    qt = min(0.42 * np.sqrt(60 / hr) * 1000, 0.6 * 60000 / hr)
    pr = min(160.0, 0.3 * 60000 / hr)
    x, truth = synth_ecg(
        rng,
        fs=fs,
        hr_bpm=hr,
        n_leads=n_leads,
        scale=scale,
        qt_ms=qt,
        pr_ms=pr,
        p_ms=min(100.0, pr - 30),
        noise_mv=0.01 * scale,
        wander_mv=0.3 * scale,
        powerline_hz=pl,
        powerline_mv=0.05 * scale,
    )
    beats = _detect(x, fs)
    cmp = _match(truth.r_peaks, beats, fs)
    assert cmp.fn == 0 and cmp.fp == 0, (cmp.fn, cmp.fp)


def test_scaling_and_inversion_give_the_same_beats() -> None:
    x, _ = synth_ecg(np.random.default_rng(7), n_leads=3, hr_bpm=88, noise_mv=0.02)
    base = _detect(x, 500.0)
    for y in (10 * x, -x, 0.1 * x):
        assert np.array_equal(_detect(y, 500.0), base)


def test_long_two_lead_record_is_processed_in_chunks_without_duplicates() -> None:
    fs = 360.0
    x, truth = synth_ecg(np.random.default_rng(2), fs=fs, n_leads=2, duration_s=660.0, hr_bpm=75)
    beats = _detect(x, fs)
    assert np.all(np.diff(beats) > 0.2 * fs)
    cmp = _match(truth.r_peaks, beats, fs)
    assert cmp.fn == 0 and cmp.fp == 0


def test_pacing_spikes_do_not_create_beats() -> None:
    fs = 1000.0
    x, truth = synth_ecg(np.random.default_rng(4), fs=fs, n_leads=2, hr_bpm=70)
    for s in truth.qrs_on - 20:
        x[:, s] += 8.0
    cmp = _match(truth.r_peaks, _detect(x, fs), fs)
    assert cmp.fn == 0 and cmp.fp == 0


def test_flat_or_too_short_signal_gives_no_beats() -> None:
    assert detect_qrs(np.zeros((2, 5000)), 500.0).size == 0
    short = detect_qrs(np.zeros((1, 100)), 500.0)
    assert short.size == 0
