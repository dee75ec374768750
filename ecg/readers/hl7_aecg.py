"""HL7 v3 annotated ECG (FDA aECG, ``urn:hl7-org:v3`` ``AnnotatedECG``).

Each lead is a ``sequence`` with an MDC lead code and an SLIST_PQ value: physical value =
origin + scale x digit, in the unit of ``scale`` (usually uV).  The sampling interval is the
``increment`` of the TIME_ABSOLUTE / TIME_RELATIVE sequence of the same sequence set.
Global measurements (PR, QRS, QT, QTc, axes) sit in the annotation set of the
representative-beat series or, failing that, in the rhythm series outside the per-beat
annotations; they are kept as device data.
"""

from __future__ import annotations

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
    namespace_of,
    parse_hl7_ts,
    parse_hl7_ts_zoned,
    parse_xml,
    patient_of,
    person_name,
    sex_from_text,
)

NAMESPACE: Final = "urn:hl7-org:v3"
_NS: Final = {"v3": NAMESPACE}
_UNIT_TO_MV: Final[dict[str, float]] = {"uv": 1e-3, "mv": 1.0, "v": 1e3, "nv": 1e-6}
_TIME_TO_S: Final[dict[str, float]] = {"s": 1.0, "ms": 1e-3, "us": 1e-6}

_QUANTITIES: Final[dict[str, DeviceQuantity]] = {
    "MDC_ECG_HEART_RATE": DeviceQuantity.HEART_RATE,
    "MDC_ECG_TIME_PD_RR": DeviceQuantity.RR,
    "MDC_ECG_TIME_PD_P": DeviceQuantity.P_DURATION,
    "MDC_ECG_TIME_PD_PR": DeviceQuantity.PR,
    "MDC_ECG_TIME_PD_QRS": DeviceQuantity.QRS,
    "MDC_ECG_TIME_PD_QT": DeviceQuantity.QT,
    "MDC_ECG_TIME_PD_QTC": DeviceQuantity.QTC,
    "MDC_ECG_TIME_PD_QTCB": DeviceQuantity.QTC_BAZETT,
    "MDC_ECG_TIME_PD_QTCF": DeviceQuantity.QTC_FRIDERICIA,
    "MDC_ECG_ANGLE_P_FRONT": DeviceQuantity.P_AXIS,
    "MDC_ECG_ANGLE_QRS_FRONT": DeviceQuantity.QRS_AXIS,
    "MDC_ECG_ANGLE_T_FRONT": DeviceQuantity.T_AXIS,
}
_STATEMENT_CODES: Final = frozenset(
    {"MDC_ECG_RHY", "MDC_ECG_INTERPRETATION", "MDC_ECG_INTERPRETATION_STATEMENT", "MDC_ECG_INTERPRETATION_SUMMARY"}
)


def is_aecg_root(tag: str) -> bool:
    """True for the ``AnnotatedECG`` root element in the HL7 v3 namespace."""
    return local_name(tag) == "AnnotatedECG" and namespace_of(tag) == NAMESPACE


def _code(el: Element | None) -> str:
    if el is None:
        return ""
    c = el.find("v3:code", _NS)
    return c.get("code", "") if c is not None else ""


def _sequence_set(seq_set: Element, source: str, where: str) -> tuple[np.ndarray, tuple[str, ...], float]:
    fs: float | None = None
    rows: list[np.ndarray] = []
    names: list[str] = []
    for seq in seq_set.findall("v3:component/v3:sequence", _NS):
        code = _code(seq)
        value = seq.find("v3:value", _NS)
        if value is None:
            continue
        if code.startswith("TIME_"):
            inc = value.find("v3:increment", _NS)
            if inc is None:
                raise EcgError(
                    f"{where}: {code} sequence has no increment; expected a sampling interval", source=source
                )
            try:
                step = float(inc.get("value", "")) * _TIME_TO_S[inc.get("unit", "s").lower()]
            except (ValueError, KeyError):
                raise EcgError(
                    f"{where}: increment {inc.get('value')!r} {inc.get('unit')!r}; expected a number in s or ms",
                    source=source,
                ) from None
            if step <= 0:
                raise EcgError(f"{where}: increment must be positive, got {step} s", source=source)
            fs = 1.0 / step
            continue
        digits = value.find("v3:digits", _NS)
        if digits is None:
            continue
        origin_el, scale_el = value.find("v3:origin", _NS), value.find("v3:scale", _NS)
        try:
            origin = float(origin_el.get("value", "0")) if origin_el is not None else 0.0
            scale = float(scale_el.get("value", "1")) if scale_el is not None else 1.0
            samples = np.array((digits.text or "").split(), dtype=np.float64)
        except ValueError as exc:
            raise EcgError(
                f"{where}: lead {code}: digits/origin/scale are not numbers ({exc})", source=source
            ) from None
        unit = (scale_el.get("unit", "uV") if scale_el is not None else "uV").lower()
        if unit not in _UNIT_TO_MV:
            raise EcgError(f"{where}: lead {code}: unit {unit!r}; expected uV, mV or V", source=source)
        rows.append((origin + scale * samples) * _UNIT_TO_MV[unit])
        names.append(code.removeprefix("MDC_ECG_LEAD_") if code.startswith("MDC_ECG_LEAD_") else code)
    if fs is None:
        raise EcgError(
            f"{where}: no TIME_ABSOLUTE/TIME_RELATIVE sequence; cannot tell the sampling rate", source=source
        )
    if not rows:
        raise EcgError(f"{where}: no lead sequences with digits", source=source)
    lengths = {len(r) for r in rows}
    if len(lengths) != 1:
        raise EcgError(f"{where}: leads have different lengths {sorted(lengths)}; expected one length", source=source)
    return np.vstack(rows), tuple(names), fs


