"""The models stage of the pipeline: route, triage, escalate, draft, cross-check.

One call per batch of studies (:func:`analyse_batch`) so that each model sees
all of its studies at once (VLM batching).  For each study:

1. the routing rules name the models (:func:`models.routing.models_for`);
   models that cannot run are reported in ``notices``, never silently skipped;
2. the cheap models run first (CXR classifier, ECG CNN);
3. each drafting VLM runs on the studies its escalation policy selects;
4. the safety checks compare the draft with the classifier, and the ECG model
   and an ECG draft (a VLM reading the printout) with the rule-based
   interpretation, and set the priority;
5. the result holds only validated, attributed findings; a failed model
   leaves an error line (``model 'X' failed: reason``), never a partial draft;
6. every model call, failed ones included, becomes a
   :class:`core.records.ModelCall` (``calls``), and every model whose answer
   is used is in ``provenance`` even when it found nothing, so a normal
   study's AI text is labelled like an abnormal one.

Without any usable model the result says so (``notices``) and holds no
findings: the app writes the rule-based / header-based draft alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from core.codes import LOINC
from core.config import ModelSpec, RouteRule
from core.errors import MmdxError, ModelError
from core.records import Finding, Measurement, ModelCall, Priority, Producer, ReportSection
from models.ecg_reading import coded_ecg_findings
from models.protocol import ModelInfo, ModelInput, ModelOutput
from models.provenance import model_call
from models.registry import Registry
from models.routing import CHEAP_BACKENDS, DRAFTING_BACKENDS, ECG_MODALITIES, models_for, should_escalate, suits
from models.safety import (
    SafetyFlag,
    draft_vs_classifier,
    ecg_draft_vs_rules,
    ecg_model_vs_rules,
    no_model_notice,
    refuse_unattributed,
    review,
)


@dataclass(frozen=True, slots=True)
class ModelsResult:
    """Everything the models stage concluded about one study."""

    study_instance_uid: str
    outputs: tuple[ModelOutput, ...] = ()
    findings: tuple[Finding, ...] = ()
    sections: tuple[ReportSection, ...] = ()
    priority: Priority = field(default_factory=Priority.routine)
    flags: tuple[SafetyFlag, ...] = ()
    errors: tuple[str, ...] = ()
    notices: tuple[str, ...] = ()
    escalation: str = ""
    calls: tuple[ModelCall, ...] = ()

    @property
    def provenance(self) -> tuple[Producer, ...]:
        """Producers of ``findings`` and of every used model answer, "nothing found" included."""
        seen: dict[Producer, None] = {}
        for f in self.findings:
            seen.setdefault(f.producer)
        for c in self.calls:
            if c.ok:
                seen.setdefault(c.producer)
        return tuple(seen)

    @property
    def failed(self) -> bool:
        """A routed model failed on this study (the app writes the fallback draft and says so)."""
        return bool(self.errors)


def _suits(spec: ModelSpec, inp: ModelInput) -> bool:
    """Modality and body part (routing), and the data the backend needs: an ECG signal, a frontal view."""
    if not suits(spec, inp.modality, inp.body_part):
        return False
    if spec.backend == "cxr_classifier":  # ViewPosition: a lateral-only study is not for a frontal-view classifier
        return any((im.view_position or "PA").upper() in ("PA", "AP") for im in inp.images)
    return spec.backend != "ecg_cnn" or inp.ecg is not None


def _run(registry: Registry, name: str, inputs: list[ModelInput]) -> list[ModelOutput | ModelError]:
    """One model over its studies; a backend-wide failure becomes each study's error."""
    try:
        return list(registry.backend(name).predict(inputs))
    except ModelError as exc:
        return [exc] * len(inputs)
    except Exception as exc:  # a backend bug must fail its studies, never the batch or the worker
        return [ModelError(f"{type(exc).__name__}: {str(exc)[:300]}")] * len(inputs)


