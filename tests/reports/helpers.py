"""Realistic core records for the report tests: a chest CR study and a 12-lead ECG study.

The records are what the pipeline hands to ``reports``: a study from the index,
findings from a model Producer (with probabilities, sites, evidence) and a rule
engine, measurements with UCUM units, narrative sections.  Nothing here touches
``../shared``: pixels and the ECG printout are synthesised.
"""

from __future__ import annotations

import io
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
from PIL import Image as PILImage
from PIL import ImageDraw

from core.codes import LOINC, SCT, UCUM
from core.identifiers import FixedClock
from core.records import (
    Clinician,
    DraftReport,
    EvidenceRef,
    Finding,
    Image,
    Instance,
    Laterality,
    Measurement,
    Patient,
    PatientIdentifier,
    Presence,
    Priority,
    PriorityLevel,
    Producer,
    ProducerKind,
    ReportKind,
    ReportSection,
    Series,
    Sex,
    Study,
)
from reports.context import ReportContext

CR_STUDY_UID = "1.2.826.0.1.3680043.8.498.10000000000000000000000000001"
CR_SERIES_UID = "1.2.826.0.1.3680043.8.498.10000000000000000000000000002"
CR_INSTANCE_UID = "1.2.826.0.1.3680043.8.498.10000000000000000000000000003"
CR_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.1"  # Computed Radiography Image Storage
ECG_STUDY_UID = "1.2.826.0.1.3680043.8.498.20000000000000000000000000001"
ECG_SERIES_UID = "1.2.826.0.1.3680043.8.498.20000000000000000000000000002"
ECG_INSTANCE_UID = "1.2.826.0.1.3680043.8.498.20000000000000000000000000003"
ECG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.9.1.1"  # 12-lead ECG Waveform Storage

CREATED = datetime(2026, 11, 20, 9, 30, 0, tzinfo=UTC)
SIGNED = datetime(2026, 11, 20, 11, 5, 0, tzinfo=UTC)
AMENDED = datetime(2026, 11, 21, 8, 0, 0, tzinfo=UTC)

CXR_MODEL = Producer(ProducerKind.MODEL, "densenet121-cxr14", "2.1.0", "a" * 64)
ECG_RULES = Producer(ProducerKind.RULE_ENGINE, "mmdx-ecg-rules", "0.3.0", "b" * 64)
ECG_MODEL = Producer(ProducerKind.MODEL, "ecg-resnet-ptbxl", "1.0.4", "c" * 64)

RADIOLOGIST = Clinician(name="Müller^Anna^^Dr.", identifier="RAD-0042", role="radiologist")
CARDIOLOGIST = Clinician(name="Okafor^Chidi", identifier="CARD-0007", role="cardiologist")


def context() -> ReportContext:
    """A context with a fixed clock so that outputs are byte-stable."""
    return ReportContext(
        uid_root="1.2.826.0.1.3680043.10.999",
        software_version="0.1.0",
        clock=FixedClock(datetime(2026, 11, 20, 12, 0, 0, tzinfo=UTC)),
        institution_name="General Hospital",
        department_name="Radiology",
        dicomweb_base_url="http://pacs.example.org/dicom-web",
    )


def _instance(study: str, series: str, sop: str, sop_class: str, name: str) -> Instance:
    return Instance(
        sop_instance_uid=sop,
        sop_class_uid=sop_class,
        series_instance_uid=series,
        study_instance_uid=study,
        path=Path("/var/store") / name,
        content_digest="xxh3-128:" + "0" * 31 + "1",
        transfer_syntax_uid="1.2.840.10008.1.2.1",
        instance_number=1,
        rows=2048,
        columns=2048,
    )


def patient(*, with_id: bool = True, name: str = "Doe^Jane") -> Patient:
    ids = (PatientIdentifier("MRN-123456", "HOSP"),) if with_id else ()
    return Patient(identifiers=ids, name=name, birth_date=date(1961, 4, 3), sex=Sex.FEMALE, age_years=65.0)


