"""WFDB records (PhysioNet) via the ``wfdb`` package.

A record is named like wfdb names it: the path without extension.  The reader also accepts
the header (``.hea``) or a signal file (``.dat``...) and finds the header beside it.  Signals
are converted to millivolts whatever unit the header declares; channels that are not
voltages (blood pressure, respiration, SpO2...) are left out, because an EcgRecord holds
ECG leads only.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Final

import numpy as np
import wfdb

from core.errors import EcgError
from core.records import EcgRecord, Patient, Sex
from ecg.leads import complete_leads
from ecg.readers._common import EcgFile, age_from_text, sex_from_text
from ecg.readers.limits import check_declared_samples, check_sampling_rate

#: Header unit strings (lower-cased) and their factor to millivolts.  WFDB assumes mV when absent.
_TO_MV: Final[dict[str, float]] = {
    "": 1.0,
    "mv": 1.0,
    "millivolt": 1.0,
    "millivolts": 1.0,
    "uv": 1e-3,
    "µv": 1e-3,
    "μv": 1e-3,
    "microvolt": 1e-3,
    "microvolts": 1e-3,
    "v": 1e3,
    "volt": 1e3,
    "nv": 1e-6,
}

#: Channel names that are not ECG leads even when the header gives no unit (WFDB then assumes mV).
NON_ECG_NAMES: Final = frozenset(
    {"RESP", "ABP", "ART", "PAP", "CVP", "PLETH", "SPO2", "CO2", "ICP", "NBP", "TEMP", "ANGLE", "PULSE", "EEG", "EMG"}
)

_RECORD_LINE = re.compile(rb"^[\w\-.~]+(?:/\d+)?[ \t]+\d+(?:[ \t]+\d+(?:\.\d+)?(?:/\d+(?:\.\d+)?)?(?:\(\d+\))?)?")


def looks_like_header(head: bytes) -> bool:
    """True when ``head`` (the first bytes of a file) is a WFDB header: a record line then signal lines."""
    try:
        text = head.decode("ascii")
    except UnicodeDecodeError:
        return False
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines or not _RECORD_LINE.match(lines[0].encode()):
        return False
    nsig = int(lines[0].split()[1])
    if nsig == 0:
        return True
    # the first signal line names a file and a format: "100.dat 212 200 11 1024 995 -22131 0 MLII"
    return len(lines) > 1 and len(lines[1].split()) >= 2 and re.match(r"\d+", lines[1].split()[1]) is not None


def header_path(path: Path) -> Path | None:
    """The ``.hea`` file for a record named by base name, header or signal file; None if absent."""
    if path.suffix == ".hea" and path.is_file():
        return path
    candidates = [Path(f"{path}.hea"), path.with_suffix(".hea")]
    return next((c for c in candidates if c.is_file()), None)


def _header_mentions(hea: Path, signal_file: Path) -> bool:
    try:
        text = hea.read_bytes()[:65536]
    except OSError:
        return False
    return looks_like_header(text) and signal_file.name.encode() in text


def is_wfdb(path: Path, head: bytes) -> bool:
    """Detect a WFDB record by content: the header's structure, or a signal file its header lists."""
    if path.is_file() and looks_like_header(head):
        return True
    hea = header_path(path)
    if hea is None:
        return False
    if path.is_file():  # a signal file: only if its header names it
        return _header_mentions(hea, path)
    return looks_like_header(hea.read_bytes()[:65536])


def _patient(comments: list[str]) -> Patient:
    age: float | None = None
    sex = Sex.UNKNOWN
    for c in comments:
        m = re.match(r"\s*<?(age|sex)>?\s*:\s*(.+)", c, re.IGNORECASE)
        if not m:
            continue
        if m.group(1).lower() == "age":
            age = age_from_text(m.group(2))
        else:
            sex = sex_from_text(m.group(2))
    return Patient(sex=sex, age_years=age)


def voltage_channels(rec: wfdb.Record) -> list[tuple[int, str, float]]:
    """(index, name, factor to mV) of the header's ECG leads: voltages that are not a named non-ECG signal."""
    out: list[tuple[int, str, float]] = []
    for i, (name, unit) in enumerate(zip(rec.sig_name, rec.units or [""] * rec.n_sig, strict=False)):
        factor = _TO_MV.get((unit or "").strip().lower())
        if factor is None or (name or "").strip().upper().rstrip(".") in NON_ECG_NAMES:
            continue  # not a voltage, or a named non-ECG signal: not an ECG lead
        out.append((i, name or f"ch{i + 1}", factor))
    return out


def patient_from_comments(comments: list[str]) -> Patient:
    """Age and sex from the header's comment lines (``<age>: 51``, ``<sex>: F``)."""
    return _patient(comments)


def read(path: Path) -> EcgFile:
    """Read a WFDB record (base name, ``.hea`` or signal file) into an EcgFile."""
    hea = header_path(path)
    if hea is None:
        raise EcgError("no WFDB header (.hea) found for this record", source=str(path))
    base = hea.with_suffix("")
    source = str(base)
    try:
        declared = wfdb.rdheader(str(base))  # the sizes first: a header may declare terabytes of samples
        if declared.sig_len is not None and declared.n_sig is not None:
            check_declared_samples(int(declared.sig_len) * int(declared.n_sig), "WFDB header", source)
        if float(declared.fs or 0) > 0:  # zero or negative: refused below with its own message
            check_sampling_rate(float(declared.fs), "WFDB header", source)
        rec = wfdb.rdrecord(str(base), physical=True)
    except FileNotFoundError as exc:
        raise EcgError(f"WFDB signal file missing ({Path(str(exc.filename)).name})", source=source) from None
    except (OSError, ValueError, IndexError, KeyError, TypeError, AttributeError) as exc:
        raise EcgError(f"WFDB record could not be read: {exc}", source=source) from None
    if rec.p_signal is None or rec.sig_len == 0 or rec.p_signal.shape[0] < 2:
        raise EcgError("WFDB header declares no samples; expected at least 2 per signal", source=source)
    fs = float(rec.fs or 0)
    if fs <= 0:
        raise EcgError(f"WFDB sampling frequency must be positive, got {rec.fs!r}", source=source)
    rows: list[np.ndarray] = []
    names: list[str] = []
    for i, name, factor in voltage_channels(rec):
        rows.append(rec.p_signal[:, i] * factor)
        names.append(name)
    if not rows:
        raise EcgError(f"no voltage (ECG) channel; units are {rec.units}", source=source)
    signal, lead_names = complete_leads(np.vstack(rows), names)
    acquired = None
    if rec.base_date is not None and rec.base_time is not None:
        acquired = datetime.combine(rec.base_date, rec.base_time)
    record = EcgRecord(
        signal=signal,
        lead_names=lead_names,
        sampling_rate_hz=fs,
        source=source,
        patient=_patient(list(rec.comments or [])),
        acquired_at=acquired,
    )
    return EcgFile(record=record)
