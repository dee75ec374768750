"""Safety checks on AI output before it reaches a report.

* **Attribution**: a finding from a model must carry the sha256 of the
  weights that produced it (:func:`refuse_unattributed`).
* **Status**: an AI draft is stored as ``preliminary`` only
  (:func:`ensure_preliminary`); only a clinician's signature makes it final.
* **Cross-checks**: the VLM draft (its structured findings, and the labeler's
  reading of its text) is compared with the triage classifier's probabilities
  (:func:`draft_vs_classifier`); the ECG model is compared with the rule-based
  interpretation and with the measured intervals (:func:`ecg_model_vs_rules`).
  Each disagreement beyond the thresholds is a :class:`SafetyFlag`, written to
  the report as a finding (``MMDX.MODEL_DISAGREEMENT``) and raising priority
  to URGENT for human review.
* **Critical results** (pneumothorax, acute injury patterns, anything a
  producer marks ``critical``) set STAT priority (:func:`review`).
* **No weights**: :func:`no_model_notice` says plainly what mmdx cannot do.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from core.codes import LOINC, MMDX, SCT, Code
from core.errors import ModelError
from core.records import (
    DraftReport,
    Finding,
    Measurement,
    Presence,
    Priority,
    PriorityLevel,
    Producer,
    ProducerKind,
    ReportStatus,
)
from models.labeler import label_report
from models.protocol import ModelInfo, ModelOutput
from models.vocabulary import BY_KEY, BY_XRV, LABELS

#: Thresholds of the cross-checks (a classifier score is "confident" above HIGH, "confidently absent" below LOW).
THRESHOLDS: dict[str, float] = {"high": 0.8, "low": 0.1}

SAFETY_PRODUCER = Producer(
    kind=ProducerKind.RULE_ENGINE,
    name="mmdx-safety-checks",
    version="1",
    digest=hashlib.sha256(json.dumps(THRESHOLDS, sort_keys=True).encode()).hexdigest(),
)

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True, slots=True)
class SafetyFlag:
    """One disagreement that a human must look at."""

    topic: str  #: vocabulary key or ECG statement
    message: str
    models: tuple[str, ...]

    def to_finding(self) -> Finding:
        return Finding(
            concept=MMDX.MODEL_DISAGREEMENT,
            text=self.message,
            producer=SAFETY_PRODUCER,
            presence=Presence.PRESENT,
            criteria=tuple(f"model:{m}" for m in self.models),
        )


@dataclass(frozen=True, slots=True)
class SafetyReview:
    """Flags, the priority they imply, and the flag findings to add to the draft."""

    flags: tuple[SafetyFlag, ...]
    priority: Priority
    findings: tuple[Finding, ...]


def refuse_unattributed(findings: Iterable[Finding]) -> tuple[Finding, ...]:
    """The findings, unchanged, or ModelError when a model finding lacks a sha256 weights digest."""
    out = tuple(findings)
    for f in out:
        if f.producer.kind is ProducerKind.MODEL and not _SHA256.match(f.producer.digest or ""):
            raise ModelError(
                f"finding {f.text[:60]!r} from model {f.producer.name!r} has no sha256 weights digest "
                f"(got {f.producer.digest!r}); refusing it"
            )
    return out


def ensure_preliminary(report: DraftReport) -> DraftReport:
    """An AI-generated report may only be stored unsigned as preliminary (ModelError otherwise)."""
    if report.is_ai_generated and report.signature is None and report.status is not ReportStatus.PRELIMINARY:
        raise ModelError(
            f"study {report.study_instance_uid}: an unsigned AI draft must be preliminary, not {report.status.value}"
        )
    return report


def _key_of(concept: Code | None) -> str | None:
    return next((lab.key for lab in LABELS if concept is not None and lab.code == concept), None)


def draft_reading(draft: ModelOutput) -> dict[str, Presence]:
    """What the draft says per vocabulary key: its structured findings, else the labeler's reading of its text."""
    reading: dict[str, Presence] = {}
    text = " ".join(s.text for s in draft.sections)
    for key, res in label_report(text).items():
        reading[key] = res.presence
    for f in draft.findings:
        coded = _key_of(f.concept)
        if coded is not None:
            reading[coded] = f.presence
    return reading