def chest_study(*, with_patient_id: bool = True, patient_name: str = "Doe^Jane") -> Study:
    inst = _instance(CR_STUDY_UID, CR_SERIES_UID, CR_INSTANCE_UID, CR_SOP_CLASS, "cr.dcm")
    series = Series(CR_SERIES_UID, CR_STUDY_UID, "CR", 1, "CHEST PA", "CHEST", (inst,))
    return Study(
        study_instance_uid=CR_STUDY_UID,
        patient=patient(with_id=with_patient_id, name=patient_name),
        accession_number="ACC-2026-0001",
        study_datetime=datetime(2026, 11, 20, 8, 15, 0),
        description="XR CHEST PA",
        referring_physician="House^Gregory",
        series=(series,),
    )


def ecg_study() -> Study:
    inst = _instance(ECG_STUDY_UID, ECG_SERIES_UID, ECG_INSTANCE_UID, ECG_SOP_CLASS, "ecg.dcm")
    series = Series(ECG_SERIES_UID, ECG_STUDY_UID, "ECG", 1, "12-lead resting ECG", None, (inst,))
    return Study(
        study_instance_uid=ECG_STUDY_UID,
        patient=patient(),
        accession_number="ACC-2026-0002",
        study_datetime=datetime(2026, 11, 20, 7, 50, 0),
        description="12-lead ECG",
        series=(series,),
    )


def chest_findings() -> tuple[Finding, ...]:
    ev = (EvidenceRef(sop_instance_uid=CR_INSTANCE_UID, frame=0),)
    nodule_size = Measurement(SCT.LONG_AXIS, 8.5, UCUM.MM, site="right upper lobe", method="model")
    return (
        Finding(
            SCT.CARDIOMEGALY,
            "Enlarged cardiac silhouette",
            CXR_MODEL,
            Presence.PRESENT,
            SCT.HEART,
            Laterality.UNPAIRED,
            0.81,
            ev,
        ),
        Finding(
            SCT.PLEURAL_EFFUSION,
            "Small left pleural effusion",
            CXR_MODEL,
            Presence.PRESENT,
            SCT.PLEURA,
            Laterality.LEFT,
            0.64,
            ev,
        ),
        Finding(
            SCT.NODULE,
            "Right upper lobe nodule, 8.5 mm",
            CXR_MODEL,
            Presence.UNCERTAIN,
            SCT.LUNG,
            Laterality.RIGHT,
            0.42,
            ev,
            measurements=(nodule_size,),
        ),
        Finding(
            SCT.PNEUMOTHORAX, "No pneumothorax", CXR_MODEL, Presence.ABSENT, SCT.PLEURA, Laterality.BILATERAL, 0.03, ev
        ),
    )


def chest_report(**overrides: object) -> DraftReport:
    findings = chest_findings()
    fields: dict[str, object] = dict(
        study_instance_uid=CR_STUDY_UID,
        kind=ReportKind.IMAGING,
        created_at=CREATED,
        sections=(
            ReportSection(LOINC.TECHNIQUE, "Single PA radiograph of the chest."),
            ReportSection(LOINC.COMPARISON, "None available."),
            ReportSection(
                LOINC.FINDINGS,
                "Enlarged cardiac silhouette. Small left pleural effusion. "
                "Possible 8.5 mm nodule in the right upper lobe. No pneumothorax.",
            ),
            ReportSection(LOINC.IMPRESSION, "Cardiomegaly with small left effusion; indeterminate RUL nodule."),
            ReportSection(LOINC.RECOMMENDATION, "CT chest in 3 months for the nodule (Fleischner)."),
        ),
        findings=findings,
        measurements=(findings[2].measurements[0],),
        priority=Priority(PriorityLevel.URGENT, "new pleural effusion"),
        provenance=(CXR_MODEL,),
    )
    fields.update(overrides)
    return DraftReport(**fields)  # type: ignore[arg-type]


