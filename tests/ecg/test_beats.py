"""Beat classification: N / S / V by morphology and timing, on synthetic ectopy and MIT-BIH 100."""

from __future__ import annotations

import numpy as np
import wfdb
from wfdb import processing

from ecg.signal.beats import classify_beats, rr_irregularity
from ecg.signal.conditioning import condition
from ecg.signal.qrs import detect_qrs
from tests.ecg._load import MITDB_100
from tests.ecg._synth import synth_rhythm


def _labels(x: np.ndarray, fs: float, spikes: bool = False) -> tuple[np.ndarray, np.ndarray]:
    c = condition(x, fs)
    beats = detect_qrs(c.signal, c.fs)
    labels, _ = classify_beats(c.signal, c.fs, beats, pacing_spikes=c.pacing_spikes if spikes else None)
    return beats, labels


def test_premature_atrial_and_ventricular_beats_are_labelled() -> None:
    kinds = "NNNNNSNNNNVNNNNNSNNNVNNNN"
    x, _r, _truth = synth_rhythm(np.random.default_rng(1), kinds)
    beats, labels = _labels(x, 500.0)
    assert beats.size == len(kinds)
    assert "".join(labels) == kinds


def test_regular_rhythm_is_all_normal_and_regular() -> None:
    x, _r, _ = synth_rhythm(np.random.default_rng(2), "N" * 14, n_leads=2)
    beats, labels = _labels(x, 500.0)
    assert set(labels) == {"N"}
    cv, dd = rr_irregularity(beats, 500.0)
    assert cv < 0.02 and dd < 0.02


def test_paced_beats_are_class_q() -> None:
    fs = 1000.0
    x, r, _ = synth_rhythm(np.random.default_rng(3), "N" * 10, fs=fs, n_leads=3, p_waves=False, qrs_ms=150)
    for s in r - int(0.06 * fs):
        x[:, s] += 6.0
    _, labels = _labels(x, fs, spikes=True)
    assert set(labels) == {"Q"}


def test_mitdb_100_premature_atrial_beats() -> None:
    """Record 100 has 33 atrial premature beats (A) among ~2,240 normal beats."""
    rec = wfdb.rdrecord(str(MITDB_100))
    ann = wfdb.rdann(str(MITDB_100), "atr")
    c = condition(rec.p_signal.T, rec.fs)
    beats = detect_qrs(c.signal, c.fs)
    labels, _ = classify_beats(c.signal, c.fs, beats)
    ours = np.round(beats * rec.fs / c.fs).astype(int)
    sym = np.array(ann.symbol)
    keep = np.isin(sym, list("NAV"))
    ref_s, ref_y = ann.sample[keep], sym[keep]
    cmp = processing.compare_annotations(ref_s, ours, int(0.15 * rec.fs))
    ref_lab = ref_y[cmp.matched_ref_inds]
    our_lab = labels[cmp.matched_test_inds]
    a = ref_lab == "A"
    assert np.mean(our_lab[a] == "S") >= 0.8  # sensitivity for S
    normal = ref_lab == "N"
    assert np.mean(our_lab[normal] == "N") >= 0.995
