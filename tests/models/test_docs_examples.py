"""Every YAML example of docs/models.md is a valid mmdx configuration; its remote models pass a probe."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from core.config import load_settings
from models.check import check_backend
from models.registry import Registry

from .openai_server import OpenAIServer, ServerState

DOC = Path(__file__).resolve().parents[2] / "docs" / "models.md"
BLOCKS = re.findall(r"```yaml\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)


def test_the_page_has_an_example_per_backend_kind() -> None:
    kinds = set(re.findall(r"backend: (\w+)", "".join(BLOCKS)))
    assert kinds == {"local_vlm", "remote_vlm", "cxr_classifier", "ecg_cnn"} and len(BLOCKS) >= 5


@pytest.mark.parametrize("n", range(len(BLOCKS)))
def test_each_example_loads_and_routes_only_configured_models(n: int, tmp_path: Path) -> None:
    cfg = tmp_path / "mmdx.yaml"
    cfg.write_text(BLOCKS[n])
    settings = load_settings(cfg)
    registry = Registry.from_settings(settings)
    assert registry.names() and settings.model_routing
    for rule in settings.model_routing:
        assert set(rule.models) <= set(registry.names()), rule
    for info in registry.describe_all():  # no weights here: each says what is missing, none crashes
        assert info.available or info.missing


def test_remote_examples_pass_a_probe_against_a_server(tmp_path: Path) -> None:
    block = next(b for b in BLOCKS if "phi4-multimodal" in b)
    cfg = tmp_path / "mmdx.yaml"
    cfg.write_text(block)
    registry = Registry.from_settings(load_settings(cfg))
    for name in registry.names("remote_vlm"):
        spec = registry.specs[name]
        with OpenAIServer(ServerState(mode="valid", served_model=spec.served_model or "")) as srv:
            one = Registry.from_specs({name: spec.model_copy(update={"url": srv.url})})
            result = check_backend(one, name, probe=True)
        assert result.ok, (name, result.problems)
