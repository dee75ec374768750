"""Config validation refuses a destination without what its type needs, naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.config import load_settings
from core.errors import ConfigError


def _load(tmp_path: Path, text: str) -> object:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    return load_settings(cfg, use_project_defaults=False)


@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        ("destinations:\n  pacs: {type: dicom, host: h}\n", "needs port, ae_title"),
        ("destinations:\n  ehr: {type: fhir}\n", "needs url"),
        ("destinations:\n  ris: {type: mllp, host: h}\n", "needs port"),
        ("destinations:\n  share: {type: folder}\n", "needs path"),
        ("destinations:\n  hook: {type: webhook}\n", "needs url"),
        ("destinations:\n  ehr: {type: fhir, url: http://x, storage_commitment: true}\n", "storage_commitment is for"),
        ("destinations:\n  ris: {type: mllp, host: h, port: 1, artefacts: [sr]}\n", "cannot carry ['sr']"),
        (
            "destinations:\n  pacs: {type: dicom, host: h, port: 104, ae_title: WAYTOOLONGAETITLE17}\n",
            "ae_title",
        ),
        (
            "destinations:\n  pacs: {type: dicom, host: h, port: 104, ae_title: P}\n"
            "delivery_routing:\n  - {artefacts: [oru], destinations: [pacs]}\n",
            "cannot carry",
        ),
        (
            "destinations:\n  pacs: {type: dicom, host: h, port: 104, ae_title: P, storage_commitment: true}\n",
            "bridge.commitment_port",
        ),
    ],
)
def test_destination_without_what_its_type_needs_is_refused(tmp_path: Path, yaml_text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, yaml_text)
    assert expected in str(err.value)
    assert "destinations" in str(err.value) or "delivery_routing" in str(err.value) or "<root>" in str(err.value)


def test_complete_destinations_load(tmp_path: Path) -> None:
    settings = _load(
        tmp_path,
        "destinations:\n"
        "  pacs: {type: dicom, host: 127.0.0.1, port: 104, ae_title: PACS, artefacts: [sr, sc, dicom-pdf],"
        " storage_commitment: true}\n"
        "  ehr: {type: fhir, url: 'http://fhir/R4', authorization: 'Bearer t', send_preliminary: false}\n"
        "  ris: {type: mllp, host: 127.0.0.1, port: 2575, artefacts: [oru]}\n"
        "  share: {type: folder, path: /tmp/x}\n"
        "bridge: {commitment_port: 11115}\n",
    )
    assert settings.destinations["ehr"].send_preliminary is False  # type: ignore[attr-defined]
    assert settings.destinations["pacs"].artefacts == ["sr", "sc", "dicom-pdf"]  # type: ignore[attr-defined]
