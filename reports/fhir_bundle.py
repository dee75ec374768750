"""FHIR R4 (4.0.1) transaction Bundle for one version of a study's report.

Built with ``fhir.resources.R4B`` models (identical to R4 for the resources used
here).  The bundle is what the EHR receives: DiagnosticReport, one Observation
per measurement and per finding, the ImagingStudy, the Patient, a Device per
model/rule engine, Provenance (AI authorship, and clinician verification once
signed).

Why the request shapes: a report's first version is sent as conditional
creates (``ifNoneExist`` on business identifiers) so that sending the same study
twice creates nothing twice; later versions (final, amended, withdrawn) are
conditional updates of the same identifiers.  Provenance has no identifier in
R4, so it is PUT to a deterministic id (update-as-create, idempotent too).

AI labelling follows HL7 AI Transparency on FHIR: ``meta.security`` AIAST on
AI-asserted resources and a Provenance with reason AIAST whose agent is the
AI Device.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.bundle import Bundle

from core.codes import DCM, FHIRCODES, UCUM, Code
from core.orders import Order
from core.records import (
    Clinician,
    DraftReport,
    Finding,
    Measurement,
    Presence,
    Producer,
    ProducerKind,
    ReportKind,
    ReportStatus,
    Sex,
    Study,
)
from reports._common import (
    LATERALITY_CODES,
    PRESENCE_CODES,
    check_report,
    conclusion_text,
    finding_label,
    report_code,
    split_person_name,
    unique_measurements,
)
from reports.context import ReportContext

FHIR_VERSION = "4.0.1"
DICOM_UID_SYSTEM = "urn:dicom:uid"
RFC3986 = "urn:ietf:rfc:3986"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"

_GENDER = {Sex.MALE: "male", Sex.FEMALE: "female", Sex.OTHER: "other", Sex.UNKNOWN: "unknown"}


def coding(code: Code) -> dict[str, str]:
    """A FHIR Coding from a core Code."""
    return {"system": code.system, "code": code.value, "display": code.meaning}


def concept(code: Code, text: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"coding": [coding(code)]}
    if text:
        out["text"] = text
    return out


def _ref(full_url: str, display: str | None = None) -> dict[str, str]:
    out = {"reference": full_url}
    if display:
        out["display"] = display
    return out


def _ai_meta() -> dict[str, Any]:
    return {"security": [coding(FHIRCODES.AIAST)]}


class _Builder:
    """Collects entries; every resource gets a deterministic urn:uuid fullUrl."""

    def __init__(self, report: DraftReport, study: Study, ctx: ReportContext) -> None:
        self.report = report
        self.study = study
        self.ctx = ctx
        self.entries: list[dict[str, Any]] = []
        self.uid = study.study_instance_uid
        self.create = report.version == 1

    def url(self, *parts: str) -> str:
        return "urn:uuid:" + self.ctx.uuid("fhir", self.uid, *parts)

    def add(
        self,
        resource: dict[str, Any],
        full_url: str,
        identifier: Mapping[str, str] | None,
        *,
        versioned: bool,
        always_update: bool = False,
    ) -> None:
        """Add an entry: conditional create, conditional update (versioned resources after v1) or PUT by id."""
        rtype = resource["resourceType"]
        if identifier is None:
            rid = full_url.removeprefix("urn:uuid:")
            resource["id"] = rid
            request = {"method": "PUT", "url": f"{rtype}/{rid}"}
        else:
            query = "identifier=" + quote(f"{identifier['system']}|{identifier['value']}", safe=":/|.-_")
            if always_update or (versioned and not self.create):
                request = {"method": "PUT", "url": f"{rtype}?{query}"}
            else:
                request = {"method": "POST", "url": rtype, "ifNoneExist": query}
        model = get_fhir_model_class(rtype).model_validate(resource)
        self.entries.append(
            {"fullUrl": full_url, "resource": model.model_dump(mode="json", exclude_none=True), "request": request}
        )


def build_bundle(
    report: DraftReport,
    study: Study,
    ctx: ReportContext,
    *,
    pdf: bytes | None = None,
    html: bytes | None = None,
    previous: DraftReport | None = None,
) -> Bundle:
    """Build the transaction Bundle for one report version.

    Parameters
    ----------
    report, study:
        The report version and the indexed study it describes.
    ctx:
        Site context (identifier systems, UID root, time zone).
    pdf, html:
        The human-readable renderings, attached as ``presentedForm`` with size and
        SHA-1 hash (FHIR Attachment.hash).
    previous:
        The version this one replaces: its observations that this version no longer
        contains are updated to ``entered-in-error`` so the EHR does not keep them.

    Raises
    ------
    core.errors.ReportError
        On inputs that cannot give a valid bundle (see ``reports._common.check_report``).
    """
    check_report(report, study)
    b = _Builder(report, study, ctx)
    patient_url = _patient(b)
    study_url = _imaging_study(b, patient_url)
    organization_url = _organization(b)
    devices = {p: _device(b, p) for p in report.provenance}
    practitioner_url = _practitioner(b, report.signature.clinician) if report.signature else None
    obs_urls, ai_targets = _observations(b, patient_url, study_url, devices, previous)

    dr_identifier = {"system": ctx.system("report"), "value": ctx.uid(b.uid, "fhir-diagnostic-report")}
    dr_url = b.url("DiagnosticReport")
    dr = _diagnostic_report(b, dr_identifier, patient_url, study_url, obs_urls)
    dr["performer"] = [_ref(organization_url, ctx.performer_name)]
    if report.machine_producers:
        dr["meta"] = _ai_meta()
    if practitioner_url and report.status is not ReportStatus.ENTERED_IN_ERROR:
        dr["resultsInterpreter"] = [_ref(practitioner_url)]
    _conclusion_and_forms(dr, report, pdf, html)
    b.add(dr, dr_url, dr_identifier, versioned=True)

    # the labelling rule (reports._common.machine_label): every machine producer is an author of the draft
    ai_devices = [devices[p] for p in report.machine_producers]
    if ai_devices:
        _ai_provenance(b, [dr_url, *ai_targets], ai_devices)
    if report.signature is not None or report.status is ReportStatus.ENTERED_IN_ERROR:
        _signoff_provenance(b, dr_url, dr_identifier, practitioner_url)

    bundle = {
        "resourceType": "Bundle",
        "identifier": {"system": ctx.system("bundle"), "value": ctx.report_uid(report, "fhir-bundle")},
        "type": "transaction",
        "timestamp": report.created_at.isoformat(),
        "entry": b.entries,
    }
    return Bundle.model_validate(bundle)


def _observations(
    b: _Builder,
    patient_url: str,
    study_url: str,
    devices: Mapping[Producer, str],
    previous: DraftReport | None,
) -> tuple[list[str], list[str]]:
    """Add the measurement then finding Observations (and retract what ``previous`` had that this version dropped).

    Returns the Observation URLs in report order and those a machine produced (the AI Provenance targets).
    """
    report = b.report
    obs_urls: list[str] = []
    ai_targets: list[str] = []
    measurement_urls: dict[Measurement, str] = {}
    m_keys, f_keys = _observation_keys(report)
    for (m, producer), key in zip(unique_measurements(report), m_keys, strict=True):
        url = _measurement_obs(b, key, m, producer, patient_url, study_url, devices)
        measurement_urls[m] = url
        obs_urls.append(url)
        if producer is not None and producer.is_machine:
            ai_targets.append(url)
    for f, key in zip(report.findings, f_keys, strict=True):
        url = _finding_obs(b, key, f, patient_url, study_url, devices, measurement_urls)
        obs_urls.append(url)
        if f.producer.is_machine:
            ai_targets.append(url)
    if previous is not None and report.version > 1:
        _retract_dropped(b, previous, {*m_keys, *f_keys}, patient_url)
    return obs_urls, ai_targets


def _diagnostic_report(
    b: _Builder, identifier: dict[str, str], patient_url: str, study_url: str, obs_urls: list[str]
) -> dict[str, Any]:
    """The DiagnosticReport's identity, category, results, order (basedOn) and effective time."""
    report, study, ctx = b.report, b.study, b.ctx
    category = FHIRCODES.CATEGORY_ELECTROCARDIAC if report.kind is ReportKind.ECG else FHIRCODES.CATEGORY_RADIOLOGY
    dr: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "identifier": [identifier],
        "status": report.status.value,
        "category": [concept(category)],
        "code": concept(report_code(report)),
        "subject": _ref(patient_url),
        "issued": report.created_at.isoformat(),
        "result": [_ref(u) for u in obs_urls],
        "imagingStudy": [_ref(study_url)],
        "conclusion": conclusion_text(report),
    }
    if study.order_match is not None:
        dr["basedOn"] = [_service_request_ref(study.order_match.order, ctx)]
    if report.is_ai_generated:
        dr["meta"] = _ai_meta()
    if study.study_datetime is not None:
        dr["effectiveDateTime"] = ctx.aware(study.study_datetime).isoformat()
    else:  # no acquisition time in the source: the report's own time, so no report lacks one
        dr["effectiveDateTime"] = ctx.local(report.created_at).isoformat()
    return dr


