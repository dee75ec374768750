"""Siemens mosaic: one 2D frame holding a tiled 3D volume, and the CSA header that describes it.

Siemens EPI/DTI series store all slices of one volume as tiles of a single
image (ImageType contains ``MOSAIC``).  The tile count and slice normal are only
in the private CSA Image Header (0029,xx10), a small binary format pydicom does
not parse; :func:`parse_csa_header` reads it.

CSA layout (both "SV10" = CSA2 and the older CSA1), little endian::

    [b"SV10" + 4 bytes]               CSA2 only
    uint32 n_tags, uint32 (77)
    n_tags x { char name[64]; int32 vm; char vr[4]; int32 syngodt; int32 n_items; int32 (77|205)
               n_items x { int32 x[4]; bytes data[len] padded to 4 }  len = x[1] (CSA2) or x[0]-x[?] (CSA1) }
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset

from core.errors import IngestError

_MAX_TAGS = 1000
_MAX_ITEMS = 1000


@dataclass(frozen=True, slots=True)
class CsaElement:
    """One CSA header element: its VR and the non-empty item strings."""

    name: str
    vr: str
    items: tuple[str, ...]

    def floats(self) -> tuple[float, ...]:
        """Items as floats (empty items skipped)."""
        return tuple(float(v) for v in self.items if v.strip())

    def first_int(self) -> int | None:
        vals = [v for v in self.items if v.strip()]
        return int(float(vals[0])) if vals else None


def _cstr(raw: bytes) -> str:
    return raw.split(b"\x00", 1)[0].decode("latin-1").strip()


def parse_csa_header(data: bytes, source: str | None = None) -> dict[str, CsaElement]:
    """Parse a Siemens CSA header blob into elements by name.

    Raises
    ------
    IngestError
        The blob is not a CSA header, or a length runs past its end.
    """
    size = len(data)
    if size < 8:
        raise IngestError(f"CSA header: {size} bytes, too short", source=source)
    csa2 = data[:4] == b"SV10"
    pos = 8 if csa2 else 0
    try:
        n_tags, _check = struct.unpack_from("<2I", data, pos)
    except struct.error:
        raise IngestError("CSA header: truncated before the tag count", source=source) from None
    pos += 8
    if not 0 < n_tags <= _MAX_TAGS:
        raise IngestError(f"CSA header: implausible tag count {n_tags}", source=source)
    out: dict[str, CsaElement] = {}
    first_n_items: int | None = None
    for tag_no in range(n_tags):
        if pos + 84 > size:
            raise IngestError(f"CSA header: element {tag_no} runs past the end ({size} bytes)", source=source)
        name_raw, _vm, vr_raw, _syngodt, n_items, _last = struct.unpack_from("<64si4s3i", data, pos)
        pos += 84
        if not 0 <= n_items <= _MAX_ITEMS:
            raise IngestError(f"CSA header: element {tag_no} declares {n_items} items", source=source)
        if tag_no == 0:
            first_n_items = n_items
        items: list[str] = []
        for _ in range(n_items):
            if pos + 16 > size:
                raise IngestError(f"CSA header: item of element {tag_no} runs past the end", source=source)
            x0, x1, _x2, _x3 = struct.unpack_from("<4i", data, pos)
            pos += 16
            length = x1 if csa2 else x0 - (first_n_items or 0)
            if length < 0 or pos + length > size:
                if csa2:
                    raise IngestError(f"CSA header: item length {length} of element {tag_no} is invalid", source=source)
                break
            items.append(_cstr(data[pos : pos + length]))
            pos += length + (-length % 4)
        name = _cstr(name_raw)
        out[name] = CsaElement(name=name, vr=_cstr(vr_raw), items=tuple(items))
    return out


def _csa_image_header(ds: Dataset) -> dict[str, CsaElement] | None:
    """The parsed CSA Image Header of a Siemens object, or None when it has none."""
    for group_elem in range(0x10, 0x100):
        creator = ds.get((0x0029, group_elem))
        if creator is None:
            continue
        if str(creator.value).strip().upper() == "SIEMENS CSA HEADER":
            block = group_elem << 8
            element = ds.get((0x0029, block | 0x10))
            if element is None or not element.value:
                return None
            return parse_csa_header(bytes(element.value), source=str(getattr(ds, "filename", "") or None))
    return None


def is_mosaic(ds: Dataset) -> bool:
    """ImageType contains MOSAIC (Siemens sets it on every mosaic frame)."""
    image_type = ds.get("ImageType") or []
    values = [image_type] if isinstance(image_type, str) else list(image_type)
    return any(str(v).strip().upper() == "MOSAIC" for v in values)


@dataclass(frozen=True, slots=True)
class MosaicLayout:
    """How tiles sit in the mosaic frame and where the first slice is."""

    n_slices: int
    tiles_per_side: int
    tile_rows: int
    tile_columns: int
    slice_normal: tuple[float, float, float]


def mosaic_layout(ds: Dataset, source: str) -> MosaicLayout:
    """Tile count (CSA NumberOfImagesInMosaic), tile size, and slice normal (CSA SliceNormalVector)."""
    csa = _csa_image_header(ds)
    n: int | None = None
    normal: tuple[float, ...] = ()
    if csa is not None:
        if "NumberOfImagesInMosaic" in csa:
            n = csa["NumberOfImagesInMosaic"].first_int()
        if "SliceNormalVector" in csa:
            normal = csa["SliceNormalVector"].floats()
    if n is None:
        raw = ds.get((0x0019, 0x100A))  # Siemens private NumberOfImagesInMosaic, a fallback
        if raw is not None and raw.value not in (None, b"", ""):
            try:
                n = int(raw.value)
            except (TypeError, ValueError):
                n = None
    if not n or n < 1:
        raise IngestError("mosaic: CSA header (0029,1010) has no NumberOfImagesInMosaic", source=source)
    per_side = math.ceil(math.sqrt(n))
    rows, cols = int(ds.Rows), int(ds.Columns)
    if rows % per_side or cols % per_side:
        raise IngestError(
            f"mosaic: {rows}x{cols} frame does not divide into {per_side}x{per_side} tiles for {n} slices",
            source=source,
        )
    if len(normal) != 3:
        iop = [float(v) for v in ds.ImageOrientationPatient]
        normal = tuple(np.cross(iop[:3], iop[3:]).tolist())
    return MosaicLayout(
        n_slices=n,
        tiles_per_side=per_side,
        tile_rows=rows // per_side,
        tile_columns=cols // per_side,
        slice_normal=(float(normal[0]), float(normal[1]), float(normal[2])),
    )


def unpack_tiles(frame: npt.NDArray[Any], layout: MosaicLayout) -> npt.NDArray[Any]:
    """Split a mosaic frame into (slices, tile_rows, tile_columns), tiles read row by row."""
    s, tr, tc = layout.tiles_per_side, layout.tile_rows, layout.tile_columns
    tiles = frame.reshape(s, tr, s, tc).transpose(0, 2, 1, 3).reshape(s * s, tr, tc)
    return np.ascontiguousarray(tiles[: layout.n_slices])


def first_slice_position(ds: Dataset, layout: MosaicLayout) -> npt.NDArray[np.float64]:
    """Position of tile 0's first voxel.

    ImagePositionPatient of a mosaic is that of the whole mosaic frame's
    top-left voxel as though it were one huge slice centred like the tiles;
    the true tile origin is shifted by half the size difference along rows and
    columns.
    """
    ipp = np.array([float(v) for v in ds.ImagePositionPatient])
    iop = np.array([float(v) for v in ds.ImageOrientationPatient])
    row_sp, col_sp = (float(v) for v in ds.PixelSpacing)
    d_cols = (int(ds.Columns) - layout.tile_columns) / 2.0
    d_rows = (int(ds.Rows) - layout.tile_rows) / 2.0
    shifted: npt.NDArray[np.float64] = ipp + iop[:3] * col_sp * d_cols + iop[3:] * row_sp * d_rows
    return shifted
