"""Median beats and global boundaries against known truth (synthetic) and cardiologists (LUDB record 1)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.codes import LOINC
from core.records import EcgRecord
from ecg.analysis import analyze
from ecg.readers import read_ecg_file
from ecg.signal.beats import classify_beats
from ecg.signal.conditioning import condition
from ecg.signal.delineation import Fiducials, MedianBeats, delineate, median_beats
from ecg.signal.qrs import detect_qrs
from tests.ecg._load import AECG_SUBJECT1, LUDB_1, load_wfdb, ludb_reference
from tests.ecg._synth import LEADS_12, escape, fibrillation, sinus, sinus_late_t, synth_ecg


def _delineate(x: np.ndarray, fs: float) -> tuple[Fiducials, float]:
    c = condition(x, fs)
    beats = detect_qrs(c.signal, c.fs)
    labels, _ = classify_beats(c.signal, c.fs, beats)
    mb = median_beats(c.signal, c.fs, beats, labels)
    assert mb is not None
    return delineate(mb, rr_samples=float(np.median(np.diff(beats)))), 1000.0 / c.fs


def _case(seed: int, hr: float, n_leads: int = 12, wander: float = 0.2, pl: float | None = 50.0) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    rr = 60.0 / hr
    qt = 400.0 * np.sqrt(rr)
    qrs = rng.uniform(70, 130)
    pr = rng.uniform(120, min(220, 1000 * rr - qt - 40))
    p = rng.uniform(80, min(120, pr - 30))
    x, _ = synth_ecg(
        rng,
        hr_bpm=hr,
        pr_ms=pr,
        p_ms=p,
        qrs_ms=qrs,
        qt_ms=qt,
        wander_mv=wander,
        powerline_hz=pl,
        scale=rng.uniform(0.3, 3.0),
        n_leads=n_leads,
    )
    fd, ms = _delineate(x, 500.0)
    assert fd.p_on is not None and fd.p_off is not None and fd.t_off is not None
    return {
        "PR": (fd.qrs_on - fd.p_on) * ms - pr,
        "P": (fd.p_off - fd.p_on) * ms - p,
        "QRS": (fd.qrs_off - fd.qrs_on) * ms - qrs,
        "QT": (fd.t_off - fd.qrs_on) * ms - qt,
    }


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**16), hr=st.floats(40, 110), n_leads=st.integers(3, 12))
def test_synthetic_intervals_within_tolerance_per_record(seed: int, hr: float, n_leads: int) -> None:
    """Per record about two IEC standard deviations; the IEC mean/SD criteria are checked on a set below."""
    err = _case(seed, hr, n_leads)
    assert abs(err["PR"]) <= 20 and abs(err["P"]) <= 25, err
    assert abs(err["QRS"]) <= 15, err
    assert abs(err["QT"]) <= 35, err


def test_synthetic_set_meets_iec_60601_2_25_mean_and_sd() -> None:
    errs = [_case(seed, hr) for seed, hr in zip(range(24), np.linspace(40, 110, 24), strict=True)]
    for key, (mean_tol, sd_tol) in {"PR": (10, 10), "P": (10, 15), "QRS": (10, 10), "QT": (25, 30)}.items():
        v = np.array([e[key] for e in errs])
        assert abs(v.mean()) <= mean_tol and v.std() <= sd_tol, (key, v.mean(), v.std())


def test_absent_p_waves_give_no_p_boundaries() -> None:
    rng = np.random.default_rng(8)
    x, _truth = synth_ecg(rng, hr_bpm=75, n_leads=12)
    # remove the P waves: rebuild with zero-amplitude P by subtracting a copy made with the same seed and no QRS/T
    x2, _ = synth_ecg(np.random.default_rng(8), hr_bpm=75, n_leads=12, p_ms=1e-3)
    fd, _ = _delineate(x2, 500.0)
    assert fd.p_on is None and fd.p_off is None
    fd1, _ = _delineate(x, 500.0)
    assert fd1.p_on is not None


def test_ludb_record_1_against_cardiologist_marks() -> None:
    """Global PR against the cardiologists' marks (earliest onset over leads) within the IEC PR tolerance.

    QRS and QT differences to this record's annotations (whose offsets are the latest mark over all leads)
    are reported by bench/bench_ecg.py; they are not tuned to this one record.
    """
    rec = load_wfdb(LUDB_1)
    a = analyze(rec)
    ref = ludb_reference()
    fid = {b.sample: dict(b.fiducials) for b in a.beats}
    pr_err = []
    for i, r in enumerate(ref["r"]):
        s = min(fid, key=lambda x: abs(x - r))
        pr_err.append(((fid[s]["qrs_on"] - fid[s]["p_on"]) - (ref["qrs_on"][i] - ref["p_on"][i])) * 2.0)
    assert abs(np.mean(pr_err)) <= 10.0 and np.std(pr_err) <= 10.0
    assert len(a.beats) == 7


def aecg_errors() -> dict[str, list[float]]:
    """Per-beat differences (ms) between our per-beat fiducials and the aECG example's marked ones."""
    f = read_ecg_file(AECG_SUBJECT1)
    a = analyze(f.record)
    ms = 1000.0 / f.record.sampling_rate_hz
    names = {
        "P Onset": "p_on",
        "P Offset": "p_off",
        "QRS Onset": "qrs_on",
        "QRS Offset": "qrs_off",
        "T Offset": "t_off",
    }
    marks: dict[int, dict[str, int]] = {}
    for fid in f.fiducials:
        if fid.waveform == "rhythm" and fid.name in names and fid.beat is not None:
            marks.setdefault(fid.beat, {})[names[fid.name]] = fid.sample
    ours = [dict(b.fiducials) for b in a.beats if b.fiducials]
    err: dict[str, list[float]] = {k: [] for k in (*names.values(), "PR", "QRS", "QT")}
    for m in marks.values():
        if "qrs_on" not in m:
            continue
        o = min(ours, key=lambda d: abs(d["qrs_on"] - m["qrs_on"]))
        if abs(o["qrs_on"] - m["qrs_on"]) * ms > 100:
            continue
        for k in names.values():
            if k in m and k in o:
                err[k].append((o[k] - m[k]) * ms)
        for k, (a0, a1) in {"PR": ("p_on", "qrs_on"), "QRS": ("qrs_on", "qrs_off"), "QT": ("qrs_on", "t_off")}.items():
            if all(x in m and x in o for x in (a0, a1)):
                err[k].append(((o[a1] - o[a0]) - (m[a1] - m[a0])) * ms)
    return err


