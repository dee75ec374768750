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
        # each type without each field it needs: the message names the destination and the missing fields
        (
            "destinations:\n  pacs: {type: dicom}\n",
            "destinations.pacs: Value error, a dicom destination needs host, port, ae_title",
        ),
        (
            "destinations:\n  pacs: {type: dicom, port: 104, ae_title: P}\n",
            "destinations.pacs: Value error, a dicom destination needs host",
        ),
        (
            "destinations:\n  pacs: {type: dicom, host: h, port: 104}\n",
            "destinations.pacs: Value error, a dicom destination needs ae_title",
        ),
        (
            "destinations:\n  pacs: {type: dicom, host: h, ae_title: P}\n",
            "destinations.pacs: Value error, a dicom destination needs port",
        ),
        ("destinations:\n  web: {type: stow}\n", "destinations.web: Value error, a stow destination needs url"),
        (
            "destinations:\n  web: {type: stow, url: ''}\n",
            "destinations.web: Value error, a stow destination needs url",
        ),
        ("destinations:\n  ehr: {type: fhir}\n", "destinations.ehr: Value error, a fhir destination needs url"),
        ("destinations:\n  ris: {type: mllp}\n", "destinations.ris: Value error, a mllp destination needs host, port"),
        (
            "destinations:\n  ris: {type: mllp, port: 2575}\n",
            "destinations.ris: Value error, a mllp destination needs host",
        ),
        (
            "destinations:\n  share: {type: folder}\n",
            "destinations.share: Value error, a folder destination needs path",
        ),
        ("destinations:\n  hook: {type: webhook}\n", "destinations.hook: Value error, a webhook destination needs url"),
        ("destinations:\n  x: {type: smtp, url: 'mailto:a'}\n", "destinations.x.type"),
        ("destinations:\n  pacs: {type: dicom, host: h, port: 0, ae_title: P}\n", "destinations.pacs.port"),
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


def test_a_refused_destination_does_not_echo_its_authorization(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, "destinations:\n  ehr: {type: fhir, authorization: 'Bearer s3cret-token'}\n")
    assert "destinations.ehr" in str(err.value) and "needs url" in str(err.value)
    assert "s3cret-token" not in str(err.value)


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