def _conclusion_and_forms(dr: dict[str, Any], report: DraftReport, pdf: bytes | None, html: bytes | None) -> None:
    """Coded conclusions (present findings) and the PDF/HTML renderings as ``presentedForm``."""
    codes = [
        concept(f.concept, f.text) for f in report.findings if f.concept is not None and f.presence is Presence.PRESENT
    ]
    if codes:
        dr["conclusionCode"] = codes
    title = f"Report v{report.version} ({report.status.value})"
    renderings = ((pdf, "application/pdf"), (html, "text/html"))
    forms = [attachment(data, kind, title) for data, kind in renderings if data is not None]
    if forms:
        dr["presentedForm"] = forms


def _order_system(authority: str | None, ctx: ReportContext) -> str:
    """An identifier system URI: the authority when it is one (FHIR orders), else a site system named for it."""
    if authority and ":" in authority:
        return authority
    return ctx.system("placer-order" + (f":{quote(authority, safe='')}" if authority else ""))


def _service_request_ref(order: Order, ctx: ReportContext) -> dict[str, Any]:
    """The order as a reference: literal when it came from the FHIR server, else by its placer identifier."""
    ref: dict[str, Any] = {
        "type": "ServiceRequest",
        "identifier": {
            "type": concept(FHIRCODES.PLACER_IDENTIFIER),
            "system": _order_system(order.placer_authority, ctx),
            "value": order.placer_number,
        },
    }
    if order.service_request_id:
        ref["reference"] = f"ServiceRequest/{order.service_request_id}"
    return ref


