"""12-lead statements: conduction, axis, voltage, hypertrophy, ST/T, QT (need the standard 12 leads)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from core.codes import LOINC, MMDX, SCT
from core.records import Finding, Sex
from ecg.rules import thresholds as th
from ecg.rules.base import Rule, RuleInput, finding
from ecg.rules.conduction import conduction_statements
from ecg.rules.infarct import infarct_statements
from ecg.signal.measurements import LeadAmplitudes

#: Contiguous lead sequences: limb leads in Cabrera order, precordial leads in order.
CONTIGUOUS = (("aVL", "I", "II", "aVF", "III"), ("V1", "V2", "V3", "V4", "V5", "V6"))


def _contiguous_pairs(leads: set[str]) -> list[tuple[str, str]]:
    pairs = []
    for seq in CONTIGUOUS:
        for a, b in itertools.pairwise(seq):
            if a in leads and b in leads:
                pairs.append((a, b))
    return pairs


def _ste_threshold(lead: str, ri: RuleInput) -> tuple[float, str | None]:
    if lead not in ("V2", "V3"):
        return th.STE_OTHER_MV, None
    p = ri.patient
    if p is None or p.sex not in (Sex.MALE, Sex.FEMALE):
        return th.STE_V2V3_UNKNOWN_MV, "sex unknown: most sensitive V2-V3 threshold (0.15 mV) used"
    if p.sex is Sex.FEMALE:
        return th.STE_V2V3_WOMEN_MV, None
    if p.age_years is None:
        return th.STE_V2V3_MEN_40_MV, "age unknown: V2-V3 threshold for men >= 40 years (0.2 mV) used"
    return (th.STE_V2V3_MEN_40_MV if p.age_years >= 40 else th.STE_V2V3_MEN_UNDER_40_MV), None


def _ptp(a: LeadAmplitudes) -> float:
    return a.r + max(a.r_prime, 0.0) - min(a.q, a.s)


@dataclass(frozen=True, slots=True)
class MorphologyContext:
    """What the 12-lead rules share: each lead's amplitudes, whether the beats are paced or ventricular, and the
    conduction statements (an LBBB rules out voltage, ST-T and Q-wave criteria)."""

    amp: dict[str, LeadAmplitudes]
    paced: bool
    conduction: tuple[Finding, ...]

    @property
    def lbbb(self) -> bool:
        return any(f.concept == SCT.COMPLETE_LBBB for f in self.conduction)

    def repolarisation_readable(self, ri: RuleInput) -> bool:
        """Voltage, ST-T and Q-wave criteria apply: plausible amplitudes, no paced beats, no LBBB."""
        return ri.implausible_amplitude is None and not self.paced and not self.lbbb


def axis_deviation(ri: RuleInput, c: MorphologyContext) -> Finding | None:
    g = ri.g
    ax = g.qrs_axis_deg if g is not None else None
    if ax is None or c.paced:
        return None
    ax180 = ax if ax <= 180 else ax - 360
    axis_m = ri.measurement(LOINC.QRS_AXIS)
    if -90.0 <= ax180 < th.LAD_DEG:
        return finding(SCT.LEFT_AXIS_DEVIATION, [f"QRS axis {ax180:.0f} deg < -30 deg"], axis_m)
    if th.RAD_DEG < ax180 <= 180:
        return finding(SCT.RIGHT_AXIS_DEVIATION, [f"QRS axis {ax180:.0f} deg > +90 deg"], axis_m)
    return None


def implausible_amplitudes(ri: RuleInput, c: MorphologyContext) -> Finding | None:
    if ri.implausible_amplitude is None:
        return None
    # a gain error scales every voltage: no voltage, hypertrophy or ST criterion is applied
    return finding(
        MMDX.ECG_TECHNICAL,
        [ri.implausible_amplitude, "low voltage, LVH, ST and T-wave criteria not applied"],
        text="Implausible amplitudes: voltage and ST-T criteria not applied",
    )


def low_voltage(ri: RuleInput, c: MorphologyContext) -> Finding | None:
    if ri.implausible_amplitude is not None:
        return None
    amp = c.amp
    limb = [amp[k] for k in ("I", "II", "III", "aVR", "aVL", "aVF") if k in amp]
    prec = [amp[k] for k in ("V1", "V2", "V3", "V4", "V5", "V6") if k in amp]
    if not (limb and prec):
        return None
    limb_low = all(_ptp(a) < th.LOW_VOLTAGE_LIMB_MV for a in limb)
    prec_low = all(_ptp(a) < th.LOW_VOLTAGE_PRECORDIAL_MV for a in prec)
    if not (limb_low or prec_low):
        return None
    crit = []
    if limb_low:
        crit.append(f"QRS peak-to-peak < 0.5 mV in all limb leads (max {max(_ptp(a) for a in limb):.2f} mV)")
    if prec_low:
        crit.append(f"QRS peak-to-peak < 1.0 mV in all precordial leads (max {max(_ptp(a) for a in prec):.2f} mV)")
    return finding(SCT.LOW_QRS_VOLTAGE, crit)


def lvh(ri: RuleInput, c: MorphologyContext) -> Finding | None:
    amp = c.amp
    if not c.repolarisation_readable(ri) or not all(k in amp for k in ("V1", "V5", "V6", "aVL", "V3")):
        return None
    sl = abs(amp["V1"].s) + max(amp["V5"].r, amp["V6"].r)
    cornell = amp["aVL"].r + abs(amp["V3"].s)
    sex = ri.patient.sex if ri.patient else Sex.UNKNOWN
    c_thr = th.CORNELL_FEMALE_MV if sex is Sex.FEMALE else th.CORNELL_MALE_MV
    crit = []
    if sl >= th.SOKOLOW_LYON_MV:
        crit.append(f"Sokolow-Lyon S(V1) + R(V5/V6) = {sl:.2f} mV >= 3.5 mV")
    if cornell > c_thr:
        note = "" if sex in (Sex.MALE, Sex.FEMALE) else " (sex unknown: male threshold used)"
        crit.append(f"Cornell R(aVL) + S(V3) = {cornell:.2f} mV > {c_thr} mV{note}")
    if not crit:
        return None
    amps = ri.measurement(MMDX.ECG_R_AMPLITUDE, "V5") + ri.measurement(MMDX.ECG_S_AMPLITUDE, "V1")
    return finding(SCT.LVH, crit, amps)


def st_elevation(ri: RuleInput, c: MorphologyContext) -> Finding | None:
    """STEMI (critical) where contiguous leads of good quality meet the thresholds; plain ST elevation where
    only leads of limited quality complete a contiguous pair."""
    if not c.repolarisation_readable(ri):
        return None
    notes: set[str] = set()
    elevated: set[str] = set()
    limited: set[str] = set()
    for k, a in c.amp.items():
        thr, note = _ste_threshold(k, ri)
        if a.st_j >= thr:
            # a critical statement needs good quality in the leads that support it
            (elevated if ri.good(k) else limited).add(k)
            if note:
                notes.add(note)
    pairs = _contiguous_pairs(elevated)
    if pairs:
        leads = sorted({x for p in pairs for x in p})
        return finding(
            SCT.STEMI,
            [
                "ST elevation at the J point in contiguous leads " + ", ".join(leads),
                "thresholds (4th universal definition of MI): >= 0.1 mV, V2-V3 by age and sex",
                *sorted(notes),
                "acute ST elevation MI criteria met: correlate clinically, compare with prior ECG",
            ],
            tuple(m for k in leads for m in ri.measurement(MMDX.ECG_ST_J, k)),
            critical=True,
            text="ST elevation meeting STEMI criteria",
        )
    if not _contiguous_pairs(elevated | limited):
        return None
    leads = sorted({x for p in _contiguous_pairs(elevated | limited) for x in p})
    return finding(
        SCT.ST_ELEVATION,
        [
            "ST elevation at the J point in contiguous leads " + ", ".join(leads),
            "signal quality limited in " + ", ".join(sorted(limited)) + ": STEMI criteria not applied",
        ],
        tuple(m for k in leads for m in ri.measurement(MMDX.ECG_ST_J, k)),
    )


def st_depression(ri: RuleInput, c: MorphologyContext) -> Finding | None:
    g = ri.g
    if not c.repolarisation_readable(ri) or g is None or g.qrs_ms >= th.COMPLETE_BBB_QRS_MS:
        return None
    depressed = {
        k
        for k, a in c.amp.items()
        if k != "aVR" and a.st_j <= th.ST_DEPRESSION_MV and (a.st_j60 or 0) <= th.ST_DEPRESSION_MV
    }
    dp = _contiguous_pairs(depressed)
    if not dp:
        return None
    leads = sorted({x for p in dp for x in p})
    return finding(
        SCT.ST_DEPRESSION,
        ["ST depression >= 0.05 mV at J and J+60 ms in contiguous leads " + ", ".join(leads)],
        tuple(m for k in leads for m in ri.measurement(MMDX.ECG_ST_J60, k)),
    )


def t_wave_inversion(ri: RuleInput, c: MorphologyContext) -> Finding | None:
    g = ri.g
    if not c.repolarisation_readable(ri) or g is None or g.qrs_ms >= th.COMPLETE_BBB_QRS_MS:
        return None
    inverted = {
        k for k, a in c.amp.items() if k not in ("aVR", "V1", "III") and a.t is not None and a.t <= th.T_INVERSION_MV
    }
    tp = _contiguous_pairs(inverted)
    if not tp:
        return None
    leads = sorted({x for p in tp for x in p})
    return finding(
        SCT.T_WAVE_INVERSION,
        ["T wave <= -0.1 mV in contiguous leads " + ", ".join(leads) + " (aVR, III, V1 not counted)"],
        tuple(m for k in leads for m in ri.measurement(MMDX.ECG_T_AMPLITUDE, k)),
    )


def prolonged_qt(ri: RuleInput, c: MorphologyContext) -> Finding | None:
    found = _qt(ri)
    return found[0] if found else None


#: The 12-lead rules in statement order, after the conduction statements (:mod:`ecg.rules.conduction`) and
#: with the infarct territories (:mod:`ecg.rules.infarct`) after the ST-T rules.
MORPHOLOGY_RULES: tuple[Rule, ...] = (
    Rule("axis deviation", "QRS axis -30 to -90 deg (left) or +90 to +180 deg (right); not for paced beats",
         axis_deviation),
    Rule("implausible amplitudes", "amplitudes no gain could give: voltage and ST-T criteria not applied",
         implausible_amplitudes),
    Rule("low QRS voltage", "QRS peak-to-peak < 0.5 mV in every limb lead or < 1.0 mV in every precordial lead",
         low_voltage),
    Rule("LVH", "Sokolow-Lyon S(V1) + R(V5/V6) >= 3.5 mV or Cornell R(aVL) + S(V3) > 2.8 (men) / 2.0 mV (women); "
         "not with LBBB or paced beats", lvh),
    Rule("ST elevation / STEMI", "J-point elevation in 2 contiguous leads: >= 0.1 mV, V2-V3 >= 0.2 (men >= 40), "
         "0.25 (men < 40), 0.15 mV (women) (4th universal definition of MI)", st_elevation),
    Rule("ST depression", "ST <= -0.05 mV at J and J+60 ms in 2 contiguous leads (aVR not counted); QRS < 120 ms",
         st_depression),
    Rule("T-wave inversion", "T <= -0.1 mV in 2 contiguous leads (aVR, III, V1 not counted); QRS < 120 ms",
         t_wave_inversion),
)  # fmt: skip


def morphology_statements(ri: RuleInput, *, paced: bool) -> list[Finding]:
    """Conduction, axis, voltage, LVH, ST/T, infarct and QT statements (:data:`MORPHOLOGY_RULES`)."""
    g = ri.g
    if g is None or not ri.twelve_lead or not ri.amps:
        return []
    amp = {a.lead: a for a in ri.amps}
    c = MorphologyContext(amp, paced, tuple([] if paced else conduction_statements(ri, amp)))
    out: list[Finding] = list(c.conduction)
    for rule in MORPHOLOGY_RULES:
        f = rule.decide(ri, c)
        if f is not None:
            out.append(f)
    if c.repolarisation_readable(ri):
        elevated = {k for k, a in amp.items() if a.st_j >= _ste_threshold(k, ri)[0] and ri.good(k)}
        stemi_leads = {x for p in _contiguous_pairs(elevated) for x in p}
        out += infarct_statements(ri, amp, stemi_leads)
    qt = prolonged_qt(ri, c)
    return out + ([qt] if qt is not None else [])


def _qt(ri: RuleInput) -> list[Finding]:
    g = ri.g
    if g is None or g.qtc_fridericia_ms is None:
        return []
    sex = ri.patient.sex if ri.patient else Sex.UNKNOWN
    thr = {Sex.MALE: th.QTC_LONG_MALE_MS, Sex.FEMALE: th.QTC_LONG_FEMALE_MS}.get(sex, th.QTC_LONG_UNKNOWN_MS)
    q = g.qtc_fridericia_ms
    if q < thr:
        return []
    if g.pr_ms is None and g.rr_ms is not None and g.qt_ms is not None and g.rr_ms - g.qt_ms < th.MIN_TQ_WITHOUT_P_MS:
        # no T-Q segment and no P found: the measured T end may be the next P wave (P on T).  Delineation
        # withholds such a T end itself (Fiducials.t_note); this guard stays for T ends it could not judge
        return []
    crit = [
        f"QTc (Fridericia) {q:.0f} ms >= {thr:.0f} ms "
        f"({'sex unknown' if sex not in (Sex.MALE, Sex.FEMALE) else sex.name.lower()})"
    ]
    critical = q >= th.QTC_CRITICAL_MS
    if critical:
        crit.append("QTc >= 500 ms: risk of torsades de pointes")
    if g.qrs_ms >= th.COMPLETE_BBB_QRS_MS:
        crit.append(f"QRS {g.qrs_ms:.0f} ms prolongs QT; interpret with care")
    return [
        finding(
            SCT.PROLONGED_QT,
            crit,
            ri.measurement(LOINC.QT_INTERVAL) + ri.measurement(LOINC.QTC_FRIDERICIA),
            critical=critical,
        )
    ]
