"""DICOM header -> core records (Patient, Study, Series, Instance).

One place turns a pydicom ``Dataset`` into the records every stage uses, so
that the SCP, the pull client and the file scanner index objects identically.
Errors name the tag that was missing or malformed and the file it came from;
they never quote patient demographics.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import Tag

from core.errors import IngestError, RecordError
from core.records import Instance, Patient, PatientIdentifier, Series, Sex, Study
from ingest.element_walk import interned_tag

#: Tags an object cannot be indexed without, in the order they are checked.
REQUIRED_TAGS: tuple[tuple[str, str], ...] = (
    ("SOPClassUID", "(0008,0016)"),
    ("SOPInstanceUID", "(0008,0018)"),
    ("StudyInstanceUID", "(0020,000D)"),
    ("SeriesInstanceUID", "(0020,000E)"),
)

#: Modality implied by a SOP class when (0008,0060) is absent (it is type 1, but senders omit it).
_MODALITY_BY_SOP_CLASS: dict[str, str] = {
    "1.2.840.10008.5.1.4.1.1.9.1.1": "ECG",
    "1.2.840.10008.5.1.4.1.1.9.1.2": "ECG",
    "1.2.840.10008.5.1.4.1.1.9.1.3": "ECG",
    "1.2.840.10008.5.1.4.1.1.88.11": "SR",
    "1.2.840.10008.5.1.4.1.1.88.22": "SR",
    "1.2.840.10008.5.1.4.1.1.88.33": "SR",
    "1.2.840.10008.5.1.4.1.1.88.34": "SR",
    "1.2.840.10008.5.1.4.1.1.66.4": "SEG",
    "1.2.840.10008.5.1.4.1.1.104.1": "DOC",
}

_AGE_RE = re.compile(r"^\s*(\d{1,3})\s*([DWMY])\s*$")
_DAYS_PER_UNIT = {"D": 1.0, "W": 7.0, "M": 365.25 / 12.0, "Y": 365.25}


@dataclass(frozen=True, slots=True)
class HeaderRecords:
    """The records one DICOM object contributes to the index (study and series without children)."""

    study: Study
    series: Series
    instance: Instance


def _get(ds: Dataset, keyword: str) -> object:
    """An attribute's value; ``None`` when absent or when its raw value does not convert to its VR."""
    try:
        return ds.get(keyword)
    except (ValueError, TypeError, OverflowError):
        return None


#: Attributes whose VR only allows ASCII (UI, CS, DA, TM, AS, IS): read straight from the raw bytes.
_ASCII_TAGS: dict[str, int] = {
    kw: interned_tag(int(Tag(kw)))
    for kw in (
        "SOPClassUID",
        "SOPInstanceUID",
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "Modality",
        "StudyDate",
        "StudyTime",
        "SeriesDate",
        "SeriesTime",
        "AcquisitionDate",
        "AcquisitionTime",
        "ContentDate",
        "ContentTime",
        "PatientBirthDate",
        "PatientAge",
        "PatientSex",
        "TimezoneOffsetFromUTC",
        "BodyPartExamined",
        "InstanceNumber",
        "SeriesNumber",
        "NumberOfFrames",
        "TransferSyntaxUID",
    )
}


#: Free-text attributes (LO, SH, PN) read from the raw bytes when those are plain ASCII with a single value:
#: every DICOM character set decodes such bytes alike (ISO 2022 escapes start with ESC, excluded).
_TEXT_TAGS: dict[str, int] = {
    kw: interned_tag(int(Tag(kw)))
    for kw in (
        "PatientID",
        "IssuerOfPatientID",
        "PatientName",
        "AccessionNumber",
        "StudyDescription",
        "SeriesDescription",
        "ReferringPhysicianName",
        "StudyID",
    )
}

#: Single unsigned 16-bit attributes read straight from the raw bytes.
_US_TAGS: dict[str, int] = {
    kw: interned_tag(int(Tag(kw))) for kw in ("Rows", "Columns", "BitsAllocated", "SamplesPerPixel")
}


_OTHER_IDS = interned_tag(int(Tag("OtherPatientIDsSequence")))