def bundle_json(bundle: Bundle) -> bytes:
    """Canonical JSON bytes (sorted entries as built, 2-space indent, UTF-8): stable for golden files."""
    return (json.dumps(bundle.model_dump(mode="json", exclude_none=True), indent=2, ensure_ascii=False) + "\n").encode()


def attachment(data: bytes, content_type: str, title: str) -> dict[str, Any]:
    """An Attachment with inline data, size and SHA-1 hash (base64), as FHIR R4 Attachment.hash defines it."""
    return {
        "contentType": content_type,
        "language": "en",
        "data": base64.b64encode(data).decode("ascii"),
        "size": len(data),
        "hash": base64.b64encode(hashlib.sha1(data).digest()).decode("ascii"),
        "title": title,
    }


# --------------------------------------------------------------------------- resources


def _patient(b: _Builder) -> str:
    """The Patient under the hospital's identifier systems (core.patient_ids), so the EHR matches it.

    A source without a patient identifier gives a Patient whose only identifier is a temporary
    one (``use: temp``) scoped to the study: re-sends stay idempotent and nobody mistakes it for an MRN.
    """
    p = b.study.patient
    identifiers: list[dict[str, Any]] = []
    for hid in b.ctx.patient_ids.resolve_all(p):
        identifiers.append(
            {
                "use": "usual",
                "type": {"coding": [{"system": V2_0203, "code": hid.system.type_code}]},
                "system": hid.system.fhir_system,
                "value": hid.value,
            }
        )
    if not identifiers:
        identifiers.append({"use": "temp", "system": b.ctx.system("patient-of-study"), "value": b.uid})
    res: dict[str, Any] = {"resourceType": "Patient", "identifier": identifiers, "gender": _GENDER[p.sex]}
    if p.name:
        n = split_person_name(p.name)
        name: dict[str, Any] = {"text": n.display}
        if n.family:
            name["family"] = n.family
        if n.given:
            name["given"] = list(n.given)
        if n.prefix:
            name["prefix"] = [n.prefix]
        res["name"] = [name]
    if p.birth_date:
        res["birthDate"] = p.birth_date.isoformat()
    url = b.url("Patient")
    first = identifiers[0]
    b.add(res, url, {"system": first["system"], "value": first["value"]}, versioned=False)
    return url


