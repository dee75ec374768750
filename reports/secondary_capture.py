"""Secondary Capture images of the ECG printout and key images, with a burned-in AI banner.

Any PACS viewer shows an SC image, so this is how a reader who never opens the
SR still sees the AI result, and cannot mistake it for a diagnostic image: the
banner "AI draft — not for diagnosis" is burned into the pixels (and
BurnedInAnnotation is YES) until a clinician signs.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import highdicom as hd
import numpy as np
import numpy.typing as npt
from PIL import Image as PILImage
from PIL import ImageDraw, ImageFont
from pydicom.dataset import Dataset

from core.errors import ReportError
from core.records import DraftReport, Image, ReportStatus, Study
from reports import _dicom
from reports.context import ReportContext

PURPOSE = "sc"
SOP_CLASS_UID = "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture Image Storage
DRAFT_BANNER = "AI draft — not for diagnosis"
_BANNER_FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"
_BANNER_TEXT: dict[ReportStatus, str] = {
    ReportStatus.PRELIMINARY: DRAFT_BANNER,
    ReportStatus.FINAL: "AI-assisted result — signed by a clinician",
    ReportStatus.AMENDED: "AI-assisted result — amended and signed",
    ReportStatus.ENTERED_IN_ERROR: "WITHDRAWN — entered in error",
}


def _to_rgb8(image: Image) -> npt.NDArray[np.uint8]:
    """Window a grey image to 8 bits (inverting MONOCHROME1) or drop alpha from RGBA."""
    px = image.pixels
    if px.ndim == 3:
        if px.dtype == np.uint8:
            return np.ascontiguousarray(px[..., :3])
        f = px[..., :3].astype(np.float64)
        lo, hi = float(f.min()), float(f.max())
        return np.ascontiguousarray(((f - lo) / max(hi - lo, 1e-9) * 255.0).round().astype(np.uint8))
    data = px.astype(np.float64)
    if image.window is not None:
        center, width = image.window
        lo, hi = center - width / 2.0, center + width / 2.0
    else:
        lo, hi = float(data.min()), float(data.max())
    grey = np.clip((data - lo) / max(hi - lo, 1e-9), 0.0, 1.0) * 255.0
    if image.photometric == "MONOCHROME1":
        grey = 255.0 - grey
    g8 = grey.round().astype(np.uint8)
    return np.ascontiguousarray(np.stack([g8, g8, g8], axis=-1))


def _png_to_rgb8(png: bytes) -> npt.NDArray[np.uint8]:
    """Decode a PNG (the ECG printout) to RGB.

    Raises
    ------
    ReportError
        When the bytes are not a decodable image.
    """
    try:
        with PILImage.open(io.BytesIO(png)) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    except Exception as exc:
        raise ReportError(f"secondary capture: the ECG printout is not a readable image ({exc})") from exc


def _burn_banner(rgb: npt.NDArray[np.uint8], text: str, *, draft: bool) -> npt.NDArray[np.uint8]:
    """A band above the image with ``text`` (red for drafts), so it can never be cropped off by windowing."""
    h, w, _ = rgb.shape
    band = max(18, min(60, w // 22))
    canvas = PILImage.new("RGB", (w, h + band), (160, 0, 0) if draft else (30, 90, 40))
    canvas.paste(PILImage.fromarray(rgb, "RGB"), (0, band))
    draw = ImageDraw.Draw(canvas)
    size = max(10, int(band * 0.6))
    font: ImageFont.FreeTypeFont | ImageFont.ImageFont
    try:
        font = ImageFont.truetype(_BANNER_FONT, size)
    except OSError:  # no DejaVu: Pillow's own font lacks the em dash
        font, text = ImageFont.load_default(size=size), text.replace("—", "-")
    draw.text((6, band * 0.18), text, fill=(255, 255, 255), font=font)
    return np.asarray(canvas, dtype=np.uint8).copy()


def build_secondary_captures(
    report: DraftReport,
    study: Study,
    ctx: ReportContext,
    *,
    images: Sequence[Image] = (),
    ecg_printout_png: bytes | None = None,
) -> list[Dataset]:
    """One SC instance per key image (and one for the ECG printout), in a new series of the same study.

    Raises
    ------
    ReportError
        When there is nothing to capture or an input is not an image.
    """
    sources: list[npt.NDArray[np.uint8]] = []
    if ecg_printout_png is not None:
        sources.append(_png_to_rgb8(ecg_printout_png))
    sources += [_to_rgb8(im) for im in images]
    if not sources:
        raise ReportError("build_secondary_captures: no images and no ECG printout to capture")
    instances = _dicom.study_instances(study)
    text = _BANNER_TEXT[report.status]
    charset = _dicom.character_set(study, report, text)
    (ref,) = (
        _dicom.evidence_datasets(study, instances[:1], charset, ctx)
        if instances
        else (_dicom.study_dataset(study, charset, ctx),)
    )
    out: list[Dataset] = []
    series_uid = ctx.series_uid(report, PURPOSE)
    for n, rgb in enumerate(sources):
        pixels = _burn_banner(rgb, text, draft=report.status is ReportStatus.PRELIMINARY)
        sc = hd.sc.SCImage.from_ref_dataset(
            ref_dataset=ref,
            pixel_array=pixels,
            photometric_interpretation="RGB",
            bits_allocated=8,
            coordinate_system="PATIENT",
            series_instance_uid=series_uid,
            series_number=_dicom.SERIES_NUMBERS[PURPOSE],
            sop_instance_uid=ctx.uid(report.study_instance_uid, f"{PURPOSE}-{n}", report.version),
            instance_number=(report.version - 1) * 100 + n + 1,
            manufacturer=ctx.manufacturer,
            patient_orientation=("L", "F"),
            transfer_syntax_uid="1.2.840.10008.1.2.1",
        )
        sc.BurnedInAnnotation = "YES"
        sc.SeriesDescription = "mmdx AI result captures"
        sc.ImageComments = text
        sc.ConversionType = "WSD"
        sc.Laterality = ""  # type 2C, unknown: dciodvfy cannot evaluate the condition for a capture
        sc.PatientOrientation = None  # type: ignore[assignment]  # type 2C: a rendered page or windowed capture has no patient orientation
        _dicom.set_times(sc, report, ctx)
        _dicom.set_equipment(sc, ctx)
        if charset:
            sc.SpecificCharacterSet = charset
        out.append(sc)
    return out


def build_secondary_capture_bytes(
    report: DraftReport,
    study: Study,
    ctx: ReportContext,
    *,
    images: Sequence[Image] = (),
    ecg_printout_png: bytes | None = None,
) -> list[bytes]:
    return [
        _dicom.to_bytes(ds)
        for ds in build_secondary_captures(report, study, ctx, images=images, ecg_printout_png=ecg_printout_png)
    ]
