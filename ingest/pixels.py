"""DICOM pixels to :class:`core.Image` records with geometry and display window.

The chain follows the DICOM grayscale pipeline (PS3.4 N.2): decode (any
installed decoder: pylibjpeg, openjpeg, pyjpegls, gdcm, RLE), photometric
conversion to RGB (YBR_* and PALETTE COLOR), modality LUT (rescale
slope/intercept or the Modality LUT Sequence), and MONOCHROME1 inversion so that
in every Image a higher value means brighter.  The VOI stage is not baked into
the pixels: the header's window (or a preset / data-derived one) travels in
``Image.window`` and :func:`window_to_uint8` applies it for models and
renderers.

Enhanced multi-frame objects keep per-frame rescale, spacing, window and
position in functional groups; :func:`frame_attributes` reads them (per-frame
first, then shared) so that the rest of the code never sees the difference.
"""

from __future__ import annotations

import logging
import math
import os
import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels.decoders.base import get_decoder
from pydicom.pixels.processing import apply_color_lut, apply_modality_lut
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from core.errors import IngestError
from core.records import Image
from ingest.windowing import auto_window, preset_window, window_array_to_uint8

#: A DICOM object: a file path or an already-read dataset.
Source = str | os.PathLike[str] | Dataset


class RedactPydicomValues(logging.Filter):
    """Redact quoted element values from pydicom's log records.

    pydicom logs "Invalid value for VR DA: '1961-03-17'" when it meets a
    malformed value — a birth date or a name in our logs.  This keeps the
    message and drops the value.
    """

    _QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self._QUOTED.sub("'<redacted>'", record.getMessage())
        record.args = ()
        return True


def install_log_redaction() -> None:
    """Attach :class:`RedactPydicomValues` to the ``pydicom`` logger once."""
    logger = logging.getLogger("pydicom")
    if not any(isinstance(f, RedactPydicomValues) for f in logger.filters):
        logger.addFilter(RedactPydicomValues())


install_log_redaction()

_UID_RE = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")

#: ViewCodeSequence meanings (CID 4010) to ViewPosition values.
_VIEW_MEANINGS: tuple[tuple[str, str], ...] = (
    ("postero-anterior", "PA"),
    ("posteroanterior", "PA"),
    ("antero-posterior", "AP"),
    ("anteroposterior", "AP"),
    ("left lateral", "LL"),
    ("right lateral", "RL"),
    ("lateral", "LATERAL"),
)


# --------------------------------------------------------------------------- reading


def source_label(src: Source) -> str:
    """A PHI-free name for a source in error messages: its path or SOP Instance UID."""
    if isinstance(src, Dataset):
        filename = getattr(src, "filename", None)
        if isinstance(filename, str) and filename:
            return filename
        uid = str(src.get("SOPInstanceUID", "") or "")
        return f"dataset {uid}" if uid else "dataset"
    return os.fspath(src)


def read_dataset(src: Source, *, stop_before_pixels: bool = False) -> Dataset:
    """Read a DICOM file (or pass a dataset through), with a clear IngestError on failure.

    Files without a File Meta header are accepted when they parse, and the
    transfer syntax is then inferred from how pydicom read them, because old
    archives hold many such files and their pixels are fine.
    """
    if isinstance(src, Dataset):
        return src
    label = os.fspath(src)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = dcmread(label, force=True, stop_before_pixels=stop_before_pixels)
    except FileNotFoundError:
        raise IngestError("file not found", source=label) from None
    except IsADirectoryError:
        raise IngestError("is a directory, expected a DICOM file", source=label) from None
    except Exception as exc:  # pydicom raises many types on malformed input
        raise IngestError(f"not a readable DICOM file ({type(exc).__name__}: {exc})", source=label) from None
    if len(ds) == 0:
        raise IngestError("no DICOM data elements could be parsed (truncated or not DICOM)", source=label)
    _ensure_transfer_syntax(ds)
    return ds


def _ensure_transfer_syntax(ds: Dataset) -> None:
    meta = getattr(ds, "file_meta", None)
    if meta is not None and meta.get("TransferSyntaxUID"):
        return
    implicit, little = getattr(ds, "original_encoding", (None, None))
    if implicit is None:
        return
    if meta is None:
        ds.file_meta = FileMetaDataset()
    if implicit:
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    else:
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian if little else ExplicitVRBigEndian


