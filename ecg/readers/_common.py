"""Shared pieces of the ECG readers: the reader result, device measurement codes, XML parsing.

Readers stay at the edge: they parse a file into arrays and strings and hand over core
records.  Everything a cart reports about itself (its intervals, axes, statements) is kept
as *device* data, for comparison with mmdx's own measurements, never as the truth.
"""

from __future__ import annotations

import enum
import math
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Final
from xml.etree.ElementTree import Element, ParseError

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from core.codes import LOINC, MDC, UCUM, Code
from core.errors import EcgError, RecordError
from core.records import EcgRecord, Measurement, Patient, PatientIdentifier, Sex


class DeviceQuantity(enum.Enum):
    """A global measurement an ECG cart may report, with its LOINC code and UCUM unit."""

    HEART_RATE = "heart rate"
    RR = "RR interval"
    P_DURATION = "P duration"
    PR = "PR interval"
    QRS = "QRS duration"
    QT = "QT interval"
    QTC = "QTc interval"
    QTC_BAZETT = "QTc Bazett"
    QTC_FRIDERICIA = "QTc Fridericia"
    P_AXIS = "P axis"
    QRS_AXIS = "QRS axis"
    T_AXIS = "T axis"


_CODES: Final[dict[DeviceQuantity, tuple[Code, Code]]] = {
    DeviceQuantity.HEART_RATE: (LOINC.HEART_RATE, UCUM.BPM),
    DeviceQuantity.RR: (LOINC.RR_INTERVAL, UCUM.MS),
    DeviceQuantity.P_DURATION: (MDC.P_DURATION, UCUM.MS),
    DeviceQuantity.PR: (LOINC.PR_INTERVAL, UCUM.MS),
    DeviceQuantity.QRS: (LOINC.QRS_DURATION, UCUM.MS),
    DeviceQuantity.QT: (LOINC.QT_INTERVAL, UCUM.MS),
    DeviceQuantity.QTC: (LOINC.QTC_INTERVAL, UCUM.MS),
    DeviceQuantity.QTC_BAZETT: (LOINC.QTC_BAZETT, UCUM.MS),
    DeviceQuantity.QTC_FRIDERICIA: (LOINC.QTC_FRIDERICIA, UCUM.MS),
    DeviceQuantity.P_AXIS: (LOINC.P_AXIS, UCUM.DEG),
    DeviceQuantity.QRS_AXIS: (LOINC.QRS_AXIS, UCUM.DEG),
    DeviceQuantity.T_AXIS: (LOINC.T_AXIS, UCUM.DEG),
}

#: Plausible ranges: a cart writes sentinels (0, -1, 9999, "Failed") for "not measured".
_PLAUSIBLE: Final[dict[Code, tuple[float, float]]] = {
    UCUM.MS: (1.0, 5000.0),
    UCUM.DEG: (-180.0, 360.0),
    UCUM.BPM: (1.0, 400.0),
}

DEVICE_METHOD: Final = "device"


def device_measurement(quantity: DeviceQuantity, value: str | float | None) -> Measurement | None:
    """A device measurement with its LOINC code and unit, or None when missing or a sentinel."""
    if value is None:
        return None
    try:
        number = float(str(value).strip())
    except ValueError:
        return None
    code, unit = _CODES[quantity]
    low, high = _PLAUSIBLE[unit]
    if not math.isfinite(number) or not low <= number <= high:
        return None
    if unit == UCUM.DEG and number > 180:  # some carts write 0..360
        number -= 360.0
    return Measurement(code=code, value=number, unit=unit, method=DEVICE_METHOD)


def measurement_of(record: EcgRecord, code: Code) -> float | None:
    """The value of a device measurement by code (first match), for tests and comparisons."""
    return next((m.value for m in record.device_measurements if m.code == code), None)


@dataclass(frozen=True, slots=True)
class DeviceFiducial:
    """A wave boundary the device placed: ``name`` (e.g. "QRS Onset"), sample index, group.

    ``waveform`` says which signal ``sample`` indexes: "rhythm" (the record) or "median"
    (the representative beat).  ``beat`` groups the points of one beat (None: global).
    """

    name: str
    sample: int
    waveform: str
    beat: int | None = None


@dataclass(frozen=True, slots=True)
class EcgFile:
    """Everything a reader took from one file.

    ``record`` is the rhythm (full-length) signal; ``representative_beat`` the device's
    median/average beat when the file has one; ``fiducials`` the device's wave boundaries.
    """

    record: EcgRecord
    representative_beat: EcgRecord | None = None
    fiducials: tuple[DeviceFiducial, ...] = ()


def build_record(source: str, what: str, **fields: Any) -> EcgRecord:
    """An EcgRecord, with a failed validation reported as EcgError naming the file and the part."""
    try:
        return EcgRecord(source=source, **fields)
    except RecordError as exc:
        raise EcgError(f"{what} does not form a valid ECG record ({exc})", source=source) from None


def parse_xml(path: Path) -> Element:
    """Parse an XML file safely (no entities, no external DTD), errors as EcgError."""
    try:
        tree = SafeET.parse(str(path))
    except ParseError as exc:
        raise EcgError(f"not well-formed XML ({exc})", source=str(path)) from None
    except DefusedXmlException as exc:
        raise EcgError(f"XML uses forbidden constructs ({type(exc).__name__})", source=str(path)) from None
    except OSError as exc:
        raise EcgError(f"cannot read file ({exc.strerror})", source=str(path)) from None
    root: Element | None = tree.getroot()
    if root is None:
        raise EcgError("XML has no root element", source=str(path))
    return root