def _failed(name: str, reason: object) -> str:
    text = str(reason)
    prefix = f"model {name!r}: "
    return f"model {name!r} failed: {text.removeprefix(prefix)}"


def _triage_statement(classifiers: Sequence[ModelOutput]) -> ReportSection:
    names = ", ".join(sorted({c.producer.name for c in classifiers}))
    return ReportSection(
        LOINC.FINDINGS, f"AI triage ({names}): no finding above the configured thresholds; not read by a person."
    )


def _ecg_statement(models: Sequence[ModelOutput]) -> ReportSection:
    names = ", ".join(sorted({m.producer.name for m in models}))
    return ReportSection(
        LOINC.EKG_NARRATIVE, f"AI ECG classifier ({names}): no statement above its thresholds; not read by a person."
    )


@dataclass(slots=True)
class _Study:
    """One study on its way through the stage; each step adds to it, :func:`_review` freezes it."""

    inp: ModelInput
    routed: list[str] = field(default_factory=list)  #: models that suit it and can run, in registry order
    notices: list[str] = field(default_factory=list)
    outputs: list[ModelOutput] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    calls: list[ModelCall] = field(default_factory=list)
    escalation: list[str] = field(default_factory=list)  #: each drafting model's decision, with its reason
    escalated: set[str] = field(default_factory=set)  #: drafting models selected to run

    @property
    def uid(self) -> str:
        return self.inp.study_instance_uid


def _route(inp: ModelInput, registry: Registry, rules: Sequence[RouteRule], infos: Mapping[str, ModelInfo]) -> _Study:
    """Step 1: the models the routing rules name that suit the study and can run; the others as notices."""
    study = _Study(inp)
    for name in models_for(rules, inp.modality, inp.body_part):
        spec = registry.specs.get(name)
        if spec is None:
            study.notices.append(f"routing names model {name!r}, which is not configured")
        elif not _suits(spec, inp):
            continue
        elif not infos[name].available:
            study.notices.append(f"model {name!r} cannot run: {'; '.join(infos[name].missing)}")
        else:
            study.routed.append(name)
    return study


def _run_stage(studies: Sequence[_Study], registry: Registry, backends: tuple[str, ...], *, escalated: bool) -> None:
    """Steps 2 and 4: each model of these backends once over all its studies (batched); ``escalated``: only
    the studies that selected it."""
    for name in registry.names():
        backend = registry.specs[name].backend
        if backend not in backends:
            continue
        todo = [s for s in studies if name in s.routed and (not escalated or name in s.escalated)]
        if not todo:
            continue
        for study, out in zip(todo, _run(registry, name, [s.inp for s in todo]), strict=True):
            if isinstance(out, ModelError):
                study.errors.append(_failed(name, out))
                continue
            try:
                study.calls.append(model_call(out, backend))
            except MmdxError as exc:  # an answer that cannot be attributed is not used
                study.errors.append(_failed(name, f"its provenance is not valid: {exc}"))
                continue
            study.outputs.append(out)
            if out.error is not None:
                study.errors.append(_failed(name, out.error))


def _escalate(study: _Study, registry: Registry) -> None:
    """Step 3: which drafting models run, from the cheap models' answers and their thresholds."""
    thresholds: dict[str, float] = {}
    for out in study.outputs:
        spec = registry.specs.get(out.producer.name)
        if spec is not None:
            thresholds.update(spec.thresholds)
    for name in study.routed:
        spec = registry.specs[name]
        if spec.backend in DRAFTING_BACKENDS:
            go, why = should_escalate(spec, study.outputs, thresholds)
            if go:
                study.escalated.add(name)
            study.escalation.append(f"{name}: {'run' if go else 'skipped'} ({why})")


