"""GE MUSE resting ECG XML (``RestingECG`` root, ``restecg.dtd``).

Each ``Waveform`` (type Rhythm or Median) holds one ``LeadData`` per stored lead: base64 of
little-endian int16 samples, ``LeadAmplitudeUnitsPerBit`` (uV per count) and a CRC-32 of the
decoded bytes, which is checked.  MUSE usually stores 8 leads (I, II, V1-V6); the other four
limb leads are derived.  ``RestingECGMeasurements`` and ``Diagnosis`` statements are kept as
device data; the median-beat fiducials (POnset, QOnset, ...) index the Median waveform.
The patient (PatientID, names, date of birth, gender, age) is kept; MUSE times are the
cart's local wall clock (no zone in the file).
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import zlib
from datetime import datetime
from pathlib import Path
from typing import Final
from xml.etree.ElementTree import Element

import numpy as np

from core.errors import EcgError
from core.records import Measurement, Patient
from ecg.leads import complete_leads
from ecg.readers._common import (
    DeviceFiducial,
    DeviceQuantity,
    EcgFile,
    age_from_text,
    build_record,
    device_measurement,
    local_name,
    parse_date,
    parse_xml,
    patient_of,
    person_name,
    sex_from_text,
)
from ecg.readers.limits import check_sampling_rate

ROOT: Final = "RestingECG"
_UNIT_TO_MV: Final[dict[str, float]] = {"MICROVOLTS": 1e-3, "MILLIVOLTS": 1.0, "UV": 1e-3, "MV": 1.0}
_MEASUREMENTS: Final[dict[str, DeviceQuantity]] = {
    "VentricularRate": DeviceQuantity.HEART_RATE,
    "PRInterval": DeviceQuantity.PR,
    "QRSDuration": DeviceQuantity.QRS,
    "QTInterval": DeviceQuantity.QT,
    "QTCorrected": DeviceQuantity.QTC,
    "QTcFrederica": DeviceQuantity.QTC_FRIDERICIA,
    "PAxis": DeviceQuantity.P_AXIS,
    "RAxis": DeviceQuantity.QRS_AXIS,
    "TAxis": DeviceQuantity.T_AXIS,
}
_FIDUCIALS: Final[dict[str, str]] = {
    "POnset": "P Onset",
    "POffset": "P Offset",
    "QOnset": "QRS Onset",
    "QOffset": "QRS Offset",
    "TOffset": "T Offset",
}
_AGE_UNITS: Final[dict[str, float]] = {"YEARS": 1.0, "MONTHS": 12.0, "WEEKS": 52.18, "DAYS": 365.25, "HOURS": 8766.0}


def is_muse_root(tag: str) -> bool:
    """True for MUSE's ``RestingECG`` root (no namespace)."""
    return tag == ROOT


def _text(el: Element | None, path: str) -> str | None:
    if el is None:
        return None
    t = el.findtext(path)
    return t.strip() if t and t.strip() else None


def _sampling_rate(wf: Element, source: str, kind: str) -> float:
    try:
        base = float(_text(wf, "SampleBase") or "")
        exponent = int(_text(wf, "SampleExponent") or "0")
    except ValueError:
        raise EcgError(f"{kind} waveform: SampleBase/SampleExponent are not numbers", source=source) from None
    try:
        fs = base * 10.0**exponent
    except OverflowError:
        fs = math.inf
    if fs <= 0:
        raise EcgError(f"{kind} waveform: sampling rate must be positive, got {fs}", source=source)
    return check_sampling_rate(fs, f"{kind} waveform SampleBase/SampleExponent", source)  # 1e308 is no rate


def _lead(ld: Element, source: str, kind: str, index: int) -> tuple[str, np.ndarray]:
    name = _text(ld, "LeadID") or f"ch{index + 1}"
    where = f"{kind} waveform lead {name}"
    payload = "".join((ld.findtext("WaveFormData") or "").split())
    if not payload:
        raise EcgError(f"{where}: empty WaveFormData; expected base64 int16 samples", source=source)
    try:
        raw = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise EcgError(f"{where}: WaveFormData is not valid base64", source=source) from None
    size = int(_text(ld, "LeadSampleSize") or "2")
    if size != 2 or len(raw) % 2:
        raise EcgError(f"{where}: {len(raw)} bytes of {size}-byte samples; expected 2-byte int16", source=source)
    crc = _text(ld, "LeadDataCRC32")
    if crc is not None and crc.isdigit() and zlib.crc32(raw) != int(crc):
        raise EcgError(f"{where}: CRC-32 of WaveFormData does not match LeadDataCRC32 (corrupt data)", source=source)
    count = _text(ld, "LeadSampleCountTotal")
    samples = np.frombuffer(raw, dtype="<i2").astype(np.float64)
    if count is not None and count.isdigit() and int(count) != samples.size:
        raise EcgError(f"{where}: {samples.size} samples decoded, LeadSampleCountTotal says {count}", source=source)
    try:
        per_bit = float(_text(ld, "LeadAmplitudeUnitsPerBit") or "")
    except ValueError:
        raise EcgError(f"{where}: LeadAmplitudeUnitsPerBit missing or not a number", source=source) from None
    units = (_text(ld, "LeadAmplitudeUnits") or "MICROVOLTS").upper()
    if units not in _UNIT_TO_MV:
        raise EcgError(f"{where}: LeadAmplitudeUnits {units!r}; expected MICROVOLTS or MILLIVOLTS", source=source)
    return name, samples * per_bit * _UNIT_TO_MV[units]