#: Every element :func:`records_from_dataset`, :func:`missing_required` and the Pixel Data length check read:
#: a receiver builds only these (``walk_dataset(keep=)``).  Each keyword this module reads is in a table above
#: (a keyword outside them would read as absent from such a dataset; a test compares against full datasets).
RECORD_TAGS: frozenset[int] = frozenset(
    {*_ASCII_TAGS.values(), *_TEXT_TAGS.values(), *_US_TAGS.values(), _OTHER_IDS, int(Tag("SpecificCharacterSet"))}
)


def _raw_element(ds: Dataset, tag: int) -> tuple[bool, RawDataElement | None]:
    """``(True, raw element or None when absent)`` straight from the dataset's own mapping, without conversion;
    ``(False, None)`` when that does not apply (no mapping, or the element was already converted)."""
    elements = getattr(ds, "_dict", None)
    if not isinstance(elements, dict):
        return False, None
    elem = elements.get(tag)
    if elem is None:
        return True, None
    if not isinstance(elem, RawDataElement) or not isinstance(elem.value, bytes):
        return False, None
    return True, elem


def _raw_ascii(ds: Dataset, keyword: str) -> tuple[bool, str | None]:
    """The stripped text of a still-raw ASCII element, skipping pydicom's value conversion (the scan's hot spot).

    Returns ``(False, None)`` when the fast path does not apply and the caller must convert normally.
    """
    tag = _ASCII_TAGS.get(keyword)
    free_text = tag is None
    if tag is None:
        tag = _TEXT_TAGS.get(keyword)
        if tag is None:
            return False, None
    ok, elem = _raw_element(ds, tag)
    if elem is None:
        return ok, None
    raw = elem.value
    assert isinstance(raw, bytes)
    if free_text:
        # several values, ISO 2022 escapes, PN component groups: pydicom's conversion decides
        if not raw.isascii() or b"\\" in raw or b"\x1b" in raw or b"=" in raw:
            return False, None
        text = raw.decode("ascii").strip().strip("\x00")
    else:
        text = raw.decode("ascii", "replace").strip(" \x00")
    return True, text or None


def _text(ds: Dataset, keyword: str) -> str | None:
    """A string attribute, stripped; ``None`` when absent or empty."""
    applies, text = _raw_ascii(ds, keyword)
    if applies:
        return text
    value = _get(ds, keyword)
    if value is None:
        return None
    text = str(value).strip().strip("\x00")
    return text or None


def _raw_us(ds: Dataset, keyword: str) -> tuple[bool, int | None]:
    tag = _US_TAGS.get(keyword)
    if tag is None:
        return False, None
    ok, elem = _raw_element(ds, tag)
    if elem is None:
        return ok, None
    if not isinstance(elem.value, bytes) or len(elem.value) != 2 or elem.VR not in ("US", None):
        return False, None
    return True, int.from_bytes(elem.value, "little" if elem.is_little_endian else "big")


def int_value(ds: Dataset, keyword: str) -> int | None:
    """An IS/US attribute as int; ``None`` when absent or not a number (bad VR values are common)."""
    applies, number = _raw_us(ds, keyword)
    if applies:
        return number
    applies, text = _raw_ascii(ds, keyword)
    value = text if applies else _get(ds, keyword)
    if value is None or value == "":
        return None
    try:
        number = int(str(value))
    except (TypeError, ValueError):
        try:
            number = int(float(str(value)))
        except (TypeError, ValueError, OverflowError):  # "inf", "nan", "1e400": not a number of anything
            return None
    return number if _IS_MIN <= number <= _IS_MAX else None  # PS3.5 IS range; a database column holds it


_IS_MIN, _IS_MAX = -(2**31), 2**31 - 1
_int = int_value
text_value = _text  #: a text attribute, stripped; ``None`` when absent or empty


def _uid(ds: Dataset, keyword: str, tag: str, source: str) -> str:
    value = _text(ds, keyword)
    if value is None:
        raise IngestError(f"missing required tag {tag} {keyword}", source=source)
    return value


def parse_da(value: str | None) -> date | None:
    """A DICOM DA (YYYYMMDD, or the old YYYY.MM.DD) as a date; ``None`` when absent or invalid."""
    if not value:
        return None
    digits = value.strip().replace(".", "")
    if len(digits) != 8 or not digits.isdigit():
        return None
    try:
        return date(int(digits[:4]), int(digits[4:6]), int(digits[6:8]))
    except ValueError:
        return None


