"""ingest.volume / ingest.mosaic: series to volumes with correct geometry, tilt and uneven spacing, mosaics."""

from __future__ import annotations

import contextlib
import copy
import math
import struct
from pathlib import Path

import numpy as np
import pydicom
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from core.errors import IngestError
from ingest.mosaic import _csa_image_header, is_mosaic, parse_csa_header
from ingest.pixels import load_image
from ingest.volume import SliceGeometry, _build_volume, group_stacks, load_volume

DATA = Path(__file__).resolve().parents[1] / "data" / "pixels"

#: The GE head series' real slice positions (z, mm): 4.22 mm steps, one 1.14 mm step, then 7.38 mm steps.
GE_Z = [5.8360586, 10.0560586, 14.2760586, 18.4960586, 19.6360586, 27.0160586, 34.3960586]


def _normal(iop: list[float]) -> np.ndarray:
    return np.cross(np.array(iop[:3], float), np.array(iop[3:], float))


def _tilted_ge_series() -> list[Dataset]:
    """The real GE slice repeated at the series' real (tilted, uneven) positions, stored values + 10*k."""
    base = pydicom.dcmread(DATA / "ge_tilt" / "01.dcm")
    stored = base.pixel_array
    out: list[Dataset] = []
    for k, z in enumerate(GE_Z):
        ds = copy.deepcopy(base)
        ds.ImagePositionPatient = [-125.0, -123.5404569, z]
        ds.SOPInstanceUID = generate_uid()
        ds.InstanceNumber = len(GE_Z) - k  # deliberately misleading
        ds.PixelData = (stored + 10 * k).astype(stored.dtype).tobytes()
        out.append(ds)
    return out