def _classifier_key(label: str) -> str | None:
    if label in BY_KEY:
        return label
    lab = BY_XRV.get(label)
    return lab.key if lab else None


def draft_vs_classifier(
    draft: ModelOutput, classifier: ModelOutput, *, high: float | None = None, low: float | None = None
) -> list[SafetyFlag]:
    """Flags where a confident classifier and the VLM draft disagree about a finding."""
    if not (draft.ok and classifier.ok):
        return []
    hi = THRESHOLDS["high"] if high is None else high
    lo = THRESHOLDS["low"] if low is None else low
    reading = draft_reading(draft)
    models = (draft.producer.name, classifier.producer.name)
    flags = []
    for label, p in sorted(classifier.probabilities.items()):
        key = _classifier_key(label)
        if key is None:
            continue
        said = reading.get(key)
        if p >= hi and said in (None, Presence.ABSENT):
            what = "does not mention it" if said is None else "says it is absent"
            flags.append(
                SafetyFlag(key, f"{BY_KEY[key].code.meaning}: classifier score {p:.2f}, the draft {what}", models)
            )
        elif p <= lo and said is Presence.PRESENT:
            flags.append(
                SafetyFlag(
                    key, f"{BY_KEY[key].code.meaning}: the draft says present, classifier score only {p:.2f}", models
                )
            )
    return flags


def _measure(measurements: Sequence[Measurement], *codes: Code) -> float | None:
    return next((m.value for m in measurements if m.code in codes), None)


def ecg_model_vs_rules(
    model: ModelOutput,
    rule_findings: Sequence[Finding],
    measurements: Sequence[Measurement] = (),
    *,
    high: float | None = None,
    low: float | None = None,
) -> list[SafetyFlag]:
    """Flags where the ECG model contradicts the rule-based interpretation or the measured intervals."""
    from models.ecg_cnn import PTBXL_DESCRIPTIONS, PTBXL_TO_SCT

    if not model.ok:
        return []
    hi = THRESHOLDS["high"] if high is None else high
    lo = THRESHOLDS["low"] if low is None else low
    rules_present = {f.concept for f in rule_findings if f.presence is Presence.PRESENT and f.concept is not None}
    rule_name = next((f.producer.name for f in rule_findings), "rule-based interpretation")
    models = (model.producer.name, rule_name)
    flags = []
    for stmt, p in sorted(model.probabilities.items()):
        code = PTBXL_TO_SCT.get(stmt)
        if code is None or code in (SCT.NORMAL_ECG, SCT.SINUS_RHYTHM):
            continue
        if p >= hi and code not in rules_present:
            flags.append(
                SafetyFlag(
                    stmt, f"{PTBXL_DESCRIPTIONS[stmt]}: ECG model {p:.2f}, not in the rule-based interpretation", models
                )
            )
        elif p <= lo and code in rules_present:
            flags.append(
                SafetyFlag(
                    stmt,
                    f"{PTBXL_DESCRIPTIONS[stmt]}: in the rule-based interpretation, ECG model only {p:.2f}",
                    models,
                )
            )
    # the model's rhythm/interval statements against the measured values
    hr = _measure(measurements, LOINC.HEART_RATE, LOINC.EKG_HEART_RATE)
    pr = _measure(measurements, LOINC.PR_INTERVAL)
    qtc = _measure(measurements, LOINC.QTC_INTERVAL, LOINC.QTC_BAZETT, LOINC.QTC_FRIDERICIA)
    checks: tuple[tuple[str, float | None, Callable[[float], bool], str], ...] = (
        ("STACH", hr, lambda v: v < 100, "heart rate {v:.0f}/min"),
        ("SBRAD", hr, lambda v: v > 60, "heart rate {v:.0f}/min"),
        ("1AVB", pr, lambda v: v < 200, "PR {v:.0f} ms"),
        ("LNGQT", qtc, lambda v: v < 440, "QTc {v:.0f} ms"),
    )
    for stmt, value, contradicts, unit in checks:
        score = model.probabilities.get(stmt)
        if score is not None and value is not None and score >= hi and contradicts(value):
            flags.append(
                SafetyFlag(
                    stmt,
                    f"{PTBXL_DESCRIPTIONS[stmt]}: ECG model {score:.2f} but measured {unit.format(v=value)}",
                    models,
                )
            )
    return flags