def _parse_tm(value: str | None) -> tuple[int, int, int, int]:
    """A DICOM TM (HH[MM[SS[.FFFFFF]]], or HH:MM:SS) as (h, m, s, us); midnight when absent or invalid."""
    if not value:
        return (0, 0, 0, 0)
    text = value.strip().replace(":", "")
    main, _, frac = text.partition(".")
    if not (main.isascii() and main.isdigit()) or len(main) not in (2, 4, 6):  # "²".isdigit() is True
        return (0, 0, 0, 0)
    h = int(main[0:2])
    m = int(main[2:4]) if len(main) >= 4 else 0
    s = int(main[4:6]) if len(main) >= 6 else 0
    us = int((frac + "000000")[:6]) if frac.isascii() and frac.isdigit() else 0
    if h > 23 or m > 59 or s > 60:
        return (0, 0, 0, 0)
    return (h, m, min(s, 59), us)


def _tz(ds: Dataset) -> timezone | None:
    offset = _text(ds, "TimezoneOffsetFromUTC")
    if not offset or not re.fullmatch(r"[+-]\d{4}", offset):
        return None
    sign = -1 if offset[0] == "-" else 1
    hours, mins = int(offset[1:3]), int(offset[3:5])
    if hours > 14 or mins > 59:  # PS3.3 C.12.1.1.8: -1200 .. +1400; "+2500" is no offset at all
        return None
    return timezone(sign * timedelta(minutes=hours * 60 + mins))


def _study_time_text(ds: Dataset) -> str | None:
    """StudyTime exactly as received (derived objects copy it unchanged); None when absent or not a TM."""
    value = _text(ds, "StudyTime")
    if value is None or _text(ds, "StudyDate") is None or not re.fullmatch(r"\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?", value):
        return None
    return value


def study_datetime(ds: Dataset) -> datetime | None:
    """StudyDate + StudyTime (falling back to series, acquisition, content dates)."""
    for date_kw, time_kw in (
        ("StudyDate", "StudyTime"),
        ("SeriesDate", "SeriesTime"),
        ("AcquisitionDate", "AcquisitionTime"),
        ("ContentDate", "ContentTime"),
    ):
        d = parse_da(_text(ds, date_kw))
        if d is not None:
            h, m, s, us = _parse_tm(_text(ds, time_kw))
            return datetime(d.year, d.month, d.day, h, m, s, us, tzinfo=_tz(ds))
    return None


def _parse_age(value: str | None) -> float | None:
    """A DICOM AS (``045Y``, ``006M``, ``003W``, ``010D``) in years; ``None`` when absent or invalid."""
    if not value:
        return None
    match = _AGE_RE.match(value)
    if not match:
        return None
    years = int(match.group(1)) * _DAYS_PER_UNIT[match.group(2)] / 365.25
    return round(years, 4) if 0 <= years < 150 else None


def _age_at(birth: date, when: date) -> float | None:
    """Age in years on ``when`` for someone born on ``birth``; ``None`` if the dates contradict each other."""
    days = (when - birth).days
    if days < 0:
        return None
    years = days / 365.25
    return round(years, 4) if years < 150 else None


def _patient_from_dataset(ds: Dataset) -> Patient:
    """The patient: identifiers, name, birth date, sex and age at the study.

    Age comes from PatientAge when present and valid, otherwise from the birth
    date against the study date; it stays ``None`` rather than being guessed.
    """
    identifiers: list[PatientIdentifier] = []
    pid = _text(ds, "PatientID")
    if pid:
        identifiers.append(PatientIdentifier(pid, _text(ds, "IssuerOfPatientID")))
    ok, other_ids = _raw_element(ds, _OTHER_IDS)
    for item in (_get(ds, "OtherPatientIDsSequence") if other_ids is not None or not ok else None) or ():  # type: ignore[attr-defined]
        other = _text(item, "PatientID")
        if other and all(other != i.value for i in identifiers):
            identifiers.append(PatientIdentifier(other, _text(item, "IssuerOfPatientID")))
    birth = parse_da(_text(ds, "PatientBirthDate"))
    age = _parse_age(_text(ds, "PatientAge"))
    if age is None and birth is not None:
        when = study_datetime(ds)
        age = _age_at(birth, when.date()) if when is not None else None
    return Patient(
        identifiers=tuple(identifiers),
        name=_text(ds, "PatientName"),
        birth_date=birth,
        sex=Sex.from_dicom(_text(ds, "PatientSex")),
        age_years=age,
    )


