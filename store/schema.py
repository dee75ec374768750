"""The database tables of mmdx (SQLAlchemy 2 ORM, typed ``Mapped`` columns).

Portable between SQLite and PostgreSQL: enums are stored as short strings
with CHECK constraints (no native PG enum types that migrations would have to
alter), timestamps of events are UTC-aware (:class:`UtcDateTime`), and every
constraint gets a deterministic name from the naming convention so that
Alembic migrations name the same objects on both backends.

Tables, by the part of the design they hold::

    index    patients, patient_identifiers, studies, series, instances,
             quarantine, instance_conflicts
    jobs     jobs                  one row per (study, content version)
    reports  report_versions, artefacts
    outbox   outbox                one row per (artefact, destination)
    audit    audit                 append-only (enforced by ORM events)
    batch    batch_runs, batch_items   ``mmdx batch`` run state (one row per item)
    orders   orders, order_matches one row per order; which order a study answers

PHI (patient identifiers, name, birth date) lives in ``patients`` and
``patient_identifiers``, and in ``orders`` (what the order said, checked against
the images); no other table, log or error message holds it.
"""

from __future__ import annotations

import enum
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Date,
    DateTime,
    Dialect,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    event,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Mapper, mapped_column, relationship

from core.errors import StoreError
from core.orders import MatchStrength, OrderSource, OrderStatus
from core.records import ReportKind, ReportStatus, Sex

#: Deterministic constraint names (Alembic and both backends agree on them).
NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

UID = String(64)  #: a DICOM UID is at most 64 characters
SHA256 = String(64)
DIGEST = String(80)  #: a labelled content digest, "xxh3-128:<32 hex>" or "sha256:<64 hex>"


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware instant, stored as UTC.

    SQLite has no timestamp-with-zone type and SQLAlchemy drops the offset on
    write, so instants are normalised to UTC before they are stored and come
    back UTC-aware on every backend.  A naive datetime is refused: which zone
    it meant cannot be known, and comparing it with stored instants would be
    silently wrong.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise StoreError(f"expected a datetime for a timestamp column, got {type(value).__name__}")
        if value.tzinfo is None or value.utcoffset() is None:
            raise StoreError(f"expected a timezone-aware datetime, got naive {value.isoformat()}")
        utc = value.astimezone(UTC)
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _str_enum(cls: type[enum.Enum], name: str) -> Enum:
    """A portable enum column: VARCHAR + CHECK holding the members' values."""
    return Enum(
        cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        validate_strings=True,
        length=max(len(str(m.value)) for m in cls),
        values_callable=lambda members: [str(m.value) for m in members],
    )


# --------------------------------------------------------------------------- state enums


class JobState(enum.Enum):
    """Life of an analysis job: ``pending -> running -> done | failed``."""

    PENDING = "pending"  #: waiting for a worker (new, or retried after a failure)
    RUNNING = "running"  #: claimed by a worker
    DONE = "done"  #: finished; its report version is stored
    FAILED = "failed"  #: gave up; ``error`` says why


class OutboxState(enum.Enum):
    """Life of a delivery: ``pending -> (awaiting_commitment ->) delivered | dead``, or ``pending -> superseded``."""

    PENDING = "pending"  #: to be sent at ``next_attempt_at`` (first try or a retry; a claimed one is leased)
    AWAITING_COMMITMENT = "awaiting_commitment"  #: stored; DICOM storage commitment requested, report awaited
    DELIVERED = "delivered"  #: the peer confirmed (terminal)
    DEAD = "dead"  #: gave up after the destination's max attempts, or refused (terminal; an operator may retry)
    SUPERSEDED = "superseded"  #: an unsent preliminary skipped for a newer version (terminal; never retried)


class ArtefactKind(enum.Enum):
    """What an artefact is; matches ``delivery_routing.artefacts`` in the config."""

    SR = "sr"  #: DICOM Comprehensive 3D SR (TID 1500)
    SC = "sc"  #: DICOM Secondary Capture (rendered report / overlay)
    PDF = "pdf"  #: the human-readable PDF report
    DICOM_PDF = "dicom-pdf"  #: the PDF report as DICOM Encapsulated PDF (for the PACS)
    FHIR = "fhir"  #: FHIR R4 Bundle (JSON)
    ORU = "oru"  #: HL7 v2.5.1 ORU^R01 message
    HTML = "html"  #: human-readable HTML report


# --------------------------------------------------------------------------- base


