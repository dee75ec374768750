"""``--reports --deid``: each study's report files built again from the pseudonymised record.

The report files of a study (FHIR bundle, PDF, HTML, HL7 ORU, DICOM SR and
encapsulated PDF) are rendered by :func:`reports.outputs.build_outputs` from a
:class:`core.records.Study` and :class:`core.records.DraftReport` whose
identity was replaced first, with the keys the cohort table uses
(:mod:`app.batch.pseudonyms`): the patient's pseudonym as name and identifier,
no birth date, accession, referring physician or order, every UID mapped,
every date moved by the patient's shift. So nothing identifying can reach a
file, PDF text and the PDF inside DICOM included, and a file's pseudonym, UIDs
and dates are those of the study's cohort row. No secondary capture is
written: its pixels (key images, the ECG printout) come from the source and
may carry identity in them.

The DICOM files then go through the PS3.15 Basic Application Level
Confidentiality Profile of :mod:`ingest.deid` (the one ``mmdx deid`` applies),
which removes private and unlisted identifying elements and records the
de-identification (Patient Identity Removed, method codes); its UID and
pseudonym replacement is left out, as those are already the run's.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable
from datetime import date, datetime, timedelta
from io import BytesIO
from pathlib import Path
from typing import Any

from pydicom import dcmread

from app.batch.pseudonyms import map_uid, pseudonym, shift_days
from core.config import Settings
from core.identifiers import Clock
from core.records import DraftReport, Patient, PatientIdentifier, Study
from core.version import SOFTWARE_NAME, SOFTWARE_VERSION
from ingest.deid import Deidentifier, DeidOptions
from reports.context import ReportContext
from reports.outputs import DICOM_MEDIA_TYPE, ReportOutputs, build_outputs, write_outputs


class _KeepReplacements(Deidentifier):
    """The PS3.15 profile without its own UID and pseudonym replacement (already the run's keyed ones)."""

    def map_uid(self, uid: str) -> str:
        return uid.strip().rstrip("\x00")

    def pseudonym(self, patient_key: str) -> str:
        return patient_key


def _transform(value: Any, uid: Callable[[str], str], days: int) -> Any:
    """``value`` with every UID field (``*_uid``) mapped and every date moved by ``days``, records recursively."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {}
        for f in dataclasses.fields(value):
            if not f.init:
                continue
            v = getattr(value, f.name)
            changes[f.name] = uid(v) if f.name.endswith("_uid") and isinstance(v, str) else _transform(v, uid, days)
        return dataclasses.replace(value, **changes)
    if isinstance(value, tuple):
        return tuple(_transform(v, uid, days) for v in value)
    if isinstance(value, list):
        return [_transform(v, uid, days) for v in value]
    if isinstance(value, dict):
        return {k: _transform(v, uid, days) for k, v in value.items()}
    if isinstance(value, datetime | date):  # datetime is a date
        return value + timedelta(days=days)
    return value


def pseudonymised_records(study: Study, report: DraftReport, key: str, patient_key: str) -> tuple[Study, DraftReport]:
    """The study and report with the cohort row's pseudonym, UIDs and date shift, and no direct identifier."""
    days = shift_days(key, patient_key)
    pseudo = pseudonym(key, patient_key)

    def uid(value: str) -> str:
        return map_uid(key, value)

    bare = dataclasses.replace(
        study,
        patient=Patient(
            identifiers=(PatientIdentifier(pseudo),),
            name=pseudo,
            birth_date=None,
            sex=study.patient.sex,
            age_years=study.patient.age_years,
        ),
        accession_number=None,
        referring_physician=None,
        study_id=None,
        order_match=None,
    )
    return _transform(bare, uid, days), _transform(report, uid, days)


def _profiled(outputs: ReportOutputs, settings: Settings) -> ReportOutputs:
    """The DICOM artefacts through the PS3.15 profile; their content was made from pseudonymised records, so
    an encapsulated PDF (Burned In Annotation YES: its text is the pseudonymised report) is marked, not refused."""
    options = dataclasses.replace(DeidOptions.from_settings(settings), burned_in_annotation="mark")
    deid = _KeepReplacements(settings.uid_root, options, salt=settings.deid.salt)
    arts = []
    for art in outputs.artefacts:
        if art.media_type == DICOM_MEDIA_TYPE:
            ds = dcmread(BytesIO(art.data))
            deid.deidentify(ds, art.name)
            buf = BytesIO()
            ds.save_as(buf, enforce_file_format=True)
            art = dataclasses.replace(art, data=buf.getvalue())
        arts.append(art)
    return dataclasses.replace(outputs, artefacts=tuple(arts))


def write_deid_reports(
    settings: Settings,
    clock: Clock,
    study: Study,
    report: DraftReport,
    reports_dir: Path,
    *,
    key: str,
    patient_key: str,
) -> list[Path]:
    """Write the study's de-identified report files under ``reports_dir/<mapped study UID>/v<version>/``.

    A folder left by an interrupted try of this study is discarded first.
    """
    p_study, p_report = pseudonymised_records(study, report, key, patient_key)
    rctx = ReportContext.from_site(
        settings.site,
        uid_root=settings.uid_root,
        software_name=SOFTWARE_NAME,
        software_version=SOFTWARE_VERSION,
        clock=clock,
    )
    outputs = _profiled(build_outputs(p_report, p_study, rctx), settings)
    folder = reports_dir / p_study.study_instance_uid
    shutil.rmtree(folder, ignore_errors=True)
    return write_outputs(outputs, folder / f"v{p_report.version}")
