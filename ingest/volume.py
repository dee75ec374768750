"""CT/MR series to a :class:`core.Volume` with correct geometry.

Slices are ordered by the projection of ImagePositionPatient on the slice
normal (the cross product of the ImageOrientationPatient cosines), never by
InstanceNumber, and the slice spacing comes from those projections, never from
SliceThickness (which is the collimation and often differs: overlapping
reconstructions, gaps, every-n-th exports).

Two geometries cannot be stored as a regular (origin, spacing, direction) grid:

* **gantry tilt** — successive slice origins move *within* the slice plane too
  (the stack is sheared);
* **uneven spacing** — the gaps along the normal differ.

``policy="resample"`` (default) puts such a stack onto a regular grid along the
normal: each slice is shifted in-plane to undo the shear (linear
interpolation), then values are interpolated linearly between neighbouring
slices at evenly spaced positions.  ``policy="reject"`` raises an IngestError
naming the series and the measured spacings and tilt.  A stack is never
silently mis-stacked.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset
from scipy import ndimage

from core.errors import IngestError
from core.records import Volume
from ingest.mosaic import first_slice_position, is_mosaic, mosaic_layout, unpack_tiles
from ingest.pixels import (
    Source,
    decode_pixels,
    frame_attributes,
    modality_lut,
    number_of_frames,
    read_dataset,
    source_label,
)
from ingest.windowing import auto_window, preset_window

Policy = Literal["resample", "reject"]

#: Orientation cosines equal within this (about 0.06 degrees).
_ORIENTATION_TOL = 1e-3
#: In-plane drift of slice origins (mm) above which a stack is sheared (tilted).
_TILT_TOL_MM = 0.01
#: Gap deviation (mm, and relative) above which spacing is uneven.
_GAP_ABS_TOL_MM = 0.01
_GAP_REL_TOL = 0.01


@dataclass(frozen=True, slots=True)
class SliceGeometry:
    """Where one 2D slice sits in patient space (LPS, mm)."""

    position: tuple[float, float, float]
    orientation: tuple[float, float, float, float, float, float]
    pixel_spacing: tuple[float, float]  #: (row spacing, column spacing)
    source: str


@dataclass(frozen=True, slots=True)
class StackReport:
    """What was measured about a stack, for errors and logs."""

    gaps_mm: tuple[float, ...]
    tilt_deg: float
    resampled: bool


def _unit(v: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    n = float(np.linalg.norm(v))
    if n == 0.0 or not math.isfinite(n):
        raise IngestError(f"(0020,0037) Image Orientation (Patient): degenerate direction {v.tolist()}")
    out: npt.NDArray[np.float64] = v / n
    return out


def _stack_geometry(
    geoms: Sequence[SliceGeometry], shapes: Sequence[tuple[int, ...]], series: str
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Check a stack is one regular-or-fixable stack; return (order, normal distances, in-plane offsets, axes).

    ``axes`` is a 3x3 array whose rows are the row cosine (along columns), the
    column cosine (along rows) and the slice normal.
    """
    if len(geoms) < 2:
        raise IngestError(f"series {series}: a volume needs at least 2 slices, got {len(geoms)}")
    shape0 = shapes[0]
    for g, shp in zip(geoms, shapes, strict=True):
        if shp != shape0:
            raise IngestError(
                f"series {series}: mixed image sizes {shape0} and {shp} (slice {g.source}); "
                "expected one (Rows, Columns) for the whole stack"
            )
    ori0 = np.array(geoms[0].orientation, dtype=np.float64)
    for g in geoms[1:]:
        if np.max(np.abs(np.array(g.orientation) - ori0)) > _ORIENTATION_TOL:
            raise IngestError(
                f"series {series}: mixed orientations (0020,0037) {list(geoms[0].orientation)} and "
                f"{list(g.orientation)} (slice {g.source}); expected a single stack orientation"
            )
    sp0 = np.array(geoms[0].pixel_spacing)
    for g in geoms[1:]:
        if np.max(np.abs(np.array(g.pixel_spacing) - sp0)) > 1e-4 * max(1.0, float(sp0.max())):
            raise IngestError(
                f"series {series}: mixed pixel spacings {tuple(sp0)} and {g.pixel_spacing} (slice {g.source})"
            )
    row = _unit(ori0[:3])
    col = _unit(ori0[3:])
    if abs(float(np.dot(row, col))) > 1e-3:
        raise IngestError(f"series {series}: (0020,0037) row and column cosines are not orthogonal {ori0.tolist()}")
    normal = _unit(np.cross(row, col))
    positions = np.array([g.position for g in geoms], dtype=np.float64)
    dist = positions @ normal
    order = np.argsort(dist, kind="stable")
    dist_sorted = dist[order]
    gaps = np.diff(dist_sorted)
    dup = np.flatnonzero(gaps < _GAP_ABS_TOL_MM)
    if dup.size:
        a, b = geoms[order[dup[0]]].source, geoms[order[dup[0] + 1]].source
        raise IngestError(
            f"series {series}: two slices at the same position along the normal ({a} and {b}); "
            "expected one slice per position (split echoes/phases/time points before stacking)"
        )
    rel = positions[order] - positions[order[0]]
    inplane = rel - np.outer(rel @ normal, normal)
    axes = np.stack([row, col, normal])
    return order, dist_sorted, inplane, axes


