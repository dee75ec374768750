"""Everything a report builder needs besides the records.

Builders are pure functions of (records, context): the UID root, the software
identity, the clock and the local naming systems all come from here, so the
same study processed twice by the same software gives byte-identical outputs
(golden files depend on it) and nothing reads global state.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from zoneinfo import ZoneInfo

from core.errors import ReportError
from core.identifiers import Clock, SystemClock, derive_uid
from core.patient_ids import IdentifierMap
from core.records import DraftReport
from core.site import SiteConfig


@dataclass(frozen=True, slots=True)
class ReportContext:
    """Site and software settings shared by every report builder.

    Parameters
    ----------
    uid_root:
        Organisation UID root for derived DICOM UIDs (``2.25`` needs no registration).
    software_name, software_version:
        Written into DICOM (Manufacturer model / software versions), FHIR Device and
        HL7 MSH; the version is part of every derived UID so a new release never
        collides with an older one's objects.
    clock:
        Source of "now" for creation timestamps (``FixedClock`` in tests).
    institution_name, department_name, manufacturer:
        DICOM General Equipment / SR document identity.
    timezone:
        IANA name applied to naive study datetimes (DICOM has no zone) when a
        format needs an offset (FHIR ``dateTime`` with a time part).
    dicomweb_base_url:
        When set, ImagingStudy gets an endpoint-free ``note`` and HL7 an RP OBX
        pointing at ``<base>/studies/<uid>``.
    identifier_system:
        Prefix of the FHIR identifier systems this site owns (report, observation,
        device identifiers; patient IDs without an issuer).
    sending_application, sending_facility, receiving_application, receiving_facility:
        HL7 v2 MSH-3..MSH-6.
    language:
        BCP 47 tag of the report text (SR language of content, FHIR attachments).
    patient_ids:
        The site's patient identifier authorities (FHIR system, PID-3 authority, DICOM issuer).
    performer_name, performer_system, performer_identifier:
        The organisation that issues the reports (FHIR DiagnosticReport.performer).
    """

    uid_root: str = "2.25"
    software_name: str = "mmdx"
    software_version: str = "0.1.0"
    clock: Clock = field(default_factory=SystemClock)
    institution_name: str = "mmdx"
    department_name: str | None = None
    manufacturer: str = "mmdx project"
    timezone: str = "UTC"
    dicomweb_base_url: str | None = None
    identifier_system: str = "urn:mmdx"
    sending_application: str = "MMDX"
    sending_facility: str = "MMDX"
    receiving_application: str = "RIS"
    receiving_facility: str = "HOSPITAL"
    language: str = "en-US"
    patient_ids: IdentifierMap = field(default_factory=IdentifierMap)
    performer_name: str = "mmdx"
    performer_system: str = "urn:mmdx:organization"
    performer_identifier: str = "mmdx"

    @classmethod
    def from_site(cls, site: SiteConfig, **kwargs: object) -> ReportContext:
        """The context of a configured site profile (``site:``); ``kwargs`` add the UID root, software, clock."""
        return cls(
            institution_name=site.institution_name,
            department_name=site.department_name,
            timezone=site.timezone,
            identifier_system=site.identifier_system,
            sending_application=site.hl7.sending_application,
            sending_facility=site.hl7.sending_facility,
            receiving_application=site.hl7.receiving_application,
            receiving_facility=site.hl7.receiving_facility,
            language=site.language,
            patient_ids=site.identifier_map(),
            performer_name=site.performer.name,
            performer_system=site.performer.identifier_system,
            performer_identifier=site.performer.identifier,
            **kwargs,  # type: ignore[arg-type]
        )

    def __post_init__(self) -> None:
        try:
            ZoneInfo(self.timezone)
        except Exception as exc:  # ZoneInfoNotFoundError, ValueError
            raise ReportError(f"ReportContext.timezone: unknown IANA zone {self.timezone!r}") from exc
        # derive_uid validates the root and raises RecordError naming it
        derive_uid(self.uid_root, "probe")

    # ------------------------------------------------------------------ identity helpers

    @property
    def tz(self) -> tzinfo:
        return ZoneInfo(self.timezone)

    def aware(self, value: datetime) -> datetime:
        """``value`` with the site zone attached when it is naive (DICOM datetimes are).

        A source time that carries its own offset keeps it: 09:34+01:00 stays 09:34+01:00.
        """
        if value.tzinfo is not None:
            return value
        # fold=0: in the repeated hour of a DST change the earlier (summer) offset, as DICOM readers assume
        return value.replace(tzinfo=self.tz)

    def local(self, value: datetime) -> datetime:
        """An instant (the clock's "now", a signature time) on the site's wall clock, with its offset."""
        return self.aware(value).astimezone(self.tz)

    def uid(self, study_uid: str, purpose: str, version: int | None = None) -> str:
        """A deterministic DICOM UID for an object derived from a study.

        ``version`` is the report version for per-version objects (SOP instances);
        leave it out for objects shared by all versions (series).
        """
        parts = [self.software_version, study_uid, purpose]
        if version is not None:
            parts.append(str(version))
        return derive_uid(self.uid_root, *parts)

    def uuid(self, *parts: str) -> str:
        """A deterministic UUID (RFC 4122 v5) from ``parts``: FHIR fullUrls and ids."""
        return str(uuid.uuid5(uuid.NAMESPACE_OID, "\x1f".join((self.uid_root, self.software_version, *parts))))

    def system(self, name: str) -> str:
        """A FHIR identifier system owned by this site, e.g. ``urn:mmdx:report``."""
        return f"{self.identifier_system}:{name}"

    def report_uid(self, report: DraftReport, purpose: str) -> str:
        """SOP Instance UID of one version of one artefact of a report."""
        return self.uid(report.study_instance_uid, purpose, report.version)

    def series_uid(self, report: DraftReport, purpose: str) -> str:
        """Series Instance UID shared by every version of one artefact kind."""
        return self.uid(report.study_instance_uid, f"{purpose}-series")

    def now(self) -> datetime:
        return self.clock.now()
