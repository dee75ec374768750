"""Report labeler: hand-written sentences, CheXpert's public examples, properties."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.records import Presence, ProducerKind
from models.labeler import LABELER_PRODUCER, as_json, label_report, mentions, no_finding, to_findings
from models.vocabulary import BY_KEY

P, A, U = Presence.PRESENT, Presence.ABSENT, Presence.UNCERTAIN

CASES = [
    ("No pneumothorax. Small left pleural effusion.", {"pneumothorax": A, "effusion": P}),
    (
        "No pneumothorax, pleural effusion, or focal airspace consolidation.",
        {"pneumothorax": A, "effusion": A, "consolidation": A},
    ),
    ("Heart size is normal. The lungs are clear.", {"cardiomegaly": A, "consolidation": A}),
    ("The heart is mildly enlarged.", {"cardiomegaly": P}),
    ("Mild cardiomegaly without pulmonary edema.", {"cardiomegaly": P, "edema": A}),
    ("Pneumothorax cannot be excluded.", {"pneumothorax": U}),
    ("Right basilar opacity, possibly atelectasis.", {"atelectasis": U}),
    ("Patchy opacity may reflect atelectasis or consolidation.", {"atelectasis": U, "consolidation": U}),
    ("There is no pleural line to suggest pneumothorax.", {"pneumothorax": A}),
    ("The previously seen effusion has resolved.", {"effusion": A}),
    ("Effusion is not seen. Emphysema is present.", {"effusion": A, "emphysema": P}),
    ("No edema but a new right upper lobe nodule.", {"edema": A, "nodule": P}),
    ("Costophrenic angles are sharp.", {"effusion": A}),
    ("A 1.5 cm nodule. No mass.", {"nodule": P, "mass": A}),
    ("Pericardial effusion is suspected.", {}),
    ("Right-sided chest tube in place. No pneumothorax.", {"support_devices": P, "pneumothorax": A}),
    ("No pleural air collections.", {"pneumothorax": A}),
    ("Small pleural air collection at the right apex.", {"pneumothorax": P}),
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_hand_written_sentences(text: str, expected: dict[str, Presence]) -> None:
    got = {k: r.presence for k, r in label_report(text).items() if k in expected or not expected}
    if not expected:
        assert "effusion" not in got
        return
    assert {k: got.get(k) for k in expected} == expected


def test_chexpert_public_examples() -> None:
    # stanfordmlgroup/chexpert-labeler sample reports (MIT), with the labels its own labeler gives
    r = label_report("Heart size normal and lungs are clear. No edema or pneumonia. No effusion")
    assert {k: r[k].presence for k in ("cardiomegaly", "edema", "pneumonia", "effusion")} == dict.fromkeys(
        ("cardiomegaly", "edema", "pneumonia", "effusion"), A
    )
    assert no_finding(r)
    r = label_report(
        "1. Left pleural effusion with adjacent atelectasis. Right effusion is also present.\n\n"
        "2. Cardiomegaly without overt edema."
    )
    assert (r["effusion"].presence, r["atelectasis"].presence, r["cardiomegaly"].presence, r["edema"].presence) == (
        P,
        P,
        P,
        A,
    )
    r = label_report("Minimal patchy airspace disease within the lingula, may reflect atelectasis or consolidation.")
    assert (r["lung_opacity"].presence, r["atelectasis"].presence, r["consolidation"].presence) == (P, U, U)
    assert not no_finding(r)


def test_spans_point_at_the_text_and_findings_are_coded() -> None:
    text = "Large right pneumothorax. No effusion."
    res = label_report(text)
    s, e = res["pneumothorax"].span
    assert text[s:e] == "pneumothorax"
    findings = {f.concept: f for f in to_findings(res)}
    ptx = findings[BY_KEY["pneumothorax"].code]
    assert ptx.presence is P and ptx.critical and ptx.producer is LABELER_PRODUCER
    assert LABELER_PRODUCER.kind is ProducerKind.RULE_ENGINE and len(LABELER_PRODUCER.digest or "") == 64
    assert not findings[BY_KEY["effusion"].code].critical
    doc: Any = as_json("r1", text)
    assert doc["labels"]["pneumothorax"]["span"] == [s, e] and doc["labels"]["effusion"]["presence"] == "absent"


TERM = {
    "pneumothorax": "pneumothorax",
    "effusion": "pleural effusion",
    "consolidation": "consolidation",
    "edema": "pulmonary edema",
    "nodule": "nodule",
    "atelectasis": "atelectasis",
    "emphysema": "emphysema",
}


@settings(max_examples=60, deadline=None)
@given(
    key=st.sampled_from(sorted(TERM)),
    side=st.sampled_from(["left", "right", "small", "large", "mild"]),
    filler=st.sampled_from(["", "Heart size is normal. ", "Comparison 2019. "]),
)
def test_assertion_negation_and_hedging_flip_presence(key: str, side: str, filler: str) -> None:
    term = f"{side} {TERM[key]}"
    assert label_report(f"{filler}There is a {term}.")[key].presence is P
    assert label_report(f"{filler}No {term}.")[key].presence is A
    assert label_report(f"{filler}Possible {term}.")[key].presence is U
    assert label_report(f"{filler}No {term}. There is a {term}.")[key].presence is P  # present wins


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=300))
def test_arbitrary_text_never_crashes_and_spans_are_in_range(text: str) -> None:
    for m in mentions(text):
        assert 0 <= m.start < m.end <= len(text)
        assert text[m.start : m.end] == m.text


def test_engine_is_spacy_with_negspacy_built_once() -> None:
    from models import labeler_nlp

    nlp = labeler_nlp.nlp()
    assert nlp is labeler_nlp.nlp()  # built once per process
    assert nlp.pipe_names == ["sentencizer", "mmdx_line_breaks", "mmdx_findings", "negex"]
    r = label_report("No pneumothorax. Small left pleural effusion.")
    assert r["pneumothorax"].decisive.trigger == labeler_nlp.NEGEX_TRIGGER and r["effusion"].presence is P


@pytest.mark.parametrize(
    ("text", "key", "expected"),
    [
        # an either-or commits to an abnormality: each finding is read present (NegBio's reading) ...
        ("Atelectasis versus infiltrate.", "infiltration", P),
        ("Opacities compatible with scarring or atelectasis.", "atelectasis", P),
        # ... unless a hedge governs it
        ("Question left basilar atelectasis versus infiltrate.", "infiltration", U),
        ("Mild opacities, favoring scar or atelectasis.", "atelectasis", U),
        ("Airspace disease concerning for pneumonia.", "pneumonia", U),  # "concerning for" hedges, not ends
        ("Small bilateral pleural effusions suspected.", "effusion", U),
        ("Borderline cardiomegaly.", "cardiomegaly", P),  # "borderline" grades the finding, does not hedge it
        ("The heart is borderline in size.", "cardiomegaly", P),
        ("Heart size XXXX mildly enlarged.", "cardiomegaly", P),
        ("Fissural thickening.", "pleural_thickening", P),  # a fissure is pleura
        ("Pneumothorax cannot be excluded.", "pneumothorax", U),
        ("Effusion\nNo pneumothorax", "effusion", P),  # a line break ends the negation's scope
        ("Effusion\nNo pneumothorax", "pneumothorax", A),
        ("Hydropneumothorax on the right.", "effusion", P),  # overlapping mentions both count
        ("Hydropneumothorax on the right.", "pneumothorax", P),
        ("No focal consolidation but a new nodule.", "nodule", P),
        ("Pneumonia has resolved.", "pneumonia", A),
    ],
)
def test_negspacy_scope_and_our_hedges(text: str, key: str, expected: Presence) -> None:
    assert label_report(text)[key].presence is expected


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("Nodular density overlying the left 4th rib.", "nodule"),  # a shape, not a nodule
        ("Mild blunting of the right costophrenic angle.", "effusion"),  # a sign, not an effusion
    ],
)
def test_not_a_mention(text: str, key: str) -> None:
    assert key not in label_report(text)


def test_double_full_stop_ends_a_sentence() -> None:
    r = label_report("No pneumothorax or pleural effusion.. Streaky opacities are atelectatic.")
    assert (r["effusion"].presence, r["atelectasis"].presence) == (A, P)
