"""Safety cross-checks, priorities, routing and escalation."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from core.codes import LOINC, MMDX, SCT, UCUM
from core.config import ModelSpec, RouteRule
from core.errors import ModelError
from core.records import (
    DraftReport,
    Finding,
    Measurement,
    Presence,
    PriorityLevel,
    Producer,
    ProducerKind,
    ReportKind,
    ReportSection,
    ReportStatus,
    Series,
    Study,
)
from models.protocol import ModelInfo, ModelOutput
from models.routing import models_for, should_escalate, suits
from models.safety import (
    draft_vs_classifier,
    ecg_model_vs_rules,
    ensure_preliminary,
    no_model_notice,
    refuse_unattributed,
    review,
)

VLM = Producer(ProducerKind.MODEL, "vlm", "1", "a" * 64)
CLS = Producer(ProducerKind.MODEL, "cls", "1", "b" * 64)
ECG = Producer(ProducerKind.MODEL, "ecg-cnn", "1", "c" * 64)
RULES = Producer(ProducerKind.RULE_ENGINE, "ecg-rules", "1", "d" * 64)
UID = "1.2.826.0.5.1"


def _draft(text: str, findings: tuple[Finding, ...] | list[Finding] = ()) -> ModelOutput:
    return ModelOutput(UID, VLM, findings=tuple(findings), sections=(ReportSection(LOINC.IMPRESSION, text),))


def test_classifier_confident_but_draft_silent_or_negative_is_flagged() -> None:
    cls = ModelOutput(UID, CLS, probabilities={"Pneumothorax": 0.93, "Effusion": 0.05, "Cardiomegaly": 0.5})
    flags = draft_vs_classifier(_draft("No pneumothorax. Large left pleural effusion."), cls)
    topics = {f.topic: f.message for f in flags}
    assert set(topics) == {"pneumothorax", "effusion"}
    assert "says it is absent" in topics["pneumothorax"] and "0.05" in topics["effusion"]
    assert draft_vs_classifier(_draft("Right pneumothorax."), cls) == []


def test_structured_finding_overrides_the_text_reading() -> None:
    cls = ModelOutput(UID, CLS, probabilities={"Pneumothorax": 0.95})
    f = Finding(SCT.PNEUMOTHORAX, "small apical pneumothorax", VLM, presence=Presence.PRESENT)
    assert draft_vs_classifier(_draft("Unremarkable.", [f]), cls) == []


def test_review_sets_stat_for_critical_and_urgent_for_disagreement() -> None:
    crit = ModelOutput(
        UID,
        CLS,
        findings=(Finding(SCT.PNEUMOTHORAX, "Pneumothorax", CLS, critical=True),),
        probabilities={"Pneumothorax": 0.9},
    )
    r = review([crit], [])
    assert r.priority.level is PriorityLevel.STAT and "Pneumothorax" in r.priority.reason
    flags = draft_vs_classifier(_draft("Normal chest."), crit)
    r = review([], flags)
    assert r.priority.level is PriorityLevel.URGENT
    assert r.findings[0].concept == MMDX.MODEL_DISAGREEMENT and r.findings[0].producer.kind is ProducerKind.RULE_ENGINE
    assert review([], []).priority.level is PriorityLevel.ROUTINE


def test_ecg_model_vs_rules_and_measurements() -> None:
    model = ModelOutput(UID, ECG, probabilities={"AFIB": 0.92, "CLBBB": 0.02, "1AVB": 0.9, "SR": 0.99})
    rules = [Finding(SCT.COMPLETE_LBBB, "Complete LBBB", RULES), Finding(SCT.SINUS_RHYTHM, "Sinus rhythm", RULES)]
    pr = Measurement(LOINC.PR_INTERVAL, 160.0, UCUM.MS)
    flags = ecg_model_vs_rules(model, rules, [pr])
    msgs = " | ".join(f.message for f in flags)
    assert "atrial fibrillation: ECG model 0.92, not in the rule-based interpretation" in msgs
    assert "complete left bundle branch block: in the rule-based interpretation, ECG model only 0.02" in msgs
    assert "first degree AV block: ECG model 0.90 but measured PR 160 ms" in msgs
    assert not any(f.topic == "SR" for f in flags)


def test_unattributed_model_findings_are_refused() -> None:
    ok = Finding(None, "x", VLM)
    assert refuse_unattributed([ok]) == (ok,)
    bad = Finding(None, "x", Producer(ProducerKind.MODEL, "m", "1", "not-a-hash"))
    with pytest.raises(ModelError, match="no sha256 weights digest"):
        refuse_unattributed([bad])


def test_ai_draft_must_stay_preliminary() -> None:
    rep = DraftReport(
        UID, ReportKind.IMAGING, datetime.now(UTC), findings=(Finding(None, "x", VLM),), provenance=(VLM,)
    )
    assert ensure_preliminary(rep) is rep
    withdrawn = DraftReport(
        UID,
        ReportKind.IMAGING,
        datetime.now(UTC),
        status=ReportStatus.ENTERED_IN_ERROR,
        findings=(Finding(None, "x", VLM),),
        provenance=(VLM,),
    )
    with pytest.raises(ModelError, match="must be preliminary"):
        ensure_preliminary(withdrawn)


def test_no_model_notice_says_what_is_missing() -> None:
    missing = ModelInfo("medgemma", "local_vlm", "gemma3", "1", None, missing=("weights not found: /opt/x",))
    text = no_model_notice("imaging", [missing])
    assert text is not None and "No radiology model is configured" in text and "weights not found: /opt/x" in text
    ready = ModelInfo("c", "cxr_classifier", "xrv", "1", "e" * 64)
    assert no_model_notice("imaging", [missing, ready]) is None
    assert "rule-based" in (no_model_notice("ecg", []) or "")


def _study() -> Study:
    s = "1.2.826.0.5"
    return Study(
        s,
        series=(
            Series(s + ".1", s, "DX", body_part="CHEST"),
            Series(s + ".2", s, "CT", body_part="HEAD"),
            Series(s + ".3", s, "ECG"),
        ),
    )


def test_routing_sends_each_series_to_suitable_models_cheap_first() -> None:
    specs = {
        "cls": ModelSpec(backend="cxr_classifier"),
        "vlm": ModelSpec(backend="local_vlm"),
        "ecg": ModelSpec(backend="ecg_cnn"),
        "ctvlm": ModelSpec(backend="remote_vlm", options={"modalities": ["CT"]}),
    }
    rules = [
        RouteRule(modality="DX", body_part="CHEST", models=["cls", "vlm"]),
        RouteRule(kind="ecg", models=["ecg", "cls"]),
        RouteRule(kind="imaging", models=["ctvlm", "unknown"]),
    ]
    assert models_for(rules, "DX", "CHEST") == ["cls", "vlm", "ctvlm", "unknown"]
    routed = {
        s.modality: [
            m
            for m in models_for(rules, s.modality, s.body_part)
            if m in specs and suits(specs[m], s.modality, s.body_part)
        ]
        for s in _study().series
    }  # what the orchestrator runs per series: the rules' models that suit the data
    assert routed == {"DX": ["cls", "vlm"], "CT": ["ctvlm"], "ECG": ["ecg"]}


def test_escalation_policies() -> None:
    normal = ModelOutput(UID, CLS, probabilities={"Pneumothorax": 0.2})
    borderline = ModelOutput(UID, CLS, probabilities={"Pneumothorax": 0.45})
    abnormal = ModelOutput(
        UID, CLS, findings=(Finding(SCT.PNEUMOTHORAX, "ptx", CLS),), probabilities={"Pneumothorax": 0.9}
    )
    default = ModelSpec(backend="local_vlm")
    assert should_escalate(default, [normal])[0] is False
    assert should_escalate(default, [borderline]) == (True, "cls: uncertain triage (Pneumothorax 0.45 near 0.50)")
    assert should_escalate(default, [abnormal])[0] is True
    assert should_escalate(default, [])[0] is True  # no triage model: the VLM is the only reader
    assert should_escalate(ModelSpec(backend="local_vlm", options={"escalate": "abnormal"}), [borderline])[0] is False
    assert should_escalate(ModelSpec(backend="local_vlm", options={"escalate": "always"}), [normal])[0] is True
    assert should_escalate(ModelSpec(backend="local_vlm", options={"escalate": "never"}), [abnormal])[0] is False


def test_critical_rule_finding_such_as_stemi_sets_stat() -> None:
    stemi = Finding(SCT.STEMI, "Acute ST elevation myocardial infarction", RULES, critical=True)
    r = review([], [], [stemi])
    assert r.priority.level is PriorityLevel.STAT and "ST elevation" in r.priority.reason
    absent = Finding(SCT.STEMI, "No STEMI", RULES, presence=Presence.ABSENT, critical=True)
    assert review([], [], [absent]).priority.level is PriorityLevel.ROUTINE