def _organization(b: _Builder) -> str:
    """The organisation that issues the reports (site.performer): DiagnosticReport/Observation performer."""
    identifier = {"system": b.ctx.performer_system, "value": b.ctx.performer_identifier}
    res = {"resourceType": "Organization", "identifier": [identifier], "name": b.ctx.performer_name}
    url = b.url("Organization")
    b.add(res, url, identifier, versioned=False)
    return url


def _imaging_study(b: _Builder, patient_url: str) -> str:
    s = b.study
    identifier = {"system": DICOM_UID_SYSTEM, "value": f"urn:oid:{s.study_instance_uid}"}
    ids: list[dict[str, Any]] = [identifier]
    if s.accession_number:
        ids.append(
            {
                "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "ACSN"}]},
                "system": b.ctx.system("accession"),
                "value": s.accession_number,
            }
        )
    series = []
    for se in s.series:
        item: dict[str, Any] = {
            "uid": se.series_instance_uid,
            "modality": coding(Code(se.modality, "DCM", se.modality)),
            "numberOfInstances": len(se.instances),
        }
        if se.series_number is not None:
            item["number"] = se.series_number
        if se.description:
            item["description"] = se.description
        if se.instances:
            item["instance"] = [
                {
                    "uid": i.sop_instance_uid,
                    "sopClass": {"system": RFC3986, "code": f"urn:oid:{i.sop_class_uid}"},
                    **({"number": i.instance_number} if i.instance_number is not None else {}),
                }
                for i in se.instances
            ]
        series.append(item)
    res: dict[str, Any] = {
        "resourceType": "ImagingStudy",
        "identifier": ids,
        "status": "available",
        "subject": _ref(patient_url),
        "numberOfSeries": len(s.series),
        "numberOfInstances": s.instance_count,
    }
    if s.modalities:
        res["modality"] = [coding(Code(m, "DCM", m)) for m in s.modalities]
    if s.study_datetime is not None:
        res["started"] = b.ctx.aware(s.study_datetime).isoformat()
    if s.description:
        res["description"] = s.description
    if s.order_match is not None:  # the order the study was acquired for, as on the DiagnosticReport
        res["basedOn"] = [_service_request_ref(s.order_match.order, b.ctx)]
    if series:
        res["series"] = series
    url = b.url("ImagingStudy")
    # a conditional update, never create-only: when the study grows (more series), the EHR's copy follows
    b.add(res, url, identifier, versioned=True, always_update=True)
    return url


def _device(b: _Builder, p: Producer) -> str:
    identifier = {"system": b.ctx.system("device"), "value": f"{p.name}@{p.version}"}
    ids: list[dict[str, Any]] = [identifier]
    if p.digest:
        ids.append({"system": b.ctx.system("sha256"), "value": p.digest})
    res: dict[str, Any] = {
        "resourceType": "Device",
        "identifier": ids,
        "status": "active",
        "deviceName": [{"name": p.name, "type": "model-name"}],
        "version": [{"value": p.version}],
        "type": concept(DCM.ARTIFICIAL_INTELLIGENCE) if p.is_ai else {"text": p.kind.value.replace("_", " ")},
    }
    if p.digest:
        res["property"] = [
            {
                "type": {"text": "weights-sha256" if p.kind is ProducerKind.MODEL else "ruleset-sha256"},
                "valueCode": [{"text": p.digest}],
            }
        ]
    url = b.url("Device", p.name, p.version, p.digest or "")
    b.add(res, url, identifier, versioned=False)
    return url


def _practitioner(b: _Builder, c: Clinician) -> str:
    identifier = {"system": b.ctx.system("practitioner"), "value": c.identifier}
    n = split_person_name(c.name)
    name: dict[str, Any] = {"text": n.display, "family": n.family}
    if n.given:
        name["given"] = list(n.given)
    if n.prefix:
        name["prefix"] = [n.prefix]
    res = {"resourceType": "Practitioner", "identifier": [identifier], "name": [name]}
    url = b.url("Practitioner", c.identifier)
    b.add(res, url, identifier, versioned=False)
    return url


