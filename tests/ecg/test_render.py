"""The 12-lead printout: physical scale measured in pixels, layouts, outputs."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.codes import LOINC, MDC, UCUM
from core.errors import EcgError
from core.records import (
    EcgRecord,
    Finding,
    Measurement,
    Patient,
    PatientIdentifier,
    Producer,
    ProducerKind,
    Sex,
)
from ecg.device_check import compare, summary
from ecg.readers import read_ecg
from ecg.render import (
    CAL_PULSE_MM,
    FOOTER_MM,
    GAIN_MM_PER_MV,
    HALF_GAIN_MM_PER_MV,
    LINE_MM,
    MAJOR_COLOUR,
    MARGIN_MM,
    _gain,
    _header_text,
    _layout,
    _measure_line,
    _statement_lines,
    render_array,
    render_pdf,
    render_png,
)

DATA = Path(__file__).parents[1] / "data" / "ecg"
DPI = 254  # 10 px per mm


def _flat_record(leads: tuple[str, ...], seconds: float = 10.0, fs: float = 500.0) -> EcgRecord:
    """All-zero leads: the only dark pixels in the grid are the calibration pulses."""
    return EcgRecord(np.zeros((len(leads), int(seconds * fs)), dtype=np.float32), leads, fs, source="synthetic")


def _png_rgb(data: bytes) -> np.ndarray:
    img = Image.open(io.BytesIO(data))
    assert img.info.get("dpi", (DPI, DPI))[0] == pytest.approx(DPI, abs=1)
    return np.asarray(img.convert("RGB")).astype(int)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) of runs of True in a 1-D mask."""
    idx = np.flatnonzero(mask)
    if idx.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(idx) > 1)
    starts = np.r_[idx[0], idx[breaks + 1]]
    ends = np.r_[idx[breaks], idx[-1]]
    return list(zip(starts.tolist(), ends.tolist(), strict=True))


def test_calibration_pulse_is_10_mm_tall_and_grid_is_5_mm() -> None:
    rec = _flat_record(("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"))
    rgb = _png_rgb(render_png(rec, dpi=DPI))
    px_per_mm = DPI / 25.4
    dark = rgb.sum(axis=2) < 150
    x0 = round(MARGIN_MM * px_per_mm)  # left edge of the grid
    # the rising edge of the first row's pulse: first column right of the grid edge with a long dark run
    up_col = x0 + round((CAL_PULSE_MM[0] + 0.0) * px_per_mm)
    col = dark[:, up_col - 1 : up_col + 2].any(axis=1)
    vertical = max(_runs(col), key=lambda r: r[1] - r[0])
    # pulse: baseline centre to top centre, read on the flat parts before and inside the pulse
    before = _runs(dark[:, x0 + int(1.0 * px_per_mm)])
    inside = _runs(dark[:, x0 + int(4.5 * px_per_mm)])
    in_span = [r for r in before if vertical[0] - 5 <= r[0] <= vertical[1] + 5]
    top_span = [r for r in inside if vertical[0] - 5 <= r[0] <= vertical[1] + 5]
    assert in_span and top_span
    baseline_y = (in_span[-1][0] + in_span[-1][1]) / 2
    top_y = (top_span[0][0] + top_span[0][1]) / 2
    assert baseline_y - top_y == pytest.approx(10 * px_per_mm, abs=1.5)  # 1 mV = 10 mm
    # pulse width: 0.2 s at 25 mm/s = 5 mm
    row = dark[round((baseline_y + top_y) / 2), x0 : x0 + int(10 * px_per_mm)]
    edges = _runs(row)
    assert len(edges) == 2
    assert (edges[1][0] + edges[1][1]) / 2 - (edges[0][0] + edges[0][1]) / 2 == pytest.approx(5 * px_per_mm, abs=1.5)
    # major grid lines every 5 mm: exact colour (grid lines are not anti-aliased)
    major = np.array([int(MAJOR_COLOUR[i : i + 2], 16) for i in (1, 3, 5)])
    scan_y = round(baseline_y + 7.5 * px_per_mm)  # between rows, away from traces
    is_major = np.abs(rgb[scan_y] - major).sum(axis=1) == 0
    centres = np.array([(a + b) / 2 for a, b in _runs(is_major)])
    spacing = np.diff(centres)
    assert len(spacing) > 40
    np.testing.assert_allclose(spacing, 5 * px_per_mm, atol=1.0)


