"""ingest.pixels / ingest.windowing: DICOM pixels to Images, checked against independent computations."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pydicom
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from core.errors import IngestError
from ingest.pixels import load_image, load_images, render_uint8, window_to_uint8
from ingest.windowing import WINDOW_PRESETS, apply_window, auto_window, preset_window, window_array_to_uint8

DATA = Path(__file__).resolve().parents[1] / "data" / "pixels"


def _read(name: str) -> Dataset:
    return pydicom.dcmread(DATA / name)


# --------------------------------------------------------------------------- modality LUT


def test_ct_values_are_stored_times_slope_plus_intercept() -> None:
    ds = _read("CT_small.dcm")
    raw = ds.pixel_array.astype(np.float64)
    slope, intercept = float(ds.RescaleSlope), float(ds.RescaleIntercept)
    image = load_image(DATA / "CT_small.dcm")
    assert image.pixels.dtype == np.float32
    assert image.pixels.shape == (128, 128)
    for r, c in [(0, 0), (64, 64), (100, 17), (127, 127)]:
        assert image.pixels[r, c] == pytest.approx(raw[r, c] * slope + intercept)
    assert intercept == -1024.0  # the check above is not trivial
    assert image.pixel_spacing_mm == pytest.approx((0.661468, 0.661468))
    assert image.pixel_spacing_note == "patient"
    assert image.sop_instance_uid == ds.SOPInstanceUID
    # CT_small has no window and no body part: the CT default preset is used
    assert image.window == WINDOW_PRESETS["abdomen"]


def test_modality_lut_sequence_is_applied() -> None:
    ds = _read("MR_small.dcm")
    stored = ds.pixel_array.astype(np.int64)
    first, n = int(stored.min()) + 10, 256
    lut = (np.arange(n, dtype=np.int64) * 7 + 3) % 4096
    item = Dataset()
    item.LUTDescriptor = [n, first, 16]
    item.ModalityLUTType = "US"
    item.LUTData = [int(v) for v in lut]
    ds.ModalityLUTSequence = Sequence([item])
    assert "RescaleSlope" not in ds  # the LUT is the only modality transform
    image = load_image(ds)
    expected = lut[np.clip(stored - first, 0, n - 1)]
    np.testing.assert_array_equal(image.pixels, expected.astype(np.float32))


def test_header_window_first_of_multiple_values() -> None:
    ds = _read("CT_small.dcm")
    ds.WindowCenter = [40, 400]
    ds.WindowWidth = [80, 2000]
    assert load_image(ds).window == (40.0, 80.0)


@pytest.mark.parametrize(("body_part", "preset"), [("HEAD", "brain"), ("CHEST", "mediastinum"), ("LUNG", "lung")])
def test_preset_window_when_header_has_none(body_part: str, preset: str) -> None:
    ds = _read("CT_small.dcm")
    ds.BodyPartExamined = body_part
    assert load_image(ds).window == WINDOW_PRESETS[preset]
    assert preset_window("MR", body_part) is None


def test_voi_lut_sequence_gives_window_over_its_domain() -> None:
    ds = _read("MR_small.dcm")
    item = Dataset()
    item.LUTDescriptor = [1024, 100, 8]
    item.LUTData = list(range(0, 256)) * 4
    ds.VOILUTSequence = Sequence([item])
    for kw in ("WindowCenter", "WindowWidth"):
        if kw in ds:
            delattr(ds, kw)
    assert load_image(ds).window == (100 + 512.0, 1024.0)


# --------------------------------------------------------------------------- transfer syntaxes


def test_lossless_transfer_syntaxes_decode_identically() -> None:
    reference = load_image(DATA / "ts_matrix" / "1_explicit_le.dcm").pixels
    others = sorted((DATA / "ts_matrix").glob("*.dcm"))
    assert len(others) == 6
    for path in others:
        np.testing.assert_array_equal(load_image(path).pixels, reference, err_msg=path.name)
    mr = load_image(DATA / "MR_small.dcm").pixels
    for name in ["MR_small_RLE", "MR_small_jp2klossless", "MR_small_jpeg_ls_lossless", "MR_small_bigendian"]:
        np.testing.assert_array_equal(load_image(DATA / f"{name}.dcm").pixels, mr, err_msg=name)


def test_lossy_jpeg2000_is_close_to_the_lossless_encoding() -> None:
    lossy = np.asarray(load_image(DATA / "693_J2KI.dcm").pixels, dtype=np.float64)
    lossless = np.asarray(load_image(DATA / "693_J2KR.dcm").pixels, dtype=np.float64)
    assert lossy.shape == lossless.shape == (512, 512)
    assert not np.array_equal(lossy, lossless)  # really lossy
    body = lossless > -900  # inside the body (outside the field of view is padding)
    assert float(np.median(np.abs(lossy[body] - lossless[body]))) < 60.0
    assert float(np.corrcoef(lossy[body], lossless[body])[0, 1]) > 0.95


# --------------------------------------------------------------------------- photometric


def test_monochrome1_is_inverted_so_higher_is_brighter() -> None:
    ds1 = _read("highdicom_dx_image.dcm")
    assert ds1.PhotometricInterpretation == "MONOCHROME1"
    ds2 = copy.deepcopy(ds1)
    ds2.PhotometricInterpretation = "MONOCHROME2"
    im1, im2 = load_image(ds1), load_image(ds2)
    assert im1.photometric == "MONOCHROME2"
    # 8-bit unsigned, identity rescale: modality range 0..255, inversion is 255 - value
    np.testing.assert_array_equal(im1.pixels, 255.0 - np.asarray(im2.pixels, dtype=np.float32))
    assert im1.window is not None and im2.window is not None
    assert im1.window == (255.0 - im2.window[0], im2.window[1])
    # the stored maximum (darkest in MONOCHROME1) renders darkest
    stored = ds1.pixel_array
    r, c = np.unravel_index(np.argmax(stored), stored.shape)
    rendered = window_to_uint8(im1)
    assert rendered[r, c] == rendered.min()


def test_ybr_full_jpeg_becomes_rgb_matching_the_rgb_original() -> None:
    ybr = load_image(DATA / "SC_rgb_jpeg_dcmtk.dcm")
    rgb = load_image(DATA / "SC_rgb_rle.dcm")
    assert _read("SC_rgb_jpeg_dcmtk.dcm").PhotometricInterpretation == "YBR_FULL"
    assert ybr.photometric == rgb.photometric == "RGB"
    assert ybr.pixels.shape == rgb.pixels.shape == (100, 100, 3)
    diff = np.abs(ybr.pixels.astype(int) - rgb.pixels.astype(int))
    assert diff.mean() < 2.0 and diff.max() <= 10  # JPEG lossy, not a colour-space error
    assert tuple(rgb.pixels[5, 5]) == (255, 0, 0)


def test_ybr_full_422_multiframe() -> None:
    images = load_images(DATA / "examples_ybr_color.dcm")
    assert len(images) == 30
    assert [im.frame for im in images] == list(range(30))
    assert all(im.pixels.shape == (240, 320, 3) and im.photometric == "RGB" for im in images)
    single = load_image(DATA / "examples_ybr_color.dcm", frame=7)
    np.testing.assert_array_equal(single.pixels, images[7].pixels)


def test_palette_color_to_rgb_matches_the_lut() -> None:
    ds = _read("OBXXXX1A_rle_2frame.dcm")
    images = load_images(DATA / "OBXXXX1A_rle_2frame.dcm")
    assert len(images) == 2
    index = ds.pixel_array[1]
    first = int(ds.RedPaletteColorLookupTableDescriptor[1])
    luts = [np.frombuffer(ds[f"{c}PaletteColorLookupTableData"].value, dtype="<u2") for c in ("Red", "Green", "Blue")]
    for r, c in [(0, 0), (300, 400), (599, 799), (123, 456)]:
        expected = tuple(int(lut[max(int(index[r, c]) - first, 0)]) for lut in luts)
        assert tuple(int(v) for v in images[1].pixels[r, c]) == expected
    assert images[1].photometric == "RGB"


# --------------------------------------------------------------------------- multi-frame, geometry


def _enhanced_from_ct(n: int = 3) -> Dataset:
    """An enhanced-style multi-frame object built from CT_small: per-frame rescale and window, shared spacing."""
    ds = _read("CT_small.dcm")
    frame = ds.pixel_array
    frames = np.stack([frame] * n)
    ds.NumberOfFrames = n
    ds.PixelData = frames.tobytes()
    for kw in ("RescaleSlope", "RescaleIntercept", "PixelSpacing", "ImagePositionPatient", "ImageOrientationPatient"):
        delattr(ds, kw)
    shared = Dataset()
    measures = Dataset()
    measures.PixelSpacing = [0.5, 0.6]
    measures.SliceThickness = 1.0
    shared.PixelMeasuresSequence = Sequence([measures])
    orient = Dataset()
    orient.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    shared.PlaneOrientationSequence = Sequence([orient])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    per_frame = []
    for i in range(n):
        item = Dataset()
        pvt = Dataset()
        pvt.RescaleSlope = i + 1
        pvt.RescaleIntercept = -1000 + 10 * i
        item.PixelValueTransformationSequence = Sequence([pvt])
        voi = Dataset()
        voi.WindowCenter = 40 + i
        voi.WindowWidth = 400
        item.FrameVOILUTSequence = Sequence([voi])
        pos = Dataset()
        pos.ImagePositionPatient = [0.0, 0.0, 10.0 * (n - 1 - i)]  # frames stored in reverse spatial order
        item.PlanePositionSequence = Sequence([pos])
        per_frame.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame)
    return ds


def test_enhanced_multiframe_uses_per_frame_functional_groups() -> None:
    ds = _enhanced_from_ct()
    raw = _read("CT_small.dcm").pixel_array.astype(np.float64)
    images = load_images(ds)
    assert len(images) == 3
    for i, image in enumerate(images):
        assert image.frame == i
        assert image.pixel_spacing_mm == (0.5, 0.6)
        assert image.window == (40.0 + i, 400.0)
        assert image.pixels[10, 20] == pytest.approx(raw[10, 20] * (i + 1) - 1000 + 10 * i)


def test_emri_multiframe_count() -> None:
    images = load_images(DATA / "emri_small.dcm")
    assert len(images) == 10 and {im.pixels.shape for im in images} == {(64, 64)}


def test_imager_pixel_spacing_is_flagged_or_corrected() -> None:
    ds = _read("highdicom_dx_image.dcm")
    del ds.PixelSpacing
    ds.ImagerPixelSpacing = [0.2, 0.2]
    image = load_image(ds)
    assert image.pixel_spacing_mm == (0.2, 0.2)
    assert image.pixel_spacing_note == "detector (not corrected for magnification)"
    ds.EstimatedRadiographicMagnificationFactor = 1.25
    image = load_image(ds)
    assert image.pixel_spacing_mm == pytest.approx((0.16, 0.16))
    assert image.pixel_spacing_note == "detector corrected by estimated magnification"


def test_zero_pixel_spacing_means_unknown() -> None:
    ds = _read("CT_small.dcm")
    ds.PixelSpacing = [0, 0]
    image = load_image(ds)
    assert image.pixel_spacing_mm is None and image.pixel_spacing_note is None


def test_view_position_from_header_or_view_code() -> None:
    ds = _read("highdicom_dx_image.dcm")
    ds.ViewPosition = "AP"
    assert load_image(ds).view_position == "AP"
    ds.ViewPosition = ""
    code = Dataset()
    code.CodeValue = "399348003"
    code.CodingSchemeDesignator = "SCT"
    code.CodeMeaning = "postero-anterior"
    ds.ViewCodeSequence = Sequence([code])
    assert load_image(ds).view_position == "PA"


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("name", "needle"),
    [
        ("badVR.dcm", "(0028,0008)"),
        ("nested_priv_SQ.dcm", "(0028,0010)"),
        ("liver_deflate.dcm", "(0002,0010)"),
        ("emri_small_jpeg_2k_lossless_too_short.dcm", "no DICOM data elements"),
        ("MR_truncated.dcm", "(7FE0,0010)"),
        ("JPEG-lossy.dcm", "cannot decode (7FE0,0010)"),
    ],
)
def test_broken_files_fail_cleanly_naming_file_and_tag(name: str, needle: str) -> None:
    path = DATA / "bad" / name
    with pytest.raises(IngestError) as info:
        load_images(path)
    assert str(path) in str(info.value)
    assert needle in str(info.value)


def test_non_dicom_and_missing_files(tmp_path: Path) -> None:
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"this is not DICOM at all" * 10)
    with pytest.raises(IngestError, match="junk.dcm"):
        load_image(junk)
    with pytest.raises(IngestError, match="file not found"):
        load_image(tmp_path / "absent.dcm")
    sr = DATA / "highdicom_sr_document_tid1500.dcm"
    with pytest.raises(IngestError, match=r"no \(7FE0,0010\) Pixel Data"):
        load_image(sr)
    with pytest.raises(IngestError, match="frame 5 out of range"):
        load_image(DATA / "CT_small.dcm", frame=5)


def test_errors_carry_no_patient_name() -> None:
    ds = _read("CT_small.dcm")
    ds.PatientName = "SECRET^PERSON"
    del ds.Rows
    with pytest.raises(IngestError) as info:
        load_image(ds)
    assert "SECRET" not in str(info.value)


# --------------------------------------------------------------------------- windowing


def test_window_to_uint8_ct_levels() -> None:
    image = load_image(DATA / "CT_small.dcm")
    c, w = 40.0, 400.0
    out = window_to_uint8(image, (c, w))
    px = np.asarray(image.pixels, dtype=np.float64)
    assert out.dtype == np.uint8
    assert np.all(out[px <= c - w / 2] == 0)
    assert np.all(out[px >= c + w / 2] == 255)
    mid = (px > c - 5) & (px < c + 5)
    assert mid.any() and np.all(np.abs(out[mid].astype(int) - 128) <= 4)


def test_window_to_uint8_rgb_passthrough() -> None:
    image = load_image(DATA / "SC_rgb_rle.dcm")
    np.testing.assert_array_equal(window_to_uint8(image), image.pixels)
    palette16 = load_image(DATA / "OBXXXX1A_rle_2frame.dcm")
    assert window_to_uint8(palette16).dtype == np.uint8


_finite = st.floats(min_value=-5000, max_value=5000, allow_nan=False, width=32)


@settings(max_examples=60, deadline=None)
@given(
    values=arrays(np.float32, st.integers(2, 200), elements=_finite),
    center=st.floats(-2000, 2000),
    width=st.floats(1, 5000),
)
def test_window_is_monotonic_and_in_range(values: np.ndarray, center: float, width: float) -> None:
    order = np.argsort(values, kind="stable")
    y = apply_window(values[order], center, width)
    assert np.all(np.diff(y) >= 0)
    assert float(y.min()) >= 0.0 and float(y.max()) <= 255.0
    u8 = window_array_to_uint8(values[order], (center, width))
    assert np.all(np.diff(u8.astype(int)) >= 0)


@settings(max_examples=40, deadline=None)
@given(values=arrays(np.float32, st.integers(1, 300), elements=_finite))
def test_auto_window_covers_data(values: np.ndarray) -> None:
    c, w = auto_window(values)
    assert w >= 1.0
    assert c - w / 2 >= float(values.min()) - 1.0
    assert c + w / 2 <= float(values.max()) + 1.0 or w == 1.0


def test_window_rejects_bad_width() -> None:
    with pytest.raises(IngestError, match="width"):
        apply_window(np.zeros(3, np.float32), 0.0, 0.5)


def test_render_uint8_applies_a_voi_lut_exactly() -> None:
    ds = _read("MR_small.dcm")
    stored = ds.pixel_array.astype(np.int64)
    first, n = int(stored.min()), 512
    lut = ((np.arange(n) ** 2) // 64).clip(0, 4095)  # non-linear: no window reproduces it
    item = Dataset()
    item.LUTDescriptor = [n, first, 12]
    item.LUTData = [int(v) for v in lut]
    ds.VOILUTSequence = Sequence([item])
    out = render_uint8(ds)
    expected = np.rint(lut[np.clip(stored - first, 0, n - 1)] * (255.0 / 4095)).astype(np.uint8)
    np.testing.assert_array_equal(out, expected)
    ds.PhotometricInterpretation = "MONOCHROME1"
    np.testing.assert_array_equal(render_uint8(ds), 255 - expected)
    # without a LUT it is the windowed image
    plain = _read("CT_small.dcm")
    np.testing.assert_array_equal(render_uint8(plain), window_to_uint8(load_image(plain)))


def test_ultrasound_region_calibration_gives_spacing() -> None:
    ds = _read("SC_rgb_rle.dcm")
    del ds.PixelSpacing
    region = Dataset()
    region.PhysicalUnitsXDirection = 3  # cm
    region.PhysicalUnitsYDirection = 3
    region.PhysicalDeltaX = 0.02
    region.PhysicalDeltaY = 0.025
    doppler = Dataset()
    doppler.PhysicalUnitsXDirection = 4  # seconds: not spatial, ignored
    doppler.PhysicalUnitsYDirection = 7
    doppler.PhysicalDeltaX = 0.01
    doppler.PhysicalDeltaY = 0.5
    ds.SequenceOfUltrasoundRegions = Sequence([region, doppler])
    image = load_image(ds)
    assert image.pixel_spacing_mm == pytest.approx((0.25, 0.2))
    assert image.pixel_spacing_note == "ultrasound region calibration"
    other = Dataset()
    other.PhysicalUnitsXDirection = other.PhysicalUnitsYDirection = 3
    other.PhysicalDeltaX = other.PhysicalDeltaY = 0.05
    ds.SequenceOfUltrasoundRegions.append(other)
    assert load_image(ds).pixel_spacing_mm is None  # two spatial calibrations: no single spacing