def test_hl7_aecg_example_per_beat_marks_within_iec_tolerances() -> None:
    """The HL7 aECG example carries per-beat global P/QRS/T marks: our per-beat boundaries meet IEC mean/SD."""
    err = aecg_errors()
    assert len(err["QRS"]) >= 8
    for k, (mean_tol, sd_tol) in {"PR": (10, 10), "QRS": (10, 10), "QT": (25, 30)}.items():
        v = np.array(err[k])
        assert abs(v.mean()) <= mean_tol and v.std() <= sd_tol, (k, v.mean(), v.std())


# ------------------------------------------------- per-lead boundaries, gain invariance, early small leads


def _median_of(x: np.ndarray, fs: float = 500.0) -> tuple[MedianBeats, np.ndarray]:
    c = condition(x, fs)
    beats = detect_qrs(c.signal, c.fs)
    labels, _ = classify_beats(c.signal, c.fs, beats)
    mb = median_beats(c.signal, c.fs, beats, labels)
    assert mb is not None
    return mb, beats


def _scaled(mb: MedianBeats, lead: int, gain: float) -> MedianBeats:
    m = mb.beats.copy()
    m[lead] *= gain
    return MedianBeats(m, mb.fs, mb.fiducial, mb.n_beats, mb.lags, mb.used)


def _bounds(fd: Fiducials) -> tuple[int | None, ...]:
    return (fd.p_on, fd.p_off, fd.qrs_on, fd.qrs_off, fd.t_off)