def local_name(tag: str) -> str:
    """Element tag without its ``{namespace}``."""
    return tag.rsplit("}", 1)[-1]


def namespace_of(tag: str) -> str:
    """Namespace URI of an element tag, '' when none."""
    return tag[1:].split("}", 1)[0] if tag.startswith("{") else ""


def sex_from_text(text: str | None) -> Sex:
    """Map "M", "Male", "female", "F" ... to Sex; anything else is UNKNOWN."""
    t = (text or "").strip().lower()
    if t in ("m", "male", "man"):
        return Sex.MALE
    if t in ("f", "female", "woman"):
        return Sex.FEMALE
    return Sex.UNKNOWN


def age_from_text(text: str | None) -> float | None:
    """An age in years from a number string; None when absent or implausible."""
    m = re.match(r"\s*(\d+(?:\.\d+)?)", text or "")
    if not m:
        return None
    age = float(m.group(1))
    return age if 0 <= age < 150 else None


def person_name(family: str | None, given: str | None = None, middle: str | None = None) -> str | None:
    """A DICOM PN (``Family^Given^Middle``) from a format's name parts; None when every part is empty."""
    parts = [(p or "").strip().replace("^", " ").replace("=", " ") for p in (family, given, middle)]
    pn = "^".join(parts).rstrip("^")
    return pn if pn.replace("^", "").strip() else None


def parse_date(text: str | None, *formats: str) -> date | None:
    """A date in one of ``formats`` (strptime); None when absent or malformed (a cart's blank or "Unknown")."""
    value = (text or "").strip()
    for fmt in formats:
        try:
            return datetime.strptime(value, fmt).date()
        except ValueError:
            continue
    return None


def utc_offset(minutes: int | None) -> timezone | None:
    """A fixed zone from an offset in minutes; None outside -12:00..+14:00 (a sentinel or a typo)."""
    if minutes is None or not -12 * 60 <= minutes <= 14 * 60:
        return None
    return timezone(timedelta(minutes=minutes))


def patient_of(
    *,
    identifier: str | None = None,
    issuer: str | None = None,
    name: str | None = None,
    birth_date: date | None = None,
    sex: Sex = Sex.UNKNOWN,
    age_years: float | None = None,
    acquired: datetime | None = None,
) -> Patient:
    """The patient a file names: identifier with its issuer, name, birth date, sex, age.

    The age comes from the birth date and acquisition when the file states none; an
    identifier longer than DICOM's 64 characters or a birth date after the acquisition is
    dropped (a wrong identity is worse than none).
    """
    ident = (identifier or "").strip()
    identifiers: tuple[PatientIdentifier, ...] = ()
    if ident and len(ident) <= 64:
        identifiers = (PatientIdentifier(ident, (issuer or "").strip()[:64] or None),)
    when = acquired.date() if acquired is not None else None
    if birth_date is not None and when is not None and birth_date > when:
        birth_date = None
    if age_years is None and birth_date is not None and when is not None:
        days = (when - birth_date).days
        age_years = round(days / 365.25, 1) if days < 150 * 365 else None
    return Patient(identifiers=identifiers, name=name, birth_date=birth_date, sex=sex, age_years=age_years)


def parse_hl7_ts_zoned(text: str | None) -> datetime | None:
    """Like :func:`parse_hl7_ts`, aware when the timestamp ends with a ``+ZZZZ``/``-ZZZZ`` UTC offset."""
    value = parse_hl7_ts(text)
    m = re.search(r"([+-])(\d{2})(\d{2})\s*$", text or "")
    if value is None or m is None or len((text or "").strip()) < 13:
        return value
    sign = -1 if m.group(1) == "-" else 1
    zone = utc_offset(sign * (int(m.group(2)) * 60 + int(m.group(3))))
    return value.replace(tzinfo=zone) if zone is not None else value


def parse_hl7_ts(text: str | None) -> datetime | None:
    """Parse an HL7/DICOM style timestamp YYYYMMDD[HHMM[SS[.ffff]]]; None if malformed."""
    m = re.match(r"\s*(\d{8})(\d{2})?(\d{2})?(\d{2})?(?:\.(\d{1,6}))?", text or "")
    if not m:
        return None
    date, hh, mm, ss, frac = m.groups()
    try:
        return datetime(
            int(date[:4]),
            int(date[4:6]),
            int(date[6:8]),
            int(hh or 0),
            int(mm or 0),
            int(ss or 0),
            int((frac or "0").ljust(6, "0")),
        )
    except ValueError:
        return None


#: SCP-ECG lead numbers (EN 1064 table 4; also the MDC "2:<n>" ECG lead codes) to lead names.
SCP_LEAD_NAMES: Final[dict[int, str]] = {
    1: "I", 2: "II", 3: "V1", 4: "V2", 5: "V3", 6: "V4", 7: "V5", 8: "V6", 9: "V7",
    10: "V2R", 11: "V3R", 12: "V4R", 13: "V5R", 14: "V6R", 15: "V7R",
    16: "X", 17: "Y", 18: "Z", 19: "CC5", 20: "CM5", 21: "LA", 22: "RA", 23: "LL",
    61: "III", 62: "aVR", 63: "aVL", 64: "aVF", 65: "-aVR", 66: "V8", 67: "V9",
    68: "V8R", 69: "V9R",
}  # fmt: skip