def missing_required(ds: Dataset) -> str | None:
    """The first required tag the dataset lacks, as ``(gggg,eeee) Keyword``; ``None`` when complete."""
    for keyword, tag in REQUIRED_TAGS:
        if _text(ds, keyword) is None:
            return f"{tag} {keyword}"
    return None


def records_from_dataset(
    ds: Dataset,
    *,
    path: Path,
    content_digest: str,
    source: str = "file",
    transfer_syntax_uid: str | None = None,
) -> HeaderRecords:
    """Build the study, series and instance records of one object.

    Parameters
    ----------
    ds:
        The dataset (headers are enough: read with ``stop_before_pixels``).
    path:
        Where the object is stored; also names the object in errors.
    content_digest:
        Content digest of the stored object (``ingest.filestore.content_digest``: the dataset without
        the file meta), the dedupe key beside the SOP Instance UID.
    source:
        ``"file"``, ``"scp:<calling AE>"`` or ``"pull:<peer>"``.
    transfer_syntax_uid:
        Overrides the file meta's (the SCP knows the negotiated one).

    Raises
    ------
    IngestError
        A required UID is missing or malformed (the message names the tag).
    """
    where = str(path)
    sop_class = _uid(ds, "SOPClassUID", "(0008,0016)", where)
    sop_instance = _uid(ds, "SOPInstanceUID", "(0008,0018)", where)
    study_uid = _uid(ds, "StudyInstanceUID", "(0020,000D)", where)
    series_uid = _uid(ds, "SeriesInstanceUID", "(0020,000E)", where)
    if transfer_syntax_uid is None:
        meta = getattr(ds, "file_meta", None)
        transfer_syntax_uid = _text(meta, "TransferSyntaxUID") if meta is not None else None
    modality = _text(ds, "Modality") or _MODALITY_BY_SOP_CLASS.get(sop_class, "OT")
    try:
        instance = Instance(
            sop_instance_uid=sop_instance,
            sop_class_uid=sop_class,
            series_instance_uid=series_uid,
            study_instance_uid=study_uid,
            path=path,
            content_digest=content_digest,
            transfer_syntax_uid=transfer_syntax_uid,
            instance_number=_int(ds, "InstanceNumber"),
            number_of_frames=max(1, _int(ds, "NumberOfFrames") or 1),
            rows=_int(ds, "Rows"),
            columns=_int(ds, "Columns"),
            source=source,
        )
        series = Series(
            series_instance_uid=series_uid,
            study_instance_uid=study_uid,
            modality=modality,
            series_number=_int(ds, "SeriesNumber"),
            description=_text(ds, "SeriesDescription"),
            body_part=_text(ds, "BodyPartExamined"),
        )
        study = Study(
            study_instance_uid=study_uid,
            patient=_patient_from_dataset(ds),
            accession_number=_text(ds, "AccessionNumber"),
            study_datetime=study_datetime(ds),
            description=_text(ds, "StudyDescription"),
            referring_physician=_text(ds, "ReferringPhysicianName"),
            study_id=_text(ds, "StudyID"),
            study_time_dicom=_study_time_text(ds),
        )
    except RecordError as exc:
        raise IngestError(f"invalid header value: {_tag_of(exc.field)} {exc}", source=where) from None
    except (ValueError, TypeError, OverflowError, ArithmeticError) as exc:
        # a value no record can hold (the exception class only: its text may quote the value)
        raise IngestError(f"unusable header value ({type(exc).__name__})", source=where) from None
    return HeaderRecords(study=study, series=series, instance=instance)


_FIELD_TAGS = {
    "sop_instance_uid": "SOPInstanceUID",
    "sop_class_uid": "SOPClassUID",
    "series_instance_uid": "SeriesInstanceUID",
    "study_instance_uid": "StudyInstanceUID",
}


def _tag_of(field: str) -> str:
    keyword = _FIELD_TAGS.get(field)
    if keyword is None:
        return field
    tag = Tag(keyword)
    return f"({tag.group:04X},{tag.element:04X}) {keyword}"
