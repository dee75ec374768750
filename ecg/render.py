"""The standard 12-lead printout: 3x4 leads + lead II rhythm strip on ECG paper.

Physical scale is exact, because clinicians measure on the paper: 25 mm/s, 10 mm/mV, 1 mm
minor and 5 mm major grid, a 1 mV calibration pulse at the start of every row.  The page is
laid out in millimetres and the figure size is set in millimetres, so at ``dpi`` one
millimetre is exactly ``dpi / 25.4`` pixels.  The same page is given to vision-language
models (:func:`render_array`), to reports (PNG/PDF) and to PACS as a secondary capture.

Records that are not a standard 12-lead ECG (a 2-lead Holter, a monitor strip) are drawn
one 10 s row per lead (at most 12), with the rhythm strip from lead II or the first lead.
Inputs are core records only: the printout does not depend on how measurements were made.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

from core.codes import LOINC, Code
from core.errors import EcgError
from core.records import EcgRecord, Finding, Measurement, Presence

SPEED_MM_PER_S: Final = 25.0
GAIN_MM_PER_MV: Final = 10.0
ROW_HEIGHT_MM: Final = 30.0
CAL_ZONE_MM: Final = 10.0  #: room at the start of each row for the calibration pulse
CAL_PULSE_MM: Final = (2.0, 7.0)  #: the pulse's rising and falling edge within the zone (0.2 s wide)
STRIP_SECONDS: Final = 10.0
MARGIN_MM: Final = 10.0
HEADER_MM: Final = 34.0
FOOTER_MM: Final = 8.0
MAX_ROWS: Final = 12
DISCLAIMER: Final = "AI/automated draft — not for diagnosis"

#: 3x4 layout: rows of the printout, each with four 2.5 s columns.
LAYOUT_12: Final[tuple[tuple[str, ...], ...]] = (
    ("I", "aVR", "V1", "V4"),
    ("II", "aVL", "V2", "V5"),
    ("III", "aVF", "V3", "V6"),
)

MINOR_COLOUR: Final = "#f9c8c8"
MAJOR_COLOUR: Final = "#e87070"
TRACE_COLOUR: Final = "#000000"

_HEADER_ITEMS: Final[tuple[tuple[str, tuple[Code, ...], str], ...]] = (
    ("HR", (LOINC.HEART_RATE, LOINC.EKG_HEART_RATE), "/min"),
    ("PR", (LOINC.PR_INTERVAL,), "ms"),
    ("QRS", (LOINC.QRS_DURATION,), "ms"),
    ("QT", (LOINC.QT_INTERVAL,), "ms"),
    ("QTc", (LOINC.QTC_INTERVAL, LOINC.QTC_BAZETT, LOINC.QTC_FRIDERICIA), "ms"),
    ("P axis", (LOINC.P_AXIS,), "°"),
    ("QRS axis", (LOINC.QRS_AXIS,), "°"),
    ("T axis", (LOINC.T_AXIS,), "°"),
)


@dataclass(frozen=True, slots=True)
class _Segment:
    """One trace on the page: lead, time span in the record, where it goes (mm)."""

    lead: str
    start_s: float
    duration_s: float
    x_mm: float
    baseline_mm: float
    rhythm: bool = False


def _layout(record: EcgRecord) -> tuple[list[_Segment], int]:
    """The segments to draw and the number of rows (the rhythm strip is the last row)."""
    segments: list[_Segment] = []
    if record.has_standard_12_leads:
        rows: list[tuple[str, ...]] = list(LAYOUT_12)
        column_s = STRIP_SECONDS / 4
        n_rows = len(rows) + 1
        for r, leads in enumerate(rows):
            base = (n_rows - r - 0.5) * ROW_HEIGHT_MM
            for c, lead in enumerate(leads):
                segments.append(
                    _Segment(lead, c * column_s, column_s, CAL_ZONE_MM + c * column_s * SPEED_MM_PER_S, base)
                )
    else:
        leads = record.lead_names[:MAX_ROWS]
        n_rows = len(leads) + 1
        for r, lead in enumerate(leads):
            base = (n_rows - r - 0.5) * ROW_HEIGHT_MM
            segments.append(_Segment(lead, 0.0, STRIP_SECONDS, CAL_ZONE_MM, base))
    rhythm = "II" if "II" in record.lead_names else record.lead_names[0]
    segments.append(_Segment(rhythm, 0.0, STRIP_SECONDS, CAL_ZONE_MM, 0.5 * ROW_HEIGHT_MM, rhythm=True))
    return segments, n_rows


def trace_mm(
    samples: npt.NDArray[np.floating], fs: float, start_s: float, duration_s: float
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """A lead's samples in a time window as (x, y) in mm from the window start and the baseline.

    The window's median is taken as baseline so that an offset lead still sits on its row;
    nothing else is filtered: the printout shows the signal as recorded.
    """
    i0 = max(0, round(start_s * fs))
    i1 = min(len(samples), round((start_s + duration_s) * fs))
    seg = np.asarray(samples[i0:i1], dtype=np.float64)
    if seg.size == 0:
        return np.empty(0), np.empty(0)
    finite = seg[np.isfinite(seg)]
    offset = float(np.median(finite)) if finite.size else 0.0
    x = (np.arange(seg.size) / fs) * SPEED_MM_PER_S
    return x, (seg - offset) * GAIN_MM_PER_MV


def _grid(ax: Axes, width: float, height: float) -> None:
    minor_x = [x for x in np.arange(0, width + 1e-9, 1.0) if round(x) % 5]
    minor_y = [y for y in np.arange(0, height + 1e-9, 1.0) if round(y) % 5]
    major_x = np.arange(0, width + 1e-9, 5.0).tolist()
    major_y = np.arange(0, height + 1e-9, 5.0).tolist()

    def lines(xs: Sequence[float], ys: Sequence[float]) -> list[list[tuple[float, float]]]:
        return [[(x, 0.0), (x, height)] for x in xs] + [[(0.0, y), (width, y)] for y in ys]

    ax.add_collection(LineCollection(lines(minor_x, minor_y), colors=MINOR_COLOUR, linewidths=0.4, antialiaseds=False))
    ax.add_collection(LineCollection(lines(major_x, major_y), colors=MAJOR_COLOUR, linewidths=0.8, antialiaseds=False))


def _calibration(ax: Axes, baseline: float) -> None:
    up, down = CAL_PULSE_MM
    top = baseline + GAIN_MM_PER_MV  # 1 mV
    xs = [0.0, up, up, down, down, CAL_ZONE_MM]
    ys = [baseline, baseline, top, top, baseline, baseline]
    ax.plot(xs, ys, color=TRACE_COLOUR, linewidth=0.8, solid_joinstyle="miter")


def _measure_line(measurements: Sequence[Measurement]) -> str:
    by_code: dict[Code, float] = {}
    for m in measurements:
        if m.site is None and m.code not in by_code:
            by_code[m.code] = m.value
    parts = []
    for label, codes, unit in _HEADER_ITEMS:
        value = next((by_code[c] for c in codes if c in by_code), None)
        if value is not None:
            parts.append(f"{label} {value:.0f}{' ' if unit != '°' else ''}{unit}")
    return "   ".join(parts) if parts else "Measurements: not available"


def _statement_lines(statements: Sequence[Finding], limit: int = 4) -> list[str]:
    lines = []
    for f in statements:
        if f.presence is Presence.ABSENT:
            continue
        text = f.text if f.presence is Presence.PRESENT else f"possible {f.text}"
        lines.append(("CRITICAL: " if f.critical else "") + text)
    if len(lines) > limit:
        lines = [*lines[: limit - 1], f"(+{len(lines) - limit + 1} more statements)"]
    return lines


def _header(fig: Figure, record: EcgRecord, measurements: Sequence[Measurement], statements: Sequence[Finding]) -> None:
    w_mm, h_mm = fig.get_size_inches() * 25.4

    def at(x_mm: float, y_from_top_mm: float) -> tuple[float, float]:
        return x_mm / w_mm, 1 - y_from_top_mm / h_mm

    who = []
    if record.patient.age_years is not None:
        who.append(f"{record.patient.age_years:.0f} y")
    if record.patient.sex.value != "U":
        who.append(record.patient.sex.value)
    when = record.acquired_at.strftime("%Y-%m-%d %H:%M:%S") if record.acquired_at else "time not recorded"
    kind = "12-lead ECG" if record.has_standard_12_leads else f"ECG, {len(record.lead_names)} lead(s)"
    title = f"{kind}   {when}   {' '.join(who)}".rstrip()
    fig.text(*at(MARGIN_MM, 6), title, fontsize=9, weight="bold", va="center")
    fig.text(*at(MARGIN_MM, 12), _measure_line(measurements), fontsize=8, va="center")
    for i, line in enumerate(_statement_lines(statements)):
        fig.text(*at(MARGIN_MM, 17.5 + 4.2 * i), line, fontsize=7.5, va="center")
    fig.text(*at(w_mm - MARGIN_MM, 6), DISCLAIMER, fontsize=8, color="#c00000", ha="right", va="center", weight="bold")


def _figure(
    record: EcgRecord, measurements: Sequence[Measurement], statements: Sequence[Finding], dpi: float
) -> Figure:
    if not isinstance(record, EcgRecord):
        raise EcgError(f"render expects an EcgRecord, got {type(record).__name__}")
    if dpi <= 0:
        raise EcgError(f"dpi must be positive, got {dpi}")
    segments, n_rows = _layout(record)
    grid_w = CAL_ZONE_MM + STRIP_SECONDS * SPEED_MM_PER_S
    grid_h = n_rows * ROW_HEIGHT_MM
    page_w = grid_w + 2 * MARGIN_MM
    page_h = HEADER_MM + grid_h + FOOTER_MM
    fig = Figure(figsize=(page_w / 25.4, page_h / 25.4), dpi=dpi, facecolor="white")
    ax = fig.add_axes((MARGIN_MM / page_w, FOOTER_MM / page_h, grid_w / page_w, grid_h / page_h))
    ax.set_xlim(0, grid_w)
    ax.set_ylim(0, grid_h)
    ax.set_axis_off()
    _grid(ax, grid_w, grid_h)
    fs = record.sampling_rate_hz
    index = {name: i for i, name in enumerate(record.lead_names)}
    for r in range(n_rows):
        _calibration(ax, (r + 0.5) * ROW_HEIGHT_MM)
    for seg in segments:
        x, y = trace_mm(record.signal[index[seg.lead]], fs, seg.start_s, seg.duration_s)
        y = np.clip(y, -seg.baseline_mm, grid_h - seg.baseline_mm)  # stay on the paper
        ax.plot(x + seg.x_mm, y + seg.baseline_mm, color=TRACE_COLOUR, linewidth=0.6)
        label = f"{seg.lead} (rhythm)" if seg.rhythm else seg.lead
        ax.text(seg.x_mm + 1.5, seg.baseline_mm + ROW_HEIGHT_MM * 0.33, label, fontsize=8, weight="bold")
        if seg.x_mm > CAL_ZONE_MM:  # column boundary marker
            ax.plot([seg.x_mm, seg.x_mm], [seg.baseline_mm - 3, seg.baseline_mm + 3], color=TRACE_COLOUR, linewidth=0.8)
    _header(fig, record, measurements, statements)
    footer = (
        f"{SPEED_MM_PER_S:.0f} mm/s   {GAIN_MM_PER_MV:.0f} mm/mV   {fs:g} Hz   "
        f"{len(record.lead_names)} leads   {record.duration_s:.1f} s recorded"
    )
    fig.text(MARGIN_MM / page_w, FOOTER_MM / 2 / page_h, footer, fontsize=7, va="center")
    return fig


def _save(fig: Figure, fmt: str) -> bytes:
    buf = io.BytesIO()
    FigureCanvasAgg(fig)
    fig.savefig(buf, format=fmt, dpi=fig.dpi, facecolor="white")
    return buf.getvalue()


def render_png(
    record: EcgRecord,
    measurements: Sequence[Measurement] = (),
    statements: Sequence[Finding] = (),
    dpi: float = 200,
) -> bytes:
    """The printout as PNG bytes; at ``dpi`` one millimetre of paper is ``dpi / 25.4`` pixels."""
    return _save(_figure(record, measurements, statements, dpi), "png")


def render_pdf(
    record: EcgRecord,
    measurements: Sequence[Measurement] = (),
    statements: Sequence[Finding] = (),
) -> bytes:
    """The printout as a one-page vector PDF at true paper size."""
    return _save(_figure(record, measurements, statements, 72), "pdf")


def render_array(
    record: EcgRecord,
    measurements: Sequence[Measurement] = (),
    statements: Sequence[Finding] = (),
    dpi: float = 100,
) -> npt.NDArray[np.uint8]:
    """The printout as an RGB uint8 array (rows x columns x 3), e.g. as a VLM's image input."""
    fig = _figure(record, measurements, statements, dpi)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()  # type: ignore[no-untyped-call]
    rgba = np.asarray(canvas.buffer_rgba())  # type: ignore[no-untyped-call]
    return np.ascontiguousarray(rgba[:, :, :3])
