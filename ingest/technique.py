"""What was acquired and how, from the DICOM header: the Technique section of a draft without models.

Only acquisition parameters are read (no demographics), so the text can go into a report and a log.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.errors import InvalidDicomError

from core.errors import IngestError


@dataclass(frozen=True, slots=True)
class Technique:
    """Acquisition parameters of one series (None where the header does not say)."""

    modality: str
    images: int
    body_part: str | None = None
    series_description: str | None = None
    protocol_name: str | None = None
    view_position: str | None = None
    kvp: float | None = None
    exposure_mas: float | None = None
    slice_thickness_mm: float | None = None
    ctdi_vol_mgy: float | None = None
    contrast_agent: str | None = None

    def sentence(self) -> str:
        """One plain sentence for the report."""
        what = " ".join(x for x in (self.modality, self.body_part, self.view_position) if x)
        parts = [f"{what}: {self.images} image{'s' if self.images != 1 else ''}"]
        if self.series_description:
            parts.append(f"series '{self.series_description}'")
        if self.slice_thickness_mm is not None:
            parts.append(f"slice thickness {self.slice_thickness_mm:g} mm")
        if self.kvp is not None:
            parts.append(f"{self.kvp:g} kVp")
        if self.exposure_mas is not None:
            parts.append(f"{self.exposure_mas:g} mAs")
        if self.ctdi_vol_mgy is not None:
            parts.append(f"CTDIvol {self.ctdi_vol_mgy:g} mGy")
        parts.append(f"contrast: {self.contrast_agent}" if self.contrast_agent else "no contrast agent recorded")
        return ", ".join(parts) + "."


def _float(value: object) -> float | None:
    try:
        return float(value) if value not in (None, "") else None  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _text(value: object) -> str | None:
    text = str(value).strip() if value is not None else ""
    return text or None


def series_technique(paths: Sequence[Path]) -> Technique:
    """Read the first object of a series (header only) and describe its acquisition."""
    if not paths:
        raise IngestError("series_technique: expected at least one file")
    try:
        ds = pydicom.dcmread(paths[0], stop_before_pixels=True)
    except (InvalidDicomError, OSError, ValueError) as exc:
        raise IngestError(f"cannot read the header: {exc}", source=str(paths[0])) from None
    exposure = _float(ds.get("Exposure")) or _float(ds.get("ExposureInuAs"))
    if exposure is not None and "ExposureInuAs" in ds and "Exposure" not in ds:
        exposure /= 1000.0
    return Technique(
        modality=str(ds.get("Modality", "OT")),
        images=len(paths),
        body_part=_text(ds.get("BodyPartExamined")),
        series_description=_text(ds.get("SeriesDescription")),
        protocol_name=_text(ds.get("ProtocolName")),
        view_position=_text(ds.get("ViewPosition")),
        kvp=_float(ds.get("KVP")),
        exposure_mas=exposure,
        slice_thickness_mm=_float(ds.get("SliceThickness")) if ds.get("Modality") in ("CT", "MR", "PT") else None,
        ctdi_vol_mgy=_float(ds.get("CTDIvol")),
        contrast_agent=_text(ds.get("ContrastBolusAgent")),
    )
