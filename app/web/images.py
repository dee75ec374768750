"""Key images for the review page: one picture per image series, windowed by a preset, as PNG."""

from __future__ import annotations

import io

import numpy as np
import numpy.typing as npt
from PIL import Image as PILImage

from core.records import Image, Study

#: name -> (center, width); HU presets for CT, the image's own window otherwise.
CT_PRESETS: dict[str, tuple[float, float]] = {
    "lung": (-600.0, 1500.0),
    "mediastinum": (40.0, 400.0),
    "bone": (400.0, 1800.0),
    "brain": (40.0, 80.0),
}
GENERIC_PRESETS = ("default", "full", "contrast")
MAX_SIDE = 768
IMAGE_MODALITIES = frozenset({"CR", "DX", "MG", "CT", "MR", "US", "XA", "RF", "PT", "NM", "OT", "SC"})


def presets_for(modality: str) -> tuple[str, ...]:
    return (*GENERIC_PRESETS, *CT_PRESETS) if modality == "CT" else GENERIC_PRESETS


def key_instances(study: Study, limit: int = 4) -> list[tuple[str, str, str]]:
    """(series modality, SOP Instance UID, path) of one representative instance per image series."""
    out = []
    for series in study.series:
        if series.modality not in IMAGE_MODALITIES or not series.instances:
            continue
        inst = series.instances[len(series.instances) // 2]
        out.append((series.modality, inst.sop_instance_uid, str(inst.path)))
    return out[:limit]


def _window(pixels: npt.NDArray[np.floating], image: Image, preset: str) -> tuple[float, float]:
    if preset in CT_PRESETS:
        return CT_PRESETS[preset]
    if preset == "full":
        lo, hi = float(pixels.min()), float(pixels.max())
    elif preset == "contrast":
        lo, hi = (float(v) for v in np.percentile(pixels, [10, 90]))
    elif image.window is not None:
        return image.window
    else:
        lo, hi = (float(v) for v in np.percentile(pixels, [1, 99]))
    return (lo + hi) / 2, max(hi - lo, 1.0)


def render_png(image: Image, preset: str = "default") -> bytes:
    """The image through the preset's window, scaled to at most MAX_SIDE pixels, as PNG bytes."""
    if image.pixels.ndim == 3:
        pil = PILImage.fromarray(np.asarray(image.pixels[..., :3], dtype=np.uint8))
    else:
        pixels = np.asarray(image.pixels, dtype=np.float32)
        center, width = _window(pixels, image, preset)
        low = center - width / 2
        grey = np.clip((pixels - low) / width * 255.0, 0, 255).astype(np.uint8)
        if image.photometric == "MONOCHROME1":
            grey = 255 - grey
        pil = PILImage.fromarray(grey)
    pil.thumbnail((MAX_SIDE, MAX_SIDE))
    buf = io.BytesIO()
    pil.save(buf, format="PNG")
    return buf.getvalue()
