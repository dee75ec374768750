"""Semantic content of an output file, for golden comparisons that a library upgrade does not break.

A sha256 of a PDF or a DICOM object changes when reportlab compresses differently, matplotlib
anti-aliases another way or pydicom writes another implementation version, none of which a reader
would notice. These summaries keep what a reader or a receiving system sees instead:

- DICOM: every attribute by keyword (sequences and the SR content tree as nested lists), the file
  meta's transfer syntax and SOP class only; pixel data as its shape plus a 16x16 thumbnail, which
  :func:`differences` compares with a tolerance; an encapsulated PDF as its text.
- PDF: the text of each page (whitespace folded) and the page count.
- HTML: the markup with embedded images replaced by their type and size in pixels.
- FHIR JSON: the resources, with attachments replaced by their content (PDF text, image size).
- HL7 v2: the segments, with base64 payloads replaced by their content.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from PIL import Image
from pypdf import PdfReader

THUMB = 16
#: largest difference of one thumbnail cell (0-255) that still counts as the same picture
PIXEL_TOLERANCE = 24
_DATA_URI = re.compile(r"data:(image/[a-z]+);base64,([A-Za-z0-9+/=]+)")
_WS = re.compile(r"\s+")
_VOLATILE_META = {"MediaStorageSOPClassUID", "TransferSyntaxUID"}  # the file meta elements kept


def _text(s: str) -> str:
    return _WS.sub(" ", s).strip()


def pdf_text(data: bytes) -> dict[str, Any]:
    reader = PdfReader(io.BytesIO(data))
    return {"pdf_pages": len(reader.pages), "pdf_text": [_text(p.extract_text() or "") for p in reader.pages]}


def _thumbnail(pixels: np.ndarray) -> dict[str, Any]:
    arr = pixels.astype(np.float64)
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):  # colour: the mean of the channels
        arr = arr[..., :3].mean(axis=-1)
    while arr.ndim > 2:  # frames: the first
        arr = arr[0]
    lo, hi = float(arr.min()), float(arr.max())
    scaled = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
    img = Image.fromarray(scaled.astype(np.uint8)).resize((THUMB, THUMB), Image.Resampling.BOX)
    return {"shape": list(pixels.shape), "thumbnail": np.asarray(img).astype(int).tolist()}


def _image(data: bytes) -> dict[str, Any]:
    with Image.open(io.BytesIO(data)) as img:
        return {"image": img.format, **_thumbnail(np.asarray(img.convert("L")))}


def _payload(data: bytes) -> Any:
    """What a base64 payload holds: PDF text, an image's thumbnail, else its length."""
    if data.startswith(b"%PDF"):
        return pdf_text(data)
    if data[:8] == b"\x89PNG\r\n\x1a\n" or data[:3] == b"\xff\xd8\xff":
        return _image(data)
    return {"bytes": len(data)}


def _dicom_value(elem: Any) -> Any:
    if elem.VR == "SQ":
        return [_dicom_dataset(item) for item in elem.value]
    if elem.keyword == "EncapsulatedDocument":
        return _payload(bytes(elem.value))
    if isinstance(elem.value, bytes):
        return {"bytes": len(elem.value)}
    if isinstance(elem.value, pydicom.multival.MultiValue):
        return [str(v) for v in elem.value]
    return str(elem.value) if elem.value is not None else None


def _dicom_dataset(ds: pydicom.Dataset) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for elem in ds:
        key = elem.keyword or str(elem.tag)
        if elem.keyword == "PixelData":
            out[key] = _thumbnail(ds.pixel_array)
        else:
            out[key] = _dicom_value(elem)
    return out


def dicom(data: bytes) -> dict[str, Any]:
    ds = pydicom.dcmread(io.BytesIO(data))
    meta = {k: str(getattr(ds.file_meta, k)) for k in sorted(_VOLATILE_META) if k in ds.file_meta}
    return {"file_meta": meta, **_dicom_dataset(ds)}


def html(data: bytes) -> str:
    def image(m: re.Match[str]) -> str:
        with Image.open(io.BytesIO(base64.b64decode(m.group(2)))) as img:
            return f"data:{m.group(1)};{img.width}x{img.height}"

    return _text(_DATA_URI.sub(image, data.decode("utf-8")))


def _fhir(node: Any) -> Any:
    if isinstance(node, dict):
        if isinstance(node.get("data"), str) and "contentType" in node:  # an Attachment
            kept = {k: v for k, v in node.items() if k not in ("data", "hash", "size")}
            return {**kept, "content": _payload(base64.b64decode(node["data"]))}
        return {k: _fhir(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_fhir(v) for v in node]
    return node


def fhir(data: bytes) -> Any:
    return _fhir(json.loads(data))


def _hl7_field(field: str) -> Any:
    for part in field.split("^"):
        if len(part) > 200:
            try:
                decoded = base64.b64decode(part, validate=True)
            except binascii.Error:
                continue
            return {"field": field.replace(part, "<base64>"), "content": _payload(decoded)}
    return field


def hl7(data: bytes) -> list[list[Any]]:
    text = data.decode("utf-8").replace("\r\n", "\r").replace("\n", "\r")
    return [[_hl7_field(f) for f in seg.split("|")] for seg in text.split("\r") if seg]


def summary(name: str, data: bytes) -> Any:
    """The semantic content of one output file, by its name's ending."""
    suffix = Path(name).suffix
    if suffix == ".dcm":
        return dicom(data)
    if suffix == ".pdf":
        return pdf_text(data)
    if suffix == ".html":
        return html(data)
    if suffix == ".json":
        return fhir(data)
    if suffix == ".hl7":
        return hl7(data)
    if suffix in (".png", ".jpg"):
        return _image(data)
    return {"bytes": len(data)}


def differences(expected: Any, actual: Any, path: str = "") -> list[str]:
    """Where two summaries differ (thumbnails within :data:`PIXEL_TOLERANCE` count as equal)."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        if "thumbnail" in expected and "thumbnail" in actual:
            diff = np.abs(np.asarray(expected["thumbnail"]) - np.asarray(actual["thumbnail"]))
            out = [] if diff.max() <= PIXEL_TOLERANCE else [f"{path}: picture differs (max {int(diff.max())})"]
            rest_e = {k: v for k, v in expected.items() if k != "thumbnail"}
            rest_a = {k: v for k, v in actual.items() if k != "thumbnail"}
            return out + differences(rest_e, rest_a, path)
        out = []
        for k in sorted(expected.keys() | actual.keys()):
            if k not in actual or k not in expected:
                out.append(f"{path}/{k}: {'missing' if k not in actual else 'unexpected'}")
            else:
                out += differences(expected[k], actual[k], f"{path}/{k}")
        return out
    if isinstance(expected, list) and isinstance(actual, list):
        if len(expected) != len(actual):
            return [f"{path}: {len(expected)} items expected, {len(actual)} found"]
        return [
            d for i, (e, a) in enumerate(zip(expected, actual, strict=True)) for d in differences(e, a, f"{path}[{i}]")
        ]
    return [] if expected == actual else [f"{path}: expected {expected!r:.120}, found {actual!r:.120}"]
