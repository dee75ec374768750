"""``mmdx models --check`` / ``--probe``: a broken setup is never "ready", and the reason is said in site terms."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
import typer
from typer.testing import CliRunner

from app.commands.models import register
from core.errors import ModelError
from models.check import safetensors_shapes

from .openai_server import OpenAIServer, ServerState

runner = CliRunner()
SHA = "ab" * 32


@pytest.fixture(scope="module")
def cli() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


def _check(cli: typer.Typer, tmp_path: Path, backends: dict[str, Any], *extra: str) -> tuple[int, dict[str, Any]]:
    cfg = tmp_path / "mmdx.yaml"
    cfg.write_text(json.dumps({"models": {"backends": backends}}))
    res = runner.invoke(cli, ["models", "--check", "--json", "--config", str(cfg), *extra])
    assert res.exit_code in (0, 1), res.output
    return res.exit_code, {m["name"]: m for m in json.loads(res.stdout)["models"]}


def _copy(tiny: Path, tmp_path: Path, name: str = "m") -> Path:
    folder = tmp_path / name
    shutil.copytree(tiny, folder)
    return folder


def _local(folder: Path, family: str = "gemma3") -> dict[str, Any]:
    return {"backend": "local_vlm", "family": family, "path": str(folder), "max_new_tokens": 4}


@pytest.mark.parametrize("family", ["gemma3", "mllama"])
def test_a_good_local_model_is_ready_after_a_probe(
    cli: typer.Typer, tmp_path: Path, tiny_vlms: dict[str, Path], family: str
) -> None:
    code, models = _check(cli, tmp_path, {"m": _local(tiny_vlms[family], family)}, "--probe")
    assert code == 0 and models["m"]["available"], models["m"]["missing"]
    assert len(models["m"]["weights_sha256"]) == 64  # the full digest, to copy into the configuration


def test_corrupt_safetensors(cli: typer.Typer, tmp_path: Path, tiny_vlms: dict[str, Path]) -> None:
    folder = _copy(tiny_vlms["gemma3"], tmp_path)
    (folder / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    code, models = _check(cli, tmp_path, {"m": _local(folder)})
    assert code == 1 and "corrupt safetensors header" in " ".join(models["m"]["missing"])


def test_truncated_safetensors(cli: typer.Typer, tmp_path: Path, tiny_vlms: dict[str, Path]) -> None:
    folder = _copy(tiny_vlms["gemma3"], tmp_path)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    code, models = _check(cli, tmp_path, {"m": _local(folder)})
    assert code == 1 and "weights file is truncated" in " ".join(models["m"]["missing"])
    with pytest.raises(ModelError, match="copy it again"):
        safetensors_shapes(weights)


def test_missing_tokenizer(cli: typer.Typer, tmp_path: Path, tiny_vlms: dict[str, Path]) -> None:
    folder = _copy(tiny_vlms["gemma3"], tmp_path)
    for f in folder.glob("tokenizer*"):
        f.unlink()
    code, models = _check(cli, tmp_path, {"m": _local(folder)})
    text = " ".join(models["m"]["missing"])
    assert code == 1 and "tokenizer" in text and "same release as the weights" in text


def test_swapped_tokenizer(cli: typer.Typer, tmp_path: Path, tiny_vlms: dict[str, Path]) -> None:
    folder = _copy(tiny_vlms["gemma3"], tmp_path)
    for f in tiny_vlms["llava"].iterdir():  # LLaVA's tokenizer and processor beside Gemma weights
        if f.name.startswith(("tokenizer", "processor", "chat_template", "special_tokens")):
            shutil.copy(f, folder / f.name)
    code, models = _check(cli, tmp_path, {"m": _local(folder)})
    text = " ".join(models["m"]["missing"])
    assert code == 1 and ("does not belong" in text or "different models" in text)
    assert "has no attribute" not in text, "library internals must not reach the site"


def test_weights_from_another_config(cli: typer.Typer, tmp_path: Path, tiny_vlms: dict[str, Path]) -> None:
    folder = _copy(tiny_vlms["gemma3"], tmp_path)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["text_config"]["intermediate_size"] = 48  # the MLP tensors in the file are 64 wide
    (folder / "config.json").write_text(json.dumps(cfg))
    code, models = _check(cli, tmp_path, {"m": _local(folder)})
    assert code == 1 and "do not fit config.json" in " ".join(models["m"]["missing"])


def test_classifier_label_count(cli: typer.Typer, tmp_path: Path) -> None:
    from monai.networks.nets.densenet import DenseNet121

    path = tmp_path / "cls.pt"
    torch.save(DenseNet121(spatial_dims=2, in_channels=1, out_channels=3).state_dict(), path)
    spec = {"backend": "cxr_classifier", "path": str(path), "options": {"labels": ["pneumothorax", "effusion"]}}
    code, models = _check(cli, tmp_path, {"cls": spec})
    assert code == 1 and "classifier has 3 outputs, 2 labels are configured" in " ".join(models["cls"]["missing"])


def test_non_hex_sha256(cli: typer.Typer, tmp_path: Path, tiny_vlms: dict[str, Path]) -> None:
    code, models = _check(cli, tmp_path, {"m": {**_local(tiny_vlms["gemma3"]), "sha256": "0123456789abcdef"}})
    assert code == 1 and "is not a sha256 (expected 64 hexadecimal" in " ".join(models["m"]["missing"])


def _remote(url: str) -> dict[str, Any]:
    return {"backend": "remote_vlm", "url": url, "served_model": "tiny", "sha256": SHA, "options": {"retries": 0}}


def test_server_answering_500_fails_the_probe(cli: typer.Typer, tmp_path: Path) -> None:
    state = ServerState(mode="http500")
    with OpenAIServer(state) as srv:
        code, models = _check(cli, tmp_path, {"r": _remote(srv.url)}, "--probe")
        assert code == 1 and "answered HTTP 500" in " ".join(models["r"]["missing"])
        state.mode = "valid"
        code, models = _check(cli, tmp_path, {"r": _remote(srv.url)}, "--probe")
        assert code == 0 and models["r"]["available"]


def test_server_down_and_wrong_model_name(cli: typer.Typer, tmp_path: Path) -> None:
    code, models = _check(cli, tmp_path, {"r": _remote("http://127.0.0.1:9")}, "--probe")
    assert code == 1 and "server not reachable" in " ".join(models["r"]["missing"])
    with OpenAIServer(ServerState(served_model="other")) as srv:
        code, models = _check(cli, tmp_path, {"r": _remote(srv.url)}, "--probe")
    assert code == 1 and "check served_model" in " ".join(models["r"]["missing"])


def test_a_model_only_served_remotely_says_how_to_run_it(
    cli: typer.Typer, tmp_path: Path, tiny_vlms: dict[str, Path]
) -> None:
    folder = _copy(tiny_vlms["gemma3"], tmp_path)
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**cfg, "model_type": "phi4_multimodal"}))
    code, models = _check(cli, tmp_path, {"m": {"backend": "local_vlm", "path": str(folder)}})
    text = " ".join(models["m"]["missing"])
    assert code == 1 and "needs torchvision" in text and "configure it as remote_vlm" in text
