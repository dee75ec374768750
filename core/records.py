"""The central records that stages exchange.

Every record is a frozen dataclass, valid once constructed: the constructor
checks types and values and raises :class:`core.errors.RecordError` naming the
field.  Records never hold a pydicom ``Dataset``; arrays are numpy arrays made
read-only on construction so that a frozen record cannot change under a reader.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from core._validate import (
    check_digest,
    check_finite,
    check_nonempty,
    check_positive,
    check_probability,
    check_uid,
)
from core.codes import Code
from core.errors import RecordError

if TYPE_CHECKING:
    from core.orders import OrderMatch

# --------------------------------------------------------------------------- enums


class Sex(enum.Enum):
    """Administrative sex as DICOM (0010,0040) codes it."""

    MALE = "M"
    FEMALE = "F"
    OTHER = "O"
    UNKNOWN = "U"

    @classmethod
    def from_dicom(cls, value: str | None) -> Sex:
        """Map a PatientSex value; anything unrecognised is UNKNOWN, never an error."""
        try:
            return cls((value or "U").strip().upper()[:1] or "U")
        except ValueError:
            return cls.UNKNOWN


class Presence(enum.Enum):
    """Whether a finding is asserted present, absent or uncertain."""

    PRESENT = "present"
    ABSENT = "absent"
    UNCERTAIN = "uncertain"


class Laterality(enum.Enum):
    """Laterality of a finding site."""

    LEFT = "left"
    RIGHT = "right"
    BILATERAL = "bilateral"
    UNPAIRED = "unpaired"  #: the site has no laterality (heart, mediastinum)
    UNSPECIFIED = "unspecified"


class ProducerKind(enum.Enum):
    """What produced a finding."""

    MODEL = "model"  #: a machine-learning model (weights hash required)
    RULE_ENGINE = "rule_engine"  #: deterministic rules (ruleset hash required)
    DEVICE = "device"  #: the acquisition device (e.g. the ECG cart's own statements)
    CLINICIAN = "clinician"  #: a person


class PriorityLevel(enum.IntEnum):
    """Worklist priority; lower values are read first."""

    STAT = 0
    URGENT = 1
    ROUTINE = 2


class ReportStatus(enum.Enum):
    """Report workflow status (FHIR DiagnosticReport.status subset)."""

    PRELIMINARY = "preliminary"  #: AI draft, not signed
    FINAL = "final"  #: signed by a clinician
    AMENDED = "amended"  #: changed after being final, signed again
    ENTERED_IN_ERROR = "entered-in-error"  #: withdrawn


class ReportKind(enum.Enum):
    """Which kind of report: drives codes, categories and templates."""

    IMAGING = "imaging"
    ECG = "ecg"


# --------------------------------------------------------------------------- people


@dataclass(frozen=True, slots=True)
class PatientIdentifier:
    """A patient identifier with the authority that issued it (DICOM IssuerOfPatientID)."""

    value: str
    issuer: str | None = None

    def __post_init__(self) -> None:
        check_nonempty("PatientIdentifier", "value", self.value)

    def __repr__(self) -> str:  # PHI: never printed
        return "PatientIdentifier(<redacted>)"


@dataclass(frozen=True, slots=True)
class Patient:
    """The patient of a study.

    ``repr`` and ``str`` are redacted: a Patient may reach a log line by
    accident, its identifiers and name must not.
    """

    identifiers: tuple[PatientIdentifier, ...] = ()
    name: str | None = None
    birth_date: date | None = None
    sex: Sex = Sex.UNKNOWN
    age_years: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.sex, Sex):
            raise RecordError("Patient", "sex", f"expected a Sex, got {self.sex!r}")
        if self.age_years is not None:
            check_finite("Patient", "age_years", self.age_years)
            if not 0 <= self.age_years < 150:
                raise RecordError("Patient", "age_years", f"expected 0..150 years, got {self.age_years!r}")

    def __repr__(self) -> str:
        return f"Patient(<redacted>, sex={self.sex.value}, age_years={self.age_years})"

    __str__ = __repr__


@dataclass(frozen=True, slots=True)
class Clinician:
    """A person who signs or amends a report."""

    name: str
    identifier: str
    role: str = "radiologist"

    def __post_init__(self) -> None:
        check_nonempty("Clinician", "name", self.name)
        check_nonempty("Clinician", "identifier", self.identifier)


# --------------------------------------------------------------------------- DICOM hierarchy

#: ``Instance.source`` of an ECG file (WFDB, aECG, MUSE, Sierra, SCP-ECG) indexed under derived UIDs.
ECG_FILE_SOURCE = "ecg-file"
_DICOM_TM = re.compile(r"^\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?$")


@dataclass(frozen=True, slots=True)
class Instance:
    """One stored DICOM object (or one ECG file): where it is and what it is."""

    sop_instance_uid: str
    sop_class_uid: str
    series_instance_uid: str
    study_instance_uid: str
    path: Path
    #: what the object holds, as ``"<algorithm>:<hex>"``: XXH3-128 of the dataset without its file meta for a
    #: DICOM object (``ingest.filestore.content_digest``), sha256 of the files for a file-based ECG recording
    content_digest: str
    transfer_syntax_uid: str | None = None
    instance_number: int | None = None
    number_of_frames: int = 1
    rows: int | None = None
    columns: int | None = None
    #: "file", "scp:<calling AE>", "pull:<peer>"; ``ECG_FILE_SOURCE`` for a non-DICOM ECG recording filed under
    #: derived UIDs (no DICOM object with this SOP Instance UID exists, so nothing may reference it)
    source: str = "file"

    def __post_init__(self) -> None:
        for name in ("sop_instance_uid", "sop_class_uid", "series_instance_uid", "study_instance_uid"):
            check_uid("Instance", name, getattr(self, name))
        check_digest("Instance", "content_digest", self.content_digest)
        if self.number_of_frames < 1:
            raise RecordError("Instance", "number_of_frames", f"expected >= 1, got {self.number_of_frames}")

    @property
    def is_dicom_object(self) -> bool:
        """True when a DICOM object with this SOP Instance UID exists (and may be referenced as evidence)."""
        return self.source != ECG_FILE_SOURCE


@dataclass(frozen=True, slots=True)
class Series:
    """A series and its instances."""

    series_instance_uid: str
    study_instance_uid: str
    modality: str
    series_number: int | None = None
    description: str | None = None
    body_part: str | None = None
    instances: tuple[Instance, ...] = ()

    def __post_init__(self) -> None:
        check_uid("Series", "series_instance_uid", self.series_instance_uid)
        check_uid("Series", "study_instance_uid", self.study_instance_uid)
        check_nonempty("Series", "modality", self.modality)
        for inst in self.instances:
            if inst.series_instance_uid != self.series_instance_uid:
                raise RecordError(
                    "Series",
                    "instances",
                    f"instance {inst.sop_instance_uid} belongs to series {inst.series_instance_uid}",
                )


@dataclass(frozen=True, slots=True)
class Study:
    """A study: the unit of analysis, reporting and delivery.

    ``study_datetime`` is the local wall clock of the source (naive) or, where the source said its UTC
    offset (DICOM TimezoneOffsetFromUTC, an aECG or SCP-ECG time zone), aware with that offset.
    ``study_time_dicom`` is the StudyTime exactly as received (``093431.70``) and ``study_id`` the StudyID:
    objects derived from the study copy both unchanged, so every object of the study agrees.
    """

    study_instance_uid: str
    patient: Patient = field(default_factory=Patient)
    accession_number: str | None = None
    study_datetime: datetime | None = None
    description: str | None = None
    referring_physician: str | None = None
    study_id: str | None = None
    study_time_dicom: str | None = None
    series: tuple[Series, ...] = ()
    order_match: OrderMatch | None = None  #: the order this study answers (set by the pipeline, not indexed)

    def __post_init__(self) -> None:
        check_uid("Study", "study_instance_uid", self.study_instance_uid)
        if self.study_time_dicom is not None and not _DICOM_TM.match(self.study_time_dicom):
            raise RecordError(
                "Study", "study_time_dicom", f"expected a DICOM TM (HHMMSS.FFFFFF), got {self.study_time_dicom!r}"
            )
        for s in self.series:
            if s.study_instance_uid != self.study_instance_uid:
                raise RecordError(
                    "Study", "series", f"series {s.series_instance_uid} belongs to study {s.study_instance_uid}"
                )

    @property
    def modalities(self) -> tuple[str, ...]:
        """Modalities in the study, sorted, without duplicates."""
        return tuple(sorted({s.modality for s in self.series}))

    @property
    def instance_count(self) -> int:
        return sum(len(s.instances) for s in self.series)


# --------------------------------------------------------------------------- pixels


def _frozen_array(record: str, name: str, value: object, ndim: tuple[int, ...]) -> npt.NDArray[np.generic]:
    if not isinstance(value, np.ndarray):
        raise RecordError(record, name, f"expected a numpy array, got {type(value).__name__}")
    if value.ndim not in ndim:
        raise RecordError(record, name, f"expected {' or '.join(map(str, ndim))} dimensions, got shape {value.shape}")
    if value.size == 0:
        raise RecordError(record, name, "expected a non-empty array")
    arr = value if not value.flags.writeable else value.copy()
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, slots=True)
class Image:
    """A 2D image (radiograph, one frame, a rendered page) with its geometry.

    ``pixels`` is rows x columns (grey) or rows x columns x 3 (RGB), after the
    modality LUT; ``window`` is the (center, width) to display it with.
    """

    pixels: npt.NDArray[np.generic]
    pixel_spacing_mm: tuple[float, float] | None = None  #: (row spacing, column spacing)
    photometric: str = "MONOCHROME2"
    view_position: str | None = None  #: PA, AP, LATERAL...
    window: tuple[float, float] | None = None
    sop_instance_uid: str | None = None
    frame: int = 0
    #: how ``pixel_spacing_mm`` was calibrated: "patient" (PixelSpacing) or "detector ..." (ImagerPixelSpacing,
    #: magnified by beam divergence unless corrected); None when there is no spacing
    pixel_spacing_note: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "pixels", _frozen_array("Image", "pixels", self.pixels, (2, 3)))
        if self.pixels.ndim == 3 and self.pixels.shape[2] not in (3, 4):
            raise RecordError("Image", "pixels", f"expected 3 or 4 channels last, got shape {self.pixels.shape}")
        if self.pixel_spacing_mm is not None:
            for v in self.pixel_spacing_mm:
                check_positive("Image", "pixel_spacing_mm", v)
        if self.window is not None:
            check_positive("Image", "window", self.window[1])
        if self.sop_instance_uid is not None:
            check_uid("Image", "sop_instance_uid", self.sop_instance_uid)


@dataclass(frozen=True, slots=True)
class Volume:
    """A 3D volume in patient coordinates (DICOM LPS).

    ``voxels`` is (slices, rows, columns).  ``direction`` is the 3x3 matrix whose
    columns are the patient-space unit vectors along columns (x), rows (y) and
    slices (z) of the array; ``origin`` is the centre of voxel (0, 0, 0) in mm;
    ``spacing_mm`` is (slice, row, column) spacing.
    """

    voxels: npt.NDArray[np.generic]
    spacing_mm: tuple[float, float, float]
    origin_mm: tuple[float, float, float]
    direction: tuple[tuple[float, float, float], tuple[float, float, float], tuple[float, float, float]]
    series_instance_uid: str
    modality: str = "CT"
    window: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "voxels", _frozen_array("Volume", "voxels", self.voxels, (3,)))
        if len(self.spacing_mm) != 3:
            raise RecordError("Volume", "spacing_mm", f"expected 3 values, got {self.spacing_mm!r}")
        for v in self.spacing_mm:
            check_positive("Volume", "spacing_mm", v)
        for v in self.origin_mm:
            check_finite("Volume", "origin_mm", v)
        d = np.asarray(self.direction, dtype=float)
        if d.shape != (3, 3) or not np.allclose(np.linalg.norm(d, axis=0), 1.0, atol=1e-3):
            raise RecordError(
                "Volume", "direction", f"expected a 3x3 matrix of unit column vectors, got {self.direction!r}"
            )
        check_uid("Volume", "series_instance_uid", self.series_instance_uid)


# --------------------------------------------------------------------------- measurements and findings


@dataclass(frozen=True, slots=True)
class Measurement:
    """A coded numeric value with a UCUM unit (an ECG interval, a lesion size...)."""

    code: Code
    value: float
    unit: Code
    site: str | None = None  #: e.g. an ECG lead name ("V2") or an anatomic site
    method: str | None = None  #: e.g. "median beat", "device"

    def __post_init__(self) -> None:
        check_finite("Measurement", "value", self.value)
        if self.unit.scheme != "UCUM":
            raise RecordError("Measurement", "unit", f"expected a UCUM unit, got {self.unit}")


@dataclass(frozen=True, slots=True)
class Producer:
    """What produced a finding: enough to reproduce and audit it."""

    kind: ProducerKind
    name: str
    version: str
    digest: str | None = None  #: sha256 of the weights (models) or of the ruleset (rule engines)

    def __post_init__(self) -> None:
        check_nonempty("Producer", "name", self.name)
        check_nonempty("Producer", "version", self.version)
        if self.kind in (ProducerKind.MODEL, ProducerKind.RULE_ENGINE) and not self.digest:
            raise RecordError("Producer", "digest", f"a {self.kind.value} producer needs its weights/ruleset hash")

    @property
    def is_ai(self) -> bool:
        return self.kind is ProducerKind.MODEL

    @property
    def is_machine(self) -> bool:
        """Software or a device, not a person: its content is labelled machine-generated in every output."""
        return self.kind is not ProducerKind.CLINICIAN


@dataclass(frozen=True, slots=True)
class EvidenceRef:
    """Where a finding was seen: an instance (and frame), an ECG lead and time span."""

    sop_instance_uid: str | None = None
    frame: int | None = None
    lead: str | None = None
    start_s: float | None = None
    end_s: float | None = None

    def __post_init__(self) -> None:
        if self.sop_instance_uid is not None:
            check_uid("EvidenceRef", "sop_instance_uid", self.sop_instance_uid)


@dataclass(frozen=True, slots=True)
class Finding:
    """One asserted observation.

    ECG statements are Findings too: ``concept`` is the SNOMED CT statement,
    ``criteria`` says which criteria were met and ``measurements`` the values
    behind them.
    """

    concept: Code | None
    text: str
    producer: Producer
    presence: Presence = Presence.PRESENT
    site: Code | None = None
    laterality: Laterality = Laterality.UNSPECIFIED
    probability: float | None = None
    evidence: tuple[EvidenceRef, ...] = ()
    criteria: tuple[str, ...] = ()
    measurements: tuple[Measurement, ...] = ()
    critical: bool = False  #: a critical result (STEMI, tension pneumothorax...) drives STAT priority

    def __post_init__(self) -> None:
        if self.concept is None and not self.text.strip():
            raise RecordError("Finding", "text", "a finding needs a coded concept or a free text")
        check_probability("Finding", "probability", self.probability)
        if not isinstance(self.presence, Presence):
            raise RecordError("Finding", "presence", f"expected a Presence, got {self.presence!r}")


@dataclass(frozen=True, slots=True, order=True)
class Priority:
    """Worklist priority with the reason a reader sees (orderable: STAT sorts first)."""

    level: PriorityLevel
    reason: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.level, PriorityLevel):
            raise RecordError("Priority", "level", f"expected a PriorityLevel, got {self.level!r}")
        if self.level is not PriorityLevel.ROUTINE and not self.reason.strip():
            raise RecordError("Priority", "reason", f"a {self.level.name} priority needs a reason")

    @classmethod
    def routine(cls) -> Priority:
        return cls(PriorityLevel.ROUTINE, "no critical or urgent finding")

    @classmethod
    def highest(cls, priorities: list[Priority] | tuple[Priority, ...]) -> Priority:
        """The most urgent of several priorities (routine when empty)."""
        return min(priorities, default=cls.routine())


# --------------------------------------------------------------------------- ECG


#: Standard 12-lead names, in the conventional display order.
STANDARD_LEADS: tuple[str, ...] = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")


def normalise_lead_name(name: str) -> str:
    """Map common spellings ("avr", "AVR", "Lead II", "MDC_ECG_LEAD_V1") to the standard names.

    Names that are not standard 12-lead names (MLII, X, Y, Z, ...) are returned stripped, unchanged.
    """
    raw = name.strip()
    key = raw.upper().replace("MDC_ECG_LEAD_", "").replace("LEAD", "").replace("_", "").replace(" ", "")
    for std in STANDARD_LEADS:
        if key == std.upper():
            return std
    return raw


@dataclass(frozen=True, slots=True)
class EcgRecord:
    """A multi-lead ECG in millivolts.

    ``signal`` is float32, leads x samples.  ``device_measurements`` and
    ``device_statements`` keep what the acquiring device reported, for
    comparison, never as the truth.
    """

    signal: npt.NDArray[np.float32]
    lead_names: tuple[str, ...]
    sampling_rate_hz: float
    source: str  #: file path or SOP Instance UID (never patient data)
    patient: Patient = field(default_factory=Patient)
    acquired_at: datetime | None = None
    study_instance_uid: str | None = None
    device_measurements: tuple[Measurement, ...] = ()
    device_statements: tuple[str, ...] = ()
    device_name: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.signal, np.ndarray) or self.signal.ndim != 2:
            raise RecordError(
                "EcgRecord",
                "signal",
                f"expected a 2D leads x samples array, got {getattr(self.signal, 'shape', type(self.signal))}",
            )
        sig = np.ascontiguousarray(self.signal, dtype=np.float32)
        if sig is self.signal:
            sig = sig.copy()
        sig.setflags(write=False)
        object.__setattr__(self, "signal", sig)
        names = tuple(normalise_lead_name(n) for n in self.lead_names)
        object.__setattr__(self, "lead_names", names)
        if len(names) != sig.shape[0]:
            raise RecordError("EcgRecord", "lead_names", f"{len(names)} names for {sig.shape[0]} leads")
        if len(set(names)) != len(names):
            raise RecordError("EcgRecord", "lead_names", f"duplicate lead names in {names}")
        check_positive("EcgRecord", "sampling_rate_hz", self.sampling_rate_hz)
        if sig.shape[1] < 2:
            raise RecordError("EcgRecord", "signal", f"expected at least 2 samples per lead, got {sig.shape[1]}")
        if self.study_instance_uid is not None:
            check_uid("EcgRecord", "study_instance_uid", self.study_instance_uid)

    @property
    def duration_s(self) -> float:
        return float(self.signal.shape[1] / self.sampling_rate_hz)

    @property
    def has_standard_12_leads(self) -> bool:
        return set(STANDARD_LEADS) <= set(self.lead_names)

    def lead(self, name: str) -> npt.NDArray[np.float32]:
        """The samples of one lead, by (normalised) name."""
        key = normalise_lead_name(name)
        try:
            row: npt.NDArray[np.float32] = self.signal[self.lead_names.index(key)]
        except ValueError:
            raise RecordError("EcgRecord", "lead_names", f"no lead {name!r}; leads are {self.lead_names}") from None
        return row


# --------------------------------------------------------------------------- reports


@dataclass(frozen=True, slots=True)
class ReportSection:
    """A titled narrative section (findings, impression, recommendation...)."""

    code: Code
    text: str

    def __post_init__(self) -> None:
        check_nonempty("ReportSection", "text", self.text)


class ModelCallOutcome(enum.Enum):
    """Whether a model call's answer was used."""

    OK = "ok"  #: the model answered; its answer (findings, text or "nothing found") is in the report
    FAILED = "failed"  #: no usable answer; ``error`` says why and the study got its fallback draft


