"""A VLM's ECG draft read in the rule engine's statements, and checked against them."""

from __future__ import annotations

import pytest

from core.codes import SCT
from core.records import Finding, Presence, Producer, ProducerKind
from models.ecg_reading import ecg_draft_reading
from models.protocol import ModelOutput
from models.safety import ecg_draft_vs_rules

VLM = Producer(kind=ProducerKind.MODEL, name="pulse-ecg", version="7b", digest="ab" * 32)
RULES = Producer(kind=ProducerKind.RULE_ENGINE, name="mmdx-ecg-rules", version="1", digest="cd" * 32)


def _draft(*findings: tuple[str, Presence]) -> ModelOutput:
    return ModelOutput(
        study_instance_uid="1.2.3",
        producer=VLM,
        findings=tuple(Finding(concept=None, text=t, producer=VLM, presence=p) for t, p in findings),
    )


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("Atrial fibrillation with rapid ventricular response", "AFIB"),
        ("1st degree AV block (PR 222 ms)", "1AVB"),
        ("Third-degree atrioventricular block", "3AVB"),
        ("Complete heart block", "3AVB"),
        ("LBBB", "LBBB"),
        ("Prolonged QTc", "LNGQT"),
        ("ST-segment elevation in V1-V3", "STE"),
        ("Supraventricular tachycardia", "SVT"),
    ],
)
def test_phrasings_map_to_statements(text: str, key: str) -> None:
    assert ecg_draft_reading(_draft((text, Presence.PRESENT))) == {key: Presence.PRESENT}


def test_incomplete_bundle_branch_block_is_not_the_complete_one() -> None:
    assert ecg_draft_reading(_draft(("Incomplete right bundle branch block", Presence.PRESENT))) == {}
    assert ecg_draft_reading(_draft(("Supraventricular tachycardia", Presence.PRESENT))).keys() == {"SVT"}


def test_disagreements_both_ways_and_agreement_across_equivalent_codes() -> None:
    rules = [
        Finding(concept=SCT.LBBB, text="Left bundle branch block", producer=RULES, presence=Presence.PRESENT),
        Finding(concept=SCT.PROLONGED_QT, text="Prolonged QT interval", producer=RULES, presence=Presence.PRESENT),
    ]
    draft = _draft(
        ("Complete left bundle branch block", Presence.PRESENT),  # LBBB vs complete LBBB: the same reading
        ("Atrial flutter", Presence.PRESENT),
        ("No QT prolongation", Presence.ABSENT),
    )
    flags = ecg_draft_vs_rules(draft, rules)
    assert [f.topic for f in flags] == ["AFLT", "LNGQT"]
    assert flags[0].models == ("pulse-ecg", "mmdx-ecg-rules")
    assert "draft says absent" in flags[1].message


def test_only_a_rule_that_names_ecgs_sends_them_to_a_vlm() -> None:
    from core.config import ModelSpec, RouteRule
    from models.routing import ecg_models_for

    specs = {
        "pulse": ModelSpec(backend="remote_vlm", url="http://x", served_model="p", options={"modalities": ["ECG"]}),
        "medgemma": ModelSpec(backend="local_vlm", path="/nowhere"),
        "cnn": ModelSpec(backend="ecg_cnn", path="/nowhere.pt"),
    }
    catch_all = RouteRule(models=["medgemma", "cnn", "pulse"])
    assert ecg_models_for([catch_all], specs) == ["cnn"], "a catch-all rule sends no ECG to a VLM"
    assert ecg_models_for([catch_all, RouteRule(kind="ecg", models=["pulse"])], specs) == ["cnn", "pulse"]
    assert ecg_models_for([RouteRule(modality="ECG", models=["medgemma"])], specs) == ["medgemma"]
    chest_only = {"medgemma": specs["medgemma"].model_copy(update={"options": {"modalities": ["DX"]}})}
    assert ecg_models_for([RouteRule(kind="ecg", models=["medgemma"])], chest_only) == []
