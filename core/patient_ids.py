"""One mapping from a source's patient identifier to the hospital's identifier systems.

A source says who the patient is with an identifier and, where its format has one, the
authority that issued it (DICOM IssuerOfPatientID, an aECG ``id@root``, a MUSE site
number).  The EHR, the RIS and the PACS each name that authority their own way: a FHIR
``Patient.identifier.system`` URI, an HL7 v2 PID-3 assigning authority (HD), a DICOM
IssuerOfPatientID.  The site lists its authorities once (``site.patient_identifiers`` in
the configuration); every output builder asks this module, so the FHIR Patient, PID-3 and
the DICOM patient module always name the same patient the same way.

An identifier whose issuer the site did not list keeps what the source said: an OID issuer
becomes ``urn:oid:<issuer>``, any other issuer a system under the site's own prefix.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import quote

from core.errors import RecordError
from core.records import Patient, PatientIdentifier

_OID = re.compile(r"^[0-2](\.(0|[1-9]\d*))+$")
#: HL7 v2 table 0203 identifier types an MRN system may use
IDENTIFIER_TYPES = frozenset({"MR", "PI", "PT", "PN", "AN", "ANON", "NI", "U"})


@dataclass(frozen=True, slots=True)
class IdentifierSystem:
    """How the hospital names one assigning authority in each standard.

    ``hl7_namespace`` is HD.1 (the RIS's short name); ``hl7_universal_id`` is HD.2, an
    ISO OID (HD.3 ``ISO``) when the authority has one.
    """

    fhir_system: str
    hl7_namespace: str
    dicom_issuer: str | None = None
    hl7_universal_id: str | None = None
    type_code: str = "MR"

    def __post_init__(self) -> None:
        if not re.match(r"^[a-z][a-z0-9+.-]*:\S+$", self.fhir_system):
            raise RecordError("IdentifierSystem", "fhir_system", f"expected an absolute URI, got {self.fhir_system!r}")
        if not self.hl7_namespace.strip() or any(c in self.hl7_namespace for c in "|^~\\&"):
            raise RecordError(
                "IdentifierSystem", "hl7_namespace", "expected a non-empty name without HL7 delimiters |^~\\&"
            )
        if self.hl7_universal_id is not None and not _OID.match(self.hl7_universal_id):
            raise RecordError("IdentifierSystem", "hl7_universal_id", "expected an ISO OID (digits and dots)")
        if self.dicom_issuer is not None and not 0 < len(self.dicom_issuer) <= 64:
            raise RecordError("IdentifierSystem", "dicom_issuer", "expected 1-64 characters (DICOM LO)")
        if self.type_code not in IDENTIFIER_TYPES:
            raise RecordError(
                "IdentifierSystem", "type_code", f"expected one of {sorted(IDENTIFIER_TYPES)} (HL7 table 0203)"
            )


@dataclass(frozen=True, slots=True)
class HospitalIdentifier:
    """A patient identifier with the names its authority has in FHIR, HL7 v2 and DICOM."""

    value: str
    system: IdentifierSystem
    source_issuer: str | None = None

    def __repr__(self) -> str:  # PHI: never printed
        return f"HospitalIdentifier(<redacted>, system={self.system.fhir_system!r})"


@dataclass(frozen=True, slots=True)
class IdentifierMap:
    """The site's assigning authorities: by the issuer a source writes, and a default for the rest.

    ``by_issuer`` keys are matched case-sensitively against the source's issuer; ``default``
    applies to identifiers that come without an issuer.  ``prefix`` (the site's own URI
    prefix, e.g. ``urn:mmdx``) names systems for issuers the site did not list.
    """

    default: IdentifierSystem = field(
        default_factory=lambda: IdentifierSystem(fhir_system="urn:mmdx:patient-id", hl7_namespace="MMDX")
    )
    by_issuer: Mapping[str, IdentifierSystem] = field(default_factory=dict)
    prefix: str = "urn:mmdx"

    def system_for(self, issuer: str | None) -> IdentifierSystem:
        """The hospital's names for ``issuer`` (None: the source named no issuer)."""
        if issuer is None or not issuer.strip():
            return self.default
        if issuer in self.by_issuer:
            return self.by_issuer[issuer]
        if _OID.match(issuer):
            return IdentifierSystem(
                fhir_system=f"urn:oid:{issuer}",
                hl7_namespace=issuer[:20],
                dicom_issuer=issuer,
                hl7_universal_id=issuer,
                type_code=self.default.type_code,
            )
        namespace = "".join(c for c in issuer if c not in "|^~\\&").strip()[:20] or self.default.hl7_namespace
        return IdentifierSystem(
            fhir_system=f"{self.prefix}:patient-id:{quote(issuer, safe='')}",
            hl7_namespace=namespace,
            dicom_issuer=issuer[:64],
            type_code=self.default.type_code,
        )

    def resolve(self, identifier: PatientIdentifier) -> HospitalIdentifier:
        return HospitalIdentifier(identifier.value, self.system_for(identifier.issuer), identifier.issuer)

    def resolve_all(self, patient: Patient) -> tuple[HospitalIdentifier, ...]:
        """Every identifier of the patient, in the source's order, each once per system."""
        out: list[HospitalIdentifier] = []
        seen: set[tuple[str, str]] = set()
        for ident in patient.identifiers:
            resolved = self.resolve(ident)
            key = (resolved.value, resolved.system.fhir_system)
            if key not in seen:
                seen.add(key)
                out.append(resolved)
        return tuple(out)
