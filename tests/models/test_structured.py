"""Draft schema: parse, validate, explicit errors naming the JSON path; prompts carry the schema."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.codes import LOINC
from core.errors import ModelError
from core.records import Laterality, Presence, Producer, ProducerKind, Volume
from models.prompts import build_prompt
from models.protocol import ModelInput
from models.structured import DRAFT_SCHEMA, parse_draft

from .conftest import cxr_input
from .openai_server import VALID_DRAFT

PRODUCER = Producer(ProducerKind.MODEL, "m", "1", "a" * 64)


def test_valid_draft_in_a_fenced_block_becomes_findings_and_sections() -> None:
    draft = parse_draft("Here you are:\n```json\n" + json.dumps(VALID_DRAFT) + "\n```")
    eff, ptx = draft.to_findings(PRODUCER)
    assert eff.laterality is Laterality.LEFT and eff.presence is Presence.PRESENT and eff.probability == 0.8
    assert ptx.presence is Presence.ABSENT and not ptx.critical
    codes = [s.code for s in draft.to_sections()]
    assert codes == [LOINC.FINDINGS, LOINC.IMPRESSION, LOINC.RECOMMENDATION]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("impression"), r"missing required key\(s\) \['impression'\]"),
        (lambda d: d.update(extra=1), r"unexpected key\(s\) \['extra'\]"),
        (lambda d: d["findings"][0].update(label="dragon"), r"\$\.findings\[0\]\.label: expected one of"),
        (lambda d: d["findings"][1].update(presence="maybe"), r"\$\.findings\[1\]\.presence"),
        (lambda d: d["findings"][0].update(certainty=1.5), r"certainty: expected a number in \[0, 1\]"),
        (lambda d: d["findings"][0].update(certainty=True), r"certainty"),
        (lambda d: d.update(findings={}), r"\$\.findings: expected an array"),
        (lambda d: d.update(impression="  "), r"\$\.impression: expected 1\.\.4000 characters"),
    ],
)
def test_invalid_drafts_name_the_path(mutate: Callable[[dict[str, Any]], object], message: str) -> None:
    doc = json.loads(json.dumps(VALID_DRAFT))
    mutate(doc)
    with pytest.raises(ModelError, match=message):
        parse_draft(json.dumps(doc))


@given(st.text(max_size=200))
def test_garbage_is_a_model_error_never_a_partial_draft(text: str) -> None:
    try:
        draft = parse_draft(text)
    except ModelError:
        return
    assert draft.impression  # anything that parses is a complete draft


def test_schema_is_strict_json_schema() -> None:
    assert DRAFT_SCHEMA["additionalProperties"] is False
    assert set(DRAFT_SCHEMA["required"]) == set(DRAFT_SCHEMA["properties"])


def test_prompt_has_context_views_and_schema() -> None:
    p = build_prompt(cxr_input("1.2.3.9"))
    text = p.messages[0]["content"][-1]["text"]
    assert (
        "cough, fever" in text and "Clear lungs." in text and '"impression": "..."' in text and "pneumothorax" in text
    )
    assert [c["type"] for c in p.messages[0]["content"]] == ["image", "image", "text"]
    assert p.images[0].shape == (64, 64, 3)  # PA first (the input had the lateral first)
    assert len(p.sha256) == 64


def test_ct_volume_becomes_one_montage() -> None:
    vol = Volume(
        np.random.default_rng(0).normal(0, 300, (30, 16, 16)).astype(np.float32),
        (2.0, 1.0, 1.0),
        (0, 0, 0),
        ((1, 0, 0), (0, 1, 0), (0, 0, 1)),
        "1.2.3.4",
        window=(40.0, 400.0),
    )
    p = build_prompt(ModelInput(study_instance_uid="1.2.3.5", modality="CT", body_part="CHEST", volume=vol))
    (img,) = p.images
    assert img.shape == (48, 48, 3) and img.dtype == np.uint8
    assert "montage" in p.messages[0]["content"][-1]["text"]


def test_ecg_prompt_shows_the_printout_and_the_measurements() -> None:
    page = np.full((120, 300, 3), 255, dtype=np.uint8)
    inp = ModelInput(study_instance_uid="1.2.3.6", modality="ECG", ecg_printout=page,
                     ecg_measurements_text="HR 72/min, PR 160 ms, QRS 90 ms, QTc 420 ms")  # fmt: skip
    p = build_prompt(inp)
    text = p.messages[0]["content"][-1]["text"]
    assert "12-lead ECG" in text and "QTc 420 ms" in text
    assert len(p.images) == 1 and p.images[0].shape == (120, 300, 3)
    with pytest.raises(ModelError, match="ecg_printout must be an H x W x 3 array"):
        ModelInput(study_instance_uid="1.2.3.7", modality="ECG", ecg_printout=np.zeros((10, 10), dtype=np.uint8))


def test_configured_template_file_and_unknown_field(tmp_path: Path) -> None:
    f = tmp_path / "t.txt"
    f.write_text("Local template for {modality} {body_part}.")
    text = build_prompt(cxr_input("1.2.3.8"), str(f)).messages[0]["content"][-1]["text"]
    assert text.startswith("Local template for DX chest.")
    f.write_text("{patient_name}")
    with pytest.raises(ModelError, match="unknown field 'patient_name'"):
        build_prompt(cxr_input("1.2.3.8"), str(f))


def test_ct_volume_windows_become_one_montage_each() -> None:
    from models.prompts import prompt_options

    hu = np.linspace(-1000, 1000, 30 * 16 * 16).reshape(30, 16, 16).astype(np.float32)
    vol = Volume(hu, (2.0, 1.0, 1.0), (0, 0, 0), ((1, 0, 0), (0, 1, 0), (0, 0, 1)), "1.2.3.4")
    inp = ModelInput(study_instance_uid="1.2.3.5", modality="CT", body_part="CHEST", volume=vol)
    opts = prompt_options({"volume_windows": [[-600, 1500], [40, 400]]})
    lung, mediastinum = build_prompt(inp, **opts).images
    assert lung.shape == mediastinum.shape == (48, 48, 3)
    assert lung.mean() > mediastinum.mean()  # the lung window shows more of the low-HU range as grey
    with pytest.raises(ModelError, match="volume_windows"):
        prompt_options({"volume_windows": [[1]]})
