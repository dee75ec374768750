"""The cohort table: one row per item, measurements as named columns with units.

Rows are plain JSON-able dicts (they are stored with the item in the
database, so a resumed run exports exactly what an uninterrupted one would);
:func:`cohort_table` turns them into one Arrow table with a fixed column
order, the unit and code of every measurement column in the field metadata.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from core.records import DraftReport, Finding, Measurement, Presence, Producer, Study

#: Columns every row has, in this order; measurement and manifest columns follow (sorted).
BASE_COLUMNS: tuple[str, ...] = (
    "item",
    "kind",
    "status",
    "source_path",
    "study_instance_uid",
    "patient_id",
    "patient_sex",
    "patient_age_years",
    "modality",
    "view",
    "acquisition_date",
    "priority",
    "priority_reason",
    "statement_codes",
    "statements",
    "findings",
    "labels",
    "model_ids",
    "model_versions",
    "weights_hashes",
    "errors",
)
_FLOAT_COLUMNS = frozenset({"patient_age_years"})
_INT_COLUMNS = frozenset({"item"})
MEASUREMENT_PREFIX = "ecg_"
MANIFEST_PREFIX = "manifest_"
_UNIT_WORDS = {"/min": "per_min", "%": "percent", "[degF]": "degF", "Cel": "celsius"}


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def measurement_column(m: Measurement) -> str:
    """``ecg_<meaning>_<unit>``, e.g. ``ecg_qrs_duration_ms``, ``ecg_heart_rate_per_min``."""
    unit = _UNIT_WORDS.get(m.unit.value, m.unit.value)
    return f"{MEASUREMENT_PREFIX}{_slug(m.code.meaning)}_{_slug(unit) or 'unitless'}"


def _finding_json(f: Finding) -> dict[str, Any]:
    code = None if f.concept is None else f"{f.concept.scheme}:{f.concept.value}"
    return {"code": code, "text": f.text, "presence": f.presence.value, "probability": f.probability}


def _producers(producers: Sequence[Producer]) -> dict[str, str]:
    return {
        "model_ids": ";".join(p.name for p in producers),
        "model_versions": ";".join(p.version for p in producers),
        "weights_hashes": ";".join(p.digest or "" for p in producers),
    }


def empty_row(item: int, kind: str, source_path: str | None) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(BASE_COLUMNS)
    row.update(item=item, kind=kind, source_path=source_path, status="failed", errors="")
    row["measurements"] = {}
    row["units"] = {}
    row["manifest"] = {}
    return row


def fill_findings(row: dict[str, Any], findings: Sequence[Finding]) -> None:
    present = [f for f in findings if f.presence is Presence.PRESENT]
    row["statement_codes"] = ";".join(f"{f.concept.scheme}:{f.concept.value}" for f in present if f.concept is not None)
    row["statements"] = "; ".join(f.text for f in present)
    row["findings"] = json.dumps([_finding_json(f) for f in findings], sort_keys=True)


def fill_measurements(row: dict[str, Any], measurements: Iterable[Measurement]) -> None:
    values: dict[str, float] = row["measurements"]
    units: dict[str, dict[str, str]] = row["units"]
    for m in measurements:
        if m.site is not None:
            continue
        col = measurement_column(m)
        if col in values:  # a second recording of the study: the first one's value is kept
            continue
        values[col] = float(m.value)
        units[col] = {"unit": m.unit.value, "code": f"{m.code.scheme}:{m.code.value}", "meaning": m.code.meaning}


def fill_study(row: dict[str, Any], study: Study) -> None:
    row["study_instance_uid"] = study.study_instance_uid
    ids = study.patient.identifiers
    row["patient_id"] = ids[0].value if ids else None
    row["patient_sex"] = study.patient.sex.value
    row["patient_age_years"] = study.patient.age_years
    row["modality"] = ";".join(study.modalities)
    row["acquisition_date"] = None if study.study_datetime is None else study.study_datetime.date().isoformat()


def fill_report(row: dict[str, Any], report: DraftReport) -> None:
    row["priority"] = report.priority.level.name.lower()
    row["priority_reason"] = report.priority.reason
    fill_findings(row, report.findings)
    fill_measurements(row, report.measurements)
    row.update(_producers(report.provenance))


def fill_producers(row: dict[str, Any], producers: Sequence[Producer]) -> None:
    row.update(_producers(producers))


def fill_manifest(row: dict[str, Any], meta: Mapping[str, Any]) -> None:
    row["manifest"] = {k: None if v is None else str(v) for k, v in meta.items() if k != "report_text"}


# --------------------------------------------------------------------------- the table


def cohort_table(rows: Sequence[Mapping[str, Any]]) -> pa.Table:
    """One Arrow table over the rows, columns in a fixed order (same rows -> same table)."""
    rows = sorted(rows, key=lambda r: int(r["item"]))
    units: dict[str, dict[str, str]] = {}
    manifest_cols: set[str] = set()
    for r in rows:
        units.update(r.get("units") or {})
        manifest_cols.update(r.get("manifest") or {})
    fields: list[pa.Field] = []
    arrays: list[pa.Array] = []
    for col in BASE_COLUMNS:
        typ = pa.int64() if col in _INT_COLUMNS else pa.float64() if col in _FLOAT_COLUMNS else pa.string()
        values = [r.get(col) for r in rows]
        if typ == pa.string():
            values = [None if v is None else str(v) for v in values]
        fields.append(pa.field(col, typ))
        arrays.append(pa.array(values, type=typ))
    for col in sorted(units):
        meta = {"unit": units[col]["unit"], "code": units[col]["code"], "meaning": units[col]["meaning"]}
        fields.append(pa.field(col, pa.float64(), metadata=meta))
        arrays.append(pa.array([(r.get("measurements") or {}).get(col) for r in rows], type=pa.float64()))
    for col in sorted(manifest_cols):
        fields.append(pa.field(MANIFEST_PREFIX + _slug(col), pa.string()))
        arrays.append(pa.array([(r.get("manifest") or {}).get(col) for r in rows], type=pa.string()))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def write_cohort(table: pa.Table, out_dir: Path) -> tuple[Path, Path]:
    """``cohort.parquet`` and ``cohort.csv`` (written to temporary names, then renamed)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    parquet, csv = out_dir / "cohort.parquet", out_dir / "cohort.csv"
    tmp_p, tmp_c = parquet.with_suffix(".parquet.tmp"), csv.with_suffix(".csv.tmp")
    pq.write_table(table, tmp_p)
    pacsv.write_csv(table, tmp_c)
    tmp_p.replace(parquet)
    tmp_c.replace(csv)
    return parquet, csv


def units_of(table: pa.Table) -> dict[str, str]:
    """Measurement column -> UCUM unit, from the field metadata."""
    out = {}
    for f in table.schema:
        if f.metadata and b"unit" in f.metadata:
            out[f.name] = f.metadata[b"unit"].decode()
    return out
