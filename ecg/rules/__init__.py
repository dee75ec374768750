"""Rule-based ECG interpretation: AHA/ACCF/HRS standardized statements with SNOMED CT codes.

Rhythm statements need only beats (any lead set); 12-lead statements need
the standard 12 leads.  Every statement carries the criteria met and the
measurements behind it; critical statements are marked for STAT priority.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from core.codes import LOINC, MMDX, SCT
from core.records import Finding, Priority, PriorityLevel
from ecg.rules import thresholds as th
from ecg.rules.base import PRODUCER, RuleInput, finding, ruleset_digest
from ecg.rules.morphology import morphology_statements
from ecg.rules.rhythm import rhythm_statements, ventricular_rhythm

__all__ = ["PRODUCER", "RuleInput", "finding", "interpret", "priority_of", "ruleset_digest"]


def interpret(ri: RuleInput) -> tuple[Finding, ...]:
    """All statements for one analysed record, gated by its signal quality."""
    rhythm = rhythm_statements(ri)
    if not any(f.concept in RHYTHMS for f in rhythm):
        rhythm = [*_undetermined_rhythm(ri), *rhythm]
    # paced or ventricular dominant beats: no conduction, axis, hypertrophy or ST-T statements from them
    paced = any(f.concept == SCT.PACED_RHYTHM for f in rhythm) or ventricular_rhythm(rhythm)
    out = rhythm + morphology_statements(ri, paced=paced)
    out = gate_quality(ri, out)
    summary = _summary(ri, out)
    return tuple(out + ([summary] if summary else []))


#: The statements that name the rhythm (one of them, or the undetermined-rhythm statement, is always made).
RHYTHMS = frozenset(
    {
        SCT.SINUS_RHYTHM,
        SCT.SINUS_BRADYCARDIA,
        SCT.SINUS_TACHYCARDIA,
        SCT.ATRIAL_FIBRILLATION,
        SCT.ATRIAL_FLUTTER,
        SCT.PACED_RHYTHM,
        SCT.VENTRICULAR_TACHYCARDIA,
        SCT.JUNCTIONAL_RHYTHM,
        SCT.ACCELERATED_JUNCTIONAL_RHYTHM,
        SCT.SUPRAVENTRICULAR_TACHYCARDIA,
        SCT.IDIOVENTRICULAR_RHYTHM,
        SCT.COMPLETE_AV_BLOCK,
        MMDX.ECG_WIDE_QRS_TACHYCARDIA,
    }
)


def _undetermined_rhythm(ri: RuleInput) -> list[Finding]:
    """Rate and regularity when no rhythm rule named the rhythm: every readable record gets a rhythm statement.

    No origin is claimed (no P wave at a constant PR was found, and neither
    fibrillation, flutter nor a rhythm without P waves was shown), so nothing
    here is critical; the reader sees why the rhythm is not named.
    """
    g = ri.g
    if g is None or g.hr_bpm is None or ri.beats.size < 3:
        return []
    rr = np.diff(ri.beats) / ri.fs
    regular = float(np.mean(np.abs(rr / np.median(rr) - 1.0) < th.REGULAR_CV)) >= th.REGULAR_FRACTION
    crit = [
        f"{'regular' if regular else 'irregular'} rhythm at {g.hr_bpm:.0f}/min, QRS {g.qrs_ms:.0f} ms",
        "no P wave at a constant PR found; atrial fibrillation, flutter and rhythms without P waves not shown",
    ]
    text = f"{'Regular' if regular else 'Irregular'} rhythm at {g.hr_bpm:.0f}/min, origin not determined"
    return [finding(MMDX.ECG_RHYTHM_UNDETERMINED, crit, ri.measurement(LOINC.HEART_RATE), text=text)]


#: Statements a poor record may still carry: they rest on P waves and beats that were seen, not on an RR series
#: or shapes that artefact can fake; rhythm alarms (AF, flutter, VT, blocks, SVT) are withheld.
KEPT_WHEN_POOR = frozenset({SCT.SINUS_RHYTHM, SCT.SINUS_BRADYCARDIA, SCT.SINUS_TACHYCARDIA})


def gate_quality(ri: RuleInput, statements: list[Finding]) -> list[Finding]:
    """Withhold what the record's quality cannot support, and say so.

    A poor record (no good lead, or a quarter of beats in artefact) keeps only
    a sinus rhythm read from its P waves and says that rhythm was not
    interpreted; every critical statement needs a readable record.
    """
    if ri.quality_poor is None:
        return [_supported(ri, f) if f.critical else f for f in statements]
    kept = [f for f in statements if f.concept in KEPT_WHEN_POOR and not f.critical]
    withheld = sorted({f.text for f in statements if f not in kept})
    crit = [f"poor signal quality: {ri.quality_poor}"]
    if withheld:
        crit.append("withheld: " + "; ".join(withheld))
    note = Finding(
        concept=MMDX.ECG_NOISE,
        text="Poor signal quality: rhythm not interpreted"
        if not kept
        else "Poor signal quality: limited interpretation",
        producer=PRODUCER,
        criteria=tuple(crit),
    )
    return [note, *kept]


#: A critical statement stays STAT only when at least this fraction of the analysed leads is of good quality.
CRITICAL_GOOD_FRACTION = 0.5


def _supported(ri: RuleInput, f: Finding) -> Finding:
    """A critical statement with the good-quality leads that support it named, or demoted when too few are good.

    A STEMI is already drawn from good leads only (its criteria name them);
    rhythm alarms rest on every analysed lead, so most of them must be good.
    """
    leads = [a.lead for a in ri.amps]
    if ri.good_leads is None or not leads:
        return f
    good = [k for k in leads if k in ri.good_leads]
    if len(good) >= CRITICAL_GOOD_FRACTION * len(leads):
        return replace(f, criteria=(*f.criteria, "signal quality good in leads " + ", ".join(good)))
    limited = [k for k in leads if k not in ri.good_leads]
    note = (
        f"not STAT: signal quality limited in {len(limited)} of {len(leads)} leads ({', '.join(limited)}); "
        "confirm on a repeat recording"
    )
    return replace(f, critical=False, criteria=(*f.criteria, note))


def _summary(ri: RuleInput, statements: list[Finding]) -> Finding | None:
    """Normal / abnormal ECG, for a complete 12-lead analysis only."""
    g = ri.g
    if not ri.twelve_lead or g is None or not statements or ri.quality_poor is not None:
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
