"""Validation of FHIR bundles beyond what ``fhir.resources`` enforces.

``fhir.resources`` checks syntax only: it accepts status "draft", a wrong
reference target type and a transaction entry without ``request``.  Two
independent checks close the gap:

- :func:`check_bundle`: the project's rules (references resolve inside the
  bundle and point at the right resource types, every transaction entry has a
  request consistent with its fullUrl, codes come from the expected systems,
  statuses are allowed for the workflow stage, AI-asserted resources carry
  AIAST, presentedForm has size and a correct hash).
- :func:`validate_with_medplum`: Medplum's ``validateResource`` (npm
  ``@medplum/core`` over the official R4 StructureDefinitions: cardinality,
  types, unknown elements, invariants), run by ``reports/_js/validate.mjs``.

Both return issues; :func:`assert_valid` turns them into a ``ReportError``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.codes import FHIRCODES, LOINC, SYSTEM_URIS
from core.errors import ReportError
from core.records import ReportStatus

JS_DIR = Path(__file__).resolve().parent / "_js"
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
_REPORT_CODES = frozenset({LOINC.IMAGING_STUDY.value, LOINC.EKG_STUDY.value})
_CATEGORY_CODES = frozenset({FHIRCODES.CATEGORY_RADIOLOGY.value, FHIRCODES.CATEGORY_ELECTROCARDIAC.value})


@dataclass(frozen=True, slots=True)
class BundleIssue:
    """One problem found in a bundle: where (FHIRPath-like) and what was expected."""

    path: str
    message: str
    source: str = "mmdx"

    def __str__(self) -> str:
        return f"[{self.source}] {self.path}: {self.message}"


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


def _codings(cc: Any) -> list[Mapping[str, Any]]:
    return list(cc.get("coding", [])) if isinstance(cc, Mapping) else []


def _has_system(cc: Any, systems: frozenset[str]) -> bool:
    return any(c.get("system") in systems for c in _codings(cc))


def _has_aiast(resource: Mapping[str, Any]) -> bool:
    sec = resource.get("meta", {}).get("security", [])
    return any(s.get("code") == FHIRCODES.AIAST.value and s.get("system") == FHIRCODES.AIAST.system for s in sec)


def check_bundle(bundle: Mapping[str, Any], *, stage: str | None = None) -> list[BundleIssue]:
    """Check a transaction bundle (as JSON-like dict) against the project rules.

    Parameters
    ----------
    bundle:
        The bundle as parsed JSON (``json.loads(bundle_json(...))``).
    stage:
        ``"draft"``, ``"signed"`` or ``"withdrawn"``: the DiagnosticReport status must
        be one allowed for that stage.  ``None`` infers the stage from the report.
    """
    issues: list[BundleIssue] = []

    def err(path: str, msg: str) -> None:
        issues.append(BundleIssue(path, msg))

    if bundle.get("resourceType") != "Bundle" or bundle.get("type") != "transaction":
        err("Bundle.type", "expected a Bundle of type 'transaction'")
    entries = list(bundle.get("entry") or [])
    by_url: dict[str, Mapping[str, Any]] = {}
    for n, e in enumerate(entries):
        p = f"Bundle.entry[{n}]"
        url = e.get("fullUrl")
        res = e.get("resource")
        if not isinstance(res, Mapping):
            err(p, "entry without resource")
            continue
        rtype = res.get("resourceType", "?")
        if not isinstance(url, str) or not _UUID_RE.match(url):
            err(f"{p}.fullUrl", f"expected urn:uuid:<uuid>, got {url!r}")
        elif url in by_url:
            err(f"{p}.fullUrl", f"duplicate fullUrl {url}")
        else:
            by_url[url] = res
        req = e.get("request")
        if not isinstance(req, Mapping) or not req.get("method") or not req.get("url"):
            err(f"{p}.request", "every transaction entry needs request.method and request.url")
            continue
        method, rurl = req["method"], str(req["url"])
        if method == "POST":
            if rurl != rtype:
                err(f"{p}.request.url", f"POST must target {rtype!r}, got {rurl!r}")
            if rtype in ("Patient", "ImagingStudy", "Device", "Practitioner") and not req.get("ifNoneExist"):
                err(f"{p}.request.ifNoneExist", f"{rtype} must be a conditional create (ifNoneExist)")
        elif method == "PUT":
            if rurl.startswith(f"{rtype}/"):
                rid = rurl.split("/", 1)[1]
                if res.get("id") != rid:
                    err(f"{p}.request.url", f"PUT {rurl} but resource.id is {res.get('id')!r}")
                if isinstance(url, str) and url.removeprefix("urn:uuid:") != rid:
                    err(f"{p}.fullUrl", f"fullUrl {url} does not match PUT id {rid}")
            elif not rurl.startswith(f"{rtype}?identifier="):
                err(f"{p}.request.url", f"PUT must be {rtype}/<id> or {rtype}?identifier=..., got {rurl!r}")
        else:
            err(f"{p}.request.method", f"unexpected method {method!r} for a report bundle")

    # references
    for n, e in enumerate(entries):
        res = e.get("resource") or {}
        rtype = res.get("resourceType", "?")
        for path, ref in _references(res, rtype):
            if not ref.startswith("urn:uuid:"):
                err(f"Bundle.entry[{n}].resource:{path}", f"reference {ref!r} is not a bundle-internal urn:uuid")
                continue
            target = by_url.get(ref)
            if target is None:
                err(f"Bundle.entry[{n}].resource:{path}", f"reference {ref} does not resolve inside the bundle")
                continue
            field = re.sub(r"\[\d+\]", "", path.split(".", 1)[1]) if "." in path else path
            allowed = REFERENCE_TARGETS.get((rtype, field))
            if allowed is not None and target.get("resourceType") not in allowed:
                err(
                    f"Bundle.entry[{n}].resource:{path}",
                    f"{rtype}.{field} must reference {sorted(allowed)}, got {target.get('resourceType')}",
                )

    resources = [e.get("resource") or {} for e in entries]
    reports = [r for r in resources if r.get("resourceType") == "DiagnosticReport"]
    if len(reports) != 1:
        err("Bundle.entry", f"expected exactly one DiagnosticReport, got {len(reports)}")
        return issues
    dr = reports[0]
    status = str(dr.get("status"))
    inferred = _stage_of(status)
    if inferred is None:
        err(
            "DiagnosticReport.status",
            f"status {status!r} is not one mmdx emits: {sorted(set().union(*STAGE_STATUSES.values()))}",
        )
    if stage is not None and status not in STAGE_STATUSES.get(stage, frozenset()):
        err("DiagnosticReport.status", f"status {status!r} is not allowed at stage {stage!r}")
    stage = stage or inferred

    # codes
    if not any(
        c.get("system") == LOINC.IMAGING_STUDY.system and c.get("code") in _REPORT_CODES
        for c in _codings(dr.get("code"))
    ):
        err("DiagnosticReport.code", f"expected LOINC {sorted(_REPORT_CODES)}")
    if not any(
        c.get("system") == FHIRCODES.CATEGORY_RADIOLOGY.system and c.get("code") in _CATEGORY_CODES
        for cat in dr.get("category", [])
        for c in _codings(cat)
    ):
        err("DiagnosticReport.category", f"expected v2-0074 {sorted(_CATEGORY_CODES)}")
    for i, cc in enumerate(dr.get("conclusionCode", [])):
        if not _has_system(cc, frozenset({SYSTEM_URIS["SCT"], SYSTEM_URIS["RADLEX"], SYSTEM_URIS["MMDX"]})):
            err(f"DiagnosticReport.conclusionCode[{i}]", "expected a SNOMED CT (or RadLex / local) concept")
    for i, form in enumerate(dr.get("presentedForm", [])):
        issues.extend(_check_attachment(form, f"DiagnosticReport.presentedForm[{i}]"))

    # workflow rules
    interpreters = dr.get("resultsInterpreter", [])
    provs = [r for r in resources if r.get("resourceType") == "Provenance"]
    verifier = any(
        c.get("code") == FHIRCODES.AGENT_VERIFIER.value
        for p in provs
        for a in p.get("agent", [])
        for c in _codings(a.get("type"))
    )
    if stage == "draft" and interpreters:
        err("DiagnosticReport.resultsInterpreter", "a preliminary draft must not name a results interpreter")
    if stage == "signed":
        if not interpreters:
            err("DiagnosticReport.resultsInterpreter", f"a {status} report needs the signing clinician")
        if not verifier:
            err("Provenance.agent", f"a {status} report needs a Provenance with a verifier agent")

    # observations
    result_refs = {r.get("reference") for r in dr.get("result", [])}
    devices = {u: r for u, r in by_url.items() if r.get("resourceType") == "Device"}
    ai_devices = {u for u, d in devices.items() if _has_system(d.get("type"), frozenset({SYSTEM_URIS["DCM"]}))}
    for n, res in enumerate(resources):
        if res.get("resourceType") != "Observation":
            continue
        p = f"Bundle.entry[{n}].resource:Observation"
        retracted = res.get("status") == "entered-in-error" and entries[n].get("fullUrl") not in result_refs
        if retracted:
            continue  # an observation a later version dropped: only its retraction is sent
        if res.get("status") != status:
            err(f"{p}.status", f"observation status {res.get('status')!r} differs from the report's {status!r}")
        if not _has_system_code(res.get("category", []), FHIRCODES.OBS_IMAGING.system):
            err(f"{p}.category", "expected an observation-category coding (imaging / procedure)")
        vq = res.get("valueQuantity")
        if vq is not None:
            if vq.get("system") != SYSTEM_URIS["UCUM"] or not vq.get("code"):
                err(f"{p}.valueQuantity", "expected a UCUM coded quantity")
            if not _has_system(res.get("code"), _MEASUREMENT_SYSTEMS):
                err(f"{p}.code", "a measurement needs a LOINC / SNOMED CT / DICOM / MDC code")
        elif "valueCodeableConcept" in res:
            code = res.get("code", {})
            if _codings(code) and not _has_system(code, _FINDING_SYSTEMS):
                err(f"{p}.code", "a finding code must come from SNOMED CT, RadLex, LOINC, DICOM or mmdx")
            if not _has_system(res["valueCodeableConcept"], frozenset({SYSTEM_URIS["SCT"]})):
                err(f"{p}.valueCodeableConcept", "presence must be a SNOMED CT Present/Absent/Indeterminate")
        dev = res.get("device", {}).get("reference")
        if dev in ai_devices and not _has_aiast(res):
            err(f"{p}.meta.security", "an AI-asserted observation must carry AIAST")
    if ai_devices:
        if not _has_aiast(dr):
            err("DiagnosticReport.meta.security", "a report with AI content must carry AIAST")
        if not any(_has_system_code(p.get("reason", []), FHIRCODES.AIAST.system, FHIRCODES.AIAST.value) for p in provs):
            err("Provenance.reason", "AI content needs a Provenance with reason AIAST")
    return issues


def _has_system_code(ccs: Sequence[Any], system: str, code: str | None = None) -> bool:
    return any(
        c.get("system") == system and (code is None or c.get("code") == code) for cc in ccs for c in _codings(cc)
    )


def _check_attachment(form: Mapping[str, Any], path: str) -> list[BundleIssue]:
    out: list[BundleIssue] = []
    if not form.get("contentType"):
        out.append(BundleIssue(f"{path}.contentType", "required"))
    size, digest = form.get("size"), form.get("hash")
    if size is None or digest is None:
        out.append(BundleIssue(path, "presentedForm needs size and hash"))
        return out
    if "data" in form:
        data = base64.b64decode(form["data"])
        if len(data) != size:
            out.append(BundleIssue(f"{path}.size", f"size {size} but data has {len(data)} bytes"))
        if base64.b64encode(hashlib.sha1(data).digest()).decode() != digest:
            out.append(BundleIssue(f"{path}.hash", "hash is not the base64 SHA-1 of the data"))
    return out


# --------------------------------------------------------------------------- second validator (Medplum, Node)


def medplum_ready(js_dir: Path = JS_DIR) -> bool:
    """Whether node and the validator's node_modules are there."""
    return shutil.which("node") is not None and (js_dir / "node_modules" / "@medplum" / "core").is_dir()