@settings(max_examples=12, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    lead=st.integers(0, 11),
    log_gain=st.floats(np.log(0.05), np.log(20.0)),
)
def test_boundaries_do_not_depend_on_a_lead_gain(seed: int, lead: int, log_gain: float) -> None:
    """Scaling one lead (a renormalised or mis-calibrated channel) must not move any global boundary."""
    x, _ = synth_ecg(np.random.default_rng(seed), hr_bpm=70, n_leads=12, scale=1.0)
    mb, beats = _median_of(x)
    rr = float(np.median(np.diff(beats)))
    ref = _bounds(delineate(mb, rr_samples=rr))
    got = _bounds(delineate(_scaled(mb, lead, float(np.exp(log_gain))), rr_samples=rr))
    for r, g in zip(ref, got, strict=True):
        assert (r is None) == (g is None), (ref, got)
        if r is not None and g is not None:
            assert abs(r - g) <= 1, (ref, got)  # 2 ms at 500 Hz


def test_ludb_record_1_boundaries_do_not_depend_on_a_lead_gain() -> None:
    """The LUDB copy's per-lead gains look renormalised: no per-beat boundary may care (each lead x10, x0.1).

    End to end (median-beat alignment included): every beat's P, QRS and T boundaries within 1 sample.
    """
    from dataclasses import replace

    rec = load_wfdb(LUDB_1)
    ref = {b.sample: dict(b.fiducials) for b in analyze(rec).beats}
    sig = np.asarray(rec.signal, dtype=np.float64)
    for lead in range(12):
        for gain in (10.0, 0.1):
            x = sig.copy()
            x[lead] *= gain
            got = {b.sample: dict(b.fiducials) for b in analyze(replace(rec, signal=x.astype(np.float32))).beats}
            assert got.keys() == ref.keys()
            for s, f in got.items():
                assert f.keys() == ref[s].keys(), (lead, gain, s)
                assert all(abs(f[k] - ref[s][k]) <= 1 for k in f), (lead, gain, f, ref[s])


def _early_wave(x: np.ndarray, qrs_on: np.ndarray, leads: list[int], lead_ms: float, fs: float = 500.0) -> np.ndarray:
    """Add to ``leads`` a small initial deflection (8 % of the lead's own QRS) starting ``lead_ms`` before the QRS."""
    y = x.copy()
    n = round((lead_ms + 10.0) * fs / 1000.0)
    lobe = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)
    for lead in leads:
        amp = 0.08 * float(np.ptp(x[lead, qrs_on[1] : qrs_on[1] + int(0.1 * fs)]))
        for q in qrs_on:
            a = int(q) - round(lead_ms * fs / 1000.0)
            if a >= 0 and a + n <= y.shape[1]:
                y[lead, a : a + n] -= amp * lobe
    return y


def test_small_early_deflection_in_two_leads_moves_the_global_onset() -> None:
    """Cardiologists take the earliest onset in any lead: a small q 20 ms ahead in two low-amplitude leads counts.

    An amplitude-weighted spatial velocity hides it (the two leads' slopes are a few percent of the
    others'); per-lead thresholds see it.  A single lead with the same wave is not enough (noise guard).
    """
    rng = np.random.default_rng(11)
    x, truth = synth_ecg(rng, hr_bpm=70, n_leads=12, qrs_ms=90.0)
    x[[2, 7]] *= 0.15  # two small-amplitude leads
    fs = 500.0

    def onset_error_ms(sig: np.ndarray) -> float:
        mb, beats = _median_of(sig)
        fd = delineate(mb, rr_samples=float(np.median(np.diff(beats))))
        k = int(mb.used[0])
        base = int(beats[k]) + int(mb.lags[0]) - mb.fiducial
        j = int(np.argmin(np.abs(truth.qrs_on - beats[k])))
        return (fd.qrs_on + base - int(truth.qrs_on[j])) * 1000.0 / fs

    plain = onset_error_ms(x)
    both = onset_error_ms(_early_wave(x, truth.qrs_on, [2, 7], 20.0))
    one = onset_error_ms(_early_wave(x, truth.qrs_on, [2], 20.0))
    assert abs(plain) <= 8.0, plain
    assert both <= plain - 12.0, (plain, both)  # the global onset follows the early leads
    assert abs(one - plain) <= 4.0, (plain, one)  # one lead alone does not move it


