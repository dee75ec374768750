"""FHIR bundle: built, re-parsed, checked by the project checker and by Medplum's validator.

Golden file: tests/reports/golden/chest_preliminary_bundle.json.  Refresh after an
intended change with ``MMDX_UPDATE_GOLDEN=1 .venv/bin/pytest tests/reports/test_fhir_bundle.py``
and review the diff before committing.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import os
from pathlib import Path

import pytest
from fhir.resources.R4B.bundle import Bundle

from core.codes import UCUM, Code
from core.errors import ReportError
from core.records import Finding, Presence, ReportStatus
from reports.fhir_bundle import build_bundle, bundle_json
from reports.fhir_validate import check_bundle, validate_many_with_medplum, validate_with_medplum
from reports.signoff import amend, sign, withdraw
from tests.reports import helpers as h

GOLDEN = Path(__file__).parent / "golden" / "chest_preliminary_bundle.json"
FIXED_PDF = b"%PDF-1.4\n% golden stand-in: the real PDF is tested in test_human_readable.py\n%%EOF\n"


def _resources(bundle: dict, rtype: str) -> list[dict]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == rtype]


def _entries(bundle: dict, rtype: str) -> list[dict]:
    return [e for e in bundle["entry"] if e["resource"]["resourceType"] == rtype]


def _versions():
    draft = h.chest_report()
    final = sign(draft, h.RADIOLOGIST, h.SIGNED)
    amended = amend(final, h.RADIOLOGIST, h.AMENDED, findings=final.findings[:2])
    withdrawn = withdraw(amended, h.RADIOLOGIST, h.AMENDED, "wrong patient")
    return draft, final, amended, withdrawn


@pytest.mark.parametrize("kind", ["chest", "ecg"])
def test_every_version_validates_with_both_validators(kind: str, medplum: Path) -> None:
    study = h.chest_study() if kind == "chest" else h.ecg_study()
    draft = h.chest_report() if kind == "chest" else h.ecg_report()
    final = sign(draft, h.CARDIOLOGIST, h.SIGNED)
    amended = amend(final, h.CARDIOLOGIST, h.AMENDED, findings=final.findings[:1])
    withdrawn = withdraw(amended, h.CARDIOLOGIST, h.AMENDED, "recorded on wrong patient")
    stages = ["draft", "signed", "signed", "withdrawn"]
    raws = []
    for report, stage in zip((draft, final, amended, withdrawn), stages, strict=True):
        raw = bundle_json(build_bundle(report, study, h.context(), pdf=FIXED_PDF, html=b"<html></html>"))
        Bundle.model_validate_json(raw)  # re-parses with fhir.resources
        assert check_bundle(json.loads(raw), stage=stage) == []
        raws.append(raw)
    empty = h.chest_report(findings=(), measurements=()) if kind == "chest" else h.ecg_report(findings=())
    raws.append(bundle_json(build_bundle(empty, study, h.context())))  # a draft with no findings
    assert check_bundle(json.loads(raws[-1])) == []
    assert validate_many_with_medplum(raws, medplum) == [[]] * len(raws)


def test_preliminary_draft_is_ai_labelled_and_never_final() -> None:
    raw = bundle_json(build_bundle(h.chest_report(), h.chest_study(), h.context(), pdf=FIXED_PDF))
    b = json.loads(raw)
    assert b"final" not in raw.replace(b"Final", b"")  # no status, no text says final
    (dr,) = _resources(b, "DiagnosticReport")
    assert dr["status"] == "preliminary"
    assert dr["meta"]["security"][0]["code"] == "AIAST"
    assert dr["category"][0]["coding"][0]["code"] == "RAD"
    assert dr["code"]["coding"][0]["code"] == "18748-4"
    assert "resultsInterpreter" not in dr
    assert {c["coding"][0]["code"] for c in dr["conclusionCode"]} == {"8186001", "60046008"}  # present only
    obs = _resources(b, "Observation")
    assert len(obs) == 5  # 1 measurement + 4 findings
    assert all(o["status"] == "preliminary" and o["meta"]["security"][0]["code"] == "AIAST" for o in obs)
    (prov,) = _resources(b, "Provenance")
    assert prov["reason"][0]["coding"][0]["code"] == "AIAST"
    (device,) = _resources(b, "Device")
    assert device["version"][0]["value"] == "2.1.0"
    assert {"system": "urn:mmdx:sha256", "value": "a" * 64} in device["identifier"]
    # first version: conditional creates everywhere, Provenance PUT to its deterministic id, and the
    # ImagingStudy a conditional update (the EHR's copy follows when the study grows)
    for e in b["entry"]:
        if e["resource"]["resourceType"] == "Provenance":
            assert e["request"]["method"] == "PUT"
        elif e["resource"]["resourceType"] == "ImagingStudy":
            assert e["request"]["method"] == "PUT" and "ifNoneExist" not in e["request"]
            assert e["request"]["url"].startswith("ImagingStudy?identifier=urn:dicom:uid|urn:oid:")
        else:
            assert e["request"]["method"] == "POST" and e["request"]["ifNoneExist"].startswith("identifier=")


def test_finding_observation_shape() -> None:
    b = json.loads(bundle_json(build_bundle(h.chest_report(), h.chest_study(), h.context())))
    eff = next(o for o in _resources(b, "Observation") if o["code"].get("coding", [{}])[0].get("code") == "60046008")
    assert eff["valueCodeableConcept"]["coding"][0]["code"] == "52101004"  # present
    assert eff["bodySite"]["coding"][0]["code"] == "3120008" and eff["bodySite"]["text"].startswith("left")
    assert eff["component"][0]["valueQuantity"]["value"] == pytest.approx(0.64)
    (study,) = _entries(b, "ImagingStudy")
    assert eff["derivedFrom"][0]["reference"] == study["fullUrl"]
    assert study["resource"]["identifier"][0] == {
        "system": "urn:dicom:uid",
        "value": f"urn:oid:{h.CR_STUDY_UID}",
    }
    nodule = next(
        o for o in _resources(b, "Observation") if o["code"].get("coding", [{}])[0].get("code") == "786838002"
    )
    assert nodule["valueCodeableConcept"]["coding"][0]["code"] == "82334004"  # indeterminate
    assert len(nodule["derivedFrom"]) == 2  # the study and the size measurement


def test_ecg_bundle_codes_and_units() -> None:
    b = json.loads(bundle_json(build_bundle(h.ecg_report(), h.ecg_study(), h.context())))
    (dr,) = _resources(b, "DiagnosticReport")
    assert dr["category"][0]["coding"][0]["code"] == "EC"
    assert dr["code"]["coding"][0]["code"] == "11524-6"
    pr = next(o for o in _resources(b, "Observation") if o["code"]["coding"][0]["code"] == "8625-6")
    assert pr["valueQuantity"] == {"value": 212.0, "unit": "ms", "system": "http://unitsofmeasure.org", "code": "ms"}
    assert pr["category"][0]["coding"][0]["code"] == "procedure"
    # one labelling rule: machine-generated content (rule engine and model alike) carries AIAST
    assert pr["meta"]["security"][0]["code"] == "AIAST"
    lvh = next(o for o in _resources(b, "Observation") if o["code"].get("coding", [{}])[0].get("code") == "164873001")
    assert lvh["meta"]["security"][0]["code"] == "AIAST"  # the ECG model's statement is
    assert len(_resources(b, "Device")) == 2


def test_signed_version_is_conditional_update_with_verifier() -> None:
    draft, final, amended, withdrawn = _versions()
    b = json.loads(bundle_json(build_bundle(final, h.chest_study(), h.context())))
    (dr_entry,) = _entries(b, "DiagnosticReport")
    assert dr_entry["resource"]["status"] == "final"
    assert dr_entry["request"]["method"] == "PUT"
    assert dr_entry["request"]["url"].startswith("DiagnosticReport?identifier=urn:mmdx:report|")
    (pract,) = _entries(b, "Practitioner")
    assert dr_entry["resource"]["resultsInterpreter"][0]["reference"] == pract["fullUrl"]
    assert pract["resource"]["name"][0]["family"] == "Müller"
    verifier = [p for p in _resources(b, "Provenance") if p["agent"][0]["type"]["coding"][0]["code"] == "verifier"]
    assert verifier and verifier[0]["entity"][0]["role"] == "revision"
    # the DiagnosticReport identifier is the same in every version: the server updates one resource
    d0 = json.loads(bundle_json(build_bundle(draft, h.chest_study(), h.context())))
    assert _resources(d0, "DiagnosticReport")[0]["identifier"] == dr_entry["resource"]["identifier"]
    b3 = json.loads(bundle_json(build_bundle(amended, h.chest_study(), h.context())))
    assert _resources(b3, "DiagnosticReport")[0]["status"] == "amended"
    b4 = json.loads(bundle_json(build_bundle(withdrawn, h.chest_study(), h.context())))
    assert {o["status"] for o in _resources(b4, "Observation")} == {"entered-in-error"}
    assert "resultsInterpreter" not in _resources(b4, "DiagnosticReport")[0]


def test_determinism_and_golden_file() -> None:
    a = bundle_json(build_bundle(h.chest_report(), h.chest_study(), h.context(), pdf=FIXED_PDF))
    b = bundle_json(build_bundle(h.chest_report(), h.chest_study(), h.context(), pdf=FIXED_PDF))
    assert a == b
    if os.environ.get("MMDX_UPDATE_GOLDEN"):
        GOLDEN.write_bytes(a)
    assert a == GOLDEN.read_bytes(), "bundle changed: see the module docstring to refresh the golden file"


def test_presented_form_has_size_and_sha1() -> None:
    b = json.loads(bundle_json(build_bundle(h.chest_report(), h.chest_study(), h.context(), pdf=FIXED_PDF)))
    form = _resources(b, "DiagnosticReport")[0]["presentedForm"][0]
    assert form["size"] == len(FIXED_PDF)
    assert form["hash"] == base64.b64encode(hashlib.sha1(FIXED_PDF).digest()).decode()
    assert base64.b64decode(form["data"]) == FIXED_PDF


# ----------------------------------------------- the checker catches what fhir.resources does not


def _good() -> dict:
    return json.loads(bundle_json(build_bundle(h.chest_report(), h.chest_study(), h.context(), pdf=FIXED_PDF)))


def test_checker_rejects_dangling_reference() -> None:
    b = _good()
    _resources(b, "DiagnosticReport")[0]["subject"]["reference"] = "urn:uuid:00000000-0000-0000-0000-000000000000"
    assert any("does not resolve" in i.message for i in check_bundle(b))


def test_checker_rejects_entry_without_request_and_wrong_target_type() -> None:
    b = _good()
    del b["entry"][0]["request"]
    dr = _resources(b, "DiagnosticReport")[0]
    dr["result"][0]["reference"] = _entries(b, "ImagingStudy")[0]["fullUrl"]
    msgs = [i.message for i in check_bundle(b)]
    assert any("request.method" in m for m in msgs)
    assert any("must reference ['Observation']" in m for m in msgs)
    Bundle.model_validate(b)  # fhir.resources alone accepts both


def test_checker_enforces_workflow_stage_and_ai_labels() -> None:
    b = _good()
    assert any("not allowed at stage 'signed'" in i.message for i in check_bundle(b, stage="signed"))
    b2 = _good()
    _resources(b2, "DiagnosticReport")[0]["status"] = "draft"
    assert any("not one mmdx emits" in i.message for i in check_bundle(b2))
    b3 = _good()
    for o in _resources(b3, "Observation"):
        o.pop("meta")
    assert any("AIAST" in i.message for i in check_bundle(b3))
    b4 = _good()
    _resources(b4, "DiagnosticReport")[0]["presentedForm"][0]["hash"] = "AAAA"
    assert any("SHA-1" in i.message for i in check_bundle(b4))
    b5 = copy.deepcopy(_good())
    _resources(b5, "Observation")[0]["valueQuantity"]["system"] = "http://example.org/units"
    assert any("UCUM" in i.message for i in check_bundle(b5))


def test_medplum_catches_structural_errors(medplum: Path) -> None:
    b = _good()
    _resources(b, "ImagingStudy")[0]["numberOfSeries"] = "one"
    _resources(b, "Patient")[0]["nickname"] = "x"
    issues = validate_with_medplum(json.dumps(b).encode(), medplum)
    assert any("nickname" in i.path for i in issues)
    assert any("numberOfSeries" in i.path for i in issues)


# --------------------------------------------------------------------------- bad input


def test_study_without_patient_id_is_identified_by_study() -> None:
    raw = bundle_json(build_bundle(h.chest_report(), h.chest_study(with_patient_id=False), h.context()))
    (pat,) = _resources(json.loads(raw), "Patient")
    # a temporary identifier scoped to the study, marked as such: never mistaken for an MRN
    assert pat["identifier"] == [{"use": "temp", "system": "urn:mmdx:patient-of-study", "value": h.CR_STUDY_UID}]
    assert check_bundle(json.loads(raw)) == []


def test_finding_with_a_non_finding_code_is_refused_without_phi() -> None:
    bad = Finding(UCUM.MS, "odd", h.CXR_MODEL, Presence.PRESENT)
    r = h.chest_report(findings=(*h.chest_findings(), bad))
    with pytest.raises(ReportError, match=r"findings\[4\]\.concept.*UCUM") as exc:
        build_bundle(r, h.chest_study(), h.context())
    assert "Doe" not in str(exc.value) and "MRN" not in str(exc.value)


def test_local_code_and_uncoded_finding_are_kept() -> None:
    local = Finding(Code("cxr-lung-opacity", "MMDX", "Lung opacity"), "opacity", h.CXR_MODEL)
    free = Finding(None, "Old rib fracture, healed", h.CXR_MODEL, Presence.PRESENT)
    r = h.chest_report(findings=(local, free))
    b = json.loads(bundle_json(build_bundle(r, h.chest_study(patient_name="Ødegård^Åse"), h.context())))
    assert check_bundle(b) == []
    codes = [o["code"] for o in _resources(b, "Observation") if "valueCodeableConcept" in o]
    assert codes[0]["coding"][0]["system"] == "urn:mmdx:codes" and codes[1] == {"text": "Old rib fracture, healed"}
    assert _resources(b, "Patient")[0]["name"][0]["family"] == "Ødegård"
    assert ReportStatus.PRELIMINARY.value == _resources(b, "DiagnosticReport")[0]["status"]


def test_observation_identifiers_survive_reordering_between_versions() -> None:
    draft = h.chest_report()
    final = sign(draft, h.RADIOLOGIST, h.SIGNED)
    amended = amend(final, h.RADIOLOGIST, h.AMENDED, findings=tuple(reversed(final.findings[1:])))

    def ids(report) -> dict[str, str]:
        b = json.loads(bundle_json(build_bundle(report, h.chest_study(), h.context())))
        return {o["code"]["coding"][0]["code"]: o["identifier"][0]["value"] for o in _resources(b, "Observation")}

    before, after = ids(draft), ids(amended)
    for code, ident in after.items():
        assert before[code] == ident  # the same finding updates the same Observation
    assert len(set(before.values())) == len(before)


def test_amendment_retracts_dropped_observations(medplum: Path) -> None:
    final = sign(h.chest_report(), h.RADIOLOGIST, h.SIGNED)
    amended = amend(final, h.RADIOLOGIST, h.AMENDED, findings=final.findings[:2], measurements=())
    raw = bundle_json(build_bundle(amended, h.chest_study(), h.context(), previous=final))
    b = json.loads(raw)
    retracted = [o for o in _resources(b, "Observation") if o["status"] == "entered-in-error"]
    # the nodule finding, its size measurement and the pneumothorax finding are gone in the amendment
    assert {o["code"]["coding"][0]["code"] for o in retracted} == {"786838002", "103339001", "36118008"}
    before = json.loads(bundle_json(build_bundle(final, h.chest_study(), h.context())))
    ids_before = {o["identifier"][0]["value"] for o in _resources(before, "Observation")}
    assert {o["identifier"][0]["value"] for o in retracted} <= ids_before  # same identifiers: updates, not creates
    assert all(e["request"]["method"] == "PUT" for e in _entries(b, "Observation"))
    assert check_bundle(b, stage="signed") == []
    assert validate_with_medplum(raw, medplum) == []