def _annotations(series: list[Element]) -> tuple[list[Measurement], list[str]]:
    measurements: list[Measurement] = []
    statements: list[str] = []
    seen: set[DeviceQuantity] = set()

    def walk(ann: Element) -> None:
        code = _code(ann)
        if code == "MDC_ECG_BEAT":
            return  # per-beat marks: not global measurements
        value = ann.find("v3:value", _NS)
        quantity = _QUANTITIES.get(code.upper())
        if quantity is not None and value is not None and quantity not in seen:
            number = value.get("value")
            unit = value.get("unit", "")
            if number is not None and unit == "s":
                number = str(float(number) * 1000.0)
            m = device_measurement(quantity, number)
            if m is not None:
                measurements.append(m)
                seen.add(quantity)
        elif code in _STATEMENT_CODES and value is not None:
            text = value.get("displayName") or (value.text or "").strip() or value.get("code", "")
            if text and text not in statements:
                statements.append(text)
        for child in ann.findall("v3:component/v3:annotation", _NS):
            walk(child)

    for s in series:
        for ann in s.findall("v3:subjectOf/v3:annotationSet/v3:component/v3:annotation", _NS):
            walk(ann)
    return measurements, statements


_WAVES: Final[dict[str, str]] = {
    "MDC_ECG_WAVC_PWAVE": "P",
    "MDC_ECG_WAVC_QRSWAVE": "QRS",
    "MDC_ECG_WAVC_TWAVE": "T",
}


def _fiducials(series: Element, fs: float, start: datetime | None, waveform: str) -> list[DeviceFiducial]:
    """Per-beat wave boundaries: absolute times (rhythm) or ms from the start (median) to samples."""
    out: list[DeviceFiducial] = []
    beat_no = 0
    for ann_set in series.findall("v3:subjectOf/v3:annotationSet", _NS):
        for top in ann_set.findall("v3:component/v3:annotation", _NS):
            is_beat = _code(top) == "MDC_ECG_BEAT"
            waves = top.findall("v3:component/v3:annotation", _NS) if is_beat else [top]
            beat = None
            if is_beat:
                beat_no += 1
                beat = beat_no
            for wave in waves:
                value = wave.find("v3:value", _NS)
                name = _WAVES.get(value.get("code", "") if value is not None else "")
                if _code(wave) != "MDC_ECG_WAVC" or name is None:
                    continue
                bound = wave.find(".//v3:boundary/v3:value", _NS)
                if bound is None:
                    continue
                for edge, label in (("low", "Onset"), ("high", "Offset")):
                    el = bound.find(f"v3:{edge}", _NS)
                    if el is None:
                        continue
                    sample = _to_sample(el, fs, start)
                    if sample is not None:
                        out.append(DeviceFiducial(f"{name} {label}", sample, waveform, beat))
    return out


def _to_sample(el: Element, fs: float, start: datetime | None) -> int | None:
    raw = el.get("value", "")
    unit = el.get("unit")
    if unit is not None:  # relative time (PQ)
        try:
            return round(float(raw) * _TIME_TO_S.get(unit.lower(), 1.0) * fs)
        except ValueError:
            return None
    t = parse_hl7_ts(raw)
    if t is None or start is None:
        return None
    return round((t - start).total_seconds() * fs)


