from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "samples"


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh working directory: var/ (SQLite + folders) is created relative to it."""
    monkeypatch.chdir(tmp_path)
    for key in list(__import__("os").environ):
        if key.startswith("MMDX_"):
            monkeypatch.delenv(key)
    yield tmp_path


@pytest.fixture
def samples_copy(tmp_path: Path) -> Path:
    dest = tmp_path / "in"
    shutil.copytree(SAMPLES, dest)
    return dest


FIXED_NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
