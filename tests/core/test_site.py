"""The site profile (``site:``) and the patient identifier mapping: valid on load, errors name the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from core.config import load_settings
from core.errors import ConfigError, RecordError
from core.patient_ids import IdentifierMap, IdentifierSystem
from core.records import Patient, PatientIdentifier


def _load(tmp_path: Path, site: dict[str, object]):
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump({"site": site}))
    return load_settings(path)


def test_site_section_from_a_file_and_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MMDX_SITE__HL7__RECEIVING_FACILITY", "WARD-7")
    s = _load(
        tmp_path,
        {
            "timezone": "America/New_York",
            "patient_identifiers": {"issuers": {"HOSP": {"fhir_system": "urn:oid:1.2.3", "hl7_namespace": "HOSP"}}},
        },
    )
    assert s.site.timezone == "America/New_York" and s.site.hl7.receiving_facility == "WARD-7"
    ids = s.site.identifier_map()
    assert ids.system_for("HOSP").fhir_system == "urn:oid:1.2.3"
    assert ids.system_for(None).fhir_system == "urn:mmdx:patient-id"  # the documented default


@pytest.mark.parametrize(
    ("site", "key"),
    [
        ({"timezone": "Mars/Olympus"}, "site.timezone"),
        ({"hl7": {"sending_facility": "A|B"}}, "site.hl7.sending_facility"),
        ({"language": "english"}, "site.language"),
        ({"patient_identifiers": {"default": {"fhir_system": "not a uri", "hl7_namespace": "X"}}}, "site.patient"),
        (
            {"patient_identifiers": {"default": {"fhir_system": "urn:x", "hl7_namespace": "X", "type_code": "ZZ"}}},
            "site",
        ),
        ({"institution": "x"}, "site.institution"),
    ],
)
def test_bad_site_values_stop_start_up_naming_the_key(tmp_path: Path, site: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        _load(tmp_path, site)


def test_identifier_system_checks_its_fields() -> None:
    with pytest.raises(RecordError, match="hl7_namespace"):
        IdentifierSystem(fhir_system="urn:x:y", hl7_namespace="A^B")
    with pytest.raises(RecordError, match="hl7_universal_id"):
        IdentifierSystem(fhir_system="urn:x:y", hl7_namespace="A", hl7_universal_id="not-an-oid")


def test_resolve_all_keeps_order_and_drops_duplicates_per_system() -> None:
    p = Patient(identifiers=(PatientIdentifier("1", "A"), PatientIdentifier("2"), PatientIdentifier("1", "A")))
    resolved = IdentifierMap().resolve_all(p)
    assert [(r.value, r.source_issuer) for r in resolved] == [("1", "A"), ("2", None)]
    assert "1" not in repr(resolved[0])  # PHI never printed