class Base(DeclarativeBase):
    """Declarative base holding the one MetaData of mmdx."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: dict[Any, Any] = {datetime: UtcDateTime()}  # noqa: RUF012


# --------------------------------------------------------------------------- index


class PatientRow(Base):
    """A patient (PHI: only here and in ``patient_identifiers``)."""

    __tablename__ = "patients"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str | None] = mapped_column(String(256))
    sex: Mapped[Sex] = mapped_column(_str_enum(Sex, "patient_sex"), default=Sex.UNKNOWN)
    birth_date: Mapped[date | None] = mapped_column(Date)
    age_years: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime]

    identifiers: Mapped[list[PatientIdentifierRow]] = relationship(
        back_populates="patient", order_by="PatientIdentifierRow.id", cascade="all, delete-orphan"
    )


class PatientIdentifierRow(Base):
    """One identifier of a patient with its issuer ('' when the issuer is unknown).

    The empty string rather than NULL keeps ``UNIQUE(value, issuer)`` meaningful:
    NULLs are distinct in unique constraints on both backends.
    """

    __tablename__ = "patient_identifiers"
    __table_args__ = (UniqueConstraint("value", "issuer"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id", ondelete="CASCADE"), index=True)
    value: Mapped[str] = mapped_column(String(64))
    issuer: Mapped[str] = mapped_column(String(64), default="")

    patient: Mapped[PatientRow] = relationship(back_populates="identifiers")


class StudyRow(Base):
    """A study as received; ``content_version`` changes whenever an instance is added."""

    __tablename__ = "studies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_instance_uid: Mapped[str] = mapped_column(UID, unique=True)
    patient_id: Mapped[int | None] = mapped_column(ForeignKey("patients.id"), index=True)
    accession_number: Mapped[str | None] = mapped_column(String(64))
    study_datetime: Mapped[datetime | None] = mapped_column(DateTime(timezone=False))  #: local wall clock (DICOM)
    description: Mapped[str | None] = mapped_column(String(256))
    referring_physician: Mapped[str | None] = mapped_column(String(256))
    study_id: Mapped[str | None] = mapped_column(String(16))  #: DICOM StudyID, copied by derived objects
    study_time: Mapped[str | None] = mapped_column(String(16))  #: StudyTime as received ("093431.70")
    utc_offset_minutes: Mapped[int | None] = mapped_column(Integer)  #: the source's stated offset; NULL: site zone
    first_received_at: Mapped[datetime]
    last_received_at: Mapped[datetime] = mapped_column(index=True)
    content_version: Mapped[str] = mapped_column(SHA256)

    patient: Mapped[PatientRow | None] = relationship()
    series: Mapped[list[SeriesRow]] = relationship(back_populates="study", cascade="all, delete-orphan")


class SeriesRow(Base):
    """A series of a study."""

    __tablename__ = "series"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    series_instance_uid: Mapped[str] = mapped_column(UID, unique=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    modality: Mapped[str] = mapped_column(String(16))
    series_number: Mapped[int | None] = mapped_column(Integer)
    description: Mapped[str | None] = mapped_column(String(256))
    body_part: Mapped[str | None] = mapped_column(String(64))

    study: Mapped[StudyRow] = relationship(back_populates="series")
    instances: Mapped[list[InstanceRow]] = relationship(back_populates="series", cascade="all, delete-orphan")


class InstanceRow(Base):
    """A stored object: where its file is, its hash, where it came from."""

    __tablename__ = "instances"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sop_instance_uid: Mapped[str] = mapped_column(UID, unique=True)
    series_id: Mapped[int] = mapped_column(ForeignKey("series.id", ondelete="CASCADE"), index=True)
    sop_class_uid: Mapped[str] = mapped_column(UID)
    transfer_syntax_uid: Mapped[str | None] = mapped_column(UID)
    path: Mapped[str] = mapped_column(Text)
    content_digest: Mapped[str] = mapped_column(DIGEST)  #: "<algorithm>:<hex>" (core.records.Instance)
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    instance_number: Mapped[int | None] = mapped_column(Integer)
    number_of_frames: Mapped[int] = mapped_column(Integer, default=1)
    rows: Mapped[int | None] = mapped_column(Integer)
    columns: Mapped[int | None] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(String(128))  #: "file", "scp:<AE>", "pull:<peer>"
    received_at: Mapped[datetime]

    series: Mapped[SeriesRow] = relationship(back_populates="instances")


class QuarantineRow(Base):
    """An input that could not be indexed, with the PHI-free reason."""

    __tablename__ = "quarantine"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    path: Mapped[str] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(128))
    received_at: Mapped[datetime] = mapped_column(index=True)
    sha256: Mapped[str | None] = mapped_column(SHA256)
    study_instance_uid: Mapped[str | None] = mapped_column(UID, index=True)  #: when it could be read


class InstanceConflictRow(Base):
    """A second object with a known SOP Instance UID but different bytes (the original is kept)."""

    __tablename__ = "instance_conflicts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sop_instance_uid: Mapped[str] = mapped_column(UID, index=True)
    existing_digest: Mapped[str] = mapped_column(DIGEST)
    new_digest: Mapped[str] = mapped_column(DIGEST)
    new_path: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(128))
    at: Mapped[datetime]


# --------------------------------------------------------------------------- jobs


class JobRow(Base):
    """One analysis of one content version of a study (exactly once per content)."""

    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("study_instance_uid", "content_version"),
        Index("ix_jobs_state_id", "state", "id"),
        CheckConstraint("attempts >= 0", name="attempts_nonnegative"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_instance_uid: Mapped[str] = mapped_column(UID, index=True)
    content_version: Mapped[str] = mapped_column(SHA256)
    state: Mapped[JobState] = mapped_column(_str_enum(JobState, "job_state"), default=JobState.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    worker_id: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime]
    claimed_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)


# --------------------------------------------------------------------------- reports


class ReportVersionRow(Base):
    """One version of a study's report; the payload is the full DraftReport as JSON."""

    __tablename__ = "report_versions"
    __table_args__ = (
        UniqueConstraint("study_instance_uid", "version"),
        CheckConstraint("version >= 1", name="version_positive"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_instance_uid: Mapped[str] = mapped_column(UID, index=True)
    version: Mapped[int] = mapped_column(Integer)
    status: Mapped[ReportStatus] = mapped_column(_str_enum(ReportStatus, "report_status"), index=True)
    kind: Mapped[ReportKind] = mapped_column(_str_enum(ReportKind, "report_kind"))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    priority_level: Mapped[int] = mapped_column(Integer, index=True)
    priority_reason: Mapped[str] = mapped_column(Text, default="")
    #: "model 'X' failed: reason" lines of this version (newline-separated), for the worklist without the payload
    model_errors: Mapped[str | None] = mapped_column(Text)
    signed_by_name: Mapped[str | None] = mapped_column(String(256))
    signed_by_id: Mapped[str | None] = mapped_column(String(128))
    signed_at: Mapped[datetime | None]
    created_at: Mapped[datetime]

    artefacts: Mapped[list[ArtefactRow]] = relationship(
        back_populates="report_version", order_by="ArtefactRow.id", cascade="all, delete-orphan"
    )


class ArtefactRow(Base):
    """A produced file (SR, SC, PDF, FHIR bundle, ORU message, HTML) of a report version."""

    __tablename__ = "artefacts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    report_version_id: Mapped[int] = mapped_column(ForeignKey("report_versions.id", ondelete="CASCADE"), index=True)
    kind: Mapped[ArtefactKind] = mapped_column(_str_enum(ArtefactKind, "artefact_kind"))
    path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(SHA256)
    sop_instance_uid: Mapped[str | None] = mapped_column(UID)
    media_type: Mapped[str] = mapped_column(String(128))

    report_version: Mapped[ReportVersionRow] = relationship(back_populates="artefacts")


# --------------------------------------------------------------------------- outbox


class OutboxRow(Base):
    """One delivery of one artefact to one destination."""

    __tablename__ = "outbox"
    __table_args__ = (
        UniqueConstraint("artefact_id", "destination"),
        Index("ix_outbox_state_next_attempt_at", "state", "next_attempt_at"),
        CheckConstraint("attempts >= 0", name="attempts_nonnegative"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    artefact_id: Mapped[int] = mapped_column(ForeignKey("artefacts.id", ondelete="CASCADE"), index=True)
    destination: Mapped[str] = mapped_column(String(64))
    state: Mapped[OutboxState] = mapped_column(_str_enum(OutboxState, "outbox_state"), default=OutboxState.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    last_error: Mapped[str | None] = mapped_column(Text)
    transaction_uid: Mapped[str | None] = mapped_column(UID, index=True)  #: storage commitment
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    artefact: Mapped[ArtefactRow] = relationship()


# --------------------------------------------------------------------------- orders


class OrderRow(Base):
    """An order received from the RIS/EHR (HL7, FHIR or the worklist); ``store.orders`` owns it.

    PHI: the demographics the order carried are kept here, apart from ``patients``, so that
    they can be checked against the images' (conflicts are flagged, never merged).
    """

    __tablename__ = "orders"
    __table_args__ = (UniqueConstraint("placer_number", "placer_authority"), UniqueConstraint("accession_number"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    placer_number: Mapped[str] = mapped_column(String(64))
    placer_authority: Mapped[str] = mapped_column(String(64), default="")  #: '' when unknown (see patient_identifiers)
    filler_number: Mapped[str | None] = mapped_column(String(64))
    filler_authority: Mapped[str | None] = mapped_column(String(64))
    accession_number: Mapped[str | None] = mapped_column(String(16))
    patient_id_value: Mapped[str] = mapped_column(String(64), index=True)
    patient_id_issuer: Mapped[str] = mapped_column(String(64), default="")
    patient_name: Mapped[str | None] = mapped_column(String(256))
    patient_birth_date: Mapped[date | None] = mapped_column(Date)
    patient_sex: Mapped[Sex] = mapped_column(_str_enum(Sex, "order_patient_sex"), default=Sex.UNKNOWN)
    procedure_code: Mapped[str | None] = mapped_column(String(64))
    procedure_system: Mapped[str | None] = mapped_column(String(256))
    procedure_text: Mapped[str | None] = mapped_column(String(256))
    modality: Mapped[str | None] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    clinical_history: Mapped[str | None] = mapped_column(Text)
    ordering_provider: Mapped[str | None] = mapped_column(String(256))
    scheduled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=False))  #: local wall clock
    status: Mapped[OrderStatus] = mapped_column(_str_enum(OrderStatus, "order_status"))
    source: Mapped[OrderSource] = mapped_column(_str_enum(OrderSource, "order_source"))
    service_request_id: Mapped[str | None] = mapped_column(String(64))
    requested_procedure_id: Mapped[str | None] = mapped_column(String(16))
    study_instance_uid: Mapped[str | None] = mapped_column(UID)
    received_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class OrderMatchRow(Base):
    """Which order a study answers, how strongly, and the fields on which order and images disagree."""

    __tablename__ = "order_matches"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_instance_uid: Mapped[str] = mapped_column(UID, unique=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), index=True)
    strength: Mapped[MatchStrength] = mapped_column(_str_enum(MatchStrength, "order_match_strength"))
    conflicts: Mapped[str] = mapped_column(Text, default="")  #: comma-separated field names (never values)
    matched_at: Mapped[datetime]


# --------------------------------------------------------------------------- audit


class AuditRow(Base):
    """Who did what to which study (append-only; never PHI)."""

    __tablename__ = "audit"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(index=True)
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64))
    study_instance_uid: Mapped[str | None] = mapped_column(UID, index=True)
    detail: Mapped[str] = mapped_column(Text, default="")
    origin: Mapped[str | None] = mapped_column(String(128))  #: where from: the client address of an HTTP call


@event.listens_for(AuditRow, "before_update")
@event.listens_for(AuditRow, "before_delete")
def _audit_is_append_only(mapper: Mapper[Any], connection: Any, target: AuditRow) -> None:
    raise StoreError(f"audit entry {target.id} cannot be changed or deleted: the audit log is append-only")


# --------------------------------------------------------------------------- batch runs


class BatchItemState(enum.Enum):
    """Life of one item of a batch run: ``pending -> done | failed`` (a re-run of a pending item starts afresh)."""

    PENDING = "pending"  #: not finished yet (new, or interrupted: its partial outputs are discarded on resume)
    DONE = "done"  #: finished; ``row`` holds its cohort-table row
    FAILED = "failed"  #: could not be used; ``error`` says why (PHI-free)


class BatchRunRow(Base):
    """One ``mmdx batch`` run: its source, options and output folder (``id`` is the run_id)."""

    __tablename__ = "batch_runs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    source: Mapped[str] = mapped_column(Text)
    out_dir: Mapped[str] = mapped_column(Text)
    options: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16), default="running")
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]


class BatchItemRow(Base):
    """One unit of work of a batch run (a study, a research image or a report text) and its cohort row.

    ``meta`` holds the manifest's columns for the item (a manifest may carry a
    patient column: the research team's own data); ``row`` is the finished
    cohort-table row, ``fhir`` the FHIR resources of its report.
    """

    __tablename__ = "batch_items"
    __table_args__ = (
        UniqueConstraint("run_id", "seq"),
        UniqueConstraint("run_id", "key"),
        Index("ix_batch_items_run_id_state", "run_id", "state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("batch_runs.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    key: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(16))
    source_path: Mapped[str | None] = mapped_column(Text)
    study_instance_uid: Mapped[str | None] = mapped_column(UID)
    meta: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[BatchItemState] = mapped_column(
        _str_enum(BatchItemState, "batch_item_state"), default=BatchItemState.PENDING
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    row: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    fhir: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    seconds: Mapped[float | None] = mapped_column(Float)
    finished_at: Mapped[datetime | None]