def _tilt_deg(dist: npt.NDArray[np.float64], inplane: npt.NDArray[np.float64]) -> float:
    span = float(dist[-1] - dist[0])
    drift = float(np.linalg.norm(inplane[-1]))
    return math.degrees(math.atan2(drift, span)) if span > 0 else 0.0


def _is_sheared(inplane: npt.NDArray[np.float64]) -> bool:
    return bool(np.max(np.linalg.norm(inplane, axis=1)) > _TILT_TOL_MM)


def _is_uneven(gaps: npt.NDArray[np.float64]) -> bool:
    ref = float(np.median(gaps))
    return bool(np.max(np.abs(gaps - ref)) > max(_GAP_ABS_TOL_MM, _GAP_REL_TOL * ref))


def _regularise_stack(
    voxels: npt.NDArray[np.float32],
    dist: npt.NDArray[np.float64],
    inplane: npt.NDArray[np.float64],
    axes: npt.NDArray[np.float64],
    pixel_spacing: tuple[float, float],
    spacing_mm: float | None = None,
    fill: float | None = None,
) -> tuple[npt.NDArray[np.float32], float]:
    """Resample a sorted, possibly sheared and unevenly spaced stack onto a regular grid.

    ``voxels`` are sorted by ``dist`` (position along the normal).  Slice k is
    first shifted in-plane by its origin's drift so that voxel (i, j) of every
    slice lies on the line through voxel (i, j) of slice 0 along the normal;
    then slices are linearly interpolated at ``dist[0] + m * spacing``.
    Returns the new voxels and the spacing used (median gap by default).
    """
    row_sp, col_sp = pixel_spacing
    out = voxels
    sheared = _is_sheared(inplane)
    if sheared:
        fill_value = float(np.min(voxels)) if fill is None else fill
        shifted = np.empty_like(voxels)
        for k in range(voxels.shape[0]):
            s_col = float(inplane[k] @ axes[0]) / col_sp
            s_row = float(inplane[k] @ axes[1]) / row_sp
            # voxel (i, j) of the target lies at (i - s_row, j - s_col) of slice k
            ndimage.shift(voxels[k], (s_row, s_col), output=shifted[k], order=1, mode="constant", cval=fill_value)
        out = shifted
    gaps = np.diff(dist)
    step = float(np.median(gaps)) if spacing_mm is None else float(spacing_mm)
    if not step > 0:
        raise IngestError(f"resampling spacing must be positive, got {step}")
    if not (sheared or _is_uneven(gaps)) and spacing_mm is None:
        return out, step  # even within tolerance: stacked as is (a resampled stack is put on the exact grid)
    span = float(dist[-1] - dist[0])
    n_out = math.floor(span / step + 1e-6) + 1
    targets = dist[0] + step * np.arange(n_out)
    idx = np.clip(np.searchsorted(dist, targets, side="right") - 1, 0, len(dist) - 2)
    w = ((targets - dist[idx]) / (dist[idx + 1] - dist[idx])).astype(np.float32)
    w = np.clip(w, 0.0, 1.0)
    res = out[idx] * (1.0 - w)[:, None, None] + out[idx + 1] * w[:, None, None]
    return res.astype(np.float32, copy=False), step