def _obs_common(b: _Builder, patient_url: str) -> dict[str, Any]:
    cat = FHIRCODES.OBS_PROCEDURE if b.report.kind is ReportKind.ECG else FHIRCODES.OBS_IMAGING
    out: dict[str, Any] = {
        "resourceType": "Observation",
        "status": b.report.status.value,
        "category": [concept(cat)],
        "subject": _ref(patient_url),
        "issued": b.report.created_at.isoformat(),
    }
    if b.study.study_datetime is not None:
        out["effectiveDateTime"] = b.ctx.aware(b.study.study_datetime).isoformat()
    else:
        out["effectiveDateTime"] = b.ctx.local(b.report.created_at).isoformat()
    out["performer"] = [_ref(b.url("Organization"), b.ctx.performer_name)]
    if b.report.signature is not None and b.report.status is not ReportStatus.ENTERED_IN_ERROR:
        out["performer"].append(_ref(b.url("Practitioner", b.report.signature.clinician.identifier)))
    return out


def _quantity(m: Measurement) -> dict[str, Any]:
    return {"value": m.value, "unit": m.unit.value, "system": UCUM.MS.system, "code": m.unit.value}


def _observation_keys(report: DraftReport) -> tuple[list[str], list[str]]:
    """Stable keys of the report's measurement and finding observations (what was observed where)."""
    keys = _StableKeys()
    m_keys = [
        keys.key("measurement", m.code.scheme, m.code.value, m.site or "", m.method or "")
        for m, _ in unique_measurements(report)
    ]
    f_keys = []
    for f in report.findings:
        what = (f.concept.scheme, f.concept.value) if f.concept is not None else ("text", f.text.strip().lower())
        f_keys.append(keys.key("finding", *what, f.site.value if f.site else "", f.laterality.value))
    return m_keys, f_keys


def _retract_dropped(b: _Builder, previous: DraftReport, kept: set[str], patient_url: str) -> None:
    """Observations of the previous version that this version dropped become entered-in-error."""
    m_keys, f_keys = _observation_keys(previous)
    dropped: list[tuple[str, dict[str, Any]]] = []
    for (m, _), key in zip(unique_measurements(previous), m_keys, strict=True):
        if key not in kept:
            dropped.append((key, concept(m.code)))
    for f, key in zip(previous.findings, f_keys, strict=True):
        if key not in kept:
            dropped.append((key, concept(f.concept, f.text) if f.concept is not None else {"text": finding_label(f)}))
    for key, code in dropped:
        identifier = {"system": b.ctx.system("observation"), "value": b.ctx.uid(b.uid, f"fhir-observation-{key}")}
        res = _obs_common(b, patient_url)
        res.update(identifier=[identifier], status=ReportStatus.ENTERED_IN_ERROR.value, code=code)
        res["note"] = [{"text": f"Removed in report version {b.report.version}"}]
        b.add(res, b.url("Observation", key), identifier, versioned=True)


class _StableKeys:
    """Observation keys that survive re-ordering between versions: what was observed where (+ occurrence)."""

    def __init__(self) -> None:
        self.seen: dict[str, int] = {}

    def key(self, *parts: str) -> str:
        base = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:16]
        n = self.seen.get(base, 0)
        self.seen[base] = n + 1
        return f"{base}-{n}"


def _measurement_obs(
    b: _Builder,
    key: str,
    m: Measurement,
    producer: Producer | None,
    patient_url: str,
    study_url: str,
    devices: Mapping[Producer, str],
) -> str:
    identifier = {"system": b.ctx.system("observation"), "value": b.ctx.uid(b.uid, f"fhir-observation-{key}")}
    res = _obs_common(b, patient_url)
    res.update(identifier=[identifier], code=concept(m.code), valueQuantity=_quantity(m), derivedFrom=[_ref(study_url)])
    if m.site:
        res["bodySite"] = {"text": m.site}
    if m.method:
        res["method"] = {"text": m.method}
    if producer is not None:
        res["device"] = _ref(devices[producer])
        if producer.is_machine:
            res["meta"] = _ai_meta()
    url = b.url("Observation", key)
    b.add(res, url, identifier, versioned=True)
    return url


