"""Philips Sierra / PhilipsECG XML (``restingecgdata``), including XLI-compressed leads.

Decoding (base64, XLI: LZW + delta + per-lead reconstruction of III, aVR, aVL, aVF from
their stored residuals) is done by the ``sierraecg`` package; metadata, device
measurements and statements are read here.  Samples are counts of ``signalresolution`` uV.
Philips files hold 10 s of ECG followed by a 1 mV calibration pulse in every lead
(11 s per channel); the pulse is not ECG and is cut off.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Final
from xml.etree.ElementTree import Element

import numpy as np
import numpy.typing as npt
import sierraecg

from core.errors import EcgError
from core.records import Measurement, Patient
from ecg.leads import complete_leads
from ecg.readers._common import (
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

ROOT: Final = "restingecgdata"
_BASE64: Final = re.compile(r"[A-Za-z0-9+/]+={0,2}")
#: Document types and versions sierraecg decodes.
SUPPORTED: Final[dict[str, tuple[str, ...]]] = {
    "SierraECG": ("1.03", "1.04", "1.04.01", "1.04.02"),
    "PhilipsECG": ("1.03", "1.04", "1.04.01", "1.04.02"),
}
#: Device quantities and the element names that carry them (1.03 names first, then 1.04).
_MEASUREMENTS: Final[dict[DeviceQuantity, tuple[str, ...]]] = {
    DeviceQuantity.HEART_RATE: ("heartrate", "meanventrate"),
    DeviceQuantity.RR: ("rrint", "meanrrint"),
    DeviceQuantity.PR: ("meanprint", "print"),
    DeviceQuantity.QRS: ("meanqrsdur", "qrsdur"),
    DeviceQuantity.QT: ("meanqtint", "qtint"),
    DeviceQuantity.QTC: ("meanqtc",),
    DeviceQuantity.QTC_BAZETT: ("qtcb",),
    DeviceQuantity.QTC_FRIDERICIA: ("qtcf",),
    DeviceQuantity.P_AXIS: ("pfrontaxis",),
    DeviceQuantity.QRS_AXIS: ("qrsfrontaxis",),
    DeviceQuantity.T_AXIS: ("tfrontaxis",),
}


def is_sierra_root(tag: str) -> bool:
    """True for Philips' ``restingecgdata`` root (any namespace)."""
    return local_name(tag) == ROOT


def _find(el: Element | None, *names: str) -> Element | None:
    for name in names:
        if el is None:
            return None
        el = el.find(f"{{*}}{name}")
    return el


def _text(el: Element | None, *names: str) -> str | None:
    found = _find(el, *names)
    if found is None or found.text is None or not found.text.strip():
        return None
    return found.text.strip()


