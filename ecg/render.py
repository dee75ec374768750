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
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

from core.codes import LOINC, Code
from core.errors import EcgError
from core.records import EcgRecord, Finding, Measurement, Presence
from ecg.device_check import DeviceCheck, compare

SPEED_MM_PER_S: Final = 25.0
GAIN_MM_PER_MV: Final = 10.0
ROW_HEIGHT_MM: Final = 30.0
CAL_ZONE_MM: Final = 10.0  #: room at the start of each row for the calibration pulse
CAL_PULSE_MM: Final = (2.0, 7.0)  #: the pulse's rising and falling edge within the zone (0.2 s wide)
STRIP_SECONDS: Final = 10.0
MARGIN_MM: Final = 10.0
HEADER_MM: Final = 34.0  #: the header with up to four statement lines; it grows with more
LINE_MM: Final = 4.2  #: one statement line
HALF_GAIN_MM_PER_MV: Final = 5.0  #: carts halve the gain when the tallest complex would leave its row
STATEMENT_WRAP: Final = 70  #: characters per statement line (two columns: mmdx | device)
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
    samples: npt.NDArray[np.floating], fs: float, start_s: float, duration_s: float, gain: float = GAIN_MM_PER_MV
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
    return x, (seg - offset) * gain


def _grid(ax: Axes, width: float, height: float) -> None:
    minor_x = [x for x in np.arange(0, width + 1e-9, 1.0) if round(x) % 5]
    minor_y = [y for y in np.arange(0, height + 1e-9, 1.0) if round(y) % 5]
    major_x = np.arange(0, width + 1e-9, 5.0).tolist()
    major_y = np.arange(0, height + 1e-9, 5.0).tolist()

    def lines(xs: Sequence[float], ys: Sequence[float]) -> list[list[tuple[float, float]]]:
        return [[(x, 0.0), (x, height)] for x in xs] + [[(0.0, y), (width, y)] for y in ys]

    ax.add_collection(LineCollection(lines(minor_x, minor_y), colors=MINOR_COLOUR, linewidths=0.4, antialiaseds=False))
    ax.add_collection(LineCollection(lines(major_x, major_y), colors=MAJOR_COLOUR, linewidths=0.8, antialiaseds=False))


def _calibration(ax: Axes, baseline: float, gain: float = GAIN_MM_PER_MV) -> None:
    up, down = CAL_PULSE_MM
    top = baseline + gain  # 1 mV
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


def _statement_lines(statements: Sequence[Finding]) -> list[str]:
    """Every statement a cardiologist must see (absent ones left out), critical first as the rules ordered them."""
    lines = []
    for f in statements:
        if f.presence is Presence.ABSENT:
            continue
        text = f.text if f.presence is Presence.PRESENT else f"possible {f.text}"
        lines.append(("CRITICAL: " if f.critical else "") + text)
    return lines


def _wrapped(lines: Sequence[str]) -> list[str]:
    out: list[str] = []
    for line in lines:
        out.extend(textwrap.wrap(line, STATEMENT_WRAP, subsequent_indent="  ") or [""])
    return out


def _when(record: EcgRecord, timezone: str | None) -> str:
    """Acquisition time in the site's zone with its offset (naive source times are taken as site time)."""
    at = record.acquired_at
    if at is None:
        return "time not recorded"
    if timezone:
        zone = ZoneInfo(timezone)
        at = at.astimezone(zone) if at.tzinfo is not None else at.replace(tzinfo=zone)
    return at.strftime("%Y-%m-%d %H:%M:%S") + (f" {_offset(at)}" if at.tzinfo is not None else "")


def _offset(at: datetime) -> str:
    z = at.strftime("%z")
    return f"{z[:3]}:{z[3:]}" if z else ""


def _identity_line(record: EcgRecord, timezone: str | None) -> str:
    p = record.patient
    name = " ".join(x for x in (p.name or "").replace("^", ", ", 1).replace("^", " ").split()) or "name not recorded"
    pid = p.identifiers[0].value if p.identifiers else "not recorded"
    age = f"{p.age_years:.0f} y" if p.age_years is not None else "age —"
    sex = {"M": "male", "F": "female", "O": "other"}.get(p.sex.value, "sex —")
    return f"{name}   ID {pid}   {age}   {sex}   {_when(record, timezone)}"


