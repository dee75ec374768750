"""The project's rules for a FHIR R4 report bundle, as a table of small named checks.

``fhir.resources`` checks syntax only; these rules check what a receiving EHR relies on: a
transaction whose entries can be executed (conditional creates for shared resources), references
that resolve inside the bundle to the right resource types, codes from the expected systems,
statuses allowed for the workflow stage, AI content labelled AIAST. Each rule is a pure function
over a :class:`BundleView` (the bundle indexed once) and carries its criteria as text, so a reader
finds why an issue was raised next to the code that raised it.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from core.codes import FHIRCODES, LOINC, SYSTEM_URIS
from core.records import ReportStatus

__all__ = ["BUNDLE_RULES", "REFERENCE_TARGETS", "STAGE_STATUSES", "BundleIssue", "BundleRule", "BundleView"]

_UUID_RE = re.compile(r"^urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

#: reference fields -> allowed target types (R4 definitions, narrowed to what mmdx sends)
REFERENCE_TARGETS: dict[tuple[str, str], frozenset[str]] = {
    ("DiagnosticReport", "subject"): frozenset({"Patient"}),
    ("DiagnosticReport", "result"): frozenset({"Observation"}),
    ("DiagnosticReport", "imagingStudy"): frozenset({"ImagingStudy"}),
    ("DiagnosticReport", "resultsInterpreter"): frozenset({"Practitioner", "PractitionerRole", "Organization"}),
    ("Observation", "subject"): frozenset({"Patient"}),
    ("Observation", "device"): frozenset({"Device", "DeviceMetric"}),
    ("Observation", "derivedFrom"): frozenset({"ImagingStudy", "Observation", "DocumentReference", "Media"}),
    ("ImagingStudy", "subject"): frozenset({"Patient"}),
    ("Provenance", "agent.who"): frozenset({"Device", "Practitioner", "PractitionerRole", "Organization"}),
}

#: DiagnosticReport / Observation statuses allowed per workflow stage
STAGE_STATUSES: dict[str, frozenset[str]] = {
    "draft": frozenset({ReportStatus.PRELIMINARY.value}),
    "signed": frozenset({ReportStatus.FINAL.value, ReportStatus.AMENDED.value}),
    "withdrawn": frozenset({ReportStatus.ENTERED_IN_ERROR.value}),
}

_FINDING_SYSTEMS = frozenset(SYSTEM_URIS[s] for s in ("SCT", "RADLEX", "MMDX", "DCM", "LN"))
_MEASUREMENT_SYSTEMS = frozenset(SYSTEM_URIS[s] for s in ("LN", "SCT", "DCM", "MDC", "MMDX"))
_CONCLUSION_SYSTEMS = frozenset(SYSTEM_URIS[s] for s in ("SCT", "RADLEX", "MMDX"))
_REPORT_CODES = frozenset({LOINC.IMAGING_STUDY.value, LOINC.EKG_STUDY.value})
_CATEGORY_CODES = frozenset({FHIRCODES.CATEGORY_RADIOLOGY.value, FHIRCODES.CATEGORY_ELECTROCARDIAC.value})
_CONDITIONAL_CREATES = ("Patient", "ImagingStudy", "Device", "Practitioner")


@dataclass(frozen=True, slots=True)
class BundleIssue:
    """One problem found in a bundle: where (FHIRPath-like) and what was expected."""

    path: str
    message: str
    source: str = "mmdx"

    def __str__(self) -> str:
        return f"[{self.source}] {self.path}: {self.message}"


# --------------------------------------------------------------------------- the bundle, indexed once


def _codings(cc: Any) -> list[Mapping[str, Any]]:
    return list(cc.get("coding", [])) if isinstance(cc, Mapping) else []


def _has_system(cc: Any, systems: frozenset[str]) -> bool:
    return any(c.get("system") in systems for c in _codings(cc))


def _has_system_code(ccs: Sequence[Any], system: str, code: str | None = None) -> bool:
    return any(
        c.get("system") == system and (code is None or c.get("code") == code) for cc in ccs for c in _codings(cc)
    )


def _has_aiast(resource: Mapping[str, Any]) -> bool:
    sec = resource.get("meta", {}).get("security", [])
    return any(s.get("code") == FHIRCODES.AIAST.value and s.get("system") == FHIRCODES.AIAST.system for s in sec)


def _stage_of(status: str) -> str | None:
    return next((k for k, v in STAGE_STATUSES.items() if status in v), None)


def _references(node: Any, path: str) -> Iterator[tuple[str, str]]:
    """Every ``reference`` string under ``node`` with the path of its holder."""
    if isinstance(node, Mapping):
        ref = node.get("reference")
        if isinstance(ref, str):
            yield path, ref
        for k, v in node.items():
            if k != "reference":
                yield from _references(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _references(v, f"{path}[{i}]")


@dataclass(frozen=True, slots=True)
class BundleView:
    """A bundle (parsed JSON) with the lookups the rules share, computed once."""

    bundle: Mapping[str, Any]
    entries: tuple[Mapping[str, Any], ...]
    resources: tuple[Mapping[str, Any], ...]
    by_url: Mapping[str, Mapping[str, Any]]  #: first entry per well-formed fullUrl
    report: Mapping[str, Any] | None  #: the one DiagnosticReport, None when not exactly one
    reports: int
    status: str
    stage: str | None  #: the stage asked for, else the one the report's status implies
    asked_stage: str | None
    provenances: tuple[Mapping[str, Any], ...]
    ai_devices: frozenset[str]  #: fullUrls of Devices typed with a DICOM (DCM) code: AI algorithms

    @classmethod
    def of(cls, bundle: Mapping[str, Any], stage: str | None = None) -> BundleView:
        entries = tuple(e for e in bundle.get("entry") or [])
        by_url: dict[str, Mapping[str, Any]] = {}
        for e in entries:
            url, res = e.get("fullUrl"), e.get("resource")
            if isinstance(res, Mapping) and isinstance(url, str) and _UUID_RE.match(url) and url not in by_url:
                by_url[url] = res
        resources = tuple(e.get("resource") or {} for e in entries)
        reports = [r for r in resources if r.get("resourceType") == "DiagnosticReport"]
        report = reports[0] if len(reports) == 1 else None
        status = str(report.get("status")) if report is not None else ""
        ai_devices = frozenset(
            u
            for u, r in by_url.items()
            if r.get("resourceType") == "Device" and _has_system(r.get("type"), frozenset({SYSTEM_URIS["DCM"]}))
        )
        return cls(
            bundle=bundle,
            entries=entries,
            resources=resources,
            by_url=by_url,
            report=report,
            reports=len(reports),
            status=status,
            stage=stage or _stage_of(status),
            asked_stage=stage,
            provenances=tuple(r for r in resources if r.get("resourceType") == "Provenance"),
            ai_devices=ai_devices,
        )


Issues = Iterator[BundleIssue]


@dataclass(frozen=True, slots=True)
class BundleRule:
    """A named check, its criteria in words, and the function that applies them."""

    name: str
    criteria: str
    check: Callable[[BundleView], Issues]


# --------------------------------------------------------------------------- transaction structure


def transaction_type(v: BundleView) -> Issues:
    if v.bundle.get("resourceType") != "Bundle" or v.bundle.get("type") != "transaction":
        yield BundleIssue("Bundle.type", "expected a Bundle of type 'transaction'")


def _request_issues(p: str, rtype: str, url: Any, res: Mapping[str, Any], req: Mapping[str, Any]) -> Issues:
    method, rurl = req["method"], str(req["url"])
    if method == "POST":
        if rurl != rtype:
            yield BundleIssue(f"{p}.request.url", f"POST must target {rtype!r}, got {rurl!r}")
        if rtype in _CONDITIONAL_CREATES and not req.get("ifNoneExist"):
            yield BundleIssue(f"{p}.request.ifNoneExist", f"{rtype} must be a conditional create (ifNoneExist)")
    elif method == "PUT":
        if rurl.startswith(f"{rtype}/"):
            rid = rurl.split("/", 1)[1]
            if res.get("id") != rid:
                yield BundleIssue(f"{p}.request.url", f"PUT {rurl} but resource.id is {res.get('id')!r}")
            if isinstance(url, str) and url.removeprefix("urn:uuid:") != rid:
                yield BundleIssue(f"{p}.fullUrl", f"fullUrl {url} does not match PUT id {rid}")
        elif not rurl.startswith(f"{rtype}?identifier="):
            yield BundleIssue(f"{p}.request.url", f"PUT must be {rtype}/<id> or {rtype}?identifier=..., got {rurl!r}")
    else:
        yield BundleIssue(f"{p}.request.method", f"unexpected method {method!r} for a report bundle")


def transaction_entries(v: BundleView) -> Issues:
    seen: set[str] = set()
    for n, e in enumerate(v.entries):
        p = f"Bundle.entry[{n}]"
        url, res = e.get("fullUrl"), e.get("resource")
        if not isinstance(res, Mapping):
            yield BundleIssue(p, "entry without resource")
            continue
        if not isinstance(url, str) or not _UUID_RE.match(url):
            yield BundleIssue(f"{p}.fullUrl", f"expected urn:uuid:<uuid>, got {url!r}")
        elif url in seen:
            yield BundleIssue(f"{p}.fullUrl", f"duplicate fullUrl {url}")
        else:
            seen.add(url)
        req = e.get("request")
        if not isinstance(req, Mapping) or not req.get("method") or not req.get("url"):
            yield BundleIssue(f"{p}.request", "every transaction entry needs request.method and request.url")
            continue
        yield from _request_issues(p, res.get("resourceType", "?"), url, res, req)


def internal_references(v: BundleView) -> Issues:
    for n, res in enumerate(v.resources):
        rtype = res.get("resourceType", "?")
        for path, ref in _references(res, rtype):
            where = f"Bundle.entry[{n}].resource:{path}"
            if not ref.startswith("urn:uuid:"):
                yield BundleIssue(where, f"reference {ref!r} is not a bundle-internal urn:uuid")
                continue
            target = v.by_url.get(ref)
            if target is None:
                yield BundleIssue(where, f"reference {ref} does not resolve inside the bundle")
                continue
            field = re.sub(r"\[\d+\]", "", path.split(".", 1)[1]) if "." in path else path
            allowed = REFERENCE_TARGETS.get((rtype, field))
            if allowed is not None and target.get("resourceType") not in allowed:
                yield BundleIssue(
                    where, f"{rtype}.{field} must reference {sorted(allowed)}, got {target.get('resourceType')}"
                )


# --------------------------------------------------------------------------- the report


def one_report(v: BundleView) -> Issues:
    if v.report is None:
        yield BundleIssue("Bundle.entry", f"expected exactly one DiagnosticReport, got {v.reports}")


def report_status(v: BundleView) -> Issues:
    if v.report is None:
        return
    if _stage_of(v.status) is None:
        emitted = sorted(set().union(*STAGE_STATUSES.values()))
        yield BundleIssue("DiagnosticReport.status", f"status {v.status!r} is not one mmdx emits: {emitted}")
    if v.asked_stage is not None and v.status not in STAGE_STATUSES.get(v.asked_stage, frozenset()):
        yield BundleIssue("DiagnosticReport.status", f"status {v.status!r} is not allowed at stage {v.asked_stage!r}")


def report_codes(v: BundleView) -> Issues:
    dr = v.report
    if dr is None:
        return
    if not any(
        c.get("system") == LOINC.IMAGING_STUDY.system and c.get("code") in _REPORT_CODES
        for c in _codings(dr.get("code"))
    ):
        yield BundleIssue("DiagnosticReport.code", f"expected LOINC {sorted(_REPORT_CODES)}")
    if not any(
        c.get("system") == FHIRCODES.CATEGORY_RADIOLOGY.system and c.get("code") in _CATEGORY_CODES
        for cat in dr.get("category", [])
        for c in _codings(cat)
    ):
        yield BundleIssue("DiagnosticReport.category", f"expected v2-0074 {sorted(_CATEGORY_CODES)}")
    for i, cc in enumerate(dr.get("conclusionCode", [])):
        if not _has_system(cc, _CONCLUSION_SYSTEMS):
            yield BundleIssue(
                f"DiagnosticReport.conclusionCode[{i}]", "expected a SNOMED CT (or RadLex / local) concept"
            )


def presented_forms(v: BundleView) -> Issues:
    for i, form in enumerate(v.report.get("presentedForm", []) if v.report is not None else []):
        path = f"DiagnosticReport.presentedForm[{i}]"
        if not form.get("contentType"):
            yield BundleIssue(f"{path}.contentType", "required")
        size, digest = form.get("size"), form.get("hash")
        if size is None or digest is None:
            yield BundleIssue(path, "presentedForm needs size and hash")
            continue
        if "data" in form:
            data = base64.b64decode(form["data"])
            if len(data) != size:
                yield BundleIssue(f"{path}.size", f"size {size} but data has {len(data)} bytes")
            if base64.b64encode(hashlib.sha1(data).digest()).decode() != digest:
                yield BundleIssue(f"{path}.hash", "hash is not the base64 SHA-1 of the data")


def sign_off_workflow(v: BundleView) -> Issues:
    if v.report is None:
        return
    interpreters = v.report.get("resultsInterpreter", [])
    verifier = any(
        c.get("code") == FHIRCODES.AGENT_VERIFIER.value
        for p in v.provenances
        for a in p.get("agent", [])
        for c in _codings(a.get("type"))
    )
    if v.stage == "draft" and interpreters:
        yield BundleIssue(
            "DiagnosticReport.resultsInterpreter", "a preliminary draft must not name a results interpreter"
        )
    if v.stage == "signed":
        if not interpreters:
            yield BundleIssue("DiagnosticReport.resultsInterpreter", f"a {v.status} report needs the signing clinician")
        if not verifier:
            yield BundleIssue("Provenance.agent", f"a {v.status} report needs a Provenance with a verifier agent")


# --------------------------------------------------------------------------- observations and AI labels


def _observation_issues(p: str, res: Mapping[str, Any], v: BundleView) -> Issues:
    if res.get("status") != v.status:
        yield BundleIssue(
            f"{p}.status", f"observation status {res.get('status')!r} differs from the report's {v.status!r}"
        )
    if not _has_system_code(res.get("category", []), FHIRCODES.OBS_IMAGING.system):
        yield BundleIssue(f"{p}.category", "expected an observation-category coding (imaging / procedure)")
    vq = res.get("valueQuantity")
    if vq is not None:
        if vq.get("system") != SYSTEM_URIS["UCUM"] or not vq.get("code"):
            yield BundleIssue(f"{p}.valueQuantity", "expected a UCUM coded quantity")
        if not _has_system(res.get("code"), _MEASUREMENT_SYSTEMS):
            yield BundleIssue(f"{p}.code", "a measurement needs a LOINC / SNOMED CT / DICOM / MDC code")
    elif "valueCodeableConcept" in res:
        code = res.get("code", {})
        if _codings(code) and not _has_system(code, _FINDING_SYSTEMS):
            yield BundleIssue(f"{p}.code", "a finding code must come from SNOMED CT, RadLex, LOINC, DICOM or mmdx")
        if not _has_system(res["valueCodeableConcept"], frozenset({SYSTEM_URIS["SCT"]})):
            yield BundleIssue(f"{p}.valueCodeableConcept", "presence must be a SNOMED CT Present/Absent/Indeterminate")
    if res.get("device", {}).get("reference") in v.ai_devices and not _has_aiast(res):
        yield BundleIssue(f"{p}.meta.security", "an AI-asserted observation must carry AIAST")


def observations(v: BundleView) -> Issues:
    if v.report is None:
        return
    result_refs = {r.get("reference") for r in v.report.get("result", [])}
    for n, res in enumerate(v.resources):
        if res.get("resourceType") != "Observation":
            continue
        if res.get("status") == "entered-in-error" and v.entries[n].get("fullUrl") not in result_refs:
            continue  # an observation a later version dropped: only its retraction is sent
        yield from _observation_issues(f"Bundle.entry[{n}].resource:Observation", res, v)


def ai_labels(v: BundleView) -> Issues:
    if v.report is None or not v.ai_devices:
        return
    if not _has_aiast(v.report):
        yield BundleIssue("DiagnosticReport.meta.security", "a report with AI content must carry AIAST")
    if not any(
        _has_system_code(p.get("reason", []), FHIRCODES.AIAST.system, FHIRCODES.AIAST.value) for p in v.provenances
    ):
        yield BundleIssue("Provenance.reason", "AI content needs a Provenance with reason AIAST")


#: The rules in the order their issues are listed.
BUNDLE_RULES: tuple[BundleRule, ...] = (
    BundleRule("transaction type", "the bundle is a Bundle of type transaction", transaction_type),
    BundleRule(
        "transaction entries",
        "every entry has a resource, a unique urn:uuid fullUrl and a request: POST to its type (conditional for"
        f" {', '.join(_CONDITIONAL_CREATES)}) or PUT to <type>/<id> matching the fullUrl or to <type>?identifier=",
        transaction_entries,
    ),
    BundleRule(
        "internal references",
        "every reference is a urn:uuid resolving inside the bundle, to a type R4 allows for that field",
        internal_references,
    ),
    BundleRule("one report", "exactly one DiagnosticReport", one_report),
    BundleRule(
        "report status",
        "a status mmdx emits, and one allowed at the stage asked for (draft/signed/withdrawn)",
        report_status,
    ),
    BundleRule(
        "report codes",
        f"code LOINC {' or '.join(sorted(_REPORT_CODES))}, category v2-0074 {' or '.join(sorted(_CATEGORY_CODES))},"
        " conclusion codes from SNOMED CT/RadLex/mmdx",
        report_codes,
    ),
    BundleRule(
        "presented forms", "each attachment has a content type, size and base64 SHA-1 that match", presented_forms
    ),
    BundleRule(
        "sign-off workflow",
        "a draft names no results interpreter; a final or amended report names the signer and has a verifier"
        " Provenance",
        sign_off_workflow,
    ),
    BundleRule(
        "observations",
        "observations share the report's status, carry a category, UCUM quantities with measurement codes or SNOMED"
        " CT presence values, and AIAST when an AI device asserted them",
        observations,
    ),
    BundleRule("AI labels", "a report with AI devices carries AIAST and a Provenance whose reason is AIAST", ai_labels),
)
