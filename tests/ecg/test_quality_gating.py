"""Signal quality gates the interpretation: poor records raise no rhythm alarm, implausible gains no voltage/ST call."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from core.codes import MMDX, SCT
from core.records import EcgRecord, PriorityLevel
from ecg.analysis import analyze
from ecg.rules import interpret
from ecg.signal.quality import LeadQuality, record_quality
from tests.ecg._synth import LEADS_12, synth_ecg
from tests.ecg.test_interpretation import _amps, _ri

RHYTHM_ALARMS = {
    SCT.ATRIAL_FIBRILLATION,
    SCT.ATRIAL_FLUTTER,
    SCT.VENTRICULAR_TACHYCARDIA,
    SCT.COMPLETE_AV_BLOCK,
    SCT.SECOND_DEGREE_AV_BLOCK,
    MMDX.ECG_WIDE_QRS_TACHYCARDIA,
}


def _lead(name: str, noise: float = 0.005, wander: float = 0.2, ptp: float = 1.2) -> LeadQuality:
    return LeadQuality(name, None, ptp, 0.0, noise, 0.0, wander, ptp)


def test_record_quality_grades_leads_and_gain() -> None:
    good = record_quality((_lead("I"), _lead("II")), 0.0)
    assert good.poor is None and good.good_leads == {"I", "II"} and good.implausible_amplitude is None
    # every usable lead noisy (8% of its signal): poor, and the reason names the lead
    noisy = record_quality((_lead("I", noise=0.1), _lead("II", noise=0.08)), 0.0)
    assert noisy.poor is not None and not noisy.good_leads and "lead I" in noisy.poor
    # baseline wander (filtered before detection): no lead supports a critical statement, the rhythm stays readable
    wander = record_quality((_lead("I", wander=2.5), _lead("II", wander=3.0)), 0.0)
    assert wander.poor is None and not wander.good_leads
    assert record_quality((_lead("I"),), 0.3).poor is not None  # 30% of beats in artefact
    # a 5x gain error: every lead ~5 mV peak to peak
    gain = record_quality(tuple(_lead(k, ptp=5.5) for k in LEADS_12), 0.0)
    assert gain.implausible_amplitude is not None and "gain" in gain.implausible_amplitude


def test_poor_record_keeps_no_rhythm_alarm_and_says_why() -> None:
    ri = replace(_ri(), quality_poor="no lead of good quality (lead II: noise 0.1 mV > 5% of the signal)")
    out = interpret(ri)
    codes = {f.concept for f in out}
    assert MMDX.ECG_NOISE in codes and SCT.NORMAL_ECG not in codes
    assert not any(f.critical for f in out)
    note = next(f for f in out if f.concept == MMDX.ECG_NOISE)
    assert "lead II" in note.criteria[0]


def test_stemi_needs_good_leads() -> None:
    amps = _amps(II={"st_j": 0.25}, III={"st_j": 0.3}, aVF={"st_j": 0.3})
    assert SCT.STEMI in {f.concept for f in interpret(_ri(amps=amps))}
    limited = replace(_ri(amps=amps), good_leads=frozenset(LEADS_12) - {"III", "aVF"})
    out = interpret(limited)
    codes = {f.concept for f in out}
    assert SCT.STEMI not in codes and SCT.ST_ELEVATION in codes and not any(f.critical for f in out)


def test_five_fold_gain_error_raises_no_voltage_or_st_statement() -> None:
    """The converted WFDB file whose gain was 5x: no LVH, no STEMI, a statement that says why."""
    x, _ = synth_ecg(np.random.default_rng(3), n_leads=12)
    x = x * 6.0
    x[[1, 2, 5], :] += 0.35 * 6.0 * (np.arange(x.shape[1]) % 400 > 250)  # would read as ST elevation
    a = analyze(EcgRecord(x.astype(np.float32), LEADS_12, 500.0, "synthetic"))
    codes = {s.concept for s in a.statements}
    assert not codes & {SCT.LVH, SCT.STEMI, SCT.ST_ELEVATION, SCT.ST_DEPRESSION}
    assert any("Implausible amplitudes" in s.text for s in a.statements)
    assert a.priority.level is PriorityLevel.ROUTINE


def test_noisy_single_lead_recording_is_flagged_and_raises_no_rhythm_alarm() -> None:
    """A single-lead recording buried in noise (the AliveCor-like noisy class) says so and calls no AF."""
    rng = np.random.default_rng(11)
    x, _ = synth_ecg(rng, n_leads=1, duration_s=30.0, hr_bpm=80.0, noise_mv=0.0)
    x = x / np.ptp(x) + rng.normal(0.0, 0.15, x.shape)  # HF noise ~8% of the ECG band: usable, not good
    a = analyze(EcgRecord(x.astype(np.float32), ("I",), 500.0, "synthetic"))
    codes = {s.concept for s in a.statements}
    assert not codes & RHYTHM_ALARMS
    assert a.priority.level is PriorityLevel.ROUTINE
    assert MMDX.ECG_NOISE in codes or any("insufficient" in s.text for s in a.statements)


def test_a_critical_statement_names_its_good_leads_or_is_not_stat() -> None:
    """A rhythm alarm needs most analysed leads good: otherwise it is kept, not STAT, with the reason."""
    from ecg.rules import priority_of

    ri = replace(_ri(replace(_ri().g, qtc_fridericia_ms=530.0)), good_leads=frozenset(LEADS_12))
    out = interpret(ri)
    qt = next(f for f in out if f.concept == SCT.PROLONGED_QT)
    assert qt.critical and any(c.startswith("signal quality good in leads I, II") for c in qt.criteria)
    few = interpret(replace(ri, good_leads=frozenset({"I", "II"})))
    qt = next(f for f in few if f.concept == SCT.PROLONGED_QT)
    assert not qt.critical and "not STAT" in qt.criteria[-1]
    assert priority_of(few).level is PriorityLevel.ROUTINE