def number_of_frames(ds: Dataset, label: str) -> int:
    """(0028,0008) Number of Frames as an int (1 when absent)."""
    with warnings.catch_warnings():  # an invalid IS warns first; the IngestError below says it better
        warnings.simplefilter("ignore")
        raw = ds.get("NumberOfFrames", 1)
    try:
        n = int(raw if raw not in (None, "") else 1)
    except (TypeError, ValueError):
        raise IngestError(f"(0028,0008) Number of Frames: expected an integer, got {raw!r}", source=label) from None
    if n < 1:
        raise IngestError(f"(0028,0008) Number of Frames: expected >= 1, got {n}", source=label)
    return n


_REQUIRED_PIXEL_TAGS: tuple[tuple[str, str], ...] = (
    ("Rows", "(0028,0010)"),
    ("Columns", "(0028,0011)"),
    ("BitsAllocated", "(0028,0100)"),
    ("SamplesPerPixel", "(0028,0002)"),
    ("PhotometricInterpretation", "(0028,0004)"),
)


def decode_pixels(ds: Dataset, label: str, frame: int | None = None) -> tuple[npt.NDArray[Any], str]:
    """Decode stored values: all frames (frames first) or one frame, and the photometric after conversion.

    YBR_FULL / YBR_FULL_422 / YBR_RCT / YBR_ICT come back as RGB (the decoders
    convert), so callers only meet MONOCHROME1/2, RGB and PALETTE COLOR.
    """
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise IngestError("no (7FE0,0010) Pixel Data", source=label)
    for keyword, tag in _REQUIRED_PIXEL_TAGS:
        if ds.get(keyword) in (None, ""):
            raise IngestError(f"{tag} {keyword} is missing; needed to decode Pixel Data", source=label)
    n = number_of_frames(ds, label)
    if frame is not None and not 0 <= frame < n:
        raise IngestError(f"frame {frame} out of range: object has {n} frame(s)", source=label)
    ts = str(ds.file_meta.get("TransferSyntaxUID", "")) if hasattr(ds, "file_meta") else ""
    if not ts:
        raise IngestError("(0002,0010) Transfer Syntax UID is missing and cannot be inferred", source=label)
    try:
        decoder = get_decoder(ts)
    except NotImplementedError:
        raise IngestError(
            f"(0002,0010) Transfer Syntax UID {ts} is not supported by any installed pixel decoder", source=label
        ) from None
    if not decoder.is_available:
        raise IngestError(f"no installed plugin can decode transfer syntax {ts}", source=label)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            arr, meta = decoder.as_array(ds, index=frame)
    except Exception as exc:
        text = " ".join(str(exc).split()) or type(exc).__name__  # multi-line plugin reports on one line
        if len(text) > 300:
            text = text[:297] + "..."
        raise IngestError(f"cannot decode (7FE0,0010) Pixel Data ({ts}): {text}", source=label) from None
    photometric = str(meta.get("photometric_interpretation", ds.PhotometricInterpretation)).strip()
    samples = int(ds.SamplesPerPixel)
    per_frame_ndim = 2 if samples == 1 else 3
    if frame is None and arr.ndim == per_frame_ndim:
        arr = arr[np.newaxis]
    return arr, photometric


# --------------------------------------------------------------------------- per-frame attributes


@dataclass(frozen=True, slots=True)
class FrameAttributes:
    """What the pipeline needs of one frame, from classic or enhanced headers."""

    slope: float | None
    intercept: float | None
    pixel_spacing: tuple[float, float] | None
    window: tuple[float, float] | None
    position: tuple[float, float, float] | None
    orientation: tuple[float, float, float, float, float, float] | None


def _fg_item(ds: Dataset, frame: int, keyword: str) -> Dataset | None:
    """First item of a functional group macro for ``frame``: per-frame first, then shared."""
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame is not None and frame < len(per_frame):
        seq = per_frame[frame].get(keyword)
        if seq:
            item: Dataset = seq[0]
            return item
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared:
        seq = shared[0].get(keyword)
        if seq:
            item = seq[0]
            return item
    return None


