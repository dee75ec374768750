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
from ecg.rules.rhythm import rhythm_statements

__all__ = ["PRODUCER", "RuleInput", "finding", "interpret", "priority_of", "ruleset_digest"]


def interpret(ri: RuleInput) -> tuple[Finding, ...]:
    """All statements for one analysed record."""
    rhythm = rhythm_statements(ri)
    paced = any(f.concept == SCT.PACED_RHYTHM for f in rhythm)
    return tuple(rhythm + morphology_statements(ri, paced=paced))


def priority_of(statements: tuple[Finding, ...]) -> Priority:
    """STAT with the critical statements as the reason, else routine."""
    crit = [f.text for f in statements if f.critical]
    if crit:
        return Priority(PriorityLevel.STAT, "critical ECG: " + "; ".join(crit))
    return Priority.routine()
