from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from typer.testing import CliRunner

from app.cli import cli
from app.context import AppContext
from app.service import create_app


def test_health_ready_and_studies(workdir: Path, samples_copy: Path) -> None:
    CliRunner().invoke(cli, ["run", str(samples_copy / "chest_cr"), "--index-only"])
    client = TestClient(create_app(AppContext.create()))
    assert client.get("/healthz").json()["status"] == "ok"
    assert client.get("/readyz").status_code == 200
    studies = client.get("/api/v1/studies").json()
    assert len(studies) == 1 and studies[0]["modalities"] == ["CR"]
    assert "patient" not in str(studies).lower()
