"""Display windows: presets per modality and body part, and window -> 8-bit rendering.

Pure functions over numpy arrays.  A window is ``(center, width)`` in the
units of the modality-LUT output (Hounsfield units for CT), applied with the
DICOM PS3.3 C.11.2.1.2.1 linear function so that a model sees the same grey
levels a PACS viewer would show.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

from core.errors import IngestError

#: Named windows (center, width).  Values are the usual radiology defaults.
WINDOW_PRESETS: Final[dict[str, tuple[float, float]]] = {
    "brain": (40.0, 80.0),
    "subdural": (75.0, 215.0),
    "stroke": (40.0, 40.0),
    "bone": (400.0, 1800.0),
    "lung": (-600.0, 1500.0),
    "mediastinum": (40.0, 400.0),
    "abdomen": (40.0, 400.0),
    "liver": (60.0, 160.0),
}

#: CT body parts (BodyPartExamined, upper case) to the preset used when the header has no window.
#: Chest uses the mediastinal window by default; ``lung`` is available by name.
_CT_BODY_PART_PRESET: Final[dict[str, str]] = {
    "HEAD": "brain",
    "BRAIN": "brain",
    "SKULL": "bone",
    "CHEST": "mediastinum",
    "THORAX": "mediastinum",
    "LUNG": "lung",
    "ABDOMEN": "abdomen",
    "PELVIS": "abdomen",
    "LIVER": "liver",
    "NECK": "mediastinum",
    "SPINE": "bone",
    "CSPINE": "bone",
    "TSPINE": "bone",
    "LSPINE": "bone",
}


def preset_window(modality: str | None, body_part: str | None) -> tuple[float, float] | None:
    """The preset window for a CT body part, or None where no fixed window makes sense.

    Only CT has calibrated units (HU), so only CT gets a fixed preset; other
    modalities fall back to a window computed from the pixel data
    (:func:`auto_window`).
    """
    if (modality or "").upper() != "CT":
        return None
    name = _CT_BODY_PART_PRESET.get((body_part or "").upper().replace(" ", ""), "abdomen")
    return WINDOW_PRESETS[name]


def auto_window(pixels: npt.NDArray[np.generic], low_pct: float = 0.5, high_pct: float = 99.5) -> tuple[float, float]:
    """A window spanning the ``low_pct``..``high_pct`` percentiles of the data.

    Percentiles rather than min/max so that a few hot pixels (burned-in text,
    metal) do not compress the anatomy into a few grey levels.
    """
    if pixels.size == 0:
        raise IngestError("cannot compute a window of an empty image")
    flat = np.asarray(pixels).reshape(-1)
    # a regular subsample of at most ~16k values: percentiles of an image do not need every pixel
    data = flat[:: max(1, flat.size // 16384)].astype(np.float64)
    lo, hi = np.percentile(data, [low_pct, high_pct])
    lo_f, hi_f = float(lo), float(hi)
    if not hi_f > lo_f:
        lo_f, hi_f = float(np.min(flat)), float(np.max(flat))
    width = max(hi_f - lo_f, 1.0)
    return (lo_f + hi_f) / 2.0, width


def apply_window(
    pixels: npt.NDArray[np.generic], center: float, width: float, out_max: float = 255.0
) -> npt.NDArray[np.float32]:
    """Map values through the DICOM linear VOI function to ``0..out_max`` (float32).

    PS3.3 C.11.2.1.2.1: below ``c - 0.5 - (w-1)/2`` -> 0, above ``c - 0.5 + (w-1)/2`` -> max,
    linear in between.  Monotonic non-decreasing in the input.
    """
    if not width >= 1.0:
        raise IngestError(f"window width must be >= 1, got {width!r}")
    x = np.asarray(pixels, dtype=np.float32)
    scale = np.float32(out_max / (width - 1.0)) if width > 1.0 else np.float32(0.0)
    if width > 1.0:
        y = (x - np.float32(center - 0.5)) * scale + np.float32(out_max / 2.0)
    else:
        y = np.where(x > center - 0.5, np.float32(out_max), np.float32(0.0)).astype(np.float32)
    np.clip(y, 0.0, out_max, out=y)
    return y


def window_array_to_uint8(pixels: npt.NDArray[np.generic], window: tuple[float, float]) -> npt.NDArray[np.uint8]:
    """Window a grey array to uint8 (0..255), rounding to nearest."""
    center, width = window
    y = apply_window(pixels, center, max(float(width), 1.0))
    return np.rint(y).astype(np.uint8)