def _floats(value: Any, n: int, label: str, tag: str) -> tuple[float, ...] | None:
    if value is None or value == "":
        return None
    items = list(value) if isinstance(value, (list, tuple)) or hasattr(value, "__iter__") else [value]
    if isinstance(value, (str, bytes)):
        items = [value]
    try:
        out = tuple(float(v) for v in items[:n])
    except (TypeError, ValueError):
        raise IngestError(f"{tag}: expected {n} numbers, got {value!r}", source=label) from None
    if len(out) != n:
        raise IngestError(f"{tag}: expected {n} numbers, got {len(out)}", source=label)
    if not all(math.isfinite(v) for v in out):
        raise IngestError(f"{tag}: expected finite numbers, got {out}", source=label)
    return out


def _first(value: Any) -> Any:
    """First of a multi-valued element (WindowCenter may hold several windows)."""
    if value is None or isinstance(value, (str, bytes, int, float)):
        return value
    try:
        return value[0]
    except (TypeError, IndexError):
        return value


def _window(item: Dataset | None, label: str) -> tuple[float, float] | None:
    if item is None or item.get("WindowCenter") in (None, "") or item.get("WindowWidth") in (None, ""):
        return None
    try:
        center = float(_first(item.WindowCenter))
        width = float(_first(item.WindowWidth))
    except (TypeError, ValueError):
        raise IngestError(
            f"(0028,1050)/(0028,1051) Window Center/Width: expected numbers, got "
            f"{item.WindowCenter!r}/{item.WindowWidth!r}",
            source=label,
        ) from None
    if not (math.isfinite(center) and math.isfinite(width)) or width < 1:
        return None
    return center, width


def _positive_spacing(value: tuple[float, ...] | None) -> tuple[float, float] | None:
    if value is None or len(value) != 2 or not all(v > 0 for v in value):
        return None  # (0,0) is written by some modalities for "unknown"
    return value[0], value[1]


def frame_attributes(ds: Dataset, frame: int, label: str) -> FrameAttributes:
    """Rescale, spacing, window, position and orientation of one frame."""
    pvt = _fg_item(ds, frame, "PixelValueTransformationSequence")
    src_rescale = pvt if pvt is not None and "RescaleSlope" in pvt else ds
    slope = intercept = None
    if "RescaleSlope" in src_rescale and "RescaleIntercept" in src_rescale:
        slope_t = _floats(src_rescale.RescaleSlope, 1, label, "(0028,1053) Rescale Slope")
        icpt_t = _floats(src_rescale.RescaleIntercept, 1, label, "(0028,1052) Rescale Intercept")
        if slope_t is not None and icpt_t is not None:
            slope, intercept = slope_t[0], icpt_t[0]
    measures = _fg_item(ds, frame, "PixelMeasuresSequence")
    spacing_src = measures if measures is not None and "PixelSpacing" in measures else ds
    spacing = _positive_spacing(_floats(spacing_src.get("PixelSpacing"), 2, label, "(0028,0030) Pixel Spacing"))
    voi = _fg_item(ds, frame, "FrameVOILUTSequence")
    window = _window(voi, label) or _window(ds, label)
    plane_pos = _fg_item(ds, frame, "PlanePositionSequence")
    pos_src = plane_pos if plane_pos is not None else ds
    position = _floats(pos_src.get("ImagePositionPatient"), 3, label, "(0020,0032) Image Position (Patient)")
    plane_ori = _fg_item(ds, frame, "PlaneOrientationSequence")
    ori_src = plane_ori if plane_ori is not None else ds
    orientation = _floats(ori_src.get("ImageOrientationPatient"), 6, label, "(0020,0037) Image Orientation (Patient)")
    return FrameAttributes(
        slope=slope,
        intercept=intercept,
        pixel_spacing=spacing,
        window=window,
        position=position,  # type: ignore[arg-type]
        orientation=orientation,  # type: ignore[arg-type]
    )


# --------------------------------------------------------------------------- value transforms


def _stored_value_range(ds: Dataset) -> tuple[int, int]:
    """The range of stored values that (0028,0101) Bits Stored and Pixel Representation allow."""
    bits = int(ds.get("BitsStored") or ds.get("BitsAllocated") or 16)
    if int(ds.get("PixelRepresentation") or 0) == 1:
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return 0, 2**bits - 1


