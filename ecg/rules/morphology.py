"""12-lead statements: conduction, axis, voltage, hypertrophy, ST/T, QT (need the standard 12 leads)."""

from __future__ import annotations

import itertools

from core.codes import LOINC, MMDX, SCT
from core.records import Finding, Sex
from ecg.rules import thresholds as th
from ecg.rules.base import RuleInput, finding
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


def morphology_statements(ri: RuleInput, *, paced: bool) -> list[Finding]:
    """Conduction, axis, voltage, LVH, ST/T and QT statements."""
    g = ri.g
    if g is None or not ri.twelve_lead or not ri.amps:
        return []
    amp = {a.lead: a for a in ri.amps}
    out: list[Finding] = []
    axis_m = ri.measurement(LOINC.QRS_AXIS)
    qrs = g.qrs_ms
    conduction = [] if paced else conduction_statements(ri, amp)
    out += conduction
    lbbb = any(f.concept == SCT.COMPLETE_LBBB for f in conduction)
    ax = g.qrs_axis_deg
    if ax is not None and not paced:
        ax180 = ax if ax <= 180 else ax - 360
        if -90.0 <= ax180 < th.LAD_DEG:
            out.append(finding(SCT.LEFT_AXIS_DEVIATION, [f"QRS axis {ax180:.0f} deg < -30 deg"], axis_m))
        elif th.RAD_DEG < ax180 <= 180:
            out.append(finding(SCT.RIGHT_AXIS_DEVIATION, [f"QRS axis {ax180:.0f} deg > +90 deg"], axis_m))
    if ri.implausible_amplitude is not None:
        # a gain error scales every voltage: no voltage, hypertrophy or ST criterion is applied
        out.append(
            finding(
                MMDX.ECG_TECHNICAL,
                [ri.implausible_amplitude, "low voltage, LVH, ST and T-wave criteria not applied"],
                text="Implausible amplitudes: voltage and ST-T criteria not applied",
            )
        )
        out += _qt(ri)
        return out
    limb = [amp[k] for k in ("I", "II", "III", "aVR", "aVL", "aVF") if k in amp]
    prec = [amp[k] for k in ("V1", "V2", "V3", "V4", "V5", "V6") if k in amp]
    if limb and prec:
        limb_low = all(_ptp(a) < th.LOW_VOLTAGE_LIMB_MV for a in limb)
        prec_low = all(_ptp(a) < th.LOW_VOLTAGE_PRECORDIAL_MV for a in prec)
        if limb_low or prec_low:
            crit = []
            if limb_low:
                crit.append(f"QRS peak-to-peak < 0.5 mV in all limb leads (max {max(_ptp(a) for a in limb):.2f} mV)")
            if prec_low:
                crit.append(
                    f"QRS peak-to-peak < 1.0 mV in all precordial leads (max {max(_ptp(a) for a in prec):.2f} mV)"
                )
            out.append(finding(SCT.LOW_QRS_VOLTAGE, crit))
    if not paced and not lbbb and all(k in amp for k in ("V1", "V5", "V6", "aVL", "V3")):
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
        if crit:
            amps = ri.measurement(MMDX.ECG_R_AMPLITUDE, "V5") + ri.measurement(MMDX.ECG_S_AMPLITUDE, "V1")
            out.append(finding(SCT.LVH, crit, amps))
    if not paced and not lbbb:
        out += _st_t(ri, amp, qrs)
        elevated = {k for k, a in amp.items() if a.st_j >= _ste_threshold(k, ri)[0] and ri.good(k)}
        stemi_leads = {x for p in _contiguous_pairs(elevated) for x in p}
        out += infarct_statements(ri, amp, stemi_leads)
    out += _qt(ri)
    return out


def _st_t(ri: RuleInput, amp: dict[str, LeadAmplitudes], qrs: float) -> list[Finding]:
    out: list[Finding] = []
    notes: set[str] = set()
    elevated: set[str] = set()
    limited: set[str] = set()
    for k, a in amp.items():
        thr, note = _ste_threshold(k, ri)
        if a.st_j >= thr:
            # a critical statement needs good quality in the leads that support it
            (elevated if ri.good(k) else limited).add(k)
            if note:
                notes.add(note)
    pairs = _contiguous_pairs(elevated)
    if not pairs and _contiguous_pairs(elevated | limited):
        leads = sorted({x for p in _contiguous_pairs(elevated | limited) for x in p})
        out.append(
            finding(
                SCT.ST_ELEVATION,
                [
                    "ST elevation at the J point in contiguous leads " + ", ".join(leads),
                    "signal quality limited in " + ", ".join(sorted(limited)) + ": STEMI criteria not applied",
                ],
                tuple(m for k in leads for m in ri.measurement(MMDX.ECG_ST_J, k)),
            )
        )
    if pairs:
        leads = sorted({x for p in pairs for x in p})
        st_m = tuple(m for k in leads for m in ri.measurement(MMDX.ECG_ST_J, k))
        out.append(
            finding(
                SCT.STEMI,
                [
                    "ST elevation at the J point in contiguous leads " + ", ".join(leads),
                    "thresholds (4th universal definition of MI): >= 0.1 mV, V2-V3 by age and sex",
                    *sorted(notes),
                    "acute ST elevation MI criteria met: correlate clinically, compare with prior ECG",
                ],
                st_m,
                critical=True,
                text="ST elevation meeting STEMI criteria",
            )
        )
    if qrs >= th.COMPLETE_BBB_QRS_MS:
        return out
    depressed = {
        k
        for k, a in amp.items()
        if k != "aVR" and a.st_j <= th.ST_DEPRESSION_MV and (a.st_j60 or 0) <= th.ST_DEPRESSION_MV
    }
    dp = _contiguous_pairs(depressed)
    if dp:
        leads = sorted({x for p in dp for x in p})
        out.append(
            finding(
                SCT.ST_DEPRESSION,
                ["ST depression >= 0.05 mV at J and J+60 ms in contiguous leads " + ", ".join(leads)],
                tuple(m for k in leads for m in ri.measurement(MMDX.ECG_ST_J60, k)),
            )
        )
    inverted = {
        k for k, a in amp.items() if k not in ("aVR", "V1", "III") and a.t is not None and a.t <= th.T_INVERSION_MV
    }
    tp = _contiguous_pairs(inverted)
    if tp:
        leads = sorted({x for p in tp for x in p})
        out.append(
            finding(
                SCT.T_WAVE_INVERSION,
                ["T wave <= -0.1 mV in contiguous leads " + ", ".join(leads) + " (aVR, III, V1 not counted)"],
                tuple(m for k in leads for m in ri.measurement(MMDX.ECG_T_AMPLITUDE, k)),
            )
        )
    return out


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
