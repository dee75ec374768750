"""Research image datasets (PNG/JPEG: ChestX-ray14, CheXpert, MIMIC-CXR-JPG style) into the image models.

Such files carry no DICOM header, so the manifest row supplies what one would
(view, age, sex, modality, body part), and the file becomes the same
:class:`models.protocol.ModelInput` the pipeline builds from DICOM images. It
is never written back as DICOM, nor indexed as a study: its cohort row is the
only output.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image as PILImage
from PIL import UnidentifiedImageError

from core.errors import IngestError
from core.identifiers import derive_uid
from core.records import Image, Sex
from models.protocol import ClinicalContext, ModelInput

#: File name endings of the research image formats read here.
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg"})
_VIEWS = {"PA", "AP", "LL", "RL", "LATERAL", "LAT"}


def is_research_image(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def image_uid(uid_root: str, path: Path) -> str:
    """A stable UID for the image from its content (the same file gives the same UID wherever it lies)."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return derive_uid(uid_root, "batch-image", digest)


def read_pixels(path: Path) -> np.ndarray:
    """Grey pixels (8 or 16 bit) of a PNG/JPEG; RGB files are converted to luminance."""
    try:
        with PILImage.open(path) as im:
            im.load()
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(im, dtype=np.uint16 if im.mode.startswith("I;16") else np.int32)
            else:
                arr = np.asarray(im.convert("L"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise IngestError(f"not a readable PNG/JPEG image ({type(exc).__name__})", source=str(path)) from None
    if arr.ndim != 2 or arr.size == 0:
        raise IngestError(f"expected a 2-D grey image, got shape {arr.shape}", source=str(path))
    return arr


def _float(meta: Mapping[str, Any], key: str) -> float | None:
    value = meta.get(key)
    if value is None or value == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise IngestError(f"manifest column {key!r}: expected a number, got {value!r}") from None


def manifest_view(meta: Mapping[str, Any]) -> str | None:
    for key in ("view", "view_position", "ViewPosition", "Frontal/Lateral", "AP/PA"):
        value = str(meta.get(key) or "").strip().upper()
        if value in _VIEWS:
            return "LL" if value in ("LAT", "LATERAL") else value
    return None


def manifest_sex(meta: Mapping[str, Any]) -> Sex:
    return Sex.from_dicom(str(meta.get("sex") or meta.get("patient_sex") or "U"))


def image_model_input(path: Path, meta: Mapping[str, Any], uid_root: str) -> ModelInput:
    """The model input for one research image, its header supplied by the manifest row."""
    pixels = read_pixels(path)
    lo, hi = float(pixels.min()), float(pixels.max())
    window = ((hi + lo) / 2, max(hi - lo, 1.0))
    image = Image(pixels=pixels, view_position=manifest_view(meta), window=window)
    sex = manifest_sex(meta)
    age = _float(meta, "age") if "age" in meta else _float(meta, "patient_age")
    return ModelInput(
        study_instance_uid=image_uid(uid_root, path),
        modality=str(meta.get("modality") or "DX").upper(),
        body_part=str(meta.get("body_part") or "CHEST").upper(),
        images=(image,),
        context=ClinicalContext(
            technique=f"research image ({path.suffix.lower().lstrip('.')}), header from the manifest",
            patient_age_years=age,
            patient_sex=None if sex is Sex.UNKNOWN else sex.value,
        ),
    )