def _point(v: npt.NDArray[np.float64]) -> tuple[float, float, float]:
    return float(v[0]), float(v[1]), float(v[2])


def _direction(axes: npt.NDArray[np.float64]) -> tuple[tuple[float, float, float], ...]:
    """Volume.direction: columns are the unit vectors along columns (x), rows (y) and slices (z)."""
    m = axes.T  # columns = row cosine, column cosine, normal
    return tuple((float(r[0]), float(r[1]), float(r[2])) for r in m)


def _build_volume(
    slices: npt.NDArray[np.float32],
    geoms: Sequence[SliceGeometry],
    *,
    series: str,
    modality: str,
    window: tuple[float, float] | None,
    policy: Policy = "resample",
    spacing_mm: float | None = None,
) -> tuple[Volume, StackReport]:
    """Stack 2D slices (any order) into a Volume: the pure geometry core of :func:`load_volume`."""
    if policy not in ("resample", "reject"):
        raise IngestError(f"policy must be 'resample' or 'reject', got {policy!r}")
    order, dist, inplane, axes = _stack_geometry(geoms, [s.shape for s in slices], series)
    identity = bool(np.all(order == np.arange(len(order))))
    voxels = slices if identity else slices[order]
    gaps = np.diff(dist)
    sheared, uneven = _is_sheared(inplane), _is_uneven(gaps)
    tilt = _tilt_deg(dist, inplane)
    report_gaps = tuple(round(float(g), 3) for g in gaps)
    if (sheared or uneven) and policy == "reject":
        reasons = []
        if sheared:
            reasons.append(f"gantry tilt {tilt:.1f} deg (slice origins drift in-plane)")
        if uneven:
            reasons.append(f"uneven slice spacing {sorted(set(round(g, 2) for g in report_gaps))} mm")
        raise IngestError(f"series {series}: {' and '.join(reasons)}; refusing to stack (policy 'reject')")
    pixel_sp = geoms[order[0]].pixel_spacing
    first = np.array(geoms[order[0]].position, dtype=np.float64)
    if sheared or uneven or spacing_mm is not None:
        voxels, step = _regularise_stack(voxels, dist, inplane, axes, pixel_sp, spacing_mm)
    else:
        step = float(np.median(gaps))
    if voxels.flags.writeable:
        voxels.setflags(write=False)  # the record takes it as is instead of copying 100s of MB
    volume = Volume(
        voxels=voxels,
        spacing_mm=(step, float(pixel_sp[0]), float(pixel_sp[1])),
        origin_mm=(float(first[0]), float(first[1]), float(first[2])),
        direction=_direction(axes),  # type: ignore[arg-type]
        series_instance_uid=series,
        modality=modality,
        window=window,
    )
    return volume, StackReport(
        gaps_mm=report_gaps, tilt_deg=tilt, resampled=sheared or uneven or spacing_mm is not None
    )


# --------------------------------------------------------------------------- I/O edge


def _series_uid(ds: Dataset, label: str) -> str:
    uid = str(ds.get("SeriesInstanceUID", "") or "").strip()
    if not uid:
        raise IngestError("(0020,000E) Series Instance UID is missing", source=label)
    return uid