def _finding_obs(
    b: _Builder,
    key: str,
    f: Finding,
    patient_url: str,
    study_url: str,
    devices: Mapping[Producer, str],
    measurement_urls: Mapping[Measurement, str],
) -> str:
    identifier = {"system": b.ctx.system("observation"), "value": b.ctx.uid(b.uid, f"fhir-observation-{key}")}
    res = _obs_common(b, patient_url)
    res["identifier"] = [identifier]
    res["code"] = concept(f.concept, f.text) if f.concept is not None else {"text": finding_label(f)}
    res["valueCodeableConcept"] = concept(PRESENCE_CODES[f.presence])
    if f.site is not None:
        site: dict[str, Any] = concept(f.site)
        lat = LATERALITY_CODES.get(f.laterality)
        site["text"] = f"{lat.meaning.lower()} {f.site.meaning}" if lat else f.site.meaning
        res["bodySite"] = site
    if f.probability is not None:
        res["component"] = [
            {
                "code": concept(FHIRCODES.MODEL_PROBABILITY),
                "valueQuantity": {
                    "value": round(f.probability, 4),
                    "unit": UCUM.RATIO.value,
                    "system": UCUM.RATIO.system,
                    "code": UCUM.RATIO.value,
                },
            }
        ]
    notes = [f"Criteria: {c}" for c in f.criteria]
    if f.critical:
        notes.append("Critical result")
    if notes:
        res["note"] = [{"text": n} for n in notes]
    res["device"] = _ref(devices[f.producer], f"{f.producer.name} {f.producer.version}")
    res["derivedFrom"] = [_ref(study_url), *(_ref(measurement_urls[m]) for m in f.measurements)]
    if f.producer.is_machine:
        res["meta"] = _ai_meta()
    url = b.url("Observation", key)
    b.add(res, url, identifier, versioned=True)
    return url


def _ai_provenance(b: _Builder, targets: Sequence[str], devices: Sequence[str]) -> None:
    res = {
        "resourceType": "Provenance",
        "target": [_ref(t) for t in targets],
        "occurredDateTime": b.report.created_at.isoformat(),
        "recorded": b.report.created_at.isoformat(),
        "reason": [concept(FHIRCODES.AIAST)],
        "activity": concept(FHIRCODES.OP_CREATE),
        "agent": [{"type": concept(FHIRCODES.AGENT_AUTHOR), "who": _ref(d)} for d in devices],
    }
    # one AI provenance per report (not per version): the drafting happened once
    b.add(res, b.url("Provenance", "ai"), None, versioned=False)


def _signoff_provenance(
    b: _Builder, dr_url: str, dr_identifier: Mapping[str, str], practitioner_url: str | None
) -> None:
    r = b.report
    activity = {
        ReportStatus.FINAL: FHIRCODES.OP_UPDATE,
        ReportStatus.AMENDED: FHIRCODES.OP_UPDATE,
        ReportStatus.ENTERED_IN_ERROR: FHIRCODES.OP_NULLIFY,
        ReportStatus.PRELIMINARY: FHIRCODES.OP_UPDATE,
    }[r.status]
    agents = []
    if practitioner_url is not None:
        signed = r.status in (ReportStatus.FINAL, ReportStatus.AMENDED)
        role = FHIRCODES.AGENT_VERIFIER if signed else FHIRCODES.AGENT_AUTHOR
        agents.append({"type": concept(role), "who": _ref(practitioner_url)})
    if not agents:
        # a withdrawal without a recorded clinician is still attributed to the software that carried it out
        agents.append({"type": concept(FHIRCODES.AGENT_AUTHOR), "who": {"display": b.ctx.software_name}})
    res: dict[str, Any] = {
        "resourceType": "Provenance",
        "target": [_ref(dr_url)],
        "occurredDateTime": r.created_at.isoformat(),
        "recorded": r.created_at.isoformat(),
        "activity": concept(activity),
        "agent": agents,
    }
    if r.replaces_version is not None:
        res["entity"] = [
            {
                "role": "revision",
                "what": {
                    "identifier": dict(dr_identifier),
                    "display": f"DiagnosticReport version {r.replaces_version}",
                },
            }
        ]
    b.add(res, b.url("Provenance", "signoff", str(r.version)), None, versioned=False)
