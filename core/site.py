"""The site profile (``site:`` in the configuration): who the hospital is to the systems it talks to.

Institution and department (DICOM General Equipment, SR observer organisation), the time
zone in which local DICOM dates and times are read (FHIR instants and HL7 TS get its
offset), the HL7 v2 sending/receiving application and facility (MSH-3..6), the patient
identifier authorities (:mod:`core.patient_ids`), the organisation named as the report's
performer, and the language reports are written in.
"""

from __future__ import annotations

import re
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.errors import RecordError
from core.patient_ids import IdentifierMap, IdentifierSystem


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class IdentifierSystemConfig(_Section):
    """One assigning authority: its FHIR system URI, HL7 HD (namespace [+ OID]) and DICOM issuer."""

    fhir_system: str
    hl7_namespace: str
    hl7_universal_id: str | None = None  #: ISO OID of the authority (HD.2, HD.3 = ISO)
    dicom_issuer: str | None = None
    type_code: str = "MR"  #: HL7 table 0203 (MR medical record number, PI patient internal id...)

    def record(self) -> IdentifierSystem:
        try:
            return IdentifierSystem(
                fhir_system=self.fhir_system,
                hl7_namespace=self.hl7_namespace,
                dicom_issuer=self.dicom_issuer,
                hl7_universal_id=self.hl7_universal_id,
                type_code=self.type_code,
            )
        except RecordError as exc:
            raise ValueError(str(exc)) from None

    def model_post_init(self, _context: object) -> None:
        self.record()  # the same checks as the record, at load time


class PatientIdentifiersConfig(_Section):
    """``default``: identifiers the source gives without an issuer; ``issuers``: by the issuer the source writes."""

    default: IdentifierSystemConfig = Field(
        default_factory=lambda: IdentifierSystemConfig(fhir_system="urn:mmdx:patient-id", hl7_namespace="MMDX")
    )
    issuers: dict[str, IdentifierSystemConfig] = Field(default_factory=dict)


class Hl7Config(_Section):
    """MSH-3..MSH-6 of the messages mmdx sends."""

    sending_application: str = "MMDX"
    sending_facility: str = "MMDX"
    receiving_application: str = "RIS"
    receiving_facility: str = "HOSPITAL"

    @field_validator("sending_application", "sending_facility", "receiving_application", "receiving_facility")
    @classmethod
    def _hd(cls, v: str) -> str:
        if not v.strip() or any(c in v for c in "|^~\\"):
            raise ValueError("expected a non-empty name without the HL7 delimiters | ^ ~ \\")
        return v


class PerformerConfig(_Section):
    """The organisation that performs (issues) the reports: FHIR DiagnosticReport.performer."""

    name: str = "mmdx"
    identifier_system: str = "urn:mmdx:organization"
    identifier: str = "mmdx"


class SiteConfig(_Section):
    """The site profile; every key has a development default (see ``configs/default.yaml``)."""

    institution_name: str = "mmdx"
    department_name: str | None = None
    timezone: str = "UTC"  #: IANA zone of the site's local DICOM dates/times
    language: str = "en-US"  #: BCP 47 tag of the report text
    identifier_system: str = "urn:mmdx"  #: prefix of the identifier systems mmdx owns (reports, observations...)
    hl7: Hl7Config = Field(default_factory=Hl7Config)
    patient_identifiers: PatientIdentifiersConfig = Field(default_factory=PatientIdentifiersConfig)
    performer: PerformerConfig = Field(default_factory=PerformerConfig)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except Exception:  # ZoneInfoNotFoundError, ValueError
            raise ValueError(f"unknown IANA time zone {v!r} (e.g. Europe/Berlin, America/New_York, UTC)") from None
        return v

    @field_validator("institution_name")
    @classmethod
    def _institution(cls, v: str) -> str:
        if not 0 < len(v) <= 64:
            raise ValueError("expected 1-64 characters (DICOM InstitutionName is LO)")
        return v

    @field_validator("language")
    @classmethod
    def _language(cls, v: str) -> str:
        if not re.fullmatch(r"[a-z]{2,3}(-[A-Za-z0-9]{2,8})*", v):
            raise ValueError("expected a BCP 47 language tag such as en-US or de-DE")
        return v

    def identifier_map(self) -> IdentifierMap:
        """The identifier mapping every output builder uses."""
        ids = self.patient_identifiers
        return IdentifierMap(
            default=ids.default.record(),
            by_issuer={k: v.record() for k, v in ids.issuers.items()},
            prefix=self.identifier_system,
        )