@dataclass(frozen=True, slots=True)
class _HeaderText:
    identity: str
    technique: str
    ours: str
    device: list[DeviceCheck]
    left: list[str]  #: mmdx statements, wrapped
    right: list[str]  #: device statements, wrapped

    @property
    def height_mm(self) -> float:
        rows = max(len(self.left), len(self.right), 4)
        return HEADER_MM - 4 * LINE_MM + rows * LINE_MM + (5.0 if self.device else 0.0)


def _header_text(
    record: EcgRecord,
    measurements: Sequence[Measurement],
    statements: Sequence[Finding],
    gain: float,
    timezone: str | None,
    blind: bool = False,
) -> _HeaderText:
    kind = "12-lead ECG" if record.has_standard_12_leads else f"ECG, {len(record.lead_names)} lead(s)"
    device = f"   device {record.device_name}" if record.device_name else ""
    half = "  (half gain: tall complexes)" if gain != GAIN_MM_PER_MV else ""
    technique = f"{kind}{device}   {SPEED_MM_PER_S:.0f} mm/s   {gain:.0f} mm/mV{half}"
    left = _wrapped(["mmdx:", *(_statement_lines(statements) or ["no statement"])])
    right = []
    if record.device_statements:
        right = _wrapped([f"{record.device_name or 'Device'}:", *record.device_statements])
    if blind:  # a model reads the tracing itself: no identity, no one else's interpretation to copy
        left, right = [], []
    return _HeaderText(
        "patient identity withheld" if blind else _identity_line(record, timezone),
        technique,
        "mmdx   " + _measure_line(measurements),
        list(compare(measurements, record.device_measurements)),
        left,
        right,
    )


def _header(fig: Figure, text: _HeaderText) -> None:
    w_mm, h_mm = fig.get_size_inches() * 25.4

    def at(x_mm: float, y_from_top_mm: float) -> tuple[float, float]:
        return x_mm / w_mm, 1 - y_from_top_mm / h_mm

    fig.text(*at(MARGIN_MM, 5), text.identity, fontsize=9, weight="bold", va="center")
    fig.text(*at(MARGIN_MM, 10), text.technique, fontsize=8, va="center")
    fig.text(*at(w_mm - MARGIN_MM, 10), DISCLAIMER, fontsize=8, color="#c00000", ha="right", va="center", weight="bold")
    fig.text(*at(MARGIN_MM, 15), text.ours, fontsize=8, va="center")
    y = 15.0
    if text.device:
        y += 5.0
        x = MARGIN_MM
        fig.text(*at(x, y), "device", fontsize=8, va="center")
        x += 14.0
        for check in text.device:
            part = check.text()
            fig.text(
                *at(x, y),
                part,
                fontsize=8,
                va="center",
                color="#c00000" if check.exceeds else "black",
                weight="bold" if check.exceeds else "normal",
            )
            x += 1.75 * len(part) + 4.0
    column = (w_mm - 2 * MARGIN_MM) / 2
    for i, line in enumerate(text.left):
        fig.text(*at(MARGIN_MM, y + 4.5 + LINE_MM * i), line, fontsize=7.5, va="center")
    for i, line in enumerate(text.right):
        fig.text(*at(MARGIN_MM + column, y + 4.5 + LINE_MM * i), line, fontsize=7.5, va="center", color="#333333")


def _gain(record: EcgRecord, segments: Sequence[_Segment]) -> float:
    """Full gain unless a complex would leave its row at 10 mm/mV; then half gain, as carts do."""
    index = {name: i for i, name in enumerate(record.lead_names)}
    limit = ROW_HEIGHT_MM / 2
    for seg in segments:
        _, y = trace_mm(record.signal[index[seg.lead]], record.sampling_rate_hz, seg.start_s, seg.duration_s)
        finite = y[np.isfinite(y)]
        if finite.size and float(np.max(np.abs(finite))) > limit:
            return HALF_GAIN_MM_PER_MV
    return GAIN_MM_PER_MV


