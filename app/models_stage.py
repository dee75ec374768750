"""Wiring between the pipeline and ``models``: build model inputs from indexed series.

Pixel decoding lives in ``ingest`` and model code in ``models``; neither may
import the other, so the pipeline hands ``core`` records from one to the other
here.
"""

from __future__ import annotations

from collections.abc import Sequence

from app.context import AppContext
from app.plan import PROJECTION_MODALITIES, SeriesPlan
from core.config import RouteRule
from core.errors import IngestError
from core.records import EcgRecord, Finding, Image, Measurement, Study
from ingest.pixels import load_image
from ingest.volume import load_volume
from models.orchestrate import ModelsResult, analyse_batch
from models.protocol import ClinicalContext, ModelInput
from models.routing import models_for


def clinical_context(study: Study) -> ClinicalContext:
    """What a model may know about the request: never identity, only age/sex, the exam and the order's indication."""
    sex = study.patient.sex.value if study.patient.sex.value != "U" else None
    return ClinicalContext(
        indication=study.order_match.order.indication if study.order_match else None,
        technique=study.description,
        patient_age_years=study.patient.age_years,
        patient_sex=sex,
    )


def image_input(study: Study, plans: Sequence[SeriesPlan], problems: list[str]) -> ModelInput | None:
    """One model input for the image series of a study (radiograph views and/or the first volume).

    Series that cannot be decoded are left out with their reason in ``problems``.
    """
    images: list[Image] = []
    volume = None
    modality = None
    body_part = None
    for plan in plans:
        series = plan.series
        try:
            if series.modality in PROJECTION_MODALITIES:
                images.extend(load_image(inst.path) for inst in series.instances)
            elif volume is None:
                volume = load_volume([inst.path for inst in series.instances])
            else:
                continue
        except IngestError as exc:
            problems.append(f"series {series.series_instance_uid}: {exc}")
            continue
        modality = modality or series.modality
        body_part = body_part or series.body_part
    if modality is None:
        return None
    return ModelInput(
        study_instance_uid=study.study_instance_uid,
        modality=modality,
        body_part=body_part,
        images=tuple(images),
        volume=volume,
        context=clinical_context(study),
    )


def ecg_models(
    ctx: AppContext,
    study_uid: str,
    record: EcgRecord,
    statements: Sequence[Finding],
    measurements: Sequence[Measurement],
) -> ModelsResult | None:
    """The ECG classifiers routed to ECGs (``model_routing`` with ``kind: ecg``), cross-checked with the rules.

    None when no ECG classifier is routed.  The rule engine's statements and
    intervals are the reference: a disagreement becomes a flag in the report.
    """
    rules = ctx.settings.model_routing
    names = [
        n
        for n in models_for(rules, "ECG", None)
        if (spec := ctx.registry.specs.get(n)) is not None and spec.backend == "ecg_cnn"
    ]
    if not names:
        return None
    inp = ModelInput(study_instance_uid=study_uid, modality="ECG", ecg=record)
    (result,) = analyse_batch(
        [inp],
        ctx.registry,
        [RouteRule(kind="ecg", models=names)],
        rule_findings={study_uid: tuple(statements)},
        measurements={study_uid: tuple(measurements)},
    )
    return result