def _slice(
    position: list[float], iop: list[float], pixels: np.ndarray, series: str, spacing: tuple[float, float] = (1.0, 1.0)
) -> Dataset:
    """A minimal CT slice dataset (16-bit signed stored values)."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.SOPInstanceUID = generate_uid()
    ds.SeriesInstanceUID = series
    ds.Modality = "CT"
    ds.ImagePositionPatient = [float(v) for v in position]
    ds.ImageOrientationPatient = [float(v) for v in iop]
    ds.PixelSpacing = list(spacing)
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.RescaleSlope = 1
    ds.RescaleIntercept = -1024
    ds.PixelData = pixels.astype("<i2").tobytes()
    return ds


# --------------------------------------------------------------------------- the GE gantry-tilt trap


def test_ge_tilted_uneven_series_is_rejected_with_reason() -> None:
    series = _tilted_ge_series()
    uid = series[0].SeriesInstanceUID
    with pytest.raises(IngestError) as info:
        load_volume(series, policy="reject")
    msg = str(info.value)
    assert uid in msg
    assert "gantry tilt 18.5 deg" in msg
    assert "uneven slice spacing" in msg and "1.08" in msg and "4.0" in msg and "7.0" in msg


def test_ge_tilted_uneven_series_is_resampled_to_a_regular_grid() -> None:
    series = _tilted_ge_series()
    iop = [float(v) for v in series[0].ImageOrientationPatient]
    normal = _normal(iop)
    volume = load_volume(list(reversed(series)))  # input order must not matter
    dist = np.array([np.dot([-125.0, -123.5404569, z], normal) for z in GE_Z])
    step = float(np.median(np.diff(dist)))
    assert volume.spacing_mm[0] == pytest.approx(step)
    assert step == pytest.approx(4.22 * math.cos(math.radians(18.5)), rel=1e-3)  # not SliceThickness, not 4.22
    assert volume.spacing_mm[1:] == pytest.approx((0.4882812, 0.4882812))
    assert volume.origin_mm == pytest.approx((-125.0, -123.5404569, GE_Z[0]))
    d = np.array(volume.direction)
    np.testing.assert_allclose(d[:, 0], iop[:3], atol=1e-6)
    np.testing.assert_allclose(d[:, 1], iop[3:], atol=1e-6)
    np.testing.assert_allclose(d[:, 2], normal, atol=1e-6)
    assert abs(float(np.dot(d[:, 1], d[:, 2]))) < 1e-9  # orthogonal grid: the shear is gone
    n_expected = math.floor((dist[-1] - dist[0]) / step + 1e-6) + 1
    assert volume.voxels.shape == (n_expected, 512, 512)
    # slice 0 coincides with the first input slice: unchanged HU values
    first = np.asarray(load_image(series[0]).pixels, dtype=np.float64)
    np.testing.assert_allclose(np.asarray(volume.voxels[0], dtype=np.float64), first, atol=1e-3)


# --------------------------------------------------------------------------- resampling correctness


def _linear_field(points: np.ndarray) -> np.ndarray:
    return 3.0 * points[..., 0] - 2.0 * points[..., 1] + 5.0 * points[..., 2] + 7.0


def _sample_slices(
    iop: list[float], positions: list[list[float]], n: int, sp: float
) -> tuple[np.ndarray, list[SliceGeometry]]:
    row, col = np.array(iop[:3]), np.array(iop[3:])
    ii, jj = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    slices, geoms = [], []
    for k, pos in enumerate(positions):
        pts = np.array(pos)[None, None, :] + jj[..., None] * sp * row + ii[..., None] * sp * col
        slices.append(_linear_field(pts).astype(np.float32))
        geoms.append(
            SliceGeometry((pos[0], pos[1], pos[2]), (iop[0], iop[1], iop[2], iop[3], iop[4], iop[5]), (sp, sp), f"s{k}")
        )
    return np.stack(slices), geoms


@settings(max_examples=25, deadline=None)
@given(
    tilt_deg=st.floats(-30, 30),
    gaps=st.lists(st.floats(0.8, 4.0), min_size=2, max_size=5),
    order_seed=st.integers(0, 2**16),
)
def test_resampled_volume_reproduces_a_linear_field(tilt_deg: float, gaps: list[float], order_seed: int) -> None:
    """Linear interpolation is exact for a linear field: every interior voxel must hold f(its patient position)."""
    t = math.radians(tilt_deg)
    iop = [1.0, 0.0, 0.0, 0.0, math.cos(t), -math.sin(t)]
    z = np.concatenate([[0.0], np.cumsum(gaps)])
    positions = [[0.0, 0.0, float(v)] for v in z]  # couch moves along z: sheared when tilted
    n, sp = 48, 1.0
    slices, geoms = _sample_slices(iop, positions, n, sp)
    perm = np.random.default_rng(order_seed).permutation(len(geoms))
    volume, report = _build_volume(
        slices[perm], [geoms[i] for i in perm], series="1.2.3", modality="CT", window=(0.0, 100.0)
    )
    d = np.array(volume.direction)
    origin = np.array(volume.origin_mm)
    step = volume.spacing_mm[0]
    m, i, j = np.meshgrid(np.arange(volume.voxels.shape[0]), np.arange(n), np.arange(n), indexing="ij")
    pts = origin + (m[..., None] * step * d[:, 2]) + (i[..., None] * sp * d[:, 1]) + (j[..., None] * sp * d[:, 0])
    expected = _linear_field(pts)
    drift = math.ceil(abs(float(z[-1]) * math.sin(t))) + 2  # rows shifted in from outside carry the fill value
    interior = slice(drift, n - drift)
    got = np.asarray(volume.voxels, dtype=np.float64)
    # a stack within the even-spacing tolerance is stacked at its mean gap, not resampled: each slice may sit up
    # to the largest deviation from an even grid away from its true position (the field's z slope is 5 per mm)
    even_grid = z[0] + np.arange(len(z)) * (z[-1] - z[0]) / max(len(z) - 1, 1)
    off_grid_mm = 0.0 if report.resampled else float(np.max(np.abs(z - even_grid)))
    np.testing.assert_allclose(
        got[:, interior, :], expected[:, interior, :], atol=2e-2 + 5.0 * off_grid_mm + 1e-9, rtol=1e-5
    )
    if abs(tilt_deg) > 1.0 or float(np.ptp(gaps)) > 0.1:
        assert report.resampled


@settings(max_examples=20, deadline=None)
@given(perm=st.permutations(list(range(6))), tilted=st.booleans())
def test_volume_is_independent_of_input_order(perm: list[int], tilted: bool) -> None:
    rng = np.random.default_rng(7)
    t = math.radians(12.0 if tilted else 0.0)
    iop = [1.0, 0.0, 0.0, 0.0, math.cos(t), -math.sin(t)]
    series = "1.2.826.0.1.3680043.10.1.99"
    datasets = [_slice([0.0, 0.0, 2.5 * k], iop, rng.integers(0, 2000, size=(12, 10)), series) for k in range(6)]
    ref = load_volume(datasets)
    shuffled = load_volume([datasets[i] for i in perm])
    np.testing.assert_array_equal(shuffled.voxels, ref.voxels)
    assert shuffled.origin_mm == ref.origin_mm and shuffled.spacing_mm == ref.spacing_mm
    assert shuffled.direction == ref.direction


# --------------------------------------------------------------------------- real MR: thickness != spacing


def test_mr_spacing_comes_from_positions_not_slice_thickness() -> None:
    files = sorted((DATA / "mr_every8th").glob("*.dcm"))
    datasets = [pydicom.dcmread(f) for f in files]
    iop = [float(v) for v in datasets[0].ImageOrientationPatient]
    normal = _normal(iop)
    proj = [float(np.dot([float(v) for v in ds.ImagePositionPatient], normal)) for ds in datasets]
    order = np.argsort(proj)
    volume = load_volume([files[2], files[0], files[1]], policy="reject")  # regular: no resampling needed
    assert float(datasets[0].SliceThickness) == pytest.approx(0.6667, abs=1e-3)
    assert volume.spacing_mm[0] == pytest.approx(float(np.diff(np.sort(proj)).mean()), rel=1e-6)
    assert volume.spacing_mm[0] == pytest.approx(5.333, abs=1e-2)
    assert volume.origin_mm == pytest.approx(tuple(float(v) for v in datasets[order[0]].ImagePositionPatient))
    d = np.array(volume.direction)
    np.testing.assert_allclose(d[:, 0], iop[:3], atol=1e-9)
    np.testing.assert_allclose(d[:, 1], iop[3:], atol=1e-9)
    for k, idx in enumerate(order):
        np.testing.assert_array_equal(volume.voxels[k], load_image(files[idx]).pixels)


# --------------------------------------------------------------------------- enhanced multi-frame


def _enhanced(n: int = 4) -> tuple[Dataset, np.ndarray]:
    rng = np.random.default_rng(3)
    frames = rng.integers(0, 3000, size=(n, 8, 8)).astype("<i2")
    ds = _slice([0, 0, 0], [1, 0, 0, 0, 1, 0], frames[0], "1.2.826.0.1.3680043.10.1.7")
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2.1"  # Enhanced CT
    ds.NumberOfFrames = n
    ds.PixelData = frames.tobytes()
    for kw in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "RescaleSlope", "RescaleIntercept"):
        delattr(ds, kw)
    shared = Dataset()
    m = Dataset()
    m.PixelSpacing = [0.7, 0.7]
    shared.PixelMeasuresSequence = Sequence([m])
    o = Dataset()
    o.ImageOrientationPatient = [-1, 0, 0, 0, 1, 0]  # normal -z: larger z comes first
    shared.PlaneOrientationSequence = Sequence([o])
    p = Dataset()
    p.RescaleSlope, p.RescaleIntercept = 1, -1024
    shared.PixelValueTransformationSequence = Sequence([p])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    items = []
    for i in range(n):
        item = Dataset()
        pos = Dataset()
        pos.ImagePositionPatient = [0.0, 0.0, -100.0 + 3.0 * i]
        item.PlanePositionSequence = Sequence([pos])
        items.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(items)
    return ds, frames


def test_enhanced_multiframe_to_volume_uses_frame_positions() -> None:
    ds, frames = _enhanced()
    volume = load_volume(ds)
    assert volume.voxels.shape == (4, 8, 8)
    assert volume.spacing_mm == pytest.approx((3.0, 0.7, 0.7))
    # normal is (0,0,-1): the frame with the largest z is first
    assert volume.origin_mm == pytest.approx((0.0, 0.0, -91.0))
    np.testing.assert_array_equal(volume.voxels[0], frames[3].astype(np.float32) - 1024)
    np.testing.assert_array_equal(volume.voxels[3], frames[0].astype(np.float32) - 1024)


def test_multiframe_without_positions_fails_naming_the_tag() -> None:
    with pytest.raises(IngestError, match=r"\(0020,0032\)"):
        load_volume(DATA / "emri_small.dcm")


# --------------------------------------------------------------------------- inconsistent series


def test_inconsistent_series_are_rejected_with_reason() -> None:
    series = "1.2.826.0.1.3680043.10.1.5"
    px = np.zeros((6, 6))
    a = _slice([0, 0, 0], [1, 0, 0, 0, 1, 0], px, series)
    b = _slice([0, 0, 2], [1, 0, 0, 0, 1, 0], px, series)
    oblique = _slice([0, 0, 4], [1, 0, 0, 0, 0.8, -0.6], px, series)
    with pytest.raises(IngestError, match="mixed orientations"):
        load_volume([a, b, oblique])
    bigger = _slice([0, 0, 4], [1, 0, 0, 0, 1, 0], np.zeros((6, 7)), series)
    with pytest.raises(IngestError, match="mixed image sizes"):
        load_volume([a, b, bigger])
    dup = _slice([0, 0, 2], [1, 0, 0, 0, 1, 0], px, series)
    with pytest.raises(IngestError, match="same position"):
        load_volume([a, b, dup])
    other = _slice([0, 0, 4], [1, 0, 0, 0, 1, 0], px, "1.2.826.0.1.3680043.10.1.6")
    with pytest.raises(IngestError, match="mixed series"):
        load_volume([a, b, other])
    with pytest.raises(IngestError, match="several slices"):
        load_volume(DATA / "CT_small.dcm")
    with pytest.raises(IngestError, match="policy"):
        load_volume([a, b], policy="guess")  # type: ignore[arg-type]


def test_group_stacks_separates_scout_and_sizes(tmp_path: Path) -> None:
    series = "1.2.826.0.1.3680043.10.1.9"
    axial = [_slice([0, 0, 2.0 * k], [1, 0, 0, 0, 1, 0], np.zeros((6, 6)), series) for k in range(5)]
    scout = _slice([0, 0, 0], [1, 0, 0, 0, 0, -1], np.zeros((6, 6)), series)
    small = [_slice([0, 0, 2.0 * k], [1, 0, 0, 0, 1, 0], np.zeros((4, 4)), series) for k in range(2)]
    paths = []
    for i, ds in enumerate([scout, *small, *axial]):
        paths.append(tmp_path / f"{i}.dcm")
        ds.save_as(paths[-1], enforce_file_format=True)
    with pytest.raises(IngestError, match="mixed"):
        load_volume(paths)
    stacks = group_stacks(paths)
    assert [len(s) for s in stacks] == [5, 2, 1]
    assert load_volume(stacks[0]).voxels.shape == (5, 6, 6)


def test_uneven_spacing_alone_is_detected() -> None:
    series = "1.2.826.0.1.3680043.10.1.8"
    px = np.zeros((4, 4))
    slices = [_slice([0, 0, z], [1, 0, 0, 0, 1, 0], px, series) for z in (0.0, 1.0, 2.0, 4.0)]
    with pytest.raises(IngestError, match=r"uneven slice spacing \[1.0, 2.0\]") as info:
        load_volume(slices, policy="reject")
    assert "tilt" not in str(info.value)
    volume = load_volume(slices)
    assert volume.voxels.shape[0] == 5 and volume.spacing_mm[0] == pytest.approx(1.0)


# --------------------------------------------------------------------------- Siemens mosaic


def test_mosaic_unpacks_into_slices_with_positions() -> None:
    path = DATA / "ts_matrix" / "1_explicit_le.dcm"
    ds = pydicom.dcmread(path)
    assert is_mosaic(ds)
    csa = _csa_image_header(ds)
    assert csa is not None and csa["NumberOfImagesInMosaic"].first_int() == 35
    normal = np.array(csa["SliceNormalVector"].floats())
    volume = load_volume(path)
    assert volume.voxels.shape == (35, 64, 64)
    frame = load_image(path).pixels
    for k in (0, 7, 34):
        r0, c0 = (k // 6) * 64, (k % 6) * 64
        np.testing.assert_array_equal(volume.voxels[k], frame[r0 : r0 + 64, c0 : c0 + 64])
    assert volume.spacing_mm == pytest.approx((3.6, 3.25, 3.25))
    iop = np.array([float(v) for v in ds.ImageOrientationPatient])
    ipp = np.array([float(v) for v in ds.ImagePositionPatient])
    origin = ipp + iop[:3] * 3.25 * (384 - 64) / 2 + iop[3:] * 3.25 * (384 - 64) / 2
    np.testing.assert_allclose(volume.origin_mm, origin, atol=1e-6)
    np.testing.assert_allclose(np.array(volume.direction)[:, 2], normal / np.linalg.norm(normal), atol=1e-6)


def _csa2(elements: dict[str, list[str]]) -> bytes:
    """Encode a CSA2 ("SV10") header the way Siemens writes it."""
    out = bytearray(b"SV10\x04\x03\x02\x01")
    out += struct.pack("<2I", len(elements), 77)
    for name, items in elements.items():
        out += struct.pack("<64si4s3i", name.encode(), len(items), b"DS\x00\x00", 3, len(items), 77)
        for item in items:
            data = item.encode() + b"\x00"
            out += struct.pack("<4i", len(data), len(data), 77, len(data))
            out += data + b"\x00" * (-len(data) % 4)
    return bytes(out)


_names = st.text(alphabet=st.characters(min_codepoint=65, max_codepoint=122), min_size=1, max_size=30)
_values = st.lists(st.text(alphabet="0123456789.-", min_size=1, max_size=20), max_size=6)


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(_names, _values, min_size=1, max_size=8))
def test_csa_header_round_trip(elements: dict[str, list[str]]) -> None:
    parsed = parse_csa_header(_csa2(elements))
    assert {k: list(v.items) for k, v in parsed.items()} == elements


@settings(max_examples=80, deadline=None)
@given(st.binary(max_size=400))
def test_csa_parser_never_crashes_on_garbage(blob: bytes) -> None:
    with contextlib.suppress(IngestError):  # anything else (struct.error, IndexError...) fails the test
        parse_csa_header(blob)


def test_truncated_csa_header_is_an_ingest_error() -> None:
    blob = _csa2({"NumberOfImagesInMosaic": ["35"], "SliceNormalVector": ["0", "0.1", "0.99"]})
    with pytest.raises(IngestError, match="CSA header"):
        parse_csa_header(blob[:-9])