def ludb_lead_errors() -> dict[str, list[float]]:
    """Per-lead boundaries vs the LUDB cardiologists' per-lead marks, every annotated beat of every lead (ms).

    The global test above uses 4 beats; the per-lead marks give 12 x ~6 QRS and T boundaries to check
    the per-lead delineator that the global boundaries are built from.
    """
    import wfdb

    from ecg.signal.delineation import _normalised, lead_qrs_bounds, lead_t_ends, t_wave_end

    rec = load_wfdb(LUDB_1)
    mb, beats = _median_of(np.asarray(rec.signal, dtype=np.float64), rec.sampling_rate_hz)
    m = _normalised(mb.beats, mb.fs, mb.fiducial)
    fd = delineate(mb, rr_samples=float(np.median(np.diff(beats))))
    ons, offs, qv = lead_qrs_bounds(m, mb.fs, mb.fiducial)
    tp, te = t_wave_end(m, mb.fs, fd.qrs_on, fd.qrs_off)
    tends, tv, _, _ = lead_t_ends(m, mb.fs, fd.qrs_on, fd.qrs_off, te, t_peak=tp)
    ms = 1000.0 / mb.fs
    bases = {int(beats[k]): int(beats[k]) + int(lag) - mb.fiducial for k, lag in zip(mb.used, mb.lags, strict=True)}
    err: dict[str, list[float]] = {"qrs_on": [], "qrs_off": [], "t_off": []}
    for i, name in enumerate(("i", "ii", "iii", "avr", "avl", "avf", "v1", "v2", "v3", "v4", "v5", "v6")):
        ann = wfdb.rdann(str(LUDB_1), name)
        sym, smp = list(ann.symbol), [int(s) for s in ann.sample]
        for j in range(1, len(sym) - 1):
            if sym[j - 1] != "(" or sym[j + 1] != ")" or sym[j] not in "Nt":
                continue
            r = min(bases, key=lambda b: abs(b - smp[j]) if sym[j] == "N" else abs(b + 200 - smp[j]))
            base = bases[r]
            if sym[j] == "N" and abs(r - smp[j]) < 40 and qv[i]:
                err["qrs_on"].append((base + ons[i] - smp[j - 1]) * ms)
                err["qrs_off"].append((base + offs[i] - smp[j + 1]) * ms)
            elif sym[j] == "t" and 0 < smp[j] - r < 300 and tv[i]:
                err["t_off"].append((base + tends[i] - smp[j + 1]) * ms)
    return err


def test_ludb_record_1_per_lead_boundaries_against_cardiologists() -> None:
    """Each lead's own QRS and T boundaries against the same lead's marks, all annotated beats.

    QRS: mean within 10 ms and SD within 10 ms (IEC-style, per lead).  T end: the same, and 90 % of
    the marks within 20 ms — including aVF, whose small, late T follows an ST depression larger than
    itself (a lead's T is sought around the all-lead T peak; it was taken from the ST before: -6 +- 30).
    """
    err = ludb_lead_errors()
    assert len(err["qrs_on"]) >= 60 and len(err["t_off"]) >= 40
    for k in ("qrs_on", "qrs_off"):
        a = np.array(err[k])
        assert abs(a.mean()) <= 10.0 and a.std() <= 10.0, (k, a.mean(), a.std())
    t = np.array(err["t_off"])
    assert abs(t.mean()) <= 10.0 and t.std() <= 15.0 and np.mean(np.abs(t) <= 20.0) >= 0.9, (t.mean(), t)


def test_ludb_record_1_global_qrs_and_qt_against_cardiologists() -> None:
    """Global QRS and QT on LUDB 1 against the earliest-onset / latest-offset reference (4 fully marked beats).

    Both meet the IEC mean/SD criteria (QRS was -40.5 ms with amplitude weights; QT was -63 ms with a
    spatial T end, -35 ms while aVF's small late T was taken from its ST depression and a lone lead
    could not move the global end).  The reference T end is aVF's on every beat.
    """
    rec = load_wfdb(LUDB_1)
    a = analyze(rec)
    ref = ludb_reference()
    fid = {b.sample: dict(b.fiducials) for b in a.beats}
    qrs, qt = [], []
    for i, r in enumerate(ref["r"]):
        f = fid[min(fid, key=lambda x: abs(x - r))]
        qrs.append(((f["qrs_off"] - f["qrs_on"]) - (ref["qrs_off"][i] - ref["qrs_on"][i])) * 2.0)
        qt.append(((f["t_off"] - f["qrs_on"]) - (ref["t_off"][i] - ref["qrs_on"][i])) * 2.0)
    assert abs(np.mean(qrs)) <= 10.0 and np.std(qrs) <= 10.0, qrs
    assert abs(np.mean(qt)) <= 25.0 and np.std(qt) <= 30.0, qt


