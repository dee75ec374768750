"""Which models see which study: routing rules, cheap model first, escalation policy.

``settings.model_routing`` is a list of rules (modality, body part, kind ->
model names); every rule that matches a series contributes its models.
Within the chosen models the cheap ones (classifiers) run first; a drafting
VLM runs when its ``options.escalate`` policy says so:

* ``always`` - every routed study;
* ``abnormal`` - a triage classifier put a finding above its threshold;
* ``abnormal_or_uncertain`` (default) - or a score is within ``options.margin``
  (0.1) below a threshold, or no triage model ran at all;
* ``never`` - triage only.

Only suitable series reach a model: a classifier gets CR/DX frontal views,
an ECG model ECG waveforms, a VLM the series its rule matched.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from core.config import ModelSpec, RouteRule
from models.protocol import ModelOutput

CHEAP_BACKENDS = ("cxr_classifier", "ecg_cnn")
DRAFTING_BACKENDS = ("local_vlm", "remote_vlm")
ECG_MODALITIES = ("ECG", "HD")


def _match(rule: RouteRule, modality: str, body_part: str | None) -> bool:
    kind = "ecg" if modality.upper() in ECG_MODALITIES else "imaging"
    if rule.kind is not None and rule.kind != kind:
        return False
    if rule.modality is not None and rule.modality.upper() != modality.upper():
        return False
    return rule.body_part is None or rule.body_part.upper() == (body_part or "").upper().replace(" ", "")


def models_for(rules: Sequence[RouteRule], modality: str, body_part: str | None) -> list[str]:
    """Model names of every matching rule, in rule order, without duplicates."""
    names: list[str] = []
    for rule in rules:
        if _match(rule, modality, body_part):
            names += [m for m in rule.models if m not in names]
    return names


def suits(spec: ModelSpec, modality: str, body_part: str | None) -> bool:
    """Whether a model takes data of this modality and body part (its ``options.modalities``, its backend)."""
    mod = modality.upper()
    allowed = spec.options.get("modalities")
    if allowed and mod not in [m.upper() for m in allowed]:
        return False
    if spec.backend == "cxr_classifier":
        return mod in ("CR", "DX") and (body_part or "CHEST").upper() in ("CHEST", "THORAX", "LUNG")
    if spec.backend == "ecg_cnn":
        return mod in ECG_MODALITIES
    return True


def ecg_models_for(rules: Sequence[RouteRule], specs: Mapping[str, ModelSpec]) -> list[str]:
    """Configured models that read ECG studies: the ECG classifier wherever a rule routes ECGs to it, a
    vision-language model (it reads the printout) only from a rule that names ECGs (``kind: ecg`` or
    ``modality: ECG``) and when its ``options.modalities`` allow ECG: a catch-all rule sends no ECG to a
    radiology VLM."""
    explicit = [r for r in rules if r.kind == "ecg" or (r.modality or "").upper() in ECG_MODALITIES]
    names = []
    for name in models_for(rules, "ECG", None):
        spec = specs.get(name)
        if spec is None or not suits(spec, "ECG", None):
            continue
        if spec.backend == "ecg_cnn" or (
            spec.backend in DRAFTING_BACKENDS and name in models_for(explicit, "ECG", None)
        ):
            names.append(name)
    return names


def should_escalate(
    spec: ModelSpec, triage: Sequence[ModelOutput], thresholds: Mapping[str, float] | None = None
) -> tuple[bool, str]:
    """Whether a drafting model runs after triage, and why (the reason goes to provenance)."""
    policy = str(spec.options.get("escalate", "abnormal_or_uncertain"))
    margin = float(spec.options.get("margin", 0.1))
    if policy == "always":
        return True, "policy: always"
    if policy == "never":
        return False, "policy: never"
    ran = [o for o in triage if o.ok]
    if not ran:
        return policy == "abnormal_or_uncertain", "no triage result"
    thr = thresholds or {}
    for out in ran:
        if out.findings:
            return True, f"{out.producer.name}: abnormal triage ({len(out.findings)} finding(s))"
    if policy == "abnormal_or_uncertain":
        for out in ran:
            for label, p in out.probabilities.items():
                t = thr.get(label, thr.get("default", 0.5))
                if t - margin <= p < t:
                    return True, f"{out.producer.name}: uncertain triage ({label} {p:.2f} near {t:.2f})"
    return False, "triage normal"
