"""Infarct statements by territory: pathological Q waves, with ST elevation (acute) or without (age indeterminate).

Criteria: Fourth Universal Definition of Myocardial Infarction (2018), "ECG
changes associated with prior myocardial infarction" (in the absence of LBBB,
LVH and ventricular pacing):

* any Q wave in V2-V3 > 20 ms, or a QS complex in V2-V3;
* a Q wave >= 30 ms and >= 0.1 mV deep, or a QS complex, in any two leads of a
  contiguous lead group (I, aVL, V5, V6 lateral; II, III, aVF inferior;
  V1-V4 anterior/septal);
* (posterior, R in V1-V2 > 40 ms with R/S > 1 and a positive T) is not
  called: it needs R-wave durations this engine does not measure yet.

Each territory is one named rule.  With ST elevation meeting STEMI criteria in
the same leads the infarct is "acute"; otherwise "age indeterminate" (the ECG
alone does not date a Q-wave infarct).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

from core.codes import MMDX, SCT
from core.records import Finding
from ecg.rules.base import Rule, RuleInput, finding
from ecg.signal.measurements import LeadAmplitudes

#: UDMI: Q >= 30 ms and >= 0.1 mV (V2-V3: any Q > 20 ms).
Q_MS = 30.0
Q_MV = 0.1
Q_V2V3_MS = 20.0
#: A negative deflection this small (mV) is not a QS complex but a flat lead.
QS_MIN_MV = 0.1
#: In V1-V3 (where UDMI names the QS complex) a positive lobe smaller than this (mV) on the median beat is no R
#: wave: the smallest wave the conduction rules name (``conduction.WAVE_MV``), twice the IEC 60601-2-25 amplitude
#: tolerance (25 uV).  Not in the limb leads: the small inferior r of a left anterior fascicular block is real.
R_MIN_MV = 0.05


def _qs(a: LeadAmplitudes, lead: str) -> bool:
    """A QS complex: one negative deflection, no R wave (in V1-V3 a positive lobe under R_MIN_MV is no R wave)."""
    r_max = R_MIN_MV if lead in ("V1", "V2", "V3") else 0.0
    return a.r <= r_max and min(a.q, a.s) <= -QS_MIN_MV


def _pathological_q(a: LeadAmplitudes, lead: str) -> str | None:
    """The Q-wave finding in one lead (text), or None."""
    if _qs(a, lead):
        return f"QS in {lead}"
    if lead in ("V2", "V3"):
        if a.q < 0.0 and a.q_ms > Q_V2V3_MS:
            return f"Q {a.q_ms:.0f} ms in {lead}"
        return None
    if a.q <= -Q_MV and a.q_ms >= Q_MS:
        return f"Q {a.q_ms:.0f} ms, {abs(a.q):.2f} mV in {lead}"
    return None


#: Territory -> its contiguous leads (in order) and how many of them must show a pathological Q.
TERRITORIES: dict[str, tuple[tuple[str, ...], int]] = {
    "inferior": (("II", "aVF", "III"), 2),
    "lateral": (("I", "aVL", "V5", "V6"), 2),
    "anteroseptal": (("V1", "V2", "V3", "V4"), 2),
}


def _territory_rule(name: str) -> Callable[[RuleInput, dict[str, LeadAmplitudes], set[str]], Finding | None]:
    leads, need = TERRITORIES[name]

    def decide(ri: RuleInput, amp: dict[str, LeadAmplitudes], st_elevated: set[str]) -> Finding | None:
        hits = [(k, t) for k in leads if k in amp and (t := _pathological_q(amp[k], k)) is not None]
        # V2-V3 alone (any Q > 20 ms in both) also counts; elsewhere two leads of the group, adjacent
        names = [k for k, _ in hits]
        adjacent = any(b == leads[leads.index(a) + 1] for a, b in itertools.pairwise(names))
        if len(hits) < need or not adjacent:
            return None
        acute = sorted(set(names) & st_elevated) or sorted(set(leads) & st_elevated)
        crit = [
            "pathological Q waves (4th universal definition of MI): " + "; ".join(t for _, t in hits),
            f"{name} leads {', '.join(leads)}: at least {need} contiguous",
        ]
        if acute:
            crit.append("ST elevation meeting STEMI criteria in " + ", ".join(acute) + ": acute")
            text = f"{name.capitalize()} infarct, acute"
        else:
            crit.append("no ST elevation in these leads: age indeterminate")
            text = f"{name.capitalize()} infarct, age indeterminate"
        q_m = tuple(m for k in names for m in ri.measurement(MMDX.ECG_Q_AMPLITUDE, k))
        return finding(SCT.MYOCARDIAL_INFARCTION, crit, q_m, text=text)

    return decide


INFARCT_RULES: tuple[Rule, ...] = tuple(
    Rule(
        f"{name} infarct",
        f"Q >= 30 ms and >= 0.1 mV or QS in 2 contiguous of {', '.join(TERRITORIES[name][0])} "
        "(V2-V3: any Q > 20 ms); acute with STEMI-level ST elevation there, else age indeterminate",
        _territory_rule(name),
    )
    for name in TERRITORIES
)


def infarct_statements(ri: RuleInput, amp: dict[str, LeadAmplitudes], st_elevated: set[str]) -> list[Finding]:
    """One statement per territory with pathological Q waves (callers exclude LBBB, paced and ventricular beats)."""
    out = []
    for rule in INFARCT_RULES:
        f = rule.decide(ri, amp, st_elevated)
        if f is not None:
            out.append(f)
    return out