def validate_with_medplum(bundle_bytes: bytes, js_dir: Path = JS_DIR, timeout_s: float = 60) -> list[BundleIssue]:
    """Validate FHIR JSON with Medplum's validator; returns its error issues.

    Raises
    ------
    ReportError
        When node or the validator is missing, or it could not run.
    """
    node = shutil.which("node")
    if node is None or not medplum_ready(js_dir):
        raise ReportError(f"the Medplum FHIR validator is not installed (run `npm ci` in {js_dir})")
    proc = subprocess.run(
        [node, str(js_dir / "validate.mjs")], input=bundle_bytes, capture_output=True, timeout=timeout_s, check=False
    )
    if proc.returncode not in (0, 1):
        raise ReportError(f"FHIR validator failed (exit {proc.returncode}): {proc.stderr.decode()[-500:]}")
    return [BundleIssue(i["path"], i["message"], "medplum") for i in json.loads(proc.stdout or b"[]")]


def validate_many_with_medplum(
    documents: list[bytes], js_dir: Path = JS_DIR, timeout_s: float = 120
) -> list[list[BundleIssue]]:
    """Validate several FHIR JSON documents in one node run (loading the R4 definitions dominates)."""
    node = shutil.which("node")
    if node is None or not medplum_ready(js_dir):
        raise ReportError(f"the Medplum FHIR validator is not installed (run `npm ci` in {js_dir})")
    payload = b"[" + b",".join(documents) + b"]"
    proc = subprocess.run(
        [node, str(js_dir / "validate.mjs"), "--many"],
        input=payload,
        capture_output=True,
        timeout=timeout_s,
        check=False,
    )
    if proc.returncode not in (0, 1):
        raise ReportError(f"FHIR validator failed (exit {proc.returncode}): {proc.stderr.decode()[-500:]}")
    return [[BundleIssue(i["path"], i["message"], "medplum") for i in doc] for doc in json.loads(proc.stdout)]


def assert_valid(bundle_bytes: bytes, *, stage: str | None = None, medplum: bool = True) -> None:
    """Run every validator; raise one ReportError listing all issues (no PHI: paths and rules only)."""
    issues = check_bundle(json.loads(bundle_bytes), stage=stage)
    if medplum:
        issues += validate_with_medplum(bundle_bytes)
    if issues:
        raise ReportError("FHIR bundle failed validation:\n" + "\n".join(str(i) for i in issues))
