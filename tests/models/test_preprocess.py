"""Pixel and signal preparation: properties over arbitrary inputs."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from core.records import EcgRecord, Image
from models.ecg_cnn import ecg_windows
from models.preprocess import apply_window, key_slice_indices, to_rgb_uint8

LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")


@given(
    arrays(np.float32, st.tuples(st.integers(2, 20), st.integers(2, 20)), elements=st.floats(-3000, 3000, width=32)),
    st.one_of(st.none(), st.tuples(st.floats(-1000, 1000), st.floats(1, 4000))),
)
def test_window_output_is_in_unit_range_and_monotonic(px: np.ndarray, window: tuple[float, float] | None) -> None:
    out = apply_window(px, window)
    assert out.shape == px.shape and out.dtype == np.float32
    assert np.all((out >= 0) & (out <= 1))
    order = np.argsort(px, axis=None, kind="stable")
    assert np.all(np.diff(out.ravel()[order]) >= -1e-6)


def test_monochrome1_is_inverted() -> None:
    px = np.array([[0, 100], [200, 300]], dtype=np.uint16)
    m2 = to_rgb_uint8(Image(px, window=(150.0, 301.0)))
    m1 = to_rgb_uint8(Image(px, window=(150.0, 301.0), photometric="MONOCHROME1"))
    assert m2.shape == (2, 2, 3) and m2[0, 0, 0] < m2[1, 1, 0]
    assert m1[0, 0, 0] > m1[1, 1, 0]


@given(st.integers(1, 400), st.integers(1, 16))
def test_key_slices_are_sorted_unique_and_in_range(n: int, count: int) -> None:
    idx = key_slice_indices(n, count)
    assert idx == sorted(set(idx)) and all(0 <= i < n for i in idx)
    assert len(idx) == min(n, count) or n > count


@settings(max_examples=25, deadline=None)
@given(
    fs=st.sampled_from([100.0, 250.0, 360.0, 500.0, 1000.0]),
    seconds=st.floats(2.5, 12.0),
    target=st.sampled_from([100.0, 500.0]),
)
def test_ecg_windows_cover_the_record(fs: float, seconds: float, target: float) -> None:
    n = int(fs * seconds)
    sig = np.random.default_rng(0).normal(size=(12, n)).astype(np.float32)
    rec = EcgRecord(sig, LEADS, fs, "synthetic")
    w = ecg_windows(rec, target)
    win = round(2.5 * target)
    resampled = int(np.ceil(n * target / fs))
    assert w.shape[1:] == (12, win) and w.dtype == np.float32
    assert w.shape[0] == (resampled - win) // (win // 2) + 1
    assert np.isfinite(w).all()