def modality_lut(
    stored: npt.NDArray[Any], ds: Dataset, attrs: FrameAttributes, out: npt.NDArray[np.float32] | None = None
) -> tuple[npt.NDArray[np.float32], tuple[float, float]]:
    """Stored values -> modality values (float32) and the modality-space range of possible values.

    Rescale is done in float32 directly (same result as pydicom's float64 path
    to float32 precision, at half the memory traffic); a Modality LUT Sequence
    goes through :func:`pydicom.pixels.apply_modality_lut`.
    """
    lo_s, hi_s = _stored_value_range(ds)
    if out is None:
        out = np.empty(stored.shape, dtype=np.float32)
    if attrs.slope is not None and attrs.intercept is not None:
        np.copyto(out, stored, casting="unsafe")
        if attrs.slope != 1.0:
            out *= np.float32(attrs.slope)
        if attrs.intercept != 0.0:
            out += np.float32(attrs.intercept)
        a, b = lo_s * attrs.slope + attrs.intercept, hi_s * attrs.slope + attrs.intercept
        return out, (min(a, b), max(a, b))
    if ds.get("ModalityLUTSequence"):
        np.copyto(out, apply_modality_lut(stored, ds), casting="unsafe")
        lut = np.asarray(apply_modality_lut(np.array([lo_s, hi_s], dtype=np.int64), ds))
        item = ds.ModalityLUTSequence[0]
        depth = int(item.LUTDescriptor[2])
        return out, (0.0, float(max(int(lut.max()), 2**depth - 1)))
    np.copyto(out, stored, casting="unsafe")
    return out, (float(lo_s), float(hi_s))


def _voi_lut_window(ds: Dataset) -> tuple[float, float] | None:
    """A linear window covering a VOI LUT Sequence's input domain (the record holds only a window)."""
    seq = ds.get("VOILUTSequence")
    if not seq:
        return None
    desc = seq[0].get("LUTDescriptor")
    if not desc or len(desc) < 2:
        return None
    n = int(desc[0]) or 65536
    first = int(desc[1])
    return first + n / 2.0, float(max(n, 2))


def view_position(ds: Dataset) -> str | None:
    """(0018,5101) View Position, else derived from the View Code Sequence meaning."""
    vp = str(ds.get("ViewPosition", "") or "").strip().upper()
    if vp:
        return vp
    seq = ds.get("ViewCodeSequence")
    if seq:
        meaning = str(seq[0].get("CodeMeaning", "") or "").lower()
        for text, value in _VIEW_MEANINGS:
            if text in meaning:
                return value
    return None


def pixel_spacing(ds: Dataset, attrs: FrameAttributes, label: str) -> tuple[tuple[float, float] | None, str | None]:
    """Pixel spacing in mm and a calibration note.

    ``PixelSpacing`` is in the patient plane ("patient", or the
    PixelSpacingCalibrationType when given).  ``ImagerPixelSpacing`` is at the
    detector: objects appear magnified by the beam divergence, so it is
    corrected by EstimatedRadiographicMagnificationFactor when present and
    otherwise flagged "detector (not corrected for magnification)".
    """
    if attrs.pixel_spacing is not None:
        cal = str(ds.get("PixelSpacingCalibrationType", "") or "").strip()
        return attrs.pixel_spacing, (f"patient ({cal.lower()})" if cal else "patient")
    imager = _positive_spacing(_floats(ds.get("ImagerPixelSpacing"), 2, label, "(0018,1164) Imager Pixel Spacing"))
    if imager is None:
        us = _ultrasound_spacing(ds)
        return (us, "ultrasound region calibration") if us is not None else (None, None)
    mag_raw = ds.get("EstimatedRadiographicMagnificationFactor")
    try:
        mag = float(mag_raw) if mag_raw not in (None, "") else None
    except (TypeError, ValueError):
        mag = None
    if mag is not None and mag > 0 and math.isfinite(mag):
        return (imager[0] / mag, imager[1] / mag), "detector corrected by estimated magnification"
    return imager, "detector (not corrected for magnification)"