def ecg_draft_vs_rules(draft: ModelOutput, rule_findings: Sequence[Finding]) -> list[SafetyFlag]:
    """Flags where a VLM's ECG draft contradicts the rule-based interpretation (:mod:`models.ecg_reading`).

    A statement the draft makes that the rules do not, or one the rules make that the draft
    says is absent; statements the draft does not mention are not flagged (a draft is prose,
    not a score per statement).
    """
    from models.ecg_reading import BY_KEY, ecg_draft_reading, statements_present

    if not draft.ok:
        return []
    rules = statements_present(
        [f.concept for f in rule_findings if f.presence is Presence.PRESENT and f.concept is not None]
    )
    rule_name = next((f.producer.name for f in rule_findings), "rule-based interpretation")
    models = (draft.producer.name, rule_name)
    flags = []
    for key, said in sorted(ecg_draft_reading(draft).items()):
        meaning = BY_KEY[key].meaning
        if said is Presence.PRESENT and key not in rules:
            flags.append(
                SafetyFlag(key, f"{meaning}: in the AI ECG draft, not in the rule-based interpretation", models)
            )
        elif said is Presence.ABSENT and key in rules:
            flags.append(
                SafetyFlag(key, f"{meaning}: in the rule-based interpretation, the AI ECG draft says absent", models)
            )
    return flags


def review(
    outputs: Sequence[ModelOutput], flags: Sequence[SafetyFlag], other_findings: Sequence[Finding] = ()
) -> SafetyReview:
    """Priority from critical findings (STAT) and disagreements (URGENT); flags as findings."""
    priorities = []
    for f in [*(f for o in outputs if o.ok for f in o.findings), *other_findings]:
        if f.critical and f.presence is Presence.PRESENT:
            priorities.append(Priority(PriorityLevel.STAT, f"critical finding: {f.text[:80]} ({f.producer.name})"))
    if flags:
        priorities.append(
            Priority(PriorityLevel.URGENT, f"AI models disagree on {len(flags)} point(s): human review needed")
        )
    return SafetyReview(tuple(flags), Priority.highest(priorities), tuple(fl.to_finding() for fl in flags))


def no_model_notice(kind: str, infos: Sequence[ModelInfo]) -> str | None:
    """A plain statement for the draft when no model of this kind can run; None when one can."""
    if kind == "imaging":
        infos = [i for i in infos if i.backend in ("local_vlm", "remote_vlm", "cxr_classifier")]
    else:  # the ECG classifier, and a VLM that takes ECG printouts
        infos = [
            i
            for i in infos
            if i.backend == "ecg_cnn" or (i.backend in ("local_vlm", "remote_vlm") and "ECG" in i.modalities)
        ]
    if any(i.available for i in infos):
        return None
    problems = [f"{i.name}: {'; '.join(i.missing)}" for i in infos if i.missing]
    why = (" Configured but not usable: " + " | ".join(problems) + ".") if problems else ""
    if kind == "imaging":
        return (
            "No radiology model is configured, so this draft contains no image findings; "
            "a radiologist must read the images."
            + why
            + " To configure one, install weights locally and list them in the model registry (configs/models.yaml, "
            "models.registry); `mmdx models` checks them."
        )
    return (
        "No ECG model is configured; the interpretation is the rule-based engine's alone."
        + why
        + " To add the resnet1d_wang classifier, list its state dict in configs/models.yaml."
    )


def critical_keys() -> Mapping[str, bool]:
    """Vocabulary keys whose presence is a critical result."""
    return {lab.key: lab.critical for lab in LABELS}