def ecg_measurements() -> tuple[Measurement, ...]:
    return (
        Measurement(LOINC.HEART_RATE, 72.0, UCUM.BPM, method="median beat"),
        Measurement(LOINC.PR_INTERVAL, 212.0, UCUM.MS),
        Measurement(LOINC.QRS_DURATION, 94.0, UCUM.MS),
        Measurement(LOINC.QT_INTERVAL, 380.0, UCUM.MS),
        Measurement(LOINC.QTC_BAZETT, 416.0, UCUM.MS),
        Measurement(LOINC.QRS_AXIS, 45.0, UCUM.DEG),
        Measurement(LOINC.QRS_DURATION, 96.0, UCUM.MS, site="V2"),
    )


def ecg_report(**overrides: object) -> DraftReport:
    ms = ecg_measurements()
    ev = (EvidenceRef(sop_instance_uid=ECG_INSTANCE_UID, lead="II", start_s=0.0, end_s=10.0),)
    findings = (
        Finding(
            SCT.SINUS_RHYTHM,
            "Sinus rhythm",
            ECG_RULES,
            criteria=("regular RR", "upright P in II"),
            measurements=(ms[0],),
            evidence=ev,
        ),
        Finding(
            SCT.FIRST_DEGREE_AV_BLOCK,
            "First degree AV block",
            ECG_RULES,
            criteria=("PR > 200 ms",),
            measurements=(ms[1],),
            evidence=ev,
        ),
        Finding(
            SCT.LVH,
            "Possible left ventricular hypertrophy",
            ECG_MODEL,
            Presence.UNCERTAIN,
            SCT.HEART,
            probability=0.38,
            evidence=ev,
        ),
    )
    fields: dict[str, object] = dict(
        study_instance_uid=ECG_STUDY_UID,
        kind=ReportKind.ECG,
        created_at=CREATED,
        sections=(
            ReportSection(
                LOINC.EKG_NARRATIVE,
                "Sinus rhythm, 72/min. First degree AV block (PR 212 ms). "
                "Possible LVH by AI model; voltage criteria not met.",
            ),
        ),
        findings=findings,
        measurements=ms,
        priority=Priority.routine(),
        provenance=(ECG_RULES, ECG_MODEL),
    )
    fields.update(overrides)
    return DraftReport(**fields)  # type: ignore[arg-type]


def ecg_printout_png(width: int = 640, height: int = 240) -> bytes:
    """A small synthetic ECG printout: pink grid and a sine-like trace (stands in for ecg.render)."""
    img = PILImage.new("RGB", (width, height), (255, 240, 240))
    draw = ImageDraw.Draw(img)
    for x in range(0, width, 10):
        draw.line([(x, 0), (x, height)], fill=(250, 200, 200) if x % 50 else (240, 150, 150))
    for y in range(0, height, 10):
        draw.line([(0, y), (width, y)], fill=(250, 200, 200) if y % 50 else (240, 150, 150))
    t = np.arange(width)
    trace = height / 2 - 40 * np.exp(-(((t % 80) - 40) ** 2) / 6.0) + 5 * np.sin(t / 7.0)
    draw.line(list(zip(t.tolist(), trace.tolist(), strict=True)), fill=(0, 0, 0), width=2)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def chest_key_image() -> Image:
    """A small grey radiograph-like image referencing the CR instance."""
    yy, xx = np.mgrid[0:256, 0:200]
    pixels = (2000 + 1500 * np.exp(-(((xx - 100) / 60.0) ** 2 + ((yy - 140) / 80.0) ** 2))).astype(np.uint16)
    return Image(pixels=pixels, pixel_spacing_mm=(0.7, 0.7), window=(2800.0, 1600.0), sop_instance_uid=CR_INSTANCE_UID)


def source_instances(study: Study) -> tuple[Instance, ...]:
    return tuple(i for s in study.series for i in s.instances)


def unescape(text: str) -> str:
    """Inverse of :func:`reports.hl7_oru.escape` for the five delimiter escapes: tests read the ORU back with it."""
    out, i = [], 0
    table = {"F": "|", "S": "^", "T": "&", "R": "~", "E": "\\"}
    while i < len(text):
        if text[i] == "\\" and i + 2 < len(text) and text[i + 2] == "\\" and text[i + 1] in table:
            out.append(table[text[i + 1]])
            i += 3
        else:
            out.append(text[i])
            i += 1
    return "".join(out)
