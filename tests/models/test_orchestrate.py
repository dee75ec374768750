"""The models stage end to end: routing, triage, escalation, drafting, cross-checks, priority."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from core.codes import MMDX, SCT
from core.config import ModelSpec, RouteRule
from core.records import EcgRecord, Finding, PriorityLevel, Producer, ProducerKind
from models.ecg_cnn import build_resnet1d_wang
from models.orchestrate import analyse, analyse_batch
from models.protocol import ModelInput
from models.registry import Registry

from .conftest import cxr_input
from .openai_server import VALID_DRAFT, OpenAIServer, ServerState

RULES = [RouteRule(modality="DX", models=["cls", "vlm", "tiny"]), RouteRule(kind="ecg", models=["ecg"])]


@pytest.fixture(scope="module")
def classifier_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from monai.networks.nets.densenet import DenseNet121

    net = DenseNet121(spatial_dims=2, in_channels=1, out_channels=2)
    with torch.no_grad():
        out_layer: Any = net.class_layers.out
        out_layer.weight.zero_()
        out_layer.bias.copy_(torch.tensor([6.0, -6.0]))  # pneumothorax 0.998, effusion 0.002
    path = tmp_path_factory.mktemp("cls") / "cls.pt"
    torch.save(net.state_dict(), path)
    return path


def _cls_spec(path: Path) -> ModelSpec:
    return ModelSpec(backend="cxr_classifier", path=path, options={"labels": ["pneumothorax", "effusion"], "size": 64})


def test_draft_contradicting_a_confident_classifier_is_flagged_and_critical_is_stat(classifier_file: Path) -> None:
    state = ServerState(mode="valid")  # the draft says "No pneumothorax", effusion present
    with OpenAIServer(state) as srv:
        reg = Registry.from_specs({
            "cls": _cls_spec(classifier_file),
            "vlm": ModelSpec(backend="remote_vlm", url=srv.url, served_model="tiny", sha256="ab" * 32,
                             options={"retries": 0}),
        })  # fmt: skip
        res = analyse(cxr_input("1.2.826.0.7.1"), reg, RULES)
    assert res.errors == () and "vlm: run (cls: abnormal triage" in res.escalation
    assert {o.producer.name for o in res.outputs} == {"cls", "vlm"}
    assert res.priority.level is PriorityLevel.STAT and "Pneumothorax" in res.priority.reason
    topics = {f.topic for f in res.flags}
    assert topics == {"pneumothorax", "effusion"}  # classifier 0.998 vs "No pneumothorax"; 0.002 vs effusion present
    assert sum(f.concept == MMDX.MODEL_DISAGREEMENT for f in res.findings) == 2
    assert [s.text for s in res.sections][-1] == VALID_DRAFT["recommendation"]
    assert {p.kind for p in res.provenance} == {ProducerKind.MODEL, ProducerKind.RULE_ENGINE}


def test_garbage_draft_gives_an_error_and_no_sections(classifier_file: Path, tiny_vlms: dict[str, Path]) -> None:
    reg = Registry.from_specs({
        "cls": _cls_spec(classifier_file),
        "tiny": ModelSpec(backend="local_vlm", family="llava", path=tiny_vlms["llava"], max_new_tokens=8,
                          options={"escalate": "always", "constrained": False}),
    })  # fmt: skip
    a, b = analyse_batch([cxr_input("1.2.826.0.7.2"), cxr_input("1.2.826.0.7.3", seed=4)], reg, RULES)
    for res in (a, b):
        assert res.sections == ()
        assert any("model 'tiny' failed" in e and "after one repair" in e for e in res.errors)
        assert all(f.producer.name in ("cls", "mmdx-safety-checks") for f in res.findings)  # classifier findings kept
        assert "routing names model 'vlm', which is not configured" in res.notices


def test_without_models_it_says_so_and_invents_nothing(tmp_path: Path) -> None:
    reg = Registry.from_specs({"cls": ModelSpec(backend="cxr_classifier", family="xrv-all", path=tmp_path / "none.pt")})
    res = analyse(cxr_input("1.2.826.0.7.4"), reg, RULES)
    assert res.findings == () and res.sections == () and res.outputs == ()
    text = " ".join(res.notices)
    assert "model 'cls' cannot run: weights not found" in text
    assert "No radiology model is configured" in text
    assert res.priority.level is PriorityLevel.ROUTINE


def test_ecg_model_checked_against_the_rule_engine(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = build_resnet1d_wang()
    with torch.no_grad():
        net[6][8].weight.zero_()
        bias = torch.full((71,), -9.0)
        from models.ecg_cnn import PTBXL_71

        bias[PTBXL_71.index("AFIB")] = 9.0
        net[6][8].bias.copy_(bias)
    path = tmp_path / "ecg.pt"
    torch.save(net.state_dict(), path)
    reg = Registry.from_specs({"ecg": ModelSpec(backend="ecg_cnn", path=path)})
    t = np.arange(5000) / 500
    leads = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
    rec = EcgRecord(
        np.stack([np.sin(2 * np.pi * t + k) for k in range(12)]).astype(np.float32), leads, 500.0, "synthetic"
    )
    inp = ModelInput(study_instance_uid="1.2.826.0.7.5", modality="ECG", ecg=rec)
    rules = Producer(ProducerKind.RULE_ENGINE, "ecg-rules", "1", "d" * 64)
    res = analyse(
        inp, reg, RULES, rule_findings={inp.study_instance_uid: [Finding(SCT.SINUS_RHYTHM, "Sinus rhythm", rules)]}
    )
    (flag,) = res.flags
    assert flag.topic == "AFIB" and "not in the rule-based interpretation" in flag.message
    assert res.priority.level is PriorityLevel.URGENT
    afib = [f for f in res.findings if f.concept == SCT.ATRIAL_FIBRILLATION]
    assert len(afib) == 1 and afib[0].producer.digest is not None and json.dumps(afib[0].criteria) == '["PTB-XL:AFIB"]'