# ------------------------------------------------- the latest T end over leads; the T end at fast rates


def _late_t_error_ms(seed: int, hr: float, late_ms: float, late_mv: float) -> float:
    x, truth = sinus_late_t(np.random.default_rng(seed), hr, late_ms=late_ms, late_mv=late_mv)
    fd, ms = _delineate(x, 500.0)
    assert fd.t_off is not None
    return (fd.t_off - fd.qrs_on) * ms - (truth.t_off_s[0] - truth.qrs_on_s[0]) * 1000.0


def test_global_t_end_follows_a_small_late_t_in_few_leads() -> None:
    """A late T component seen in the leads perpendicular to the main T axis sets the global T end.

    Its lobe is 0.08 mV and ends 40 ms after the main T; the main T's end (what the large leads and
    a 3-lead consensus see) would read -40 ms.  The set must meet a tight IEC-like criterion.
    """
    err = np.array(
        [_late_t_error_ms(s, hr, 40.0, 0.08) for s, hr in zip(range(8), np.linspace(45, 100, 8), strict=True)]
    )
    assert abs(err.mean()) <= 10.0 and err.std() <= 10.0, err


def test_af_residual_f_waves_do_not_drag_the_global_t_end() -> None:
    """A lone lead may set the global T end, but not through the f-wave residue left in an AF median beat.

    20 irregular records at 70-170/min: the set stays inside the IEC QT criterion with a margin (mean
    within 20 ms, SD within 15 ms; now +13 +- 12, before lone leads could set the end +11.5 +- 11.5).
    No T end is withheld: the tail of an irregular rhythm's median beat carries the earlier next QRS
    complexes of the shorter cycles, which are neither a T wave nor a P wave riding on it.
    """
    err = []
    for seed, hr in zip(range(20), np.tile([70.0, 90.0, 110.0, 130.0, 170.0], 4), strict=True):
        x, _, qt = fibrillation(np.random.default_rng(seed), hr)
        fd, ms = _delineate(x, 500.0)
        if fd.t_off is not None:
            err.append((fd.t_off - fd.qrs_on) * ms - qt)
    v = np.array(err)
    assert v.size == 20 and abs(v.mean()) <= 20.0 and v.std() <= 15.0, v


def _fast(kind: str, hr: float, seed: int) -> tuple[Fiducials, float, float]:
    """(fiducials, QT truth ms, RR ms) for synthetic sinus or junctional rhythm at ``hr``."""
    gen = sinus if kind == "sinus" else escape
    x, truth = gen(np.random.default_rng(seed), hr)
    q = np.asarray(truth.qrs_s)
    rr = float(np.median(np.diff(q)))
    fd, _ = _delineate(x, 500.0)
    return fd, 400.0 * rr ** (1.0 / 3.0), 1000.0 * rr


@pytest.mark.parametrize("hr", [100.0, 130.0, 150.0, 170.0])
def test_fast_sinus_qt_is_right_or_withheld_never_the_next_p(hr: float) -> None:
    """At fast sinus rates the next P wave rides on the T (from ~130/min with PR 160 ms here).

    The QT is within 25 ms of the truth, or withheld with a reason; the T end search used to run to
    the next P wave's end (QT 348 ms for 295 at 150/min).
    """
    for seed in range(3):
        fd, qt, rr = _fast("sinus", hr, seed)
        if fd.t_off is None:
            assert fd.t_note and "P on T" in fd.t_note, fd
            continue
        got = (fd.t_off - fd.qrs_on) * 2.0
        assert abs(got - qt) <= 25.0, (hr, seed, got, qt)
        assert got < rr - 100.0  # before the next P (PR 160 ms, P 100 ms)
    if hr <= 100.0:
        assert fd.t_off is not None  # a clear T-P segment: measured