def calibration_start(counts: npt.NDArray[np.integer]) -> int:
    """Index where the trailing calibration segment begins (len(counts[0]) when there is none).

    The pulse is the same non-zero constant in every lead at once; the flat zeros just
    before it belong to it too.
    """
    n = int(counts.shape[1])
    same = np.all(counts == counts[0], axis=0) & (counts[0] != 0)
    tail = np.nonzero(same[n // 2 :])[0]
    if tail.size < 10:  # a calibration pulse lasts ~100 ms
        return n
    start = n // 2 + int(tail[0])
    while start > 0 and np.all(counts[:, start - 1] == 0):
        start -= 1
    return start


def _measurements(root: Element) -> list[Measurement]:
    out: list[Measurement] = []
    places = [
        _find(root, "interpretations", "interpretation", "interpretationmeasurements"),  # 1.03
        _find(root, "interpretations", "interpretation", "globalmeasurements"),  # 1.04
        _find(root, "measurements", "globalmeasurements"),  # 1.03 acquisition-time values
        _find(root, "internalmeasurements", "crossleadmeasurements"),  # 1.04
    ]
    for quantity, tags in _MEASUREMENTS.items():
        value = next((v for place in places for tag in tags if (v := _text(place, tag)) is not None), None)
        m = device_measurement(quantity, value)
        if m is not None:
            out.append(m)
    return out


def _statements(root: Element) -> tuple[str, ...]:
    out: list[str] = []
    interp = _find(root, "interpretations", "interpretation")
    if interp is None:
        return ()
    for st in interp.findall("{*}statement"):
        left, right = _text(st, "leftstatement"), _text(st, "rightstatement")
        if left and right:
            out.append(f"{left} ({right})")
        elif left:
            out.append(left)
    severity = _text(interp, "severity")
    if severity:
        out.append(severity.strip(" -"))
    return tuple(out)


def _acquired(root: Element) -> datetime | None:
    acq = _find(root, "dataacquisition")
    if acq is None:
        return None
    try:
        return datetime.fromisoformat(f"{acq.get('date', '')}T{acq.get('time', '00:00:00')}")
    except ValueError:
        return None


def _age(root: Element, acquired: datetime | None) -> float | None:
    """Age in years: the stated years (1.03) or from the date of birth and acquisition (1.04)."""
    age = age_from_text(_text(root, "patient", "generalpatientdata", "age", "years"))
    birth = _text(root, "patient", "generalpatientdata", "age", "dateofbirth")
    if age is None and birth and acquired is not None:
        try:
            days = (acquired - datetime.fromisoformat(birth)).days
        except ValueError:
            return None
        age = round(days / 365.25, 1) if 0 <= days < 150 * 365 else None
    return age


def _patient(root: Element, acquired: datetime | None) -> Patient:
    """MRN (1.04) else patientid; last/first/middle name; date of birth; sex; age (Philips has no issuer)."""
    general = _find(root, "patient", "generalpatientdata")
    return patient_of(
        identifier=_text(general, "MRN") or _text(general, "patientid"),
        name=person_name(
            _text(general, "name", "lastname"),
            _text(general, "name", "firstname"),
            _text(general, "name", "middlename"),
        ),
        birth_date=parse_date(_text(general, "age", "dateofbirth"), "%Y-%m-%d"),
        sex=sex_from_text(_text(general, "sex")),
        age_years=_age(root, acquired),
        acquired=acquired,
    )


def read(path: Path) -> EcgFile:
    """Read a Philips Sierra XML file; unsupported document types/versions fail naming them."""
    source = str(path)
    root = parse_xml(path)
    if not is_sierra_root(root.tag):
        raise EcgError(f"root element {local_name(root.tag)!r}; expected {ROOT} (Philips)", source=source)
    doc_type = _text(root, "documentinfo", "documenttype") or "<missing>"
    doc_ver = _text(root, "documentinfo", "documentversion") or "<missing>"
    if doc_ver not in SUPPORTED.get(doc_type, ()):
        raise EcgError(
            f"Philips XML document type {doc_type!r} version {doc_ver!r} is not supported; expected "
            f"SierraECG or PhilipsECG version {', '.join(SUPPORTED['SierraECG'])}",
            source=source,
        )
    chars = _find(root, "dataacquisition", "signalcharacteristics")
    try:
        resolution_uv = float(_text(chars, "signalresolution") or _text(chars, "resolution") or "")
        fs = float(_text(chars, "samplingrate") or "")
    except ValueError:
        raise EcgError("signalresolution/samplingrate missing or not numbers", source=source) from None
    if resolution_uv <= 0 or fs <= 0:
        raise EcgError(f"signalresolution {resolution_uv} uV and samplingrate {fs} Hz must be positive", source=source)
    check_sampling_rate(fs, "samplingrate", source)
    waveform = _find(root, "waveforms", "parsedwaveforms")
    payload = "".join((waveform.text or "").split()) if waveform is not None else ""
    if not payload or not _BASE64.fullmatch(payload):
        raise EcgError("waveforms/parsedwaveforms is missing or not valid base64", source=source)
    try:
        parsed = sierraecg.read_file(source)
    except (sierraecg.lib.UnsupportedXmlFileError, sierraecg.lib.MissingXmlElementError) as exc:
        raise EcgError(f"Philips waveform not decodable ({type(exc).__name__}: {exc})", source=source) from None
    except (sierraecg.lib.MissingXmlAttributeError, ValueError, IndexError, KeyError) as exc:
        raise EcgError(f"Philips waveform not decodable ({type(exc).__name__}: {exc})", source=source) from None
    leads = parsed.leads
    if not leads:
        raise EcgError("no leads in parsedwaveforms", source=source)
    lengths = {len(lead.samples) for lead in leads}
    if len(lengths) != 1 or 0 in lengths:
        raise EcgError(f"decoded leads have lengths {sorted(lengths)}; expected one non-zero length", source=source)
    counts = np.vstack([np.asarray(lead.samples, dtype=np.int32) for lead in leads])
    keep = calibration_start(counts)
    signal, names = complete_leads(counts[:, :keep] * (resolution_uv / 1000.0), [lead.label for lead in leads])
    acquired = _acquired(root)
    patient = _patient(root, acquired)
    machine = _text(root, "dataacquisition", "machine")
    record = build_record(
        source,
        "waveform",
        signal=signal,
        lead_names=names,
        sampling_rate_hz=fs,
        patient=patient,
        acquired_at=acquired,
        device_measurements=tuple(_measurements(root)),
        device_statements=_statements(root),
        device_name=f"Philips {machine}" if machine else "Philips",
    )
    return EcgFile(record=record)