def _patient(root: Element, acquired: datetime | None) -> Patient:
    person = root.find(".//v3:subjectDemographicPerson", _NS)
    gender = person.find("v3:administrativeGenderCode", _NS) if person is not None else None
    age: float | None = None
    for obs in root.findall("v3:controlVariable/v3:relatedObservation", _NS):
        if _code(obs) == "21612-7":  # LOINC Reported Age
            value = obs.find("v3:value", _NS)
            if value is not None and value.get("unit", "a") == "a":
                age = age_from_text(value.get("value"))
    birth_el = person.find("v3:birthTime", _NS) if person is not None else None
    birth = parse_hl7_ts(birth_el.get("value") if birth_el is not None else None)
    subject_id = root.find(".//v3:trialSubject/v3:id", _NS)
    identifier, issuer = None, None
    if subject_id is not None:
        # HL7 v3 II: root (an OID, the issuer) + extension (the value); a root alone is the identifier itself
        identifier, issuer = subject_id.get("extension"), subject_id.get("root")
        if not identifier:
            identifier, issuer = issuer, None
    return patient_of(
        identifier=identifier,
        issuer=issuer,
        name=_person_name(person),
        birth_date=birth.date() if birth is not None else None,
        sex=sex_from_text(gender.get("code") if gender is not None else None),
        age_years=age,
        acquired=acquired.replace(tzinfo=None) if acquired is not None else None,
    )


def _person_name(person: Element | None) -> str | None:
    """The subject's name: PN parts (family, given) when structured, else the text (often initials)."""
    el = person.find("v3:name", _NS) if person is not None else None
    if el is None:
        return None
    family, given = el.findtext("v3:family", None, _NS), el.findtext("v3:given", None, _NS)
    if family or given:
        return person_name(family, given)
    return person_name((el.text or "").strip())


def read(path: Path) -> EcgFile:
    """Read an HL7 aECG file: the rhythm series, its representative beat and device annotations."""
    source = str(path)
    root = parse_xml(path)
    if not is_aecg_root(root.tag):
        raise EcgError(f"root element {root.tag!r}; expected AnnotatedECG in namespace {NAMESPACE}", source=source)
    all_series = root.findall("v3:component/v3:series", _NS)
    if not all_series:
        raise EcgError("no component/series; expected a rhythm series with lead sequences", source=source)
    series = next((s for s in all_series if _code(s) == "RHYTHM"), all_series[0])
    seq_set = series.find("v3:component/v3:sequenceSet", _NS)
    if seq_set is None:
        raise EcgError("series has no sequenceSet; expected lead sequences", source=source)
    signal, names, fs = _sequence_set(seq_set, source, "rhythm series")
    signal, names = complete_leads(signal, names)
    derived = series.find("v3:derivation/v3:derivedSeries", _NS)
    measurements, statements = _annotations([s for s in (derived, series) if s is not None])
    center = root.find("v3:effectiveTime/v3:center", _NS)
    low = series.find("v3:effectiveTime/v3:low", _NS)
    # the acquisition time in the file's own zone (aware when the timestamp carries its UTC offset)
    acquired = parse_hl7_ts_zoned(center.get("value") if center is not None else None) or parse_hl7_ts_zoned(
        low.get("value") if low is not None else None
    )
    model = series.find(".//v3:manufacturedSeriesDevice/v3:manufacturerModelName", _NS)
    maker = series.find(".//v3:manufacturerOrganization/v3:name", _NS)
    device = " ".join(
        t for t in ((maker.text if maker is not None else None), (model.text if model is not None else None)) if t
    )
    patient = _patient(root, acquired)
    record = build_record(
        source,
        "rhythm series",
        signal=signal,
        lead_names=names,
        sampling_rate_hz=fs,
        patient=patient,
        acquired_at=acquired,
        device_measurements=tuple(measurements),
        device_statements=tuple(statements),
        device_name=device.strip() or None,
    )
    median = None
    if derived is not None:
        dset = derived.find("v3:component/v3:sequenceSet", _NS)
        if dset is not None:
            msig, mnames, mfs = _sequence_set(dset, source, "representative beat series")
            msig, mnames = complete_leads(msig, mnames)
            median = build_record(
                source, "representative beat", signal=msig, lead_names=mnames, sampling_rate_hz=mfs, patient=patient
            )
    head = seq_set.find("v3:component/v3:sequence/v3:value/v3:head", _NS)
    start = parse_hl7_ts(head.get("value") if head is not None else None) or (
        acquired.replace(tzinfo=None) if acquired is not None else None
    )
    fiducials = _fiducials(series, fs, start, "rhythm")
    if derived is not None and median is not None:
        fiducials += _fiducials(derived, median.sampling_rate_hz, None, "median")
    return EcgFile(record=record, representative_beat=median, fiducials=tuple(fiducials))