@pytest.mark.parametrize("hr", [100.0, 130.0, 150.0, 170.0])
def test_fast_junctional_qt_is_measured(hr: float) -> None:
    """Without atrial waves the T falls to a flat baseline before the QRS: its end is measured, not withheld."""
    for seed in range(2):
        fd, qt, _ = _fast("junctional", hr, seed)
        assert fd.t_off is not None and fd.t_note is None, (hr, seed, fd)
        assert abs((fd.t_off - fd.qrs_on) * 2.0 - qt) <= 25.0, (hr, seed, fd)


def test_withheld_qt_is_not_reported_by_analyze() -> None:
    """End to end: a P-on-T record yields no QT or QTc measurement (never the next P wave's end)."""
    x, _ = sinus(np.random.default_rng(0), 150.0)
    a = analyze(EcgRecord(signal=x.astype(np.float32), lead_names=LEADS_12, sampling_rate_hz=500.0, source="synthetic"))
    assert a.global_values is not None and a.global_values.qt_ms is None
    assert a.measurement(LOINC.QT_INTERVAL) is None and a.measurement(LOINC.QTC_FRIDERICIA) is None
    assert all(k != "t_off" for b in a.beats for k, _ in b.fiducials)
    # and the reader is told why: a technical statement carrying the delineation's reason
    why = [f for f in a.statements if f.text.startswith("QT not measured")]
    assert len(why) == 1 and why[0].criteria and why[0].criteria[0] in why[0].text


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    hr=st.floats(40.0, 190.0),
    kind=st.sampled_from(["sinus", "junctional", "ventricular"]),
    t_mv=st.floats(0.05, 0.8),
    p_mv=st.floats(0.05, 0.3),
    noise_mv=st.floats(0.0, 0.04),
)
def test_t_end_never_reaches_the_next_beat(
    seed: int, hr: float, kind: str, t_mv: float, p_mv: float, noise_mv: float
) -> None:
    """Whatever the rhythm, rate and wave amplitudes: QT < RR, and every beat's T end precedes the next QRS onset.

    The old search window ran to 680 ms after the QRS onset: a wide-QRS rhythm at 150/min reported a
    QT of 508 ms for an RR of 400 ms.
    """
    rng = np.random.default_rng(seed)
    if kind != "sinus":
        x, truth = escape(rng, hr, wide=kind == "ventricular", t_mv=t_mv, noise_mv=noise_mv)
    else:
        x, truth = sinus(rng, hr, p_mv=p_mv, t_mv=t_mv, noise_mv=noise_mv)
    rec = EcgRecord(signal=x.astype(np.float32), lead_names=LEADS_12, sampling_rate_hz=500.0, source="synthetic")
    a = analyze(rec)
    g = a.global_values
    if g is not None and g.qt_ms is not None and g.rr_ms is not None:
        assert g.qt_ms < g.rr_ms - 10.0, (g.qt_ms, g.rr_ms)
    qrs_on = np.round(np.asarray(truth.qrs_s) * 500.0).astype(int)
    for b in a.beats:
        f = dict(b.fiducials)
        if "t_off" not in f:
            continue
        k = int(np.argmin(np.abs(qrs_on - f["qrs_on"])))  # this beat's true QRS; the next one follows it
        # (a beat detected far from its QRS, which noisy wide complexes can cause, projects the median's
        # fiducials off the beat: a detection error, counted by the detection tests, not here)
        if k + 1 < qrs_on.size and abs(qrs_on[k] - f["qrs_on"]) <= 15:
            assert f["t_off"] < qrs_on[k + 1], (f, qrs_on[k + 1])


def test_wide_fast_rhythm_t_end_stays_before_the_next_qrs() -> None:
    """Ventricular rhythm at 180/min: the T runs into the next QRS, so no T end, and the reason is given."""
    x, _ = escape(np.random.default_rng(4), 180.0, wide=True)
    fd, _ = _delineate(x, 500.0)
    assert fd.t_off is None and fd.t_note is not None and "next QRS" in fd.t_note
    assert fd.p_on is None
