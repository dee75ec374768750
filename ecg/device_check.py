"""The ECG device's own global measurements beside mmdx's, with differences beyond IEC 60601-2-25 flagged.

Carts (GE MUSE, Philips, SCP-ECG, DICOM waveform, aECG) send their own intervals and
statements; a reader compares them with mmdx's before trusting either.  IEC 60601-2-25:2011
bounds the mean difference of global interval measurements against reference annotations
(P duration, PR and QRS within 10 ms, QT within 25 ms); applied here to one record, a
difference larger than that bound is flagged.  Heart rate, QTc and axes are shown without a
flag: the standard sets no bound for them.  The device is a comparison, not the truth.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from core.codes import LOINC, MDC, Code
from core.records import Measurement

#: (label, unit shown, codes that mean the quantity, IEC 60601-2-25 bound in ms or None)
QUANTITIES: Final[tuple[tuple[str, str, tuple[Code, ...], float | None], ...]] = (
    ("HR", "/min", (LOINC.HEART_RATE, LOINC.EKG_HEART_RATE), None),
    ("P", "ms", (MDC.P_DURATION,), 10.0),
    ("PR", "ms", (LOINC.PR_INTERVAL, MDC.PR_INTERVAL), 10.0),
    ("QRS", "ms", (LOINC.QRS_DURATION, MDC.QRS_DURATION), 10.0),
    ("QT", "ms", (LOINC.QT_INTERVAL, MDC.QT_INTERVAL), 25.0),
    ("QTc", "ms", (LOINC.QTC_INTERVAL, MDC.QTC_INTERVAL), None),
    ("QTcB", "ms", (LOINC.QTC_BAZETT,), None),
    ("QTcF", "ms", (LOINC.QTC_FRIDERICIA,), None),
    ("P axis", "°", (LOINC.P_AXIS, MDC.P_AXIS), None),
    ("QRS axis", "°", (LOINC.QRS_AXIS, MDC.QRS_AXIS), None),
    ("T axis", "°", (LOINC.T_AXIS, MDC.T_AXIS), None),
)


@dataclass(frozen=True, slots=True)
class DeviceCheck:
    """One global quantity: the device's value, mmdx's (None when mmdx has none) and the bound."""

    label: str
    unit: str
    device: float
    ours: float | None
    limit: float | None

    @property
    def difference(self) -> float | None:
        return None if self.ours is None else self.ours - self.device

    @property
    def exceeds(self) -> bool:
        """True when both have a value and they differ by more than the IEC 60601-2-25 bound."""
        d = self.difference
        return d is not None and self.limit is not None and abs(d) > self.limit

    def text(self) -> str:
        value = f"{self.label} {self.device:.0f}{'' if self.unit == '°' else ' '}{self.unit}"
        if self.exceeds and self.difference is not None:
            return f"{value} (mmdx {self.difference:+.0f}, beyond ±{self.limit:.0f} ms)"
        return value


def _global(values: Sequence[Measurement], codes: tuple[Code, ...]) -> float | None:
    for code in codes:
        for m in values:
            if m.site is None and m.code == code:
                return m.value
    return None


def compare(ours: Sequence[Measurement], device: Sequence[Measurement]) -> tuple[DeviceCheck, ...]:
    """Every global quantity the device reported, with mmdx's value of the same quantity beside it."""
    out = []
    for label, unit, codes, limit in QUANTITIES:
        theirs = _global(device, codes)
        if theirs is not None:
            out.append(DeviceCheck(label, unit, theirs, _global(ours, codes), limit))
    return tuple(out)


def summary(checks: Sequence[DeviceCheck], device_name: str | None, statements: Sequence[str]) -> str | None:
    """The device's values and statements as report text (None when the device sent neither)."""
    if not checks and not statements:
        return None
    who = f"ECG device ({device_name})" if device_name else "ECG device"
    lines = []
    if checks:
        lines.append(f"{who} measurements: " + "; ".join(c.text() for c in checks) + ".")
    flagged = [c for c in checks if c.exceeds]
    if flagged:
        lines.append(
            "mmdx and the device differ beyond the IEC 60601-2-25 bounds on "
            + ", ".join(c.label for c in flagged)
            + ": check on the tracing."
        )
    if statements:
        lines.append(f"{who} statements: " + "; ".join(s.strip() for s in statements if s.strip()) + ".")
    return "\n".join(lines)