def _waveform(wf: Element, source: str) -> tuple[np.ndarray, tuple[str, ...], float]:
    kind = _text(wf, "WaveformType") or "unknown"
    fs = _sampling_rate(wf, source, kind)
    leads = [_lead(ld, source, kind, i) for i, ld in enumerate(wf.findall("LeadData"))]
    if not leads:
        raise EcgError(f"{kind} waveform has no LeadData", source=source)
    lengths = {len(s) for _, s in leads}
    if len(lengths) != 1:
        raise EcgError(f"{kind} waveform: leads have different lengths {sorted(lengths)}", source=source)
    signal, names = complete_leads(np.vstack([s for _, s in leads]), [n for n, _ in leads])
    return signal, names, fs


def _statements(root: Element) -> tuple[str, ...]:
    """Diagnosis lines; a statement without StmtFlag ENDSLINE continues on the next one."""
    out: list[str] = []
    parts: list[str] = []
    for stmt in root.findall("Diagnosis/DiagnosisStatement"):
        text = _text(stmt, "StmtText")
        if text:
            parts.append(text)
        flags = {(f.text or "").strip().upper() for f in stmt.findall("StmtFlag")}
        if "ENDSLINE" in flags and parts:
            out.append(re.sub(r"\s+,", ",", " ".join(parts)))
            parts = []
    if parts:
        out.append(re.sub(r"\s+,", ",", " ".join(parts)))
    return tuple(out)


def _acquired(root: Element) -> datetime | None:
    date = _text(root, "TestDemographics/AcquisitionDate")
    time = _text(root, "TestDemographics/AcquisitionTime") or "00:00:00"
    if not date:
        return None
    for fmt in ("%m-%d-%Y %H:%M:%S", "%Y-%m-%d %H:%M:%S", "%m-%d-%Y %H:%M"):
        try:
            return datetime.strptime(f"{date} {time}", fmt)
        except ValueError:
            continue
    return None


def _patient(root: Element, acquired: datetime | None) -> Patient:
    """PatientID (MUSE has no issuer), last/first name, DateofBirth (MM-DD-YYYY), gender, age."""
    demo = root.find("PatientDemographics")
    age = age_from_text(_text(demo, "PatientAge"))
    unit = (_text(demo, "AgeUnits") or "YEARS").upper()
    if age is not None:
        age = age / _AGE_UNITS.get(unit, 1.0)
    return patient_of(
        identifier=_text(demo, "PatientID"),
        name=person_name(_text(demo, "PatientLastName"), _text(demo, "PatientFirstName")),
        birth_date=parse_date(_text(demo, "DateofBirth"), "%m-%d-%Y", "%Y-%m-%d", "%m/%d/%Y"),
        sex=sex_from_text(_text(demo, "Gender")),
        age_years=age,
        acquired=acquired,
    )


def read(path: Path) -> EcgFile:
    """Read a GE MUSE XML export: rhythm record, median beat, device measurements and statements."""
    source = str(path)
    root = parse_xml(path)
    if not is_muse_root(root.tag):
        raise EcgError(f"root element {local_name(root.tag)!r}; expected {ROOT} (GE MUSE)", source=source)
    waveforms = {(_text(wf, "WaveformType") or "").lower(): wf for wf in root.findall("Waveform")}
    if "rhythm" not in waveforms:
        raise EcgError(f"no Rhythm waveform; found {sorted(waveforms) or 'none'}", source=source)
    signal, names, fs = _waveform(waveforms["rhythm"], source)
    meas_el = root.find("RestingECGMeasurements")
    measurements: list[Measurement] = []
    fiducials: list[DeviceFiducial] = []
    if meas_el is not None:
        for tag, quantity in _MEASUREMENTS.items():
            m = device_measurement(quantity, _text(meas_el, tag))
            if m is not None:
                measurements.append(m)
        for tag, name in _FIDUCIALS.items():
            value = _text(meas_el, tag)
            if value is not None and value.isdigit():
                fiducials.append(DeviceFiducial(name=name, sample=int(value), waveform="median"))
    acquired = _acquired(root)
    patient = _patient(root, acquired)
    device = _text(root, "TestDemographics/AcquisitionDevice")
    record = build_record(
        source,
        "Rhythm waveform",
        signal=signal,
        lead_names=names,
        sampling_rate_hz=fs,
        patient=patient,
        acquired_at=acquired,
        device_measurements=tuple(measurements),
        device_statements=_statements(root),
        device_name=f"GE {device}" if device else "GE MUSE",
    )
    median = None
    if "median" in waveforms:
        msig, mnames, mfs = _waveform(waveforms["median"], source)
        median = build_record(
            source, "Median waveform", signal=msig, lead_names=mnames, sampling_rate_hz=mfs, patient=patient
        )
    return EcgFile(record=record, representative_beat=median, fiducials=tuple(fiducials) if median else ())