def _review(
    study: _Study,
    registry: Registry,
    infos: Mapping[str, ModelInfo],
    rule_findings: Sequence[Finding] | None,
    measurements: Sequence[Measurement],
) -> ModelsResult:
    """Step 5: safety checks against the classifier and the ECG rules (None: the study has no rule reading),
    priority, and the frozen result."""
    ok = [o for o in study.outputs if o.ok]
    backend_of = {o.producer.name: registry.specs[o.producer.name].backend for o in ok}
    drafts = [o for o in ok if backend_of[o.producer.name] in DRAFTING_BACKENDS]
    classifiers = [o for o in ok if backend_of[o.producer.name] == "cxr_classifier"]
    ecg_models = [o for o in ok if backend_of[o.producer.name] == "ecg_cnn"]
    is_ecg = study.inp.modality.upper() in ECG_MODALITIES
    flags: list[SafetyFlag] = []
    for d in drafts[:1]:
        for c in classifiers:
            flags += draft_vs_classifier(d, c)
        if is_ecg and rule_findings is not None:  # a VLM's ECG reading against the rule engine's statements
            flags += ecg_draft_vs_rules(d, rule_findings)
    for e in ecg_models:
        flags += ecg_model_vs_rules(e, rule_findings or (), measurements)
    errors = list(study.errors)
    try:
        model_findings = refuse_unattributed(f for o in ok for f in o.findings)
    except ModelError as exc:  # cannot happen with our backends: a guard against foreign ones
        errors.append(str(exc))
        model_findings = ()
    if is_ecg:  # an ECG draft's statements in the rules' SNOMED CT concepts
        model_findings = coded_ecg_findings(model_findings)
    rev = review(ok, flags, rule_findings or ())
    usable = [infos[n] for n in study.routed] or list(infos.values())
    notice = no_model_notice("ecg" if is_ecg else "imaging", usable) if not ok else None
    sections = drafts[0].sections if drafts else ()
    if not sections and not model_findings and classifiers:
        sections = (_triage_statement(classifiers),)
    if not sections and not model_findings and ecg_models:
        sections = (_ecg_statement(ecg_models),)
    return ModelsResult(
        study_instance_uid=study.uid,
        outputs=tuple(study.outputs),
        findings=model_findings + rev.findings,
        sections=sections,
        priority=rev.priority,
        flags=rev.flags,
        errors=tuple(errors),
        notices=tuple(study.notices + ([notice] if notice else [])),
        escalation="; ".join(study.escalation),
        calls=tuple(study.calls),
    )


def analyse_batch(
    inputs: Sequence[ModelInput],
    registry: Registry,
    rules: Sequence[RouteRule],
    *,
    rule_findings: Mapping[str, Sequence[Finding]] | None = None,
    measurements: Mapping[str, Sequence[Measurement]] | None = None,
) -> list[ModelsResult]:
    """Run the configured models over a batch of studies; one result per input, in order.

    Route -> triage (cheap models) -> escalate -> draft (VLMs) -> review, each model once per step over all
    of its studies.  ``rule_findings`` / ``measurements`` (by study UID) are the ECG rule engine's statements
    and intervals, the reference the ECG model and an ECG draft are checked against.
    """
    rule_findings = rule_findings or {}
    measurements = measurements or {}
    infos: dict[str, ModelInfo] = {n: registry.describe(n) for n in registry.names()}
    studies = [_route(inp, registry, rules, infos) for inp in inputs]
    _run_stage(studies, registry, CHEAP_BACKENDS, escalated=False)
    for study in studies:
        _escalate(study, registry)
    _run_stage(studies, registry, DRAFTING_BACKENDS, escalated=True)
    return [_review(s, registry, infos, rule_findings.get(s.uid), measurements.get(s.uid, ())) for s in studies]


def analyse(inp: ModelInput, registry: Registry, rules: Sequence[RouteRule], **kw: object) -> ModelsResult:
    """:func:`analyse_batch` for one study."""
    return analyse_batch([inp], registry, rules, **kw)[0]  # type: ignore[arg-type]
