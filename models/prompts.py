"""Chat prompts per modality and body part, with the clinical context.

A prompt is a list of chat turns in the Hugging Face multimodal format
(``{"role": "user", "content": [{"type": "image"}, {"type": "text", ...}]}``);
local backends render it with the model's own chat template, the remote
backend turns the image parts into base64 ``image_url`` parts.  The schema
instruction of :mod:`models.structured` is always appended, so every template
asks for the same checkable JSON.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from core.errors import ModelError
from models.preprocess import montage, to_rgb_uint8
from models.protocol import ModelInput
from models.structured import chest_labels_apply, schema_instruction

TEMPLATES: dict[str, str] = {
    "cxr": (
        "You are drafting a chest radiograph report for a radiologist to check. "
        "Views: {views}. Describe lungs, pleura, heart size, mediastinum, bones and devices."
    ),
    "ct": (
        "You are drafting a {modality} report ({body_part}) for a radiologist to check. "
        "The image is a montage of key axial slices, top-left to bottom-right = cranial to caudal."
    ),
    "mr": (
        "You are drafting an MR report ({body_part}) for a radiologist to check. "
        "The image is a montage of key slices of one series."
    ),
    "ecg": (
        "You are drafting a 12-lead ECG interpretation for a cardiologist to check. "
        "The image is the printout; the device-independent measurements are: {ecg_measurements}."
    ),
    "generic": "You are drafting a {modality} report ({body_part}) for a clinician to check.",
}


@dataclass(frozen=True, slots=True)
class Prompt:
    """Chat turns, the images they refer to (in order), and a hash for provenance."""

    messages: list[dict[str, Any]]
    images: tuple[npt.NDArray[np.uint8], ...]
    template: str

    @property
    def template_name(self) -> str:
        """The built-in template's name, else ``custom sha256:<hex>`` of the configured text (for provenance)."""
        name = next((k for k, v in TEMPLATES.items() if v == self.template), None)
        return name or "custom sha256:" + hashlib.sha256(self.template.encode()).hexdigest()

    @property
    def sha256(self) -> str:
        h = hashlib.sha256(json.dumps(self.messages, sort_keys=True, default=str).encode())
        for img in self.images:
            h.update(str(img.shape).encode())
        return h.hexdigest()


def prompt_options(options: dict[str, Any]) -> dict[str, Any]:
    """``build_prompt`` keyword arguments from a model spec's ``options``.

    ``max_images`` (default 2) and ``volume_windows`` (a list of [center, width],
    e.g. ``[[-600, 1500], [40, 400]]`` for lung and mediastinal CT windows).
    """
    wins = options.get("volume_windows", ())
    try:
        windows = tuple((float(c), float(w)) for c, w in wins)
    except (TypeError, ValueError):
        raise ModelError(f"options.volume_windows must be a list of [center, width] pairs, got {wins!r}") from None
    return {"max_images": int(options.get("max_images", 2)), "volume_windows": windows}


def template_for(inp: ModelInput, configured: str | None = None) -> str:
    """Choose the template: the configured one (a name or a text file), else by modality/body part."""
    if configured:
        if configured in TEMPLATES:
            return TEMPLATES[configured]
        path = Path(configured)
        if path.is_file():
            return path.read_text(encoding="utf-8")
        raise ModelError(f"prompt_template {configured!r}: neither a built-in template {sorted(TEMPLATES)} nor a file")
    mod = inp.modality.upper()
    if inp.ecg is not None or inp.ecg_printout is not None or mod == "ECG":
        return TEMPLATES["ecg"]
    if mod in ("CR", "DX") and (inp.body_part or "CHEST").upper() in ("CHEST", "THORAX", "LUNG"):
        return TEMPLATES["cxr"]
    if mod == "CT":
        return TEMPLATES["ct"]
    if mod == "MR":
        return TEMPLATES["mr"]
    return TEMPLATES["generic"]


def _context_text(inp: ModelInput) -> str:
    ctx = inp.context
    parts = []
    if ctx.patient_age_years is not None or ctx.patient_sex:
        parts.append(f"Patient: {ctx.patient_age_years or '?'} years, sex {ctx.patient_sex or 'U'}.")
    parts.append(f"Indication: {ctx.indication or 'not given'}.")
    if ctx.technique:
        parts.append(f"Technique: {ctx.technique}.")
    if ctx.prior_impressions:
        parts.append("Prior impressions: " + " | ".join(ctx.prior_impressions))
    else:
        parts.append("No prior study for comparison.")
    return " ".join(parts)


def model_images(
    inp: ModelInput, *, max_images: int = 2, volume_windows: Sequence[tuple[float, float]] = ()
) -> tuple[npt.NDArray[np.uint8], ...]:
    """The images a VLM sees: ECG printout, else the study's views (PA before lateral), else a montage."""
    if inp.ecg_printout is not None:
        return (np.ascontiguousarray(inp.ecg_printout, dtype=np.uint8),)
    if inp.images:
        order = {"PA": 0, "AP": 1, "LL": 2, "LATERAL": 2, "RL": 3}
        views = sorted(inp.images, key=lambda im: order.get((im.view_position or "").upper(), 9))
        return tuple(to_rgb_uint8(im) for im in views[:max_images])
    if inp.volume is not None:
        # one montage per configured window (CT: lung + mediastinum), else the volume's own window
        wins: list[tuple[float, float] | None] = list(volume_windows[:max_images])
        if not wins:
            wins = [None]
        return tuple(montage(inp.volume, window=w) for w in wins)
    raise ModelError(f"study {inp.study_instance_uid}: no image, volume or ECG printout to show the model")


def build_prompt(
    inp: ModelInput,
    configured_template: str | None = None,
    *,
    max_images: int = 2,
    volume_windows: Sequence[tuple[float, float]] = (),
) -> Prompt:
    """The drafting prompt of one study."""
    template = template_for(inp, configured_template)
    images = model_images(inp, max_images=max_images, volume_windows=volume_windows)
    fields = {
        "modality": inp.modality,
        "body_part": (inp.body_part or "unspecified").lower(),
        "views": ", ".join(inp.view_positions) or "unspecified",
        "ecg_measurements": inp.ecg_measurements_text or "not available",
    }
    try:
        instruction = template.format(**fields)
    except (KeyError, IndexError) as exc:
        raise ModelError(f"prompt template uses an unknown field {exc}; known: {sorted(fields)}") from None
    coded = chest_labels_apply(inp.modality, inp.body_part)
    text = f"{instruction}\n{_context_text(inp)}\n{schema_instruction(coded=coded)}"
    content: list[dict[str, Any]] = [{"type": "image"} for _ in images]
    content.append({"type": "text", "text": text})
    return Prompt(messages=[{"role": "user", "content": content}], images=images, template=template)
