"""The structured draft: a JSON document checked against one schema.

A vision-language model is asked for JSON of the shape :data:`DRAFT_SCHEMA`::

    {"findings": [{"label": "effusion", "text": "small left pleural effusion",
                   "site": "pleura", "laterality": "left",
                   "presence": "present", "certainty": 0.8}],
     "impression": "Small left pleural effusion.",
     "recommendation": "Clinical correlation."}

The schema is sent to servers that constrain decoding (OpenAI ``response_format``)
and compiled by xgrammar where it is installed; everything else goes through
:func:`parse_draft`, and the backend makes *one* repair attempt with
:func:`repair_messages` before giving up with :class:`core.errors.ModelError`.
Validation is hand-written on purpose: the messages name the JSON path and
what was expected, and no schema library is needed at run time.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from core.codes import LOINC
from core.errors import ModelError
from core.records import Finding, Laterality, Presence, Producer, ReportSection
from models.vocabulary import BY_KEY, LABELS, SITES

OTHER = "other"  #: label of a finding outside the vocabulary (kept as free text, no code)

_LATERALITIES = tuple(lat.value for lat in Laterality)
_PRESENCES = tuple(p.value for p in Presence)

DRAFT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["findings", "impression", "recommendation"],
    "properties": {
        "findings": {
            "type": "array",
            "maxItems": 32,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["label", "text", "presence"],
                "properties": {
                    "label": {"type": "string", "enum": [lab.key for lab in LABELS] + [OTHER]},
                    "text": {"type": "string", "minLength": 1, "maxLength": 500},
                    "site": {"type": "string", "enum": list(SITES)},
                    "laterality": {"type": "string", "enum": list(_LATERALITIES)},
                    "presence": {"type": "string", "enum": list(_PRESENCES)},
                    "certainty": {"type": "number", "minimum": 0, "maximum": 1},
                },
            },
        },
        "impression": {"type": "string", "minLength": 1, "maxLength": 4000},
        "recommendation": {"type": "string", "maxLength": 2000},
    },
}


@dataclass(frozen=True, slots=True)
class DraftFinding:
    """One validated finding of a draft."""

    label: str
    text: str
    presence: Presence
    site: str | None = None
    laterality: Laterality = Laterality.UNSPECIFIED
    certainty: float | None = None


@dataclass(frozen=True, slots=True)
class StructuredDraft:
    """A draft that passed validation: nothing in it is missing or of the wrong type."""

    findings: tuple[DraftFinding, ...]
    impression: str
    recommendation: str

    def to_findings(self, producer: Producer, *, coded: bool = True) -> tuple[Finding, ...]:
        """:class:`core.records.Finding` objects, each attributed to ``producer``.

        ``coded=False`` (a study the chest vocabulary does not describe, e.g. a
        head CT; see :func:`chest_labels_apply`) keeps the text and drops every
        chest code, site and critical flag a label would bring.
        """
        out = []
        for f in self.findings:
            label = BY_KEY.get(f.label) if coded else None
            site = (SITES[f.site] if f.site else (label.site if label else None)) if coded else None
            out.append(
                Finding(
                    concept=label.code if label else None,
                    text=f.text,
                    producer=producer,
                    presence=f.presence,
                    site=site,
                    laterality=f.laterality,
                    probability=f.certainty,
                    critical=bool(label and label.critical and f.presence is Presence.PRESENT),
                )
            )
        return tuple(out)

    def to_sections(self) -> tuple[ReportSection, ...]:
        """Findings, impression and recommendation as coded narrative sections."""
        sections = []
        findings_text = " ".join(f.text.rstrip(".") + "." for f in self.findings)
        if findings_text.strip():
            sections.append(ReportSection(LOINC.FINDINGS, findings_text))
        sections.append(ReportSection(LOINC.IMPRESSION, self.impression))
        if self.recommendation.strip():
            sections.append(ReportSection(LOINC.RECOMMENDATION, self.recommendation))
        return tuple(sections)


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)


def extract_json(text: str) -> Any:
    """The JSON value in a model's answer: the whole text, a fenced block, or the outermost ``{...}``.

    Raises :class:`ModelError` when none parses.
    """
    candidates = [text.strip()]
    candidates += [m.group(1).strip() for m in _FENCE.finditer(text)]
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        candidates.append(text[start : end + 1])
    last_error = "no JSON object found"
    for cand in candidates:
        if not cand:
            continue
        try:
            # strict=False: raw control characters inside strings (which grammar-constrained decoders
            # let through) are accepted here and removed by validation
            return json.loads(cand, strict=False)
        except json.JSONDecodeError as exc:
            last_error = f"{exc.msg} at line {exc.lineno} column {exc.colno}"
    raise ModelError(f"draft is not JSON: {last_error}")


def _check_keys(obj: dict[str, Any], path: str, allowed: set[str], required: set[str]) -> None:
    extra = sorted(set(obj) - allowed)
    if extra:
        raise ModelError(f"draft {path}: unexpected key(s) {extra}; allowed {sorted(allowed)}")
    missing = sorted(required - set(obj))
    if missing:
        raise ModelError(f"draft {path}: missing required key(s) {missing}")


def _string(obj: dict[str, Any], key: str, path: str, *, min_len: int = 0, max_len: int = 4000) -> str:
    value = obj[key]
    if not isinstance(value, str):
        raise ModelError(f"draft {path}.{key}: expected a string, got {type(value).__name__}")
    value = _CONTROL.sub(" ", value)
    if not min_len <= len(value.strip()) <= max_len:
        raise ModelError(f"draft {path}.{key}: expected {min_len}..{max_len} characters, got {len(value.strip())}")
    return value.strip()


def _enum(obj: dict[str, Any], key: str, path: str, allowed: tuple[str, ...] | list[str]) -> str:
    value = obj[key]
    if value not in allowed:
        raise ModelError(f"draft {path}.{key}: expected one of {list(allowed)}, got {value!r}")
    return str(value)


def validate_draft(doc: Any) -> StructuredDraft:
    """Check a parsed document against :data:`DRAFT_SCHEMA` and build the draft.

    Raises :class:`ModelError` naming the first offending JSON path.
    """
    if not isinstance(doc, dict):
        raise ModelError(f"draft $: expected a JSON object, got {type(doc).__name__}")
    props = DRAFT_SCHEMA["properties"]
    _check_keys(doc, "$", set(props), set(DRAFT_SCHEMA["required"]))
    items = doc["findings"]
    if not isinstance(items, list):
        raise ModelError(f"draft $.findings: expected an array, got {type(items).__name__}")
    if len(items) > props["findings"]["maxItems"]:
        raise ModelError(f"draft $.findings: at most {props['findings']['maxItems']} findings, got {len(items)}")
    item_schema = props["findings"]["items"]
    findings = []
    for i, item in enumerate(items):
        path = f"$.findings[{i}]"
        if not isinstance(item, dict):
            raise ModelError(f"draft {path}: expected an object, got {type(item).__name__}")
        _check_keys(item, path, set(item_schema["properties"]), set(item_schema["required"]))
        label = _enum(item, "label", path, item_schema["properties"]["label"]["enum"])
        certainty = item.get("certainty")
        if certainty is not None and (
            isinstance(certainty, bool) or not isinstance(certainty, int | float) or not 0 <= certainty <= 1
        ):
            raise ModelError(f"draft {path}.certainty: expected a number in [0, 1], got {certainty!r}")
        findings.append(
            DraftFinding(
                label=label,
                text=_string(item, "text", path, min_len=1, max_len=500),
                presence=Presence(_enum(item, "presence", path, _PRESENCES)),
                site=_enum(item, "site", path, list(SITES)) if "site" in item else None,
                laterality=Laterality(_enum(item, "laterality", path, _LATERALITIES))
                if "laterality" in item
                else Laterality.UNSPECIFIED,
                certainty=float(certainty) if certainty is not None else None,
            )
        )
    return StructuredDraft(
        findings=tuple(findings),
        impression=_string(doc, "impression", "$", min_len=1, max_len=4000),
        recommendation=_string(doc, "recommendation", "$", max_len=2000),
    )


def parse_draft(text: str) -> StructuredDraft:
    """Extract, parse and validate a model's answer; :class:`ModelError` when it is not a valid draft."""
    return validate_draft(extract_json(text))


