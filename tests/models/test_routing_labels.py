"""A head CT never gets chest-radiograph labels (issue 20, item 4): the chest vocabulary codes chest studies only."""

from __future__ import annotations

import numpy as np

from core.config import ModelSpec, RouteRule
from core.records import Image
from models.orchestrate import analyse
from models.protocol import ModelInput
from models.registry import Registry
from models.structured import chest_labels_apply

from .conftest import cxr_input
from .openai_server import OpenAIServer, ServerState


def _registry(url: str) -> Registry:
    spec = ModelSpec(
        backend="remote_vlm",
        url=url,
        served_model="tiny",
        sha256="ab" * 32,
        options={"retries": 0, "escalate": "always"},
    )
    return Registry.from_specs({"vlm": spec})


def test_head_ct_draft_keeps_its_text_without_chest_codes() -> None:
    head = ModelInput(
        study_instance_uid="1.2.826.0.8.1",
        modality="CT",
        body_part="HEAD",
        images=(Image(np.zeros((32, 32), dtype=np.uint16)),),
    )
    state = ServerState(mode="valid")  # answers a chest draft: "effusion" at the pleura
    with OpenAIServer(state) as srv:
        res = analyse(head, _registry(srv.url), [RouteRule(modality="CT", models=["vlm"])])
    assert res.findings and all(f.concept is None and f.site is None and not f.critical for f in res.findings)
    assert "not a chest study" in str(state.requests[0]["messages"])


def test_chest_radiograph_keeps_its_codes() -> None:
    state = ServerState(mode="valid")
    with OpenAIServer(state) as srv:
        res = analyse(cxr_input("1.2.826.0.8.2"), _registry(srv.url), [RouteRule(modality="DX", models=["vlm"])])
    assert any(f.concept is not None for f in res.findings)
    assert "not a chest study" not in str(state.requests[0]["messages"])


def test_which_studies_the_chest_vocabulary_describes() -> None:
    assert chest_labels_apply("DX", None) and chest_labels_apply("CT", "CHEST") and chest_labels_apply("CR", "Chest")
    assert (
        not chest_labels_apply("CT", "HEAD")
        and not chest_labels_apply("DX", "HAND")
        and not chest_labels_apply("MR", None)
    )


def test_a_lateral_only_radiograph_is_not_routed_to_the_frontal_classifier(tmp_path: object) -> None:
    """ViewPosition routing: the classifier is skipped (not failed) and the VLM still drafts."""
    from pathlib import Path

    import torch
    from monai.networks.nets.densenet import DenseNet121

    path = Path(str(tmp_path)) / "cls.pt"
    torch.save(DenseNet121(spatial_dims=2, in_channels=1, out_channels=2).state_dict(), path)
    lateral = ModelInput(
        study_instance_uid="1.2.826.0.8.3",
        modality="DX",
        body_part="CHEST",
        images=(Image(np.zeros((32, 32), dtype=np.uint16), view_position="LL"),),
    )
    state = ServerState(mode="valid")
    with OpenAIServer(state) as srv:
        reg = _registry(srv.url)
        reg.specs["cls"] = ModelSpec(backend="cxr_classifier", path=path, options={"labels": ["a", "b"], "size": 64})
        res = analyse(lateral, reg, [RouteRule(modality="DX", models=["cls", "vlm"])])
    assert not res.failed and {c.producer.name for c in res.calls} == {"vlm"}
