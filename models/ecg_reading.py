"""What a vision-language model's ECG draft says, in the rule engine's SNOMED CT statements.

An ECG draft (PULSE, any VLM routed to ECGs) is free text in the draft schema:
its findings carry a presence but no code.  To cross-check it with the
rule-based interpretation (:func:`models.safety.ecg_draft_vs_rules`) each
finding's text is matched against the statements below; a statement is a
group of codes that count as the same reading (the rules may say "left bundle
branch block" where the model says "complete LBBB").  Only structured
findings are read: their presence is the model's own, so "no atrial
fibrillation" is an absence, never a mention.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from core.codes import SCT, Code
from core.records import Finding, Presence
from models.protocol import ModelOutput


@dataclass(frozen=True, slots=True)
class EcgStatement:
    """One statement a draft may make: the codes that mean it and the phrasings that say it."""

    key: str
    codes: tuple[Code, ...]
    pattern: re.Pattern[str]

    @property
    def meaning(self) -> str:
        return self.codes[0].meaning


def _s(key: str, codes: tuple[Code, ...], *phrases: str) -> EcgStatement:
    return EcgStatement(key, codes, re.compile("|".join(f"(?:{p})" for p in phrases), re.IGNORECASE))


_AV = r"(?:av|a-v|atrioventricular)"
#: Statements a draft is checked on (rhythm, conduction, QT, hypertrophy, ischaemia/infarction).
STATEMENTS: tuple[EcgStatement, ...] = (
    _s("AFIB", (SCT.ATRIAL_FIBRILLATION,), r"atrial fibrillation", r"\bafib\b", r"\ba-?fib\b"),
    _s("AFLT", (SCT.ATRIAL_FLUTTER,), r"atrial flutter"),
    _s("SBRAD", (SCT.SINUS_BRADYCARDIA,), r"sinus bradycardia"),
    _s("STACH", (SCT.SINUS_TACHYCARDIA,), r"sinus tachycardia"),
    _s("VT", (SCT.VENTRICULAR_TACHYCARDIA,), r"(?<!supra)ventricular tachycardia", r"\bv-?tach\b"),
    _s("SVT", (SCT.SUPRAVENTRICULAR_TACHYCARDIA,), r"supraventricular tachycardia", r"\bsvt\b"),
    _s("PACE", (SCT.PACED_RHYTHM,), r"paced rhythm", r"pacemaker rhythm", r"ventricular pacing"),
    _s("1AVB", (SCT.FIRST_DEGREE_AV_BLOCK,), rf"(?:first|1st)[- ]degree {_AV} block"),
    _s("2AVB", (SCT.SECOND_DEGREE_AV_BLOCK,), rf"(?:second|2nd)[- ]degree {_AV} block", r"mobitz", r"wenckebach"),
    _s(
        "3AVB",
        (SCT.COMPLETE_AV_BLOCK,),
        rf"(?:third|3rd)[- ]degree {_AV} block",
        rf"complete (?:{_AV}|heart) block",
    ),
    _s("LBBB", (SCT.COMPLETE_LBBB, SCT.LBBB), r"(?<!incomplete )left bundle branch block", r"(?<!incomplete )\blbbb\b"),
    _s(
        "RBBB", (SCT.COMPLETE_RBBB, SCT.RBBB), r"(?<!incomplete )right bundle branch block", r"(?<!incomplete )\brbbb\b"
    ),
    _s("LAFB", (SCT.LAFB,), r"left anterior fascicular block", r"\blafb\b", r"left anterior hemiblock"),
    _s("LPFB", (SCT.LPFB,), r"left posterior fascicular block", r"\blpfb\b"),
    _s("LNGQT", (SCT.PROLONGED_QT,), r"(?:prolonged|long) qtc?\b", r"qtc? (?:interval )?prolong"),
    _s("LVH", (SCT.LVH,), r"left ventricular hypertrophy", r"\blvh\b"),
    _s("STE", (SCT.ST_ELEVATION, SCT.STEMI), r"st[- ](?:segment )?elevation", r"\bstemi\b"),
    _s("STD", (SCT.ST_DEPRESSION,), r"st[- ](?:segment )?depression"),
    _s("MI", (SCT.MYOCARDIAL_INFARCTION, SCT.STEMI), r"myocardial infarction", r"\binfarct"),
)


def ecg_draft_reading(draft: ModelOutput) -> dict[str, Presence]:
    """Statement key -> what the draft's structured findings say about it (present wins over absent)."""
    reading: dict[str, Presence] = {}
    for finding in draft.findings:
        for st in STATEMENTS:
            if st.pattern.search(finding.text) and reading.get(st.key) is not Presence.PRESENT:
                reading[st.key] = finding.presence
    return reading


def statements_present(codes: Sequence[Code]) -> set[str]:
    """Statement keys among coded findings (the rule engine's present statements)."""
    have = set(codes)
    return {st.key for st in STATEMENTS if have.intersection(st.codes)}


def coded_ecg_findings(findings: Iterable[Finding]) -> tuple[Finding, ...]:
    """The findings, each uncoded one whose text names exactly one statement coded with it (SNOMED CT), so an
    ECG draft's "Atrial fibrillation" is the same concept in FHIR and the SR as the rules' and the classifier's."""
    out = []
    for f in findings:
        if f.concept is None:
            named = [st for st in STATEMENTS if st.pattern.search(f.text)]
            if len(named) == 1:
                f = dataclasses.replace(f, concept=named[0].codes[0])
        out.append(f)
    return tuple(out)


BY_KEY: dict[str, EcgStatement] = {st.key: st for st in STATEMENTS}