def _ultrasound_spacing(ds: Dataset) -> tuple[float, float] | None:
    """Spacing from the Sequence of Ultrasound Regions when every region agrees and is in cm (units code 3).

    Ultrasound images rarely carry Pixel Spacing: the calibration is per region
    (Physical Delta X/Y).  Regions that disagree (a Doppler strip beside a
    B-mode image) give no single spacing, so None.
    """
    regions = ds.get("SequenceOfUltrasoundRegions")
    if not regions:
        return None
    found: set[tuple[float, float]] = set()
    for region in regions:
        try:
            units = (int(region.PhysicalUnitsXDirection), int(region.PhysicalUnitsYDirection))
            dx, dy = abs(float(region.PhysicalDeltaX)), abs(float(region.PhysicalDeltaY))
        except (AttributeError, TypeError, ValueError):
            return None
        if units != (3, 3) or not (dx > 0 and dy > 0):
            continue  # time or velocity axes (spectral Doppler): not a spatial calibration
        found.add((round(dy * 10.0, 9), round(dx * 10.0, 9)))  # cm -> mm, (row, column)
    return found.pop() if len(found) == 1 else None


def _sop_uid(ds: Dataset) -> str | None:
    uid = str(ds.get("SOPInstanceUID", "") or "").strip()
    return uid if uid and len(uid) <= 64 and _UID_RE.match(uid) else None


# --------------------------------------------------------------------------- images