def chest_labels_apply(modality: str, body_part: str | None) -> bool:
    """Whether the (chest) label vocabulary describes a study: chest body part, or a radiograph with none given."""
    part = (body_part or "").upper().replace(" ", "")
    if part:
        return part in ("CHEST", "THORAX", "LUNG", "CHESTABDOMEN")
    return modality.upper() in ("CR", "DX")


def schema_instruction(*, coded: bool = True) -> str:
    """The instruction that tells a model the exact output format (part of every drafting prompt).

    A compact description rather than the JSON schema itself: shorter prompts,
    and models follow an example better than a schema.  Servers that constrain
    decoding get the full :data:`DRAFT_SCHEMA` separately.
    """
    labels = ", ".join(lab.key for lab in LABELS)
    if not coded:
        labels = f"(this is not a chest study: always {OTHER})"
    return (
        "Answer with one JSON object only, no prose: "
        '{"findings": [{"label": L, "text": "...", "site": S, "laterality": A, "presence": P, "certainty": 0.8}], '
        '"impression": "...", "recommendation": "..."}. '
        f"L is one of: {labels}, {OTHER}. S is one of: {', '.join(SITES)}. "
        f"A is one of: {', '.join(_LATERALITIES)}. P is one of: {', '.join(_PRESENCES)}. "
        "site, laterality and certainty (0 to 1) are optional. Report only what the images show."
    )


def repair_messages(previous_answer: str, error: ModelError) -> list[dict[str, Any]]:
    """The follow-up turns of the single repair attempt: the invalid answer and what was wrong with it."""
    return [
        {"role": "assistant", "content": [{"type": "text", "text": previous_answer[:4000]}]},
        {
            "role": "user",
            "content": [
                {
                    "type": "text",
                    "text": f"That answer is invalid ({error}). Reply again with only the corrected JSON object.",
                }
            ],
        },
    ]
