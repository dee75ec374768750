"""Registry from configuration and the ``mmdx models`` / ``mmdx label`` commands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import typer
from typer.testing import CliRunner

from app.commands.models import register
from core.config import PROJECT_CONFIG_DIR, load_settings
from core.errors import ConfigError
from models.ecg_cnn import build_resnet1d_wang
from models.registry import Registry, read_registry_file
from models.weights import digest_path

runner = CliRunner()


@pytest.fixture(scope="module")
def cli() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


def test_documented_example_registry_parses_and_says_what_is_missing() -> None:
    specs = read_registry_file(PROJECT_CONFIG_DIR / "models.yaml")
    assert {s.backend for s in specs.values()} == {"local_vlm", "remote_vlm", "ecg_cnn", "cxr_classifier"}
    reg = Registry.from_specs(specs)
    infos = {i.name: i for i in reg.describe_all()}
    assert infos["medgemma-4b"].missing == ("weights not found: /opt/mmdx/models/medgemma-4b-it",)
    assert any("sha256" in m for m in infos["medgemma-vllm"].missing)
    assert reg.available() == []


def _write_config(tmp_path: Path, tiny_folder: Path, sha: str | None) -> Path:
    ecg = tmp_path / "ecg.pt"
    torch.save(build_resnet1d_wang().state_dict(), ecg)
    (tmp_path / "models.yaml").write_text(
        "backends:\n"
        f"  tiny-gemma:\n    backend: local_vlm\n    family: gemma3\n    path: {tiny_folder}\n"
        f"    sha256: {repr(sha) if sha else 'null'}\n"
        "  ecg:\n    backend: ecg_cnn\n    path: ecg.pt\n"  # relative to the registry file
        "  gone:\n    backend: cxr_classifier\n    family: xrv-all\n    path: absent.pt\n"
    )
    cfg = tmp_path / "mmdx.yaml"
    cfg.write_text(f"models:\n  registry: {tmp_path / 'models.yaml'}\n")
    return cfg


def test_registry_from_settings_checks_files_and_hashes(tmp_path: Path, tiny_vlms: dict[str, Path]) -> None:
    cfg = _write_config(tmp_path, tiny_vlms["gemma3"], digest_path(tiny_vlms["gemma3"]))
    reg = Registry.from_settings(load_settings(cfg))
    assert reg.names() == ["ecg", "gone", "tiny-gemma"]
    assert reg.available() == ["ecg", "tiny-gemma"]
    assert "absent.pt" in reg.describe("gone").missing[0]


def test_mmdx_models_table_and_json(cli: typer.Typer, tmp_path: Path, tiny_vlms: dict[str, Path]) -> None:
    cfg = _write_config(tmp_path, tiny_vlms["gemma3"], "0" * 64)
    res = runner.invoke(cli, ["models", "--config", str(cfg), "--json"])
    assert res.exit_code == 0, res.output
    doc = {m["name"]: m for m in json.loads(res.output)["models"]}
    assert doc["ecg"]["available"] and len(doc["ecg"]["weights_sha256"]) == 64
    assert "does not match the configured" in doc["tiny-gemma"]["missing"][0]
    assert not doc["gone"]["available"]
    res = runner.invoke(cli, ["models", "--config", str(cfg), "--check"])
    assert res.exit_code == 1 and "gone" in res.output


def test_mmdx_models_without_any_model_says_so(cli: typer.Typer, tmp_path: Path) -> None:
    cfg = tmp_path / "empty.yaml"
    cfg.write_text("models:\n  backends: {}\n")
    res = runner.invoke(cli, ["models", "--config", str(cfg)])
    assert res.exit_code == 0
    assert "No radiology model is configured" in res.output.replace("\n", " ")


def test_mmdx_models_counts_a_vlm_routed_to_ecgs_as_an_ecg_model(cli: typer.Typer, tmp_path: Path) -> None:
    spec = {"backend": "remote_vlm", "url": "http://127.0.0.1:9", "served_model": "pulse-7b", "sha256": "ab" * 32}
    for routing, says in (
        ([{"modality": "DX", "models": ["pulse"]}], True),
        ([{"kind": "ecg", "models": ["pulse"]}], False),
    ):
        cfg = tmp_path / "site.yaml"
        cfg.write_text(json.dumps({"models": {"backends": {"pulse": spec}}, "model_routing": routing}))
        res = runner.invoke(cli, ["models", "--config", str(cfg)], env={"COLUMNS": "300"})
        assert res.exit_code == 0, res.output
        assert ("No ECG model is configured" in res.output.replace("\n", " ")) is says, routing


def test_bad_registry_file_is_a_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "r.yaml"
    bad.write_text("backends:\n  x:\n    backend: telepathy\n")
    with pytest.raises(ConfigError, match=r"backends\.x: backend"):
        read_registry_file(bad)


def test_mmdx_label_json_on_file_csv_and_stdin(cli: typer.Typer, tmp_path: Path) -> None:
    report = tmp_path / "r.txt"
    report.write_text("No pneumothorax. Small left pleural effusion.")
    res = runner.invoke(cli, ["label", str(report), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["labels"]["pneumothorax"]["presence"] == "absent"
    assert doc["labels"]["effusion"]["presence"] == "present" and doc["labels"]["effusion"]["text"] == "effusion"
    assert doc["labels"]["effusion"]["code"]["code"] == "60046008"
    csv = tmp_path / "r.csv"
    csv.write_text('Reports\n"Mild cardiomegaly."\n"Possible pneumonia."\n')
    lines = [
        json.loads(x)
        for x in runner.invoke(cli, ["label", str(csv), "--json", "--labels", "chexpert"]).output.splitlines()
    ]
    assert [next(iter(x["labels"].values()))["presence"] for x in lines] == ["present", "uncertain"]
    res = runner.invoke(cli, ["label", "-", "--json"], input="Heart size is normal.")
    assert json.loads(res.output)["labels"]["cardiomegaly"]["presence"] == "absent"
    assert runner.invoke(cli, ["label", str(report), "--labels", "nope"]).exit_code == 2