def _readonly(arr: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """Hand a freshly made array to a record without the defensive copy a writeable one gets."""
    if arr.base is not None and not arr.flags.owndata:
        arr = np.array(arr)  # a view into a larger buffer (one frame of many): own it first
    arr.setflags(write=False)
    return arr


def _image_from_frame(ds: Dataset, stored: npt.NDArray[Any], photometric: str, frame: int, label: str) -> Image:
    """Build the Image of one decoded frame (stored values as decoded, photometric after decoding)."""
    attrs = frame_attributes(ds, frame, label)
    spacing, note = pixel_spacing(ds, attrs, label)
    common: dict[str, Any] = {
        "pixel_spacing_mm": spacing,
        "pixel_spacing_note": note,
        "view_position": view_position(ds),
        "sop_instance_uid": _sop_uid(ds),
        "frame": frame,
    }
    if photometric == "PALETTE COLOR":
        try:
            rgb = apply_color_lut(stored, ds)
        except Exception as exc:
            raise IngestError(f"(0028,1201..1203) Palette Color LUT cannot be applied: {exc}", source=label) from None
        return Image(pixels=_readonly(np.ascontiguousarray(rgb)), photometric="RGB", **common)
    if stored.ndim == 3:
        if photometric not in ("RGB", "YBR_FULL", "YBR_FULL_422"):
            raise IngestError(f"(0028,0004) Photometric Interpretation {photometric!r} is not supported", source=label)
        return Image(pixels=_readonly(stored), photometric="RGB", **common)
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise IngestError(
            f"(0028,0004) Photometric Interpretation {photometric!r} with one sample per pixel is not supported",
            source=label,
        )
    values, (lo, hi) = modality_lut(stored, ds, attrs)
    window = attrs.window or _voi_lut_window(ds)
    if photometric == "MONOCHROME1":
        # Mirror values and window within the modality range: higher = brighter in every Image.
        values = np.float32(lo + hi) - values
        if window is not None:
            window = (lo + hi - window[0], window[1])
    if window is None:
        window = preset_window(str(ds.get("Modality", "")), str(ds.get("BodyPartExamined", "") or ""))
    if window is None:
        window = auto_window(values)
    return Image(pixels=_readonly(values), photometric="MONOCHROME2", window=window, **common)


def load_image(src: Source, frame: int | None = None) -> Image:
    """One 2D image: ``frame`` of a multi-frame object, or the first frame.

    Raises
    ------
    IngestError
        Unreadable file, no or undecodable pixel data, unsupported photometric,
        malformed geometry tags; the message names the file and the tag.
    """
    label = source_label(src)
    ds = read_dataset(src)
    index = 0 if frame is None else frame
    stored, photometric = decode_pixels(ds, label, frame=index)
    return _image_from_frame(ds, stored, photometric, index, label)


def load_images(sources: Source | Iterable[Source]) -> list[Image]:
    """Every frame of every source as Images, in source then frame order."""
    items: Sequence[Source] = [sources] if isinstance(sources, (str, os.PathLike, Dataset)) else list(sources)
    images: list[Image] = []
    for src in items:
        label = source_label(src)
        ds = read_dataset(src)
        frames, photometric = decode_pixels(ds, label)
        for i in range(frames.shape[0]):
            images.append(_image_from_frame(ds, frames[i], photometric, i, label))
    return images


def window_to_uint8(image: Image, window: tuple[float, float] | None = None) -> npt.NDArray[np.uint8]:
    """The image as uint8 for a model input or a rendering.

    Grey images are windowed with ``window`` (or the image's own); RGB images
    are returned as 8-bit RGB (16-bit palettes scaled down).
    """
    if image.pixels.ndim == 3:
        px = image.pixels
        if px.dtype == np.uint8:
            return np.array(px, copy=True)
        top = float(np.iinfo(px.dtype.type).max) if np.issubdtype(px.dtype, np.integer) else float(px.max() or 1.0)  # type: ignore[type-var]
        scaled: npt.NDArray[np.uint8] = np.rint(px.astype(np.float32) * (255.0 / top)).clip(0, 255).astype(np.uint8)
        return scaled
    win = window or image.window or auto_window(image.pixels)
    return window_array_to_uint8(image.pixels, win)


def _voi_lut_table(ds: Dataset, label: str) -> tuple[npt.NDArray[np.int64], int, int] | None:
    """(LUT entries, first mapped value, bits per entry) of the first VOI LUT Sequence item."""
    seq = ds.get("VOILUTSequence")
    if not seq:
        return None
    item = seq[0]
    try:
        n, first, bits = (int(v) for v in item.LUTDescriptor)
    except (TypeError, ValueError, AttributeError):
        raise IngestError(
            "(0028,3002) LUT Descriptor of the VOI LUT Sequence: expected 3 numbers", source=label
        ) from None
    data = item.get("LUTData")
    if data is None:
        raise IngestError("(0028,3006) LUT Data of the VOI LUT Sequence is missing", source=label)
    if isinstance(data, bytes):
        little = bool(getattr(ds, "original_encoding", (None, True))[1] is not False)
        entries = np.frombuffer(data, dtype="<u2" if little else ">u2").astype(np.int64)
    else:
        entries = np.asarray(list(data) if not isinstance(data, int) else [data], dtype=np.int64)
    n = n or 65536
    if entries.size < n or bits < 1 or bits > 16:
        raise IngestError(
            f"VOI LUT Sequence: {entries.size} entries for a descriptor of {n} x {bits} bits", source=label
        )
    return entries[:n], first, bits


def render_uint8(src: Source, frame: int | None = None) -> npt.NDArray[np.uint8]:
    """Display-ready 8-bit pixels, applying a VOI LUT Sequence exactly where the header has one.

    ``Image.window`` can only carry a linear window; an object whose VOI stage
    is a lookup table (non-linear, e.g. a film-like curve) is rendered here
    through that table, then inverted for MONOCHROME1.  Everything else is
    :func:`window_to_uint8` of :func:`load_image`.
    """
    label = source_label(src)
    ds = read_dataset(src)
    index = 0 if frame is None else frame
    stored, photometric = decode_pixels(ds, label, frame=index)
    table = _voi_lut_table(ds, label) if stored.ndim == 2 else None
    if table is None or photometric not in ("MONOCHROME1", "MONOCHROME2"):
        return window_to_uint8(_image_from_frame(ds, stored, photometric, index, label))
    entries, first, bits = table
    values, _ = modality_lut(stored, ds, frame_attributes(ds, index, label))
    idx = np.clip(np.rint(values).astype(np.int64) - first, 0, entries.size - 1)
    top = float(2**bits - 1)
    out: npt.NDArray[np.uint8] = (
        np.rint(entries[idx].astype(np.float32) * np.float32(255.0 / top)).clip(0, 255).astype(np.uint8)
    )
    if photometric == "MONOCHROME1":
        out = (np.uint8(255) - out).astype(np.uint8)
    return out
