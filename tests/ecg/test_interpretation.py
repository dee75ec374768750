"""Rule-based statements: each criterion on constructed measurements, rhythms end to end on synthetic signals."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from scipy import signal as sps

from core.codes import MMDX, SCT, Code
from core.records import EcgRecord, Finding, Patient, PriorityLevel, Sex
from ecg.analysis import analyze
from ecg.rules import RuleInput, interpret, priority_of
from ecg.signal.measurements import GlobalMeasurements, LeadAmplitudes
from tests.ecg._synth import LEADS_12, synth_ecg, synth_rhythm

NORMAL_G = GlobalMeasurements(
    hr_bpm=72.0, rr_ms=833.0, pr_ms=160.0, p_ms=100.0, qrs_ms=90.0, qt_ms=380.0,
    qtc_bazett_ms=416.0, qtc_fridericia_ms=404.0, qtc_framingham_ms=406.0, qtc_hodges_ms=401.0,
    p_axis_deg=55.0, qrs_axis_deg=45.0, t_axis_deg=40.0,
)  # fmt: skip


def _amps(**over: dict[str, float]) -> tuple[LeadAmplitudes, ...]:
    base = {"p": 0.1, "q": -0.05, "r": 1.0, "s": -0.3, "r_prime": 0.0, "st_j": 0.0, "st_j60": 0.0, "t": 0.3}
    special = {"aVR": {"q": 0.0, "r": 0.2, "s": -0.9, "t": -0.3, "p": -0.1}, "V1": {"q": 0.0, "r": 0.3, "s": -1.0}}
    out = []
    for lead in LEADS_12:
        v = {**base, **special.get(lead, {}), **over.get(lead, {})}
        out.append(LeadAmplitudes(lead, **v))
    return tuple(out)


def _ri(
    g: GlobalMeasurements = NORMAL_G, amps: tuple[LeadAmplitudes, ...] | None = None, patient: Patient | None = None
) -> RuleInput:
    beats = np.arange(12) * 416 + 200
    return RuleInput(
        fs=500.0, duration_s=10.0, beats=beats, labels=np.array(["N"] * 12), g=g, amps=amps or _amps(),
        atrial=None, twelve_lead=True, patient=patient,
    )  # fmt: skip


def _codes(findings: tuple[Finding, ...]) -> set[Code | None]:
    return {f.concept for f in findings}


def test_normal_measurements_give_sinus_rhythm_and_normal_ecg() -> None:
    out = interpret(_ri())
    assert _codes(out) == {SCT.SINUS_RHYTHM, SCT.NORMAL_ECG}
    assert priority_of(out).level is PriorityLevel.ROUTINE


@pytest.mark.parametrize(("hr", "code"), [(50.0, SCT.SINUS_BRADYCARDIA), (120.0, SCT.SINUS_TACHYCARDIA)])
def test_sinus_rate_statements(hr: float, code: Code) -> None:
    assert code in _codes(interpret(_ri(replace(NORMAL_G, hr_bpm=hr))))


def test_first_degree_av_block() -> None:
    out = interpret(_ri(replace(NORMAL_G, pr_ms=240.0)))
    assert SCT.ABNORMAL_ECG in _codes(out) and SCT.NORMAL_ECG not in _codes(out)
    f = next(f for f in out if f.concept == SCT.FIRST_DEGREE_AV_BLOCK)
    assert "240" in f.criteria[0]


LBBB_AMPS = {
    "V1": {"r": 0.1, "s": -1.8, "terminal_mv": -0.6},
    "I": {"q": 0.0, "r": 1.2, "s": 0.0, "terminal_mv": 0.3},
    "V5": {"q": 0.0, "s": 0.0, "r_peak_ms": 85.0},
    "V6": {"q": 0.0, "r": 1.3, "s": 0.0, "r_peak_ms": 90.0, "terminal_mv": 0.4},
}
RBBB_AMPS = {
    "V1": {"r": 0.3, "s": -0.4, "r_prime": 0.8, "r_peak_ms": 95.0, "terminal_mv": 0.5},
    "I": {"s": -0.4, "terminal_mv": -0.2},
    "V6": {"s": -0.4, "terminal_mv": -0.2},
}


def _ri_qrs(qrs: float, amps: tuple[LeadAmplitudes, ...] | None = None, median_lead: float | None = None) -> RuleInput:
    return replace(_ri(replace(NORMAL_G, qrs_ms=qrs), amps), qrs_lead_median_ms=median_lead)


def test_lbbb() -> None:
    out = interpret(_ri_qrs(150.0, _amps(**LBBB_AMPS)))
    assert SCT.COMPLETE_LBBB in _codes(out) and SCT.IVCD not in _codes(out)
    # a septal q in V6, or an early R peak in V5/V6, is no LBBB
    assert SCT.COMPLETE_LBBB not in _codes(interpret(_ri_qrs(150.0, _amps(**{**LBBB_AMPS, "V6": {"q": -0.2}}))))
    early = {**LBBB_AMPS, "V5": {"q": 0.0, "s": 0.0, "r_peak_ms": 40.0}, "V6": {**LBBB_AMPS["V6"], "r_peak_ms": 45.0}}
    assert SCT.COMPLETE_LBBB not in _codes(interpret(_ri_qrs(150.0, _amps(**early))))


def test_a_terminal_s_in_i_and_v6_is_rbbb_not_lbbb() -> None:
    """The false LBBB on RBBB records: a V1 pattern alone does not decide, the terminal forces do."""
    amps = _amps(**{**LBBB_AMPS, "I": {"q": 0.0, "r": 1.0, "s": -0.5, "terminal_mv": -0.3}})
    assert SCT.COMPLETE_LBBB not in _codes(interpret(_ri_qrs(150.0, amps)))


def test_rbbb_complete_and_incomplete() -> None:
    amps = _amps(**RBBB_AMPS)
    assert SCT.COMPLETE_RBBB in _codes(interpret(_ri_qrs(140.0, amps, 132.0)))
    assert SCT.INCOMPLETE_RBBB in _codes(interpret(_ri_qrs(114.0, amps, 104.0)))
    # a global QRS of 140 ms that most leads do not show (median lead 100 ms) is not a complete block
    wide_by_one_lead = _codes(interpret(_ri_qrs(140.0, amps, 100.0)))
    assert SCT.INCOMPLETE_RBBB in wide_by_one_lead and SCT.COMPLETE_RBBB not in wide_by_one_lead
    # no terminal S in I and V6: no RBBB
    no_s = _amps(**{**RBBB_AMPS, "I": {"s": 0.0}, "V6": {"s": 0.0}})
    assert not _codes(interpret(_ri_qrs(140.0, no_s, 132.0))) & {SCT.COMPLETE_RBBB, SCT.INCOMPLETE_RBBB}


def test_ivcd() -> None:
    assert SCT.IVCD in _codes(interpret(_ri_qrs(126.0, median_lead=122.0)))
    # 110-119 ms without a block pattern, or 126 ms globally but 100 ms in most leads: no statement
    assert SCT.IVCD not in _codes(interpret(_ri_qrs(115.0)))
    assert SCT.IVCD not in _codes(interpret(_ri_qrs(126.0, median_lead=100.0)))


def test_lafb_and_left_axis_deviation() -> None:
    amps = _amps(
        aVL={"q": -0.1, "r": 0.9, "s": 0.0},
        II={"q": 0.0, "r": 0.2, "s": -0.8},
        III={"q": 0.0, "r": 0.2, "s": -1.0},
        aVF={"q": 0.0, "r": 0.2, "s": -0.9},
    )
    out = interpret(_ri(replace(NORMAL_G, qrs_axis_deg=-60.0), amps))
    assert {SCT.LEFT_AXIS_DEVIATION, SCT.LAFB} <= _codes(out)


def test_lpfb_and_right_axis_deviation() -> None:
    amps = _amps(
        I={"q": 0.0, "r": 0.2, "s": -0.7}, aVL={"q": 0.0, "r": 0.2, "s": -0.6},
        III={"q": -0.1, "r": 1.0, "s": 0.0}, aVF={"q": -0.1, "r": 0.9, "s": 0.0},
    )  # fmt: skip
    out = interpret(_ri(replace(NORMAL_G, qrs_axis_deg=115.0), amps))
    assert {SCT.RIGHT_AXIS_DEVIATION, SCT.LPFB} <= _codes(out)


def test_low_voltage() -> None:
    small = {k: {"q": 0.0, "r": 0.2, "s": -0.1} for k in LEADS_12}
    out = interpret(_ri(amps=_amps(**small)))
    assert SCT.LOW_QRS_VOLTAGE in _codes(out)


def test_lvh_sokolow_lyon_and_cornell_with_sex_thresholds() -> None:
    amps = _amps(V1={"s": -2.0}, V5={"r": 1.8}, aVL={"r": 1.2}, V3={"s": -1.0})  # SL 3.8; Cornell 2.2 mV
    woman = interpret(_ri(amps=amps, patient=Patient(sex=Sex.FEMALE)))
    man = interpret(_ri(amps=amps, patient=Patient(sex=Sex.MALE)))
    fw = next(f for f in woman if f.concept == SCT.LVH)
    fm = next(f for f in man if f.concept == SCT.LVH)
    assert any("Cornell" in c for c in fw.criteria)  # 2.2 > 2.0 (women)
    assert not any("Cornell" in c for c in fm.criteria)  # 2.2 <= 2.8 (men)
    assert any("Sokolow" in c for c in fm.criteria)


@pytest.mark.parametrize(
    ("patient", "stemi"),
    [
        (Patient(sex=Sex.FEMALE, age_years=60), True),  # women: >= 0.15 mV in V2-V3
        (Patient(sex=Sex.MALE, age_years=60), False),  # men >= 40: >= 0.2 mV
        (Patient(sex=Sex.MALE, age_years=30), False),  # men < 40: >= 0.25 mV
        (None, True),  # unknown: most sensitive threshold, and it says so
    ],
)
def test_stemi_v2_v3_thresholds_by_age_and_sex(patient: Patient | None, stemi: bool) -> None:
    amps = _amps(V2={"st_j": 0.18, "st_j60": 0.2}, V3={"st_j": 0.18, "st_j60": 0.2})
    out = interpret(_ri(amps=amps, patient=patient))
    assert (SCT.STEMI in _codes(out)) is stemi
    if stemi:
        f = next(f for f in out if f.concept == SCT.STEMI)
        assert f.critical and priority_of(out).level is PriorityLevel.STAT
        assert any("V2" in c and "V3" in c for c in f.criteria)
        assert bool(patient is None) == any("unknown" in c for c in f.criteria)


def test_inferior_stemi_needs_contiguous_leads() -> None:
    inferior = _amps(II={"st_j": 0.15}, III={"st_j": 0.2}, aVF={"st_j": 0.18})
    assert SCT.STEMI in _codes(interpret(_ri(amps=inferior)))
    scattered = _amps(I={"st_j": 0.15}, V4={"st_j": 0.2})  # not contiguous
    assert SCT.STEMI not in _codes(interpret(_ri(amps=scattered)))


def test_st_depression_and_t_inversion() -> None:
    amps = _amps(
        V4={"st_j": -0.1, "st_j60": -0.12, "t": -0.3}, V5={"st_j": -0.1, "st_j60": -0.1, "t": -0.25}, V6={"t": -0.2}
    )
    out = interpret(_ri(amps=amps))
    assert {SCT.ST_DEPRESSION, SCT.T_WAVE_INVERSION} <= _codes(out)


@pytest.mark.parametrize(
    ("qtc_f", "sex", "present", "critical"),
    [(455.0, Sex.MALE, True, False), (455.0, Sex.FEMALE, False, False), (510.0, Sex.UNKNOWN, True, True)],
)
def test_prolonged_qt_sex_specific_and_critical(qtc_f: float, sex: Sex, present: bool, critical: bool) -> None:
    out = interpret(_ri(replace(NORMAL_G, qtc_fridericia_ms=qtc_f), patient=Patient(sex=sex)))
    f = [f for f in out if f.concept == SCT.PROLONGED_QT]
    assert bool(f) is present
    if f:
        assert f[0].critical is critical


def test_12_lead_statements_need_12_leads() -> None:
    ri = replace(_ri(replace(NORMAL_G, qrs_ms=150.0)), twelve_lead=False)
    assert _codes(interpret(ri)) == {SCT.SINUS_RHYTHM}


# ----------------------------------------------------------------- rhythms end to end


def _record(x: np.ndarray, fs: float = 500.0, leads: tuple[str, ...] = LEADS_12) -> EcgRecord:
    return EcgRecord(x.astype(np.float32), leads[: x.shape[0]], fs, "synthetic")


def _statements(x: np.ndarray, fs: float = 500.0, leads: tuple[str, ...] = LEADS_12) -> set[Code | None]:
    return {s.concept for s in analyze(_record(x, fs, leads)).statements}


def test_sinus_rhythm_end_to_end() -> None:
    x, _ = synth_ecg(np.random.default_rng(1), hr_bpm=75)
    assert SCT.SINUS_RHYTHM in _statements(x)


def test_atrial_fibrillation_with_rapid_response_is_stat() -> None:
    rng = np.random.default_rng(2)
    rr = list(rng.uniform(0.33, 0.75, size=22))
    x, _, _ = synth_rhythm(rng, "N" * 22, rr_list=rr, p_waves=False)
    # fibrillatory waves: irregular, band-limited 4-9 Hz activity
    sos = sps.butter(2, (4.0, 9.0), btype="bandpass", fs=500.0, output="sos")
    x += 0.05 * sps.sosfiltfilt(sos, rng.standard_normal(x.shape), axis=1) / 0.2
    a = analyze(_record(x))
    af = [s for s in a.statements if s.concept == SCT.ATRIAL_FIBRILLATION]
    assert af and af[0].critical and a.priority.level is PriorityLevel.STAT
    assert SCT.SINUS_RHYTHM not in {s.concept for s in a.statements}


def test_atrial_flutter() -> None:
    rng = np.random.default_rng(3)
    x, _, _ = synth_rhythm(rng, "N" * 12, rr_s=0.8, p_waves=False)
    t = np.arange(x.shape[1]) / 500.0
    saw = 2 * ((t * 5.0) % 1.0) - 1  # 300/min sawtooth flutter waves
    x += 0.12 * saw[None, :] * rng.uniform(0.5, 1.0, (12, 1))
    assert SCT.ATRIAL_FLUTTER in _statements(x)


def test_premature_complexes_end_to_end() -> None:
    x, _, _ = synth_rhythm(np.random.default_rng(4), "NNNNSNNNNVNNN")
    st = _statements(x)
    assert {SCT.PREMATURE_ATRIAL_COMPLEX, SCT.PREMATURE_VENTRICULAR_COMPLEX} <= st


def test_ventricular_tachycardia_run_is_stat() -> None:
    kinds = "NNNNVVVVVNNNN"
    rr = [0.85] * 4 + [0.45] * 4 + [1.0] + [0.85] * 4
    x, _, _ = synth_rhythm(np.random.default_rng(5), kinds, rr_list=rr)
    a = analyze(_record(x))
    vt = [s for s in a.statements if s.concept == SCT.VENTRICULAR_TACHYCARDIA]
    assert vt and vt[0].critical and a.priority.level is PriorityLevel.STAT


def test_second_degree_av_block() -> None:
    rr = [0.85] * 5 + [1.7] + [0.85] * 5
    x, _r, _ = synth_rhythm(np.random.default_rng(6), "N" * 12, rr_list=rr)
    dropped_p = 0.5 + sum(rr[:5]) + 0.85 - 0.16  # the P wave that was not conducted
    x2, _, _ = synth_rhythm(np.random.default_rng(6), "N" * 12, rr_list=rr, extra_p_times=[dropped_p])
    assert SCT.SECOND_DEGREE_AV_BLOCK in _statements(x2)
    assert SCT.SECOND_DEGREE_AV_BLOCK not in _statements(x)  # a pause alone is not a block


def test_complete_heart_block_is_stat() -> None:
    rr = [1.5] * 8
    p_times = list(np.arange(0.2, 12.0, 0.7))  # 86/min, not locked to the 40/min ventricles
    x, _, _ = synth_rhythm(
        np.random.default_rng(7), "N" * 8, rr_list=rr, p_waves=False, extra_p_times=p_times, qrs_ms=130
    )
    a = analyze(_record(x))
    chb = [s for s in a.statements if s.concept == SCT.COMPLETE_AV_BLOCK]
    assert chb and chb[0].critical and a.priority.level is PriorityLevel.STAT


def test_paced_rhythm() -> None:
    fs = 1000.0
    x, r, _ = synth_rhythm(np.random.default_rng(8), "N" * 10, fs=fs, p_waves=False, qrs_ms=150)
    for s in r - int(0.06 * fs):
        x[:, s] += 6.0
    assert SCT.PACED_RHYTHM in _statements(x, fs)


def test_rhythm_statements_on_two_leads() -> None:
    x, _ = synth_ecg(np.random.default_rng(9), hr_bpm=48, n_leads=2)
    st = _statements(x, leads=("MLII", "V5"))
    assert SCT.SINUS_BRADYCARDIA in st


def test_artefact_burst_is_not_ventricular_tachycardia() -> None:
    """Motion artefact in one of two monitoring leads (a classic false VT alarm) raises no VT."""
    rng = np.random.default_rng(10)
    x, truth = synth_ecg(rng, hr_bpm=100, n_leads=2, duration_s=30.0, qt_ms=320.0, pr_ms=140.0)
    a, b = 10 * 500, 13 * 500
    x[0, a:b] += 1.5 * np.sign(np.sin(2 * np.pi * rng.uniform(3, 9, b - a).cumsum() / 500.0))
    result = analyze(_record(x, leads=("II", "V")))
    assert SCT.VENTRICULAR_TACHYCARDIA not in {s.concept for s in result.statements}
    assert result.priority.level is PriorityLevel.ROUTINE
    found = np.array([bt.sample for bt in result.beats])
    hits = sum(np.min(np.abs(found - r)) <= 75 for r in truth.r_peaks)
    assert hits >= len(truth.r_peaks) - 2  # the true beats are still found


def test_infarct_by_territory_age_indeterminate_and_acute() -> None:
    """Pathological Q waves in two contiguous inferior leads: inferior infarct; with STEMI-level ST there: acute."""
    q = {"q": -0.3, "q_ms": 40.0, "r": 0.6}
    out = interpret(_ri(amps=_amps(II=q, aVF=q)))
    mi = [f for f in out if f.concept == SCT.MYOCARDIAL_INFARCTION]
    assert [f.text for f in mi] == ["Inferior infarct, age indeterminate"]
    assert "II" in mi[0].criteria[0] and "aVF" in mi[0].criteria[0] and SCT.NORMAL_ECG not in _codes(out)
    acute = interpret(_ri(amps=_amps(II={**q, "st_j": 0.3}, aVF={**q, "st_j": 0.3}, III={"st_j": 0.3})))
    assert "Inferior infarct, acute" in {f.text for f in acute} and SCT.STEMI in _codes(acute)
    # one lead, a narrow Q, or two non-adjacent leads: no infarct
    assert SCT.MYOCARDIAL_INFARCTION not in _codes(interpret(_ri(amps=_amps(III=q))))
    assert SCT.MYOCARDIAL_INFARCTION not in _codes(interpret(_ri(amps=_amps(II={**q, "q_ms": 20.0}, aVF=q))))
    # V2-V3: any Q over 20 ms (or QS) is pathological
    qs = {"q": -0.8, "r": 0.0, "s": 0.0}
    assert "Anteroseptal infarct, age indeterminate" in {f.text for f in interpret(_ri(amps=_amps(V2=qs, V3=qs)))}
    # a 30 uV r in V2-V3 is no R wave (within twice the IEC amplitude tolerance): still QS (the GE MUSE sample's
    # anterior infarct); the same small r in the inferior leads is real (LAFB's), so no inferior infarct
    tiny = {"q": 0.0, "r": 0.03, "s": -0.8}
    assert "Anteroseptal infarct, age indeterminate" in {f.text for f in interpret(_ri(amps=_amps(V2=tiny, V3=tiny)))}
    assert SCT.MYOCARDIAL_INFARCTION not in _codes(interpret(_ri(amps=_amps(II=tiny, aVF=tiny, III=tiny))))
    # not read from an LBBB (its QS in V1-V3 is the block)
    lbbb = _amps(**{**LBBB_AMPS, "V2": qs, "V3": qs})
    assert SCT.MYOCARDIAL_INFARCTION not in _codes(interpret(_ri_qrs(150.0, lbbb)))


@pytest.mark.parametrize(
    ("rr_ms", "pac"),
    [
        ([800, 800, 800, 560, 1000, 800, 800], True),  # abruptly early, then a pause: a PAC
        ([800, 780, 740, 660, 640, 660, 700], False),  # gradual shortening (sinus arrhythmia)
        ([1200, 1200, 1200, 700, 660, 660, 660], False),  # the onset of a faster rhythm: no pause
        ([800, 800, 800, 660, 700, 800, 800], False),  # 82% of the preceding RR: not premature enough
    ],
)
def test_premature_atrial_complex_needs_prematurity_and_a_pause(rr_ms: list[int], pac: bool) -> None:
    beats = np.concatenate(([200], 200 + np.cumsum(np.asarray(rr_ms) // 2))).astype(np.int64)  # 500 Hz
    labels = np.array(["N"] * beats.size)
    labels[4] = "S"  # the beat the classifier called premature (RR < 85% of its local RR)
    ri = replace(_ri(), beats=beats, labels=labels)
    assert (SCT.PREMATURE_ATRIAL_COMPLEX in _codes(interpret(ri))) is pac


def test_every_readable_record_gets_a_rhythm_statement() -> None:
    """No P wave found and no other rhythm shown: rate and regularity are still stated, origin not claimed."""
    out = interpret(_ri(replace(NORMAL_G, pr_ms=None, p_axis_deg=None)))
    f = next(f for f in out if f.concept == MMDX.ECG_RHYTHM_UNDETERMINED)
    assert f.text == "Regular rhythm at 72/min, origin not determined" and not f.critical
    assert SCT.NORMAL_ECG not in _codes(out)
    # a named rhythm needs no such statement
    assert MMDX.ECG_RHYTHM_UNDETERMINED not in _codes(interpret(_ri()))


def test_paced_rhythm_in_leads_scaled_to_one_millivolt() -> None:
    """500 Hz, every lead scaled to ~1 mV peak to peak (as LUDB is distributed): a spike of two samples is still
    a pacing spike, the rhythm is paced, and the wide paced QRS gets no bundle branch block statement."""
    fs = 500.0
    x, r, _ = synth_rhythm(np.random.default_rng(8), "N" * 10, fs=fs, p_waves=False, qrs_ms=150)
    for s in r - int(0.04 * fs):
        x[:, s : s + 2] += 0.5
    x = x / np.ptp(x, axis=1, keepdims=True)
    st = _statements(x, fs)
    assert SCT.PACED_RHYTHM in st
    assert not st & {SCT.COMPLETE_LBBB, SCT.COMPLETE_RBBB, SCT.INCOMPLETE_RBBB, SCT.INCOMPLETE_LBBB, SCT.IVCD}


def test_rhythm_and_morphology_rules_are_tables_of_named_rules_with_their_criteria() -> None:
    """Each statement is one small named rule whose criteria text travels with it (as reports/fhir_rules.py)."""
    from ecg.rules.morphology import MORPHOLOGY_RULES
    from ecg.rules.rhythm import RHYTHM_RULES

    for table in (RHYTHM_RULES, MORPHOLOGY_RULES):
        names = [r.name for r in table]
        assert len(names) == len(set(names))
        assert all(r.criteria and callable(r.decide) for r in table)
    assert [r.name for r in RHYTHM_RULES][:2] == ["ventricular tachycardia", "paced rhythm"]
