"""Fixtures for the models tests: tiny random VLMs built once per test session."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.records import Image
from models.protocol import ClinicalContext, ModelInput

from .tiny import BUILDERS, write_manifest


@pytest.fixture(scope="session")
def tiny_vlms(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Folder of each tiny model family, saved with save_pretrained (about 1 s for all three)."""
    root = tmp_path_factory.mktemp("tiny_vlms")
    out = {}
    for family, build in BUILDERS.items():
        folder = build(root / family)
        write_manifest(folder, family)
        out[family] = folder
    return out


def cxr_input(uid: str, rows: int = 64, cols: int = 64, seed: int = 0) -> ModelInput:
    rng = np.random.default_rng(seed)
    pa = Image(rng.integers(0, 4096, (rows, cols)).astype(np.uint16), view_position="PA", window=(2048.0, 4096.0))
    lat = Image(rng.integers(0, 4096, (rows, cols + 8)).astype(np.uint16), view_position="LL")
    return ModelInput(
        study_instance_uid=uid,
        modality="DX",
        body_part="CHEST",
        images=(lat, pa),
        context=ClinicalContext(
            indication="cough, fever", technique="PA and lateral", prior_impressions=("Clear lungs.",)
        ),
    )