_SHA256_HEX = frozenset("0123456789abcdef")


def _is_sha256(value: str | None) -> bool:
    return value is not None and len(value) == 64 and set(value) <= _SHA256_HEX


@dataclass(frozen=True, slots=True)
class ModelCall:
    """One call of one model on one study: what it takes to reproduce and audit what the model wrote.

    Stored with the report version (so the raw answer is kept beside the text
    it became) and rendered by the output builders next to every AI-written
    sentence, finding or absence of findings.  ``decoding`` is the canonical
    JSON of the generation settings; ``output_control`` says how the answer was
    held to the draft schema (``xgrammar``, ``server json_schema``,
    ``parse+repair``, ``classifier``); ``repaired`` that a repair turn was needed.
    """

    producer: Producer
    outcome: ModelCallOutcome
    task: str = "draft"  #: draft, triage, ecg
    prompt_template: str = ""  #: built-in template name or the file it came from
    prompt_sha256: str = ""  #: sha256 of the rendered chat turns (and image shapes)
    decoding: str = ""
    output_control: str = ""
    repaired: bool = False
    device: str = ""
    dtype: str = ""
    seconds: float = 0.0
    raw_answer: str = ""
    error: str = ""

    def __post_init__(self) -> None:
        if self.producer.kind is not ProducerKind.MODEL or not _is_sha256(self.producer.digest):
            raise RecordError(
                "ModelCall", "producer", f"expected a model producer with a 64-hex sha256, got {self.producer.digest!r}"
            )
        if self.prompt_sha256 and not _is_sha256(self.prompt_sha256):
            raise RecordError("ModelCall", "prompt_sha256", f"expected 64 hex characters, got {self.prompt_sha256!r}")
        check_finite("ModelCall", "seconds", self.seconds)
        if self.seconds < 0:
            raise RecordError("ModelCall", "seconds", f"expected >= 0, got {self.seconds}")
        if (self.outcome is ModelCallOutcome.FAILED) != bool(self.error):
            raise RecordError("ModelCall", "error", "a failed call needs its reason; a successful one has none")

    @property
    def ok(self) -> bool:
        return self.outcome is ModelCallOutcome.OK


