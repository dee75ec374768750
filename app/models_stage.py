"""Wiring between the pipeline and ``models``: build model inputs from indexed series.

Pixel decoding lives in ``ingest`` and model code in ``models``; neither may
import the other, so the pipeline hands ``core`` records from one to the other
here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar, Token

from app.context import AppContext
from app.plan import PROJECTION_MODALITIES, SeriesPlan
from core.config import RouteRule
from core.errors import IngestError
from core.records import EcgRecord, Finding, Image, Measurement, Study
from ecg.render import render_array
from ingest.pixels import load_image
from ingest.volume import load_volume
from models.orchestrate import ModelsResult, analyse_batch
from models.protocol import ClinicalContext, ModelInput
from models.routing import DRAFTING_BACKENDS, ecg_models_for


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


def ecg_measurements_text(measurements: Sequence[Measurement]) -> str:
    """The global intervals and axes as one line for an ECG prompt ("Heart rate 72 /min; PR interval 160 ms")."""
    parts = [f"{m.code.meaning} {m.value:.0f} {m.unit.value}" for m in measurements if m.site is None]
    return "; ".join(parts) or "not available"


def ecg_models(
    ctx: AppContext,
    study: Study,
    record: EcgRecord,
    statements: Sequence[Finding],
    measurements: Sequence[Measurement],
) -> ModelsResult | None:
    """The models routed to ECGs, cross-checked with the rules; None when none is.

    The ECG classifier gets the signal; a vision-language model (PULSE, any VLM a rule with
    ``kind: ecg`` or ``modality: ECG`` names) gets the printout ``ecg`` renders, without patient
    identity or anyone's statements on it, and the measured intervals in its prompt.  The rule
    engine's statements and intervals are the reference: a disagreement becomes a flag in the report.
    """
    names = ecg_models_for(ctx.settings.model_routing, ctx.registry.specs)
    if not names:
        return None
    readers = [n for n in names if ctx.registry.specs[n].backend in DRAFTING_BACKENDS]
    inp = ModelInput(
        study_instance_uid=study.study_instance_uid,
        modality="ECG",
        ecg=record,
        ecg_printout=render_array(record, measurements, (), blind=True) if readers else None,
        ecg_measurements_text=ecg_measurements_text(measurements) if readers else None,
        context=clinical_context(study),
    )
    uid = study.study_instance_uid
    (result,) = analyse_batch(
        [inp],
        ctx.registry,
        [RouteRule(kind="ecg", models=names)],
        rule_findings={uid: tuple(statements)},
        measurements={uid: tuple(measurements)},
    )
    return result


# --------------------------------------------------------------------------- batching across studies


def batch_size(ctx: AppContext) -> int:
    """How many studies to read ahead for the models: the largest ``max_batch`` of a configured model."""
    return max((s.max_batch for s in ctx.registry.specs.values() if s.backend != "labeler"), default=1)


_NOT_PREFETCHED = object()


class _Prefetch:
    """Image-model results of the next studies of a run, computed a batch at a time on first use.

    ``mmdx run`` and the worker know which studies come next; asking the
    models for them together lets each backend see up to ``max_batch``
    studies at once (:func:`models.orchestrate.analyse_batch` groups them per
    model).  A result is handed out once and only while the study's model
    input is unchanged; anything else runs alone as before.
    """

    def __init__(self, ctx: AppContext, study_uids: Sequence[str], size: int) -> None:
        self.ctx = ctx
        self.uids = list(dict.fromkeys(study_uids))
        self.size = max(1, size)
        self.done: set[str] = set()
        self.cache: dict[str, tuple[ModelInput, ModelsResult, list[str]]] = {}
        self.studies: dict[str, tuple[Study, list[str]]] = {}  #: as loaded here, with the order match

    def _fill(self, start: int) -> None:
        from app.orders import order_for_study
        from app.plan import Action, plan_study
        from store import index

        chunk = [u for u in self.uids[start:] if u not in self.done][: self.size]
        inputs: list[ModelInput] = []
        problems: dict[str, list[str]] = {}
        for uid in chunk:
            self.done.add(uid)
            with self.ctx.db.session() as session:
                study = index.load_study(session, uid)
            if study is None:
                continue
            asked: list[str] = []
            match = order_for_study(self.ctx, study, asked)
            if match is not None:
                study = dataclasses.replace(study, order_match=match)
            self.studies[uid] = (study, asked)
            plans = plan_study(study, self.ctx.settings).of(Action.IMAGE_MODELS)
            problems[uid] = []
            inp = image_input(study, plans, problems[uid]) if plans else None
            if inp is not None:  # a study without model input runs alone, where its problems are said
                inputs.append(inp)
        if inputs:
            results = analyse_batch(inputs, self.ctx.registry, self.ctx.settings.model_routing)
            for inp, res in zip(inputs, results, strict=True):
                self.cache[inp.study_instance_uid] = (inp, res, problems[inp.study_instance_uid])

    def take(self, uid: str) -> object:
        if uid not in self.uids:
            return _NOT_PREFETCHED
        if uid not in self.done:
            self._fill(self.uids.index(uid))
        return self.cache.pop(uid, _NOT_PREFETCHED)

    def study(self, uid: str) -> tuple[Study, list[str]] | None:
        if uid not in self.uids:
            return None
        if uid not in self.done:
            self._fill(self.uids.index(uid))
        return self.studies.pop(uid, None)


_PREFETCH: ContextVar[_Prefetch | None] = ContextVar("mmdx_model_prefetch", default=None)


def prefetch_models(ctx: AppContext, study_uids: Sequence[str]) -> Token[_Prefetch | None]:
    """Let the image models of these studies run in batches of :func:`batch_size` (``mmdx run``, the worker)."""
    return _PREFETCH.set(_Prefetch(ctx, study_uids, batch_size(ctx)))


@contextmanager
def batched_models(ctx: AppContext, study_uids: Sequence[str]) -> Iterator[None]:
    """:func:`prefetch_models` for the duration of a ``with`` block."""
    token = prefetch_models(ctx, study_uids)
    try:
        yield
    finally:
        _PREFETCH.reset(token)


def prefetched_study(study_uid: str) -> tuple[Study, list[str]] | None:
    """The study as the read-ahead loaded it (with its order match, and what asking for the order said), once.

    The pipeline takes it instead of loading the study and matching (maybe querying the worklist
    for) its order a second time; None outside a read-ahead or for a study it did not load.
    """
    pre = _PREFETCH.get()
    return pre.study(study_uid) if pre is not None else None


def image_models(
    ctx: AppContext, study: Study, plans: Sequence[SeriesPlan], problems: list[str]
) -> tuple[ModelInput, ModelsResult] | None:
    """One study's image-model input and result: from its prefetched batch when there is one, else alone."""
    pre = _PREFETCH.get()
    hit = pre.take(study.study_instance_uid) if pre is not None else _NOT_PREFETCHED
    if isinstance(hit, tuple) and hit[0].context == clinical_context(study):
        inp, result, found = hit
        problems.extend(found)
        return inp, result
    inp = image_input(study, plans, problems)
    if inp is None:
        return None
    (result,) = analyse_batch([inp], ctx.registry, ctx.settings.model_routing)
    return inp, result
