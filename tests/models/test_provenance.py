"""Provenance of every model call: normal studies, failed calls, placeholder hashes (issue 20, items 1-3)."""

from __future__ import annotations

import json

import pytest

from core.codes import LOINC
from core.config import ModelSpec, RouteRule
from core.errors import RecordError
from core.records import DraftReport, ModelCall, ModelCallOutcome, Producer, ProducerKind, ReportKind
from models.orchestrate import analyse
from models.registry import Registry
from store.serialize import report_from_json, report_to_json

from .conftest import cxr_input
from .openai_server import OpenAIServer, ServerState

SHA = "ab" * 32
RULES = [RouteRule(modality="DX", models=["vlm"])]
NORMAL = {"findings": [], "impression": "No acute cardiopulmonary abnormality.", "recommendation": ""}


def _registry(url: str, sha256: str = SHA) -> Registry:
    spec = ModelSpec(
        backend="remote_vlm",
        url=url,
        served_model="tiny",
        sha256=sha256,
        options={"retries": 0, "escalate": "always", "version": "v1"},
    )
    return Registry.from_specs({"vlm": spec})


def test_a_draft_with_no_findings_is_attributed_with_its_full_call_record() -> None:
    state = ServerState(mode="valid", answer=json.dumps(NORMAL))
    with OpenAIServer(state) as srv:
        res = analyse(cxr_input("1.2.3.1"), _registry(srv.url), RULES)
    assert res.findings == () and res.sections, "the normal study keeps its AI text"
    (producer,) = res.provenance
    assert producer.kind is ProducerKind.MODEL and producer.digest == SHA
    (call,) = res.calls
    assert call.ok and call.producer == producer and call.task == "draft"
    assert len(call.prompt_sha256) == 64 and call.prompt_template == "cxr"
    assert json.loads(call.decoding) == {"max_tokens": 512, "temperature": 0.0}
    assert call.output_control == "server json_schema" and call.repaired is False
    assert call.raw_answer == json.dumps(NORMAL) and call.seconds > 0
    assert call.device.endswith("/v1/chat/completions")


def test_the_call_record_survives_the_report_store_round_trip() -> None:
    state = ServerState(mode="valid", answer=json.dumps(NORMAL))
    with OpenAIServer(state) as srv:
        res = analyse(cxr_input("1.2.3.2"), _registry(srv.url), RULES)
    from datetime import UTC, datetime

    report = DraftReport(
        study_instance_uid="1.2.3.2",
        kind=ReportKind.IMAGING,
        created_at=datetime(2026, 12, 7, tzinfo=UTC),
        sections=res.sections,
        provenance=res.provenance,
        model_calls=res.calls,
    )
    assert report.is_ai_generated
    back = report_from_json(json.loads(json.dumps(report_to_json(report))))
    assert back.model_calls == res.calls and back.model_calls[0].raw_answer == json.dumps(NORMAL)


def test_a_report_cannot_hold_a_used_model_call_without_listing_its_producer() -> None:
    producer = Producer(ProducerKind.MODEL, "vlm", "v1", SHA)
    call = ModelCall(producer=producer, outcome=ModelCallOutcome.OK)
    from datetime import UTC, datetime

    with pytest.raises(RecordError, match="provenance"):
        DraftReport("1.2.3", ReportKind.IMAGING, datetime(2026, 1, 1, tzinfo=UTC), model_calls=(call,))
    with pytest.raises(RecordError, match="reason"):
        ModelCall(producer=producer, outcome=ModelCallOutcome.FAILED)
    with pytest.raises(RecordError, match="sha256"):
        ModelCall(producer=Producer(ProducerKind.MODEL, "vlm", "v1", "TODO"), outcome=ModelCallOutcome.OK)


def test_a_failed_call_is_an_explicit_error_with_its_record() -> None:
    state = ServerState(mode="valid", answer="I think the lungs are fine.")  # never JSON, even after repair
    with OpenAIServer(state) as srv:
        res = analyse(cxr_input("1.2.3.3"), _registry(srv.url), RULES)
    assert res.failed and res.sections == () and res.provenance == ()
    assert res.errors[0].startswith("model 'vlm' failed: ") and "repair" in res.errors[0]
    (call,) = res.calls
    assert call.outcome is ModelCallOutcome.FAILED and call.repaired and call.raw_answer
    assert "repair" in call.error


def test_a_placeholder_hash_stops_the_model_before_it_writes_anything() -> None:
    state = ServerState(mode="valid", answer=json.dumps(NORMAL))
    with OpenAIServer(state) as srv:
        reg = _registry(srv.url, sha256="TODO-fill-in")
        res = analyse(cxr_input("1.2.3.4"), reg, RULES)
        info = reg.describe("vlm")
    assert not state.requests, "a model whose weights cannot be named must not be asked"
    assert res.sections == () and res.calls == ()
    assert "not a sha256 (expected 64 hexadecimal characters" in " ".join(info.missing)
    assert any("cannot run" in n for n in res.notices)


def test_a_classifier_finding_nothing_says_so_under_its_name(tmp_path: object) -> None:
    """Triage only (no VLM): "nothing above threshold" is AI content too, and is labelled."""
    import torch
    from monai.networks.nets.densenet import DenseNet121

    net = DenseNet121(spatial_dims=2, in_channels=1, out_channels=2)
    with torch.no_grad():
        net.class_layers.out.weight.zero_()  # type: ignore[union-attr,operator]
        net.class_layers.out.bias.fill_(-6.0)  # type: ignore[union-attr,operator]
    from pathlib import Path

    path = Path(str(tmp_path)) / "cls.pt"
    torch.save(net.state_dict(), path)
    spec = ModelSpec(backend="cxr_classifier", path=path, options={"labels": ["pneumothorax", "effusion"], "size": 64})
    res = analyse(cxr_input("1.2.3.5"), Registry.from_specs({"cls": spec}), [RouteRule(modality="DX", models=["cls"])])
    assert res.findings == () and not res.failed
    (section,) = res.sections
    assert section.code == LOINC.FINDINGS and "AI triage (cls)" in section.text
    (call,) = res.calls
    assert call.task == "triage" and call.output_control == "classifier" and call.producer in res.provenance
