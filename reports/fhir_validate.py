"""Validation of FHIR bundles beyond what ``fhir.resources`` enforces.

``fhir.resources`` checks syntax only: it accepts status "draft", a wrong
reference target type and a transaction entry without ``request``.  Two
independent checks close the gap:

- :func:`check_bundle`: the project's rules (``reports.fhir_rules``, a table of
  named checks: references resolve inside the bundle and point at the right
  resource types, every transaction entry has a request consistent with its
  fullUrl, codes come from the expected systems,
  statuses are allowed for the workflow stage, AI-asserted resources carry
  AIAST, presentedForm has size and a correct hash).
- :func:`validate_with_medplum`: Medplum's ``validateResource`` (npm
  ``@medplum/core`` over the official R4 StructureDefinitions: cardinality,
  types, unknown elements, invariants), run by ``reports/_js/validate.mjs``.

Both return issues; :func:`assert_valid` turns them into a ``ReportError``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from core.errors import ReportError
from reports.fhir_rules import BUNDLE_RULES, REFERENCE_TARGETS, STAGE_STATUSES, BundleIssue, BundleView

__all__ = [
    "JS_DIR",
    "REFERENCE_TARGETS",
    "STAGE_STATUSES",
    "BundleIssue",
    "assert_valid",
    "check_bundle",
    "medplum_ready",
    "validate_many_with_medplum",
    "validate_with_medplum",
]

JS_DIR = Path(__file__).resolve().parent / "_js"


def check_bundle(bundle: Mapping[str, Any], *, stage: str | None = None) -> list[BundleIssue]:
    """Check a transaction bundle (as JSON-like dict) against the project rules (:data:`BUNDLE_RULES`).

    Parameters
    ----------
    bundle:
        The bundle as parsed JSON (``json.loads(bundle_json(...))``).
    stage:
        ``"draft"``, ``"signed"`` or ``"withdrawn"``: the DiagnosticReport status must
        be one allowed for that stage.  ``None`` infers the stage from the report.
    """
    view = BundleView.of(bundle, stage)
    return [issue for rule in BUNDLE_RULES for issue in rule.check(view)]


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