def _figure(
    record: EcgRecord,
    measurements: Sequence[Measurement],
    statements: Sequence[Finding],
    dpi: float,
    timezone: str | None = None,
    blind: bool = False,
) -> Figure:
    if not isinstance(record, EcgRecord):
        raise EcgError(f"render expects an EcgRecord, got {type(record).__name__}")
    if dpi <= 0:
        raise EcgError(f"dpi must be positive, got {dpi}")
    segments, n_rows = _layout(record)
    gain = _gain(record, segments)
    text = _header_text(record, measurements, statements, gain, timezone, blind)
    header_mm = text.height_mm
    grid_w = CAL_ZONE_MM + STRIP_SECONDS * SPEED_MM_PER_S
    grid_h = n_rows * ROW_HEIGHT_MM
    page_w = grid_w + 2 * MARGIN_MM
    page_h = header_mm + grid_h + FOOTER_MM
    fig = Figure(figsize=(page_w / 25.4, page_h / 25.4), dpi=dpi, facecolor="white")
    ax = fig.add_axes((MARGIN_MM / page_w, FOOTER_MM / page_h, grid_w / page_w, grid_h / page_h))
    ax.set_xlim(0, grid_w)
    ax.set_ylim(0, grid_h)
    ax.set_axis_off()
    _grid(ax, grid_w, grid_h)
    fs = record.sampling_rate_hz
    index = {name: i for i, name in enumerate(record.lead_names)}
    for r in range(n_rows):
        _calibration(ax, (r + 0.5) * ROW_HEIGHT_MM, gain)
    half_row = ROW_HEIGHT_MM / 2 - 0.5
    for seg in segments:
        x, y = trace_mm(record.signal[index[seg.lead]], fs, seg.start_s, seg.duration_s, gain)
        y = np.clip(y, -half_row, half_row)  # a complex taller than its row is clipped, never drawn over the next
        ax.plot(x + seg.x_mm, y + seg.baseline_mm, color=TRACE_COLOUR, linewidth=0.6)
        label = f"{seg.lead} (rhythm)" if seg.rhythm else seg.lead
        ax.text(seg.x_mm + 1.5, seg.baseline_mm + ROW_HEIGHT_MM * 0.33, label, fontsize=8, weight="bold")
        if seg.x_mm > CAL_ZONE_MM:  # column boundary marker
            ax.plot([seg.x_mm, seg.x_mm], [seg.baseline_mm - 3, seg.baseline_mm + 3], color=TRACE_COLOUR, linewidth=0.8)
    _header(fig, text)
    footer = (
        f"{SPEED_MM_PER_S:.0f} mm/s   {gain:.0f} mm/mV   {fs:g} Hz   "
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
    *,
    timezone: str | None = None,
) -> bytes:
    """The printout as PNG bytes; at ``dpi`` one millimetre of paper is ``dpi / 25.4`` pixels.

    ``timezone`` (IANA) is the site's: the acquisition time is printed in it, with its offset.
    """
    return _save(_figure(record, measurements, statements, dpi, timezone), "png")


def render_pdf(
    record: EcgRecord,
    measurements: Sequence[Measurement] = (),
    statements: Sequence[Finding] = (),
    *,
    timezone: str | None = None,
) -> bytes:
    """The printout as a one-page vector PDF at true paper size (what ``mmdx ecg analyze --printout`` writes)."""
    return _save(_figure(record, measurements, statements, 72, timezone), "pdf")


def render_array(
    record: EcgRecord,
    measurements: Sequence[Measurement] = (),
    statements: Sequence[Finding] = (),
    dpi: float = 100,
    *,
    blind: bool = False,
) -> npt.NDArray[np.uint8]:
    """The printout as an RGB uint8 array (rows x columns x 3), e.g. as a VLM's image input.

    ``blind`` (a model's input): no patient identity and no statements (mmdx's or the cart's) in the
    header, so the model reads the tracing and measurements only and its reading can be checked
    against the rules'.
    """
    fig = _figure(record, measurements, statements, dpi, blind=blind)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()  # type: ignore[no-untyped-call]
    rgba = np.asarray(canvas.buffer_rgba())  # type: ignore[no-untyped-call]
    return np.ascontiguousarray(rgba[:, :, :3])
