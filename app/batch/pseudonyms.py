"""``--deid``: pseudonymised cohort rows and FHIR resources, dates shifted per patient.

Pseudonyms and UID replacements are keyed HMACs of the project key
(``deid.salt``), so they are stable across runs of one project and cannot be
recomputed without the key; every date of a patient moves by the same number
of days (so intervals between a patient's studies survive), a number derived
from the same key. Direct identifiers (names, identifiers, birth dates,
addresses, narrative text, source paths) are dropped, not transformed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Sequence
from dataclasses import replace
from datetime import date, timedelta
from typing import Any

from core.identifiers import derive_uid
from store.runs import ItemInfo

#: How far dates may move (days, either way).
MAX_SHIFT_DAYS = 365
_DICOM_ROOT = "1.2.840.10008."
_UID = re.compile(r"\b[0-9]+(?:\.[0-9]+){3,}\b")
_ISO_DATE = re.compile(r"^(\d{4}-\d{2}-\d{2})(.*)$")
#: Manifest columns dropped from de-identified outputs (compared lower-case, without separators).
_DROP_COLUMNS = frozenset(
    {"name", "patientname", "birthdate", "dob", "patientbirthdate", "dateofbirth", "address", "mrn", "accession",
     "accessionnumber", "path", "file", "filename", "imageindex", "reporttext", "report", "text", "phone", "email"}
)  # fmt: skip
_PATIENT_COLUMNS = frozenset({"patient", "patientid", "subjectid", "subject"})
_DATE_COLUMNS = frozenset({"studydate", "acquisitiondate", "date"})
#: FHIR elements that carry identity and are removed wherever they appear.
#: ``presentedForm`` / ``content``: attachments (the PDF report) would carry the identity inside their bytes.
_FHIR_DROP = frozenset(
    {"name", "identifier", "birthDate", "address", "telecom", "text", "photo", "contact", "presentedForm", "content"}
)


def _mac(key: str, *parts: str) -> str:
    return hmac.new(key.encode(), "\x1f".join(parts).encode(), hashlib.sha256).hexdigest()


def pseudonym(key: str, patient: str) -> str:
    return "P" + _mac(key, "patient", patient)[:12].upper()


def shift_days(key: str, patient: str) -> int:
    """The patient's date shift: the same for every date of the patient, never 0."""
    n = int(_mac(key, "date-shift", patient)[:8], 16) % (2 * MAX_SHIFT_DAYS) - MAX_SHIFT_DAYS
    return n if n != 0 else MAX_SHIFT_DAYS


def map_uid(key: str, uid: str) -> str:
    if uid.startswith(_DICOM_ROOT):
        return uid
    return derive_uid("2.25", "mmdx-batch-deid", _mac(key, "uid", uid)[:32])


def _shift(value: str, days: int) -> str:
    m = _ISO_DATE.match(value)
    if m is None:
        return value
    try:
        shifted = date.fromisoformat(m.group(1)) + timedelta(days=days)
    except ValueError:
        return value
    return shifted.isoformat() + m.group(2)


def _norm(column: str) -> str:
    return re.sub(r"[^a-z0-9]", "", column.lower())


def patient_key(row: dict[str, Any]) -> str:
    """Whose pseudonym and date shift a row gets: the manifest's patient column, else the study's patient."""
    manifest = row.get("manifest") or {}
    for k, v in manifest.items():
        if _norm(k) in _PATIENT_COLUMNS and v:
            return str(v)
    return str(row.get("patient_id") or row.get("study_instance_uid") or f"item-{row.get('item')}")


def deidentify_row(row: dict[str, Any], key: str) -> dict[str, Any]:
    """The cohort row with pseudonyms, shifted dates and no source path or direct identifier."""
    out = dict(row)
    patient = patient_key(row)
    days = shift_days(key, patient)
    out["patient_id"] = pseudonym(key, patient)
    originals: list[str] = []
    if uid := row.get("study_instance_uid"):
        originals.append(str(uid))
        out["study_instance_uid"] = map_uid(key, str(uid))
    if src := row.get("source_path"):
        originals.append(str(src))
    out["source_path"] = f"item-{row.get('item')}"
    if acq := row.get("acquisition_date"):
        out["acquisition_date"] = _shift(str(acq), days)
    manifest: dict[str, Any] = {}
    for k, v in (row.get("manifest") or {}).items():
        n = _norm(k)
        if n in _DROP_COLUMNS:
            continue
        if n in _PATIENT_COLUMNS:
            manifest[k] = None if v is None else pseudonym(key, str(v))
        elif n in _DATE_COLUMNS and v:
            manifest[k] = _shift(str(v), days)
        elif n in ("studyuid", "studyinstanceuid") and v:
            manifest[k] = map_uid(key, str(v))
        else:
            manifest[k] = v
    out["manifest"] = manifest
    errors = str(row.get("errors") or "")
    for original in originals:
        errors = errors.replace(original, "<item>")
    out["errors"] = _UID.sub(lambda m: map_uid(key, m.group(0)), errors)
    return out


def _walk(node: Any, key: str, days: int, patient_ref: tuple[str, str] | None) -> Any:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for k, v in node.items():
            if k in _FHIR_DROP or (k == "display" and "reference" in node):
                continue
            out[k] = _walk(v, key, days, patient_ref)
        return out
    if isinstance(node, list):
        return [_walk(v, key, days, patient_ref) for v in node]
    if isinstance(node, str):
        if patient_ref is not None and node == patient_ref[0]:
            return patient_ref[1]
        value = _UID.sub(lambda m: map_uid(key, m.group(0)), node)
        return _shift(value, days)
    return node


def deidentify_fhir(bundle_text: str, key: str) -> str:
    """The report bundle with the Patient pseudonymised, identity elements removed and dates shifted."""
    bundle = json.loads(bundle_text)
    entries = bundle.get("entry") or []
    patient_res = next(
        (e["resource"] for e in entries if (e.get("resource") or {}).get("resourceType") == "Patient"), None
    )
    who = "unknown"
    patient_ref = None
    if patient_res is not None:
        ids = [i.get("value") for i in patient_res.get("identifier") or [] if i.get("value")]
        who = str(ids[0]) if ids else str(patient_res.get("id") or "unknown")
        pseudo = pseudonym(key, who)
        old_id = str(patient_res.get("id") or "")
        patient_ref = (f"Patient/{old_id}", f"Patient/{pseudo}")
    days = shift_days(key, who)
    out_entries = []
    for e in entries:
        res = e.get("resource")
        if not isinstance(res, dict):
            continue
        new = _walk(res, key, days, patient_ref)
        if res.get("resourceType") == "Patient" and patient_ref is not None:
            new["id"] = patient_ref[1].split("/", 1)[1]
        out_entries.append({"resource": new})
    return json.dumps({"resourceType": "Bundle", "type": bundle.get("type", "collection"), "entry": out_entries})


def deidentify_items(items: Sequence[ItemInfo], key: str) -> list[ItemInfo]:
    """Items for the summary: the source path replaced by the item number, in reasons too."""
    out = []
    for i in items:
        error = i.error
        if error and i.source_path:
            error = error.replace(i.source_path, "<item>")
        if error:
            error = _UID.sub(lambda m: map_uid(key, m.group(0)), error)
        out.append(replace(i, source_path=f"item-{i.seq}", error=error, meta={}))
    return out