@dataclass(frozen=True, slots=True)
class Signature:
    """Who signed a report version, and when."""

    clinician: Clinician
    signed_at: datetime


@dataclass(frozen=True, slots=True)
class DraftReport:
    """A study's report: AI draft until a clinician signs it.

    ``provenance`` lists every producer whose findings the report contains.
    A ``final`` or ``amended`` report needs a signature; a preliminary one
    must not have one.
    """

    study_instance_uid: str
    kind: ReportKind
    created_at: datetime
    status: ReportStatus = ReportStatus.PRELIMINARY
    version: int = 1
    sections: tuple[ReportSection, ...] = ()
    findings: tuple[Finding, ...] = ()
    measurements: tuple[Measurement, ...] = ()
    priority: Priority = field(default_factory=Priority.routine)
    provenance: tuple[Producer, ...] = ()
    signature: Signature | None = None
    replaces_version: int | None = None
    model_calls: tuple[ModelCall, ...] = ()  #: every model call behind this version, failed ones included

    def __post_init__(self) -> None:
        check_uid("DraftReport", "study_instance_uid", self.study_instance_uid)
        if self.version < 1:
            raise RecordError("DraftReport", "version", f"expected >= 1, got {self.version}")
        if self.status in (ReportStatus.FINAL, ReportStatus.AMENDED) and self.signature is None:
            raise RecordError("DraftReport", "signature", f"a {self.status.value} report needs a clinician signature")
        if self.status is ReportStatus.PRELIMINARY and self.signature is not None:
            raise RecordError("DraftReport", "signature", "a preliminary report cannot carry a signature")
        producers = set(self.provenance)
        for f in self.findings:
            if f.producer not in producers:
                raise RecordError(
                    "DraftReport",
                    "provenance",
                    f"finding {f.text!r} comes from {f.producer.name}, not listed in provenance",
                )
        for call in self.model_calls:
            if call.ok and call.producer not in producers:
                raise RecordError(
                    "DraftReport", "provenance", f"model call of {call.producer.name} is not listed in provenance"
                )

    @property
    def is_ai_generated(self) -> bool:
        return any(p.is_ai for p in self.provenance)

    @property
    def machine_producers(self) -> tuple[Producer, ...]:
        """The models, rule engines and devices whose content the report holds (the labelling rule's input)."""
        return tuple(p for p in self.provenance if p.is_machine)

    def section(self, code: Code) -> ReportSection | None:
        return next((s for s in self.sections if s.code == code), None)
