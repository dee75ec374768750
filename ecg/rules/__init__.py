"""Rule-based ECG interpretation: AHA/ACCF/HRS standardized statements with SNOMED CT codes.

Rhythm statements need only beats (any lead set); 12-lead statements need
the standard 12 leads.  Every statement carries the criteria met and the
measurements behind it; critical statements are marked for STAT priority.
"""

from __future__ import annotations

from core.codes import SCT
from core.records import Finding, Priority, PriorityLevel
from ecg.rules.base import PRODUCER, RuleInput, finding, ruleset_digest
from ecg.rules.morphology import morphology_statements
from ecg.rules.rhythm import rhythm_statements, ventricular_rhythm

__all__ = ["PRODUCER", "RuleInput", "finding", "interpret", "priority_of", "ruleset_digest"]


def interpret(ri: RuleInput) -> tuple[Finding, ...]:
    """All statements for one analysed record."""
    rhythm = rhythm_statements(ri)
    # paced or ventricular dominant beats: no conduction, axis, hypertrophy or ST-T statements from them
    paced = any(f.concept == SCT.PACED_RHYTHM for f in rhythm) or ventricular_rhythm(rhythm)
    out = rhythm + morphology_statements(ri, paced=paced)
    summary = _summary(ri, out)
    return tuple(out + ([summary] if summary else []))


def _summary(ri: RuleInput, statements: list[Finding]) -> Finding | None:
    """Normal / abnormal ECG, for a complete 12-lead analysis only."""
    g = ri.g
    if not ri.twelve_lead or g is None or not statements:
        return None
    concepts = {f.concept for f in statements}
    if concepts == {SCT.SINUS_RHYTHM}:
        checks = [
            g.pr_ms is not None and 120.0 <= g.pr_ms <= 200.0,
            g.qrs_ms < 110.0,
            g.qrs_axis_deg is not None and -30.0 <= g.qrs_axis_deg <= 90.0,
            g.qt_ms is not None,
        ]
        if all(checks):
            return finding(
                SCT.NORMAL_ECG,
                [
                    "sinus rhythm 60-100/min",
                    f"PR {g.pr_ms:.0f} ms, QRS {g.qrs_ms:.0f} ms, QRS axis {g.qrs_axis_deg:.0f} deg: normal limits",
                    "no conduction, voltage, ST-T or QT abnormality met its criteria",
                ],
            )
        return None
    abnormal = [f.text for f in statements if f.concept != SCT.SINUS_RHYTHM]
    return finding(SCT.ABNORMAL_ECG, ["abnormal statement(s): " + "; ".join(abnormal)])


def priority_of(statements: tuple[Finding, ...]) -> Priority:
    """STAT with the critical statements as the reason, else routine."""
    crit = [f.text for f in statements if f.critical]
    if crit:
        return Priority(PriorityLevel.STAT, "critical ECG: " + "; ".join(crit))
    return Priority.routine()