def test_time_scale_25_mm_per_second() -> None:
    # one spike per second in lead II: on the rhythm strip, spikes are 25 mm apart
    fs = 500
    sig = np.zeros((2, 10 * fs), dtype=np.float32)
    sig[1, fs // 2 :: fs] = 1.5
    rec = EcgRecord(sig, ("V1", "II"), fs, source="synthetic")
    rgb = _png_rgb(render_png(rec, dpi=DPI))
    px_per_mm = DPI / 25.4
    dark = rgb.sum(axis=2) < 150
    # rhythm strip is the bottom row; its baseline sits 15 mm above the grid bottom
    page_h = rgb.shape[0]
    grid_bottom = page_h - round(8.0 * px_per_mm)
    y = grid_bottom - round(15 * px_per_mm) - round(5 * px_per_mm)  # 0.5 mV above baseline
    runs = [r for r in _runs(dark[y]) if r[0] > (MARGIN_MM + 10) * px_per_mm]
    centres = np.array([(a + b) / 2 for a, b in runs])
    assert len(centres) == 10
    np.testing.assert_allclose(np.diff(centres), 25 * px_per_mm, atol=1.5)


def test_real_record_png_pdf_and_array() -> None:
    rec = read_ecg(DATA / "dicom" / "waveform_ecg.dcm")
    png = render_png(rec, rec.device_measurements, dpi=100)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pdf = render_pdf(rec, rec.device_measurements)
    assert pdf[:5] == b"%PDF-" and pdf.rstrip().endswith(b"%%EOF")
    arr = render_array(rec, dpi=100)
    assert arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] == 3
    # page size: 280 mm x (34 + 4 rows x 30 + 8) mm at 100 dpi
    assert arr.shape[1] == pytest.approx(280 / 25.4 * 100, abs=2)
    # + 5 mm: the device's own measurements line (the sample carries the cart's values)
    assert arr.shape[0] == pytest.approx(167 / 25.4 * 100, abs=2)
    # the traces are drawn: plenty of black pixels
    assert (arr.sum(axis=2) < 100).sum() > 5000


def test_non_12_lead_record_draws_its_leads() -> None:
    rec = read_ecg(DATA / "wfdb" / "mitdb_100" / "100")
    arr = render_array(rec, dpi=60)
    # two lead rows + the rhythm strip
    assert arr.shape[0] == pytest.approx((34 + 3 * 30 + 8) / 25.4 * 60, abs=2)
    short = _flat_record(("V2",), seconds=2.0)
    assert render_array(short, dpi=40).shape[2] == 3


def test_header_text_from_measurements_and_statements() -> None:
    ms = [
        Measurement(LOINC.HEART_RATE, 72, UCUM.BPM),
        Measurement(LOINC.PR_INTERVAL, 158, UCUM.MS),
        Measurement(LOINC.QRS_DURATION, 92, UCUM.MS),
        Measurement(LOINC.QT_INTERVAL, 388, UCUM.MS),
        Measurement(LOINC.QTC_BAZETT, 425, UCUM.MS),
        Measurement(LOINC.QRS_AXIS, -12, UCUM.DEG),
        Measurement(LOINC.QRS_DURATION, 130, UCUM.MS, site="V1"),  # per-lead: not the global value
    ]
    line = _measure_line(ms)
    assert line == "HR 72 /min   PR 158 ms   QRS 92 ms   QT 388 ms   QTc 425 ms   QRS axis -12°"
    producer = Producer(ProducerKind.RULE_ENGINE, "rules", "1", digest="0" * 64)
    findings = [Finding(None, f"statement {i}", producer) for i in range(6)]
    findings[0] = Finding(None, "STEMI", producer, critical=True)
    lines = _statement_lines(findings)
    assert lines[0] == "CRITICAL: STEMI" and lines[-1] == "statement 5" and len(lines) == 6  # all, never "+N more"
    assert _measure_line([]) == "Measurements: not available"


def test_bad_arguments() -> None:
    with pytest.raises(EcgError, match="dpi must be positive"):
        render_png(_flat_record(("II",)), dpi=0)
    with pytest.raises(EcgError, match="expects an EcgRecord"):
        render_png(np.zeros((12, 100)))  # type: ignore[arg-type]


