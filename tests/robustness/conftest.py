"""Fixtures for the robustness tests: a fresh working directory (var/ under it) and no MMDX_ overrides."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.chdir(tmp_path)
    for key in list(os.environ):
        if key.startswith("MMDX_"):
            monkeypatch.delenv(key)
    yield tmp_path
