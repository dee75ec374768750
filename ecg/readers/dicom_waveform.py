"""DICOM 12-lead, General and Ambulatory ECG waveform objects via pydicom.

The waveform module holds multiplex groups (rhythm, median beat); each channel carries
its own sensitivity, correction factor, baseline and unit, and a coded source that names
the lead (SCP-ECG "5.6.3-9-n" or MDC "2:n" codes).  The cart's own measurements,
statements and fiducial points travel in the Waveform Annotation Sequence; they are kept
as device data.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_file_meta_info
from pydicom.waveforms.numpy_handler import multiplex_array

from core.errors import EcgError
from core.records import Measurement, Patient, Sex
from ecg.leads import complete_leads
from ecg.readers._common import (
    SCP_LEAD_NAMES,
    DeviceFiducial,
    DeviceQuantity,
    EcgFile,
    build_record,
    device_measurement,
    parse_hl7_ts,
    parse_hl7_ts_zoned,
    patient_of,
    utc_offset,
)
from ecg.readers.limits import check_declared_samples, check_sampling_rate

#: SOP classes that hold ECG waveforms.
ECG_SOP_CLASSES: Final[dict[str, str]] = {
    "1.2.840.10008.5.1.4.1.1.9.1.1": "12-lead ECG Waveform Storage",
    "1.2.840.10008.5.1.4.1.1.9.1.2": "General ECG Waveform Storage",
    "1.2.840.10008.5.1.4.1.1.9.1.3": "Ambulatory ECG Waveform Storage",
}

_UID: Final = re.compile(r"(0|[1-9]\d*)(\.(0|[1-9]\d*))*")
_UNIT_TO_MV: Final[dict[str, float]] = {"uv": 1e-3, "mv": 1.0, "v": 1e3, "nv": 1e-6}

#: Annotation concepts by code value (SCPECG / LOINC) and, as a fallback, by code meaning.
_CONCEPT_CODES: Final[dict[str, DeviceQuantity]] = {
    "5.10.2.1-3": DeviceQuantity.RR,
    "5.13.5-7": DeviceQuantity.PR,
    "5.13.5-9": DeviceQuantity.QRS,
    "5.13.5-11": DeviceQuantity.QT,
    "5.10.2.5-5": DeviceQuantity.QTC,
    "5.10.3-11": DeviceQuantity.P_AXIS,
    "5.10.3-13": DeviceQuantity.QRS_AXIS,
    "5.10.3-15": DeviceQuantity.T_AXIS,
    "8867-4": DeviceQuantity.HEART_RATE,
    "8625-6": DeviceQuantity.PR,
    "8633-0": DeviceQuantity.QRS,
    "8634-8": DeviceQuantity.QT,
    "8636-3": DeviceQuantity.QTC,
    "8626-4": DeviceQuantity.P_AXIS,
    "8632-2": DeviceQuantity.QRS_AXIS,
    "8638-9": DeviceQuantity.T_AXIS,
}
_CONCEPT_MEANINGS: Final[dict[str, DeviceQuantity]] = {
    "heart rate": DeviceQuantity.HEART_RATE,
    "ventricular heart rate": DeviceQuantity.HEART_RATE,
    "ventricular rate": DeviceQuantity.HEART_RATE,
    "rr interval": DeviceQuantity.RR,
    "p duration": DeviceQuantity.P_DURATION,
    "p wave duration": DeviceQuantity.P_DURATION,
    "pr interval": DeviceQuantity.PR,
    "qrs duration": DeviceQuantity.QRS,
    "qt interval": DeviceQuantity.QT,
    "qtc interval": DeviceQuantity.QTC,
    "p axis": DeviceQuantity.P_AXIS,
    "qrs axis": DeviceQuantity.QRS_AXIS,
    "t axis": DeviceQuantity.T_AXIS,
}


def is_ecg_dicom(path: Path, head: bytes) -> bool:
    """A Part 10 file (DICM at byte 128) whose SOP class is an ECG waveform class.

    Only the file meta information is read, so a truncated object is still recognised
    (and then fails in :func:`read` with a precise message).
    """
    if len(head) < 132 or head[128:132] != b"DICM":
        return False
    try:
        meta = read_file_meta_info(str(path))
    except (InvalidDicomError, OSError, ValueError, EOFError):
        return False
    return str(meta.get("MediaStorageSOPClassUID", "")) in ECG_SOP_CLASSES


def lead_name_of(channel: Dataset, index: int) -> str:
    """Lead name from a Channel Definition item: source code, then its meaning, then the label."""
    src = channel.get("ChannelSourceSequence")
    if src:
        item = src[0]
        value = str(item.get("CodeValue", ""))
        m = re.fullmatch(r"(?:5\.6\.3-9-|2:)(\d+)", value)
        if m and int(m.group(1)) in SCP_LEAD_NAMES:
            return SCP_LEAD_NAMES[int(m.group(1))]
        meaning = str(item.get("CodeMeaning", ""))
        if meaning:
            return re.sub(r"\s*\(.*\)\s*$", "", meaning).strip()
    label = str(channel.get("ChannelLabel", "")).strip()
    return label or f"ch{index + 1}"


def _scale_to_mv(raw: npt.NDArray[np.generic], channels: list[Dataset], group: int, source: str) -> np.ndarray:
    out = np.empty((raw.shape[1], raw.shape[0]), dtype=np.float64)
    for j, ch in enumerate(channels):
        if "ChannelSensitivity" not in ch:
            raise EcgError(
                f"multiplex group {group} channel {j + 1}: no Channel Sensitivity (003A,0210); cannot scale to mV",
                source=source,
            )
        units = ch.get("ChannelSensitivityUnitsSequence")
        unit = str(units[0].get("CodeValue", "")) if units else ""
        factor = _UNIT_TO_MV.get(unit.strip().lower())
        if factor is None:
            raise EcgError(
                f"multiplex group {group} channel {j + 1}: Channel Sensitivity Units {unit!r}; expected uV, mV or V",
                source=source,
            )
        sens = float(ch.ChannelSensitivity)
        corr = float(ch.get("ChannelSensitivityCorrectionFactor", 1.0) or 1.0)
        base = float(ch.get("ChannelBaseline", 0.0) or 0.0)
        # PS3.3 C.10.9.1.4.3; same convention as pydicom's waveform_array(as_raw=False)
        out[j] = (raw[:, j].astype(np.float64) * sens * corr + base) * factor
    return out


def _group(ds: Dataset, index: int, source: str) -> tuple[np.ndarray, tuple[str, ...], float]:
    item = ds.WaveformSequence[index]
    try:
        fs = float(item.SamplingFrequency)
        channels = list(item.ChannelDefinitionSequence)
        n_ch, n_samp = int(item.NumberOfWaveformChannels), int(item.NumberOfWaveformSamples)
    except (AttributeError, ValueError, TypeError) as exc:
        raise EcgError(f"multiplex group {index + 1}: incomplete waveform module ({exc})", source=source) from None
    if len(channels) != n_ch:
        raise EcgError(
            f"multiplex group {index + 1}: {len(channels)} channel definitions for {n_ch} channels", source=source
        )
    if n_samp < 2 or n_ch < 1:
        raise EcgError(
            f"multiplex group {index + 1}: {n_ch} channels x {n_samp} samples; expected at least 1 x 2",
            source=source,
        )
    check_declared_samples(n_ch * n_samp, f"multiplex group {index + 1}", source)
    check_sampling_rate(fs, f"multiplex group {index + 1} (003A,001A) SamplingFrequency", source)
    data = item.get("WaveformData")
    bits = int(item.get("WaveformBitsAllocated", 16))
    expected = n_ch * n_samp * bits // 8
    if data is None or len(data) < expected:
        got = 0 if data is None else len(data)
        raise EcgError(
            f"multiplex group {index + 1}: Waveform Data (5400,1010) holds {got} bytes, expected {expected}",
            source=source,
        )
    try:
        raw = multiplex_array(ds, index, as_raw=True)
    except (ValueError, KeyError, AttributeError) as exc:
        raise EcgError(f"multiplex group {index + 1}: cannot decode Waveform Data ({exc})", source=source) from None
    mv = _scale_to_mv(raw, channels, index + 1, source)
    names = tuple(lead_name_of(ch, j) for j, ch in enumerate(channels))
    return mv, names, fs


def _is_median(item: Dataset) -> bool:
    label = str(item.get("MultiplexGroupLabel", "")).upper()
    return "MEDIAN" in label or "AVERAGE" in label or "REPRESENTATIVE" in label


def _patient(ds: Dataset, acquired: datetime | None) -> Patient:
    """Age from Patient's Age (AS), else from birth date and acquisition time; sex from Patient's Sex."""
    age: float | None = None
    m = re.fullmatch(r"(\d{3})([DWMY])", str(ds.get("PatientAge", "")).strip())
    if m:
        per_year = {"D": 365.25, "W": 52.18, "M": 12.0, "Y": 1.0}[m.group(2)]
        value = int(m.group(1)) / per_year
        age = value if value < 150 else None
    birth = parse_hl7_ts(str(ds.get("PatientBirthDate", "")))
    name = str(ds.get("PatientName", "") or "").strip() or None
    return patient_of(
        identifier=str(ds.get("PatientID", "") or ""),
        issuer=str(ds.get("IssuerOfPatientID", "") or "") or None,
        name=name,
        birth_date=birth.date() if birth is not None else None,
        sex=Sex.from_dicom(str(ds.get("PatientSex", "")) or None),
        age_years=age,
        acquired=acquired.replace(tzinfo=None) if acquired is not None else None,
    )


def _annotations(ds: Dataset) -> tuple[list[Measurement], list[str], list[DeviceFiducial]]:
    measurements: list[Measurement] = []
    statements: list[str] = []
    fiducials: list[DeviceFiducial] = []
    seen: set[DeviceQuantity] = set()
    for ann in ds.get("WaveformAnnotationSequence", []):
        text = str(ann.get("UnformattedTextValue", "")).strip()
        if text:
            statements.append(text)
            continue
        concept = ann.get("ConceptNameCodeSequence")
        if not concept:
            continue
        code = str(concept[0].get("CodeValue", ""))
        meaning = str(concept[0].get("CodeMeaning", "")).strip()
        group = ann.get("AnnotationGroupNumber")
        if "NumericValue" in ann:
            quantity = _CONCEPT_CODES.get(code) or _CONCEPT_MEANINGS.get(meaning.lower())
            values = ann.NumericValue if isinstance(ann.NumericValue, list | tuple) else [ann.NumericValue]
            if quantity is not None and quantity not in seen and values:
                m = device_measurement(quantity, values[0])
                if m is not None:
                    measurements.append(m)
                    seen.add(quantity)
        elif "ReferencedSamplePositions" in ann:
            positions = ann.ReferencedSamplePositions
            first = (
                positions[0] if isinstance(positions, list | tuple) or hasattr(positions, "__getitem__") else positions
            )
            beat = int(group) if group is not None else None
            # Mortara convention: annotation groups >= 100 are per-beat points in the rhythm,
            # lower groups (with a median multiplex group present) are points in the median beat.
            waveform = "rhythm" if beat is not None and beat >= 100 else "median"
            fiducials.append(
                DeviceFiducial(
                    name=meaning or code,
                    sample=int(first),
                    waveform=waveform,
                    beat=beat if waveform == "rhythm" else None,
                )
            )
    return measurements, statements, fiducials


def read(path: Path) -> EcgFile:
    """Read a DICOM ECG waveform object into an EcgFile (rhythm record, median beat, device data)."""
    source = str(path)
    try:
        ds = pydicom.dcmread(source)
    except (InvalidDicomError, EOFError, ValueError, OSError) as exc:
        raise EcgError(f"not a readable DICOM file ({exc})", source=source) from None
    sop_class = str(ds.get("SOPClassUID", ""))
    if sop_class not in ECG_SOP_CLASSES:
        raise EcgError(
            f"SOP Class UID {sop_class!r} is not an ECG waveform class {sorted(ECG_SOP_CLASSES)}", source=source
        )
    groups = list(ds.get("WaveformSequence", []))
    if not groups:
        raise EcgError("no Waveform Sequence (5400,0100); expected at least one multiplex group", source=source)
    rhythm_candidates = [i for i, g in enumerate(groups) if not _is_median(g)]
    if not rhythm_candidates:
        raise EcgError("only median-beat multiplex groups; expected a rhythm group", source=source)
    rhythm_index = max(rhythm_candidates, key=lambda i: int(groups[i].get("NumberOfWaveformSamples", 0)))
    signal, names, fs = _group(ds, rhythm_index, source)
    signal, names = complete_leads(signal, names)
    measurements, statements, fiducials = _annotations(ds)
    study_uid = str(ds.get("StudyInstanceUID", "")).strip() or None
    if study_uid is not None and (len(study_uid) > 64 or not _UID.fullmatch(study_uid)):
        study_uid = None  # a malformed UID must not make the waveform unreadable; the app assigns one
    device = " ".join(str(ds.get(k, "")).strip() for k in ("Manufacturer", "ManufacturerModelName")).strip() or None
    acquired = parse_hl7_ts_zoned(str(ds.get("AcquisitionDateTime", ""))) or parse_hl7_ts(
        str(ds.get("ContentDate", "")) + str(ds.get("ContentTime", ""))
    )
    offset = str(ds.get("TimezoneOffsetFromUTC", "") or "")
    if acquired is not None and acquired.tzinfo is None and re.fullmatch(r"[+-]\d{4}", offset):
        sign = -1 if offset[0] == "-" else 1
        acquired = acquired.replace(tzinfo=utc_offset(sign * (int(offset[1:3]) * 60 + int(offset[3:5]))))
    common: dict[str, Any] = {
        "patient": _patient(ds, acquired),
        "acquired_at": acquired,
        "device_name": device,
    }
    record = build_record(
        source,
        "rhythm group",
        signal=signal,
        lead_names=names,
        sampling_rate_hz=fs,
        study_instance_uid=study_uid,
        device_measurements=tuple(measurements),
        device_statements=tuple(statements),
        **common,
    )
    median = None
    median_index = next((i for i, g in enumerate(groups) if _is_median(g)), None)
    if median_index is not None:
        msig, mnames, mfs = _group(ds, median_index, source)
        msig, mnames = complete_leads(msig, mnames)
        median = build_record(
            source, "median-beat group", signal=msig, lead_names=mnames, sampling_rate_hz=mfs, **common
        )
    return EcgFile(record=record, representative_beat=median, fiducials=tuple(fiducials))