def test_nan_gaps_and_huge_values_do_not_break_the_page() -> None:
    sig = np.zeros((12, 5000), dtype=np.float32)
    sig[:, 1000:1200] = np.nan  # a gap in every lead
    sig[6] = 50.0  # a saturated lead: clipped to the paper, not drawn over the header
    rec = EcgRecord(sig, ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"), 500.0, source="s")
    arr = render_array(rec, dpi=60)
    header = arr[: int(20 / 25.4 * 60)]  # top 20 mm: text only, no trace ink
    assert (header.sum(axis=2) < 100).mean() < 0.05


# --------------------------------------------------------------------------- cart header, gain, device values


def _twelve(signal: np.ndarray, **kw: object) -> EcgRecord:
    leads = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
    return EcgRecord(signal.astype(np.float32), leads, 500.0, source="synthetic", **kw)  # type: ignore[arg-type]


def test_header_has_patient_time_in_site_zone_device_speed_and_gain() -> None:
    rec = _twelve(
        np.zeros((12, 5000)),
        patient=Patient(
            identifiers=(PatientIdentifier("MRN-5", "HOSP"),), name="Ölund^Åsa", sex=Sex.FEMALE, age_years=63.0
        ),
        acquired_at=datetime(2026, 1, 15, 8, 34, 0, tzinfo=UTC),
        device_name="MAC 5500",
        device_statements=("Sinus rhythm", "Normal ECG"),
    )
    text = _header_text(rec, [], [], GAIN_MM_PER_MV, "Europe/Berlin")
    assert text.identity == "Ölund, Åsa   ID MRN-5   63 y   female   2026-01-15 09:34:00 +01:00"
    assert "MAC 5500" in text.technique and "25 mm/s" in text.technique and "10 mm/mV" in text.technique
    assert text.right == ["MAC 5500:", "Sinus rhythm", "Normal ECG"]
    naive = _twelve(np.zeros((12, 5000)), acquired_at=datetime(2026, 7, 1, 9, 34))
    assert _header_text(naive, [], [], 10.0, "Europe/Berlin").identity.endswith("2026-07-01 09:34:00 +02:00")


def test_many_statements_grow_the_header_instead_of_being_cut() -> None:
    producer = Producer(ProducerKind.RULE_ENGINE, "rules", "1", digest="0" * 64)
    findings = [Finding(None, f"statement number {i}", producer) for i in range(9)]
    rec = _flat_record(("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"))
    short = render_array(rec, dpi=40)
    tall = render_array(rec, statements=findings, dpi=40)
    # 9 statements + the "mmdx:" line = 10 lines: 6 more than the 4 the fixed header holds
    assert tall.shape[0] - short.shape[0] == pytest.approx(6 * LINE_MM / 25.4 * 40, abs=2)


def _dark_rows_between(arr: np.ndarray, dpi: float, y0_mm: float, y1_mm: float, x0_mm: float, x1_mm: float) -> int:
    """Dark (trace) pixels in a band of the grid, coordinates in mm from the grid's bottom-left corner."""
    px = dpi / 25.4
    height = arr.shape[0]
    bottom = height - FOOTER_MM * px
    rows = slice(round(bottom - y1_mm * px), round(bottom - y0_mm * px))
    cols = slice(round((MARGIN_MM + x0_mm) * px), round((MARGIN_MM + x1_mm) * px))
    return int((arr[rows, cols].sum(axis=2) < 150).sum())


def test_tall_complexes_go_to_half_gain_and_never_reach_the_next_row() -> None:
    sig = np.zeros((12, 5000))
    t = np.arange(5000) / 500.0
    spikes = ((t % 0.8) < 0.04).astype(float)
    sig[10] = 2.5 * spikes  # V5: 2.5 mV R waves, 25 mm at full gain
    rec = _twelve(sig)
    segments, _ = _layout(rec)
    assert _gain(rec, segments) == HALF_GAIN_MM_PER_MV
    assert _gain(_twelve(sig * 0.5), segments) == GAIN_MM_PER_MV
    huge = _twelve(np.where(spikes > 0, 8.0, 0.0) * np.ones((12, 1)))  # 8 mV: 40 mm even at half gain
    arr = render_array(huge, dpi=DPI)
    # V5 sits in the second row (baseline 75 mm): between the rows (90 +- 0.4 mm) no trace ink
    x0 = 10 + 7.5 * 25
    assert _dark_rows_between(arr, DPI, 89.7, 90.3, x0 + 2, x0 + 60) == 0
    assert _dark_rows_between(arr, DPI, 59.7, 60.3, x0 + 2, x0 + 60) == 0


def test_device_values_beside_mmdx_with_iec_differences_flagged() -> None:
    ours = [
        Measurement(LOINC.PR_INTERVAL, 176, UCUM.MS),
        Measurement(LOINC.QRS_DURATION, 96, UCUM.MS),
        Measurement(LOINC.QT_INTERVAL, 400, UCUM.MS),
        Measurement(LOINC.HEART_RATE, 90, UCUM.BPM),
    ]
    device = [
        Measurement(MDC.PR_INTERVAL, 160, UCUM.MS),  # 16 ms: beyond 10
        Measurement(LOINC.QRS_DURATION, 90, UCUM.MS),  # 6 ms: within 10
        Measurement(LOINC.QT_INTERVAL, 380, UCUM.MS),  # 20 ms: within 25
        Measurement(LOINC.HEART_RATE, 70, UCUM.BPM),  # no IEC bound
        Measurement(MDC.P_DURATION, 100, UCUM.MS),  # mmdx has none
    ]
    checks = {c.label: c for c in compare(ours, device)}
    assert checks["PR"].exceeds and checks["PR"].difference == 16
    assert not checks["QRS"].exceeds and not checks["QT"].exceeds and not checks["HR"].exceeds
    assert checks["P"].ours is None and not checks["P"].exceeds
    text = summary(tuple(checks.values()), "MAC 5500", ("Sinus rhythm",))
    assert text is not None
    assert "PR 160 ms (mmdx +16, beyond ±10 ms)" in text
    assert "differ beyond the IEC 60601-2-25 bounds on PR:" in text
    assert text.endswith("ECG device (MAC 5500) statements: Sinus rhythm.")
    assert summary((), None, ()) is None


def test_cli_printout_writes_a_pdf_per_file(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from app.cli import cli

    result = CliRunner().invoke(
        cli, ["ecg", "analyze", str(DATA / "dicom" / "waveform_ecg.dcm"), "--printout", str(tmp_path / "p")]
    )
    assert result.exit_code == 0, result.output
    pdf = (tmp_path / "p" / "waveform_ecg.dcm.pdf").read_bytes()
    assert pdf.startswith(b"%PDF") and b"/Type /Page" in pdf