def _geometry(ds: Dataset, frame: int, label: str) -> tuple[SliceGeometry, Any]:
    attrs = frame_attributes(ds, frame, label)
    if attrs.position is None:
        raise IngestError("(0020,0032) Image Position (Patient) is missing; cannot place the slice", source=label)
    if attrs.orientation is None:
        raise IngestError("(0020,0037) Image Orientation (Patient) is missing; cannot place the slice", source=label)
    if attrs.pixel_spacing is None:
        raise IngestError("(0028,0030) Pixel Spacing is missing or zero; cannot build a volume", source=label)
    return SliceGeometry(attrs.position, attrs.orientation, attrs.pixel_spacing, f"{label}#{frame}"), attrs


def _volume_window(ds: Dataset, attrs: Any, voxels: npt.NDArray[np.float32]) -> tuple[float, float]:
    window: tuple[float, float] | None = attrs.window
    return (
        window
        or preset_window(str(ds.get("Modality", "")), str(ds.get("BodyPartExamined", "") or ""))
        or auto_window(voxels[:: max(1, voxels.shape[0] // 8)])
    )


def _mosaic_volume(ds: Dataset, label: str, policy: Policy, spacing_mm: float | None) -> Volume:
    layout = mosaic_layout(ds, label)
    frame, _ = decode_pixels(ds, label, frame=0)
    geom, attrs = _geometry(ds, 0, label)
    tiles = unpack_tiles(frame, layout)
    values, _ = modality_lut(tiles, ds, attrs)
    step_raw = ds.get("SpacingBetweenSlices") or ds.get("SliceThickness")
    try:
        step = float(step_raw)
    except (TypeError, ValueError):
        raise IngestError(
            "mosaic: (0018,0088) Spacing Between Slices is missing or not a number", source=label
        ) from None
    if not step > 0:
        raise IngestError(f"mosaic: (0018,0088) Spacing Between Slices must be positive, got {step}", source=label)
    origin = first_slice_position(ds, layout)
    normal = np.array(layout.slice_normal)
    geoms = [
        SliceGeometry(_point(origin + k * step * normal), geom.orientation, geom.pixel_spacing, f"{label}#tile{k}")
        for k in range(layout.n_slices)
    ]
    volume, _ = _build_volume(
        values,
        geoms,
        series=_series_uid(ds, label),
        modality=str(ds.get("Modality", "MR") or "MR"),
        window=_volume_window(ds, attrs, values),
        policy=policy,
        spacing_mm=spacing_mm,
    )
    return volume


def load_volume(
    sources: Source | Iterable[Source], *, policy: Policy = "resample", spacing_mm: float | None = None
) -> Volume:
    """A CT/MR series (files or datasets, any order), an enhanced multi-frame object or a Siemens mosaic -> Volume.

    Parameters
    ----------
    sources:
        Single-frame slices of one series, or one multi-frame / mosaic object.
    policy:
        What to do with gantry tilt or uneven spacing: ``"resample"`` onto a
        regular grid along the slice normal, or ``"reject"`` with an IngestError.
    spacing_mm:
        Slice spacing of the output grid when resampling (default: the median gap).

    Raises
    ------
    IngestError
        Mixed series, orientations, sizes or spacings; duplicate positions;
        missing geometry tags; tilt/uneven spacing under ``policy="reject"``.
    """
    items: list[Source] = [sources] if isinstance(sources, (str, Dataset, os.PathLike)) else list(sources)
    if not items:
        raise IngestError("load_volume: no sources given")
    if len(items) == 1:
        label = source_label(items[0])
        ds = read_dataset(items[0])
        if is_mosaic(ds):
            return _mosaic_volume(ds, label, policy, spacing_mm)
        n = number_of_frames(ds, label)
        if n < 2:
            raise IngestError("a volume needs several slices or a multi-frame object; got one frame", source=label)
        frames, photometric = decode_pixels(ds, label)
        if frames.ndim != 3 or photometric not in ("MONOCHROME1", "MONOCHROME2"):
            raise IngestError(f"volume needs greyscale frames, got {photometric}", source=label)
        geoms, slices = [], []
        attrs0 = None
        for i in range(n):
            geom, attrs = _geometry(ds, i, label)
            values, _ = modality_lut(frames[i], ds, attrs)
            geoms.append(geom)
            slices.append(values)
            attrs0 = attrs0 or attrs
        stack = np.stack(slices)
        volume, _ = _build_volume(
            stack,
            geoms,
            series=_series_uid(ds, label),
            modality=str(ds.get("Modality", "") or "OT"),
            window=_volume_window(ds, attrs0, stack),
            policy=policy,
            spacing_mm=spacing_mm,
        )
        return volume
    return _series_volume(items, policy, spacing_mm)


def _series_volume(items: list[Source], policy: Policy, spacing_mm: float | None) -> Volume:
    """Read headers, sort by position, then decode each slice straight into its sorted place (no reorder copy)."""
    datasets: list[tuple[Dataset, str, Any]] = []
    geoms: list[SliceGeometry] = []
    shapes: list[tuple[int, ...]] = []
    series: str | None = None
    for src in items:
        label = source_label(src)
        ds = read_dataset(src)
        uid = _series_uid(ds, label)
        if series is None:
            series = uid
        elif uid != series:
            raise IngestError(f"mixed series: {uid} is not {series}; a volume holds one series", source=label)
        if number_of_frames(ds, label) != 1:
            raise IngestError("multi-frame object in a list of slices; load it on its own", source=label)
        geom, attrs = _geometry(ds, 0, label)
        datasets.append((ds, label, attrs))
        geoms.append(geom)
        shapes.append((int(ds.get("Rows") or 0), int(ds.get("Columns") or 0)))
    assert series is not None
    order, _, _, _ = _stack_geometry(geoms, shapes, series)
    voxels = np.empty((len(items), *shapes[0]), dtype=np.float32)
    for rank, k in enumerate(order):
        ds, label, attrs = datasets[k]
        stored, photometric = decode_pixels(ds, label, frame=0)
        if stored.shape != shapes[0] or photometric not in ("MONOCHROME1", "MONOCHROME2"):
            raise IngestError(
                f"volume needs greyscale {shapes[0]} slices, got {photometric} {stored.shape}", source=label
            )
        modality_lut(stored, ds, attrs, out=voxels[rank])
    first_ds, _, first_attrs = datasets[order[0]]
    volume, _ = _build_volume(
        voxels,
        [geoms[k] for k in order],
        series=series,
        modality=str(first_ds.get("Modality", "") or "OT"),
        window=_volume_window(first_ds, first_attrs, voxels),
        policy=policy,
        spacing_mm=spacing_mm,
    )
    return volume


def group_stacks(sources: Iterable[Source]) -> list[list[Source]]:
    """Split a series' slices into stacks that :func:`load_volume` can take, largest first.

    A CT or MR series often mixes a scout or a second orientation, or slices of
    another size, with the main stack; those make ``load_volume`` refuse the
    whole series ("mixed orientations").  This groups single-frame slices by
    (Series Instance UID, orientation rounded to 1e-3, Rows x Columns, pixel
    spacing) so the caller can pick the stack it wants.  Objects without plane
    geometry are left out.  Headers only: pixel data is not decoded here.
    """
    groups: dict[tuple[Any, ...], list[Source]] = {}
    for src in sources:
        label = source_label(src)
        ds = src if isinstance(src, Dataset) else read_dataset(src, stop_before_pixels=True)
        try:
            attrs = frame_attributes(ds, 0, label)
        except IngestError:
            continue
        if attrs.orientation is None or attrs.position is None or attrs.pixel_spacing is None:
            continue
        key = (
            str(ds.get("SeriesInstanceUID", "") or ""),
            tuple(round(v, 3) + 0.0 for v in attrs.orientation),
            int(ds.get("Rows") or 0),
            int(ds.get("Columns") or 0),
            tuple(round(v, 4) for v in attrs.pixel_spacing),
        )
        groups.setdefault(key, []).append(src)
    return sorted(groups.values(), key=len, reverse=True)
