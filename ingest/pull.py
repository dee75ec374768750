"""Pull studies (and their priors) from a PACS: QIDO-RS/WADO-RS or C-FIND/C-MOVE.

Both routes end in the same place as a C-STORE to our SCP: every retrieved
object goes through :class:`ingest.receive.Receiver` (parse, atomic write,
index).  DICOMweb objects are retrieved in their stored transfer syntax
(``transfer-syntax=*``) and handed over directly; a C-MOVE asks the PACS to
send the study to our own SCP (``move_destination``, which the PACS must know
as a DICOM modality), so the SCP receives and indexes it.

A query is by Study Instance UID, by accession number, or by patient ID with
an optional study date range.  Patient IDs are sent to the PACS (that is the
point) but never logged.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any, Protocol

from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
)

from core.errors import IngestError
from core.records import Study
from ingest.headers import parse_da
from ingest.receive import Outcome, Receiver

if TYPE_CHECKING:
    from core.config import DicomPeer

log = logging.getLogger(__name__)

_STUDY_KEYS = (
    "StudyInstanceUID",
    "AccessionNumber",
    "PatientID",
    "StudyDate",
    "StudyTime",
    "StudyDescription",
    "ModalitiesInStudy",
    "NumberOfStudyRelatedInstances",
)


@dataclass(frozen=True, slots=True)
class StudyQuery:
    """Which studies to look for: a UID, an accession number, or a patient (with a date range)."""

    study_uid: str | None = None
    accession_number: str | None = None
    patient_id: str | None = None
    date_from: date | None = None
    date_to: date | None = None

    def __post_init__(self) -> None:
        if not (self.study_uid or self.accession_number or self.patient_id):
            raise IngestError("a study query needs a study UID, an accession number or a patient ID")
        for name in ("study_uid", "accession_number", "patient_id"):
            value = getattr(self, name)
            if value and any(c in value for c in "*?\\"):
                # C-FIND and QIDO treat these as wildcards / value separators: a pull must name exact keys
                raise IngestError(f"study query: {name} contains a wildcard or backslash; exact values only")
        if self.date_from and self.date_to and self.date_from > self.date_to:
            raise IngestError(f"study query: date_from {self.date_from} is after date_to {self.date_to}")

    def __repr__(self) -> str:  # the patient ID is PHI
        pid = "<redacted>" if self.patient_id else None
        return (
            f"StudyQuery(study_uid={self.study_uid!r}, accession_number={self.accession_number!r}, "
            f"patient_id={pid}, date_from={self.date_from}, date_to={self.date_to})"
        )

    @property
    def date_range(self) -> str | None:
        """DICOM DA range matching (``YYYYMMDD-YYYYMMDD``, open on either side)."""
        if not (self.date_from or self.date_to):
            return None
        lo = self.date_from.strftime("%Y%m%d") if self.date_from else ""
        hi = self.date_to.strftime("%Y%m%d") if self.date_to else ""
        return f"{lo}-{hi}"


@dataclass(frozen=True, slots=True)
class StudyMatch:
    """A study the PACS reported (the patient ID is kept for prior matching, never printed)."""

    study_instance_uid: str
    accession_number: str | None = None
    study_date: date | None = None
    description: str | None = None
    modalities: tuple[str, ...] = ()
    number_of_instances: int | None = None
    patient_id: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class PullResult:
    """What a pull brought in, per outcome."""

    study_uids: tuple[str, ...] = ()
    stored: int = 0
    duplicate: int = 0
    conflict: int = 0
    rejected: int = 0
    failed: int = 0

    @property
    def received(self) -> int:
        return self.stored + self.duplicate + self.conflict


class StudyFinder(Protocol):
    """Anything that can search a PACS for studies (both pullers are)."""

    def find_studies(self, query: StudyQuery) -> list[StudyMatch]: ...


def _match_from(ds: Dataset) -> StudyMatch | None:
    uid = str(ds.get("StudyInstanceUID", "") or "").strip()
    if not uid:
        return None
    mods = ds.get("ModalitiesInStudy")
    if mods is None:
        modalities: tuple[str, ...] = ()
    elif isinstance(mods, str):
        modalities = tuple(m for m in mods.split("\\") if m)
    else:
        modalities = tuple(str(m) for m in mods if m)
    count = ds.get("NumberOfStudyRelatedInstances")
    try:
        n = int(count) if count not in (None, "") else None
    except (TypeError, ValueError):
        n = None
    return StudyMatch(
        study_instance_uid=uid,
        accession_number=str(ds.get("AccessionNumber", "") or "").strip() or None,
        study_date=parse_da(str(ds.get("StudyDate", "") or "")),
        description=str(ds.get("StudyDescription", "") or "").strip() or None,
        modalities=modalities,
        number_of_instances=n,
        patient_id=str(ds.get("PatientID", "") or "").strip() or None,
    )


def _count(outcomes: Iterable[Outcome], study_uids: Iterable[str]) -> PullResult:
    tally = dict.fromkeys(Outcome, 0)
    for o in outcomes:
        tally[o] += 1
    return PullResult(
        study_uids=tuple(dict.fromkeys(study_uids)),
        stored=tally[Outcome.STORED],
        duplicate=tally[Outcome.DUPLICATE],
        conflict=tally[Outcome.CONFLICT],
        rejected=tally[Outcome.REJECTED],
        failed=tally[Outcome.FAILED],
    )


# --------------------------------------------------------------------------- DICOMweb


class DicomWebPuller:
    """QIDO-RS search and WADO-RS retrieval with ``dicomweb-client``.

    Parameters
    ----------
    url:
        The DICOMweb root (``http://pacs/dicom-web``).
    receiver:
        Where retrieved objects go (the same one the SCP uses).
    timeout_s:
        Per-request timeout.
    attempts:
        Tries per request when the server is unreachable or busy.
    """

    def __init__(
        self,
        url: str,
        receiver: Receiver,
        *,
        timeout_s: float = 30.0,
        peer_name: str | None = None,
        attempts: int = 5,
    ) -> None:
        from dicomweb_client.api import DICOMwebClient

        self.url = url.rstrip("/")
        self.receiver = receiver
        self.source = f"pull:{peer_name or 'dicomweb'}"
        self.client = DICOMwebClient(url=self.url, timeout=timeout_s)
        # dicomweb-client retries with exponential back-off (1 s, 2 s, 4 s...): bounded by ``attempts``
        self.client.set_http_retry_params(retry=attempts > 1, max_attempts=max(1, attempts))

    def find_studies(self, query: StudyQuery) -> list[StudyMatch]:
        """QIDO-RS ``/studies`` with the query's keys as matching attributes."""
        filters: dict[str, Any] = {}
        if query.study_uid:
            filters["StudyInstanceUID"] = query.study_uid
        if query.accession_number:
            filters["AccessionNumber"] = query.accession_number
        if query.patient_id:
            filters["PatientID"] = query.patient_id
        if query.date_range:
            filters["StudyDate"] = query.date_range
        try:
            found = self.client.search_for_studies(search_filters=filters, fields=list(_STUDY_KEYS), get_remaining=True)
        except Exception as exc:
            raise IngestError(f"QIDO-RS search at {self.url} failed: {type(exc).__name__}: {exc}") from None
        matches = [_match_from(Dataset.from_json(item)) for item in found]
        return [m for m in matches if m is not None]

    def _objects(self, study_uid: str) -> Iterator[bytes]:
        for ds in self.client.iter_study(study_uid, media_types=(("application/dicom", "*"),)):
            buf = io.BytesIO()
            ds.save_as(buf, enforce_file_format=True)
            yield buf.getvalue()

    def retrieve_study(self, study_uid: str) -> PullResult:
        """WADO-RS the whole study into the store and index."""
        outcomes: list[Outcome] = []
        try:
            for data in self._objects(study_uid):
                outcomes.append(self.receiver.receive(data, source=self.source).outcome)
        except IngestError:
            raise
        except Exception as exc:
            raise IngestError(f"WADO-RS retrieve of study {study_uid} from {self.url} failed: {exc}") from None
        result = _count(outcomes, [study_uid])
        log.info("pulled study %s via WADO-RS: %d stored, %d duplicate", study_uid, result.stored, result.duplicate)
        return result

    def pull(self, query: StudyQuery) -> PullResult:
        """Find and retrieve every matching study."""
        return _merge(self.retrieve_study(m.study_instance_uid) for m in self.find_studies(query))


def _merge(results: Iterable[PullResult]) -> PullResult:
    total = PullResult()
    for r in results:
        total = PullResult(
            study_uids=total.study_uids + r.study_uids,
            stored=total.stored + r.stored,
            duplicate=total.duplicate + r.duplicate,
            conflict=total.conflict + r.conflict,
            rejected=total.rejected + r.rejected,
            failed=total.failed + r.failed,
        )
    return total


# --------------------------------------------------------------------------- DIMSE


@dataclass(frozen=True, slots=True)
class MoveResult:
    """The final C-MOVE response's sub-operation counts."""

    study_uid: str
    status: int
    completed: int = 0
    failed: int = 0
    warning: int = 0

    @property
    def ok(self) -> bool:
        return self.status in (0x0000, 0xB000) and self.failed == 0


class DimsePuller:
    """C-FIND and C-MOVE (Study Root) with pynetdicom; the PACS sends to ``move_destination``.

    Parameters
    ----------
    peer:
        The PACS (``settings.pull.dimse_peer``).
    calling_ae:
        Our AE title on the query association.
    move_destination:
        The AE title of our SCP, as the PACS knows it.
    """

    def __init__(self, peer: DicomPeer, *, calling_ae: str, move_destination: str, timeout_s: float = 30.0) -> None:
        self.peer = peer
        self.calling_ae = calling_ae
        self.timeout_s = timeout_s
        self.move_destination = move_destination
        self.ae = AE(ae_title=calling_ae)
        self.ae.acse_timeout = timeout_s
        self.ae.dimse_timeout = timeout_s
        self.ae.network_timeout = timeout_s
        self.ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
        self.ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)

    def _associate(self) -> Any:
        assoc = self.ae.associate(self.peer.host, self.peer.port, ae_title=self.peer.ae_title)
        if not assoc.is_established:
            raise IngestError(
                f"no association with {self.peer.ae_title}@{self.peer.host}:{self.peer.port} "
                f"({'rejected' if assoc.is_rejected else 'aborted or unreachable'})"
            )
        return assoc

    @staticmethod
    def _identifier(query: StudyQuery) -> Dataset:
        ds = Dataset()
        ds.QueryRetrieveLevel = "STUDY"
        for key in _STUDY_KEYS:
            setattr(ds, key, "")
        if query.study_uid:
            ds.StudyInstanceUID = query.study_uid
        if query.accession_number:
            ds.AccessionNumber = query.accession_number
        if query.patient_id:
            ds.PatientID = query.patient_id
        if query.date_range:
            ds.StudyDate = query.date_range
        return ds

    def find_studies(self, query: StudyQuery) -> list[StudyMatch]:
        """C-FIND at STUDY level."""
        return self._find(self._identifier(query))

    def find_cohort(self, date_range: str | None = None, modality: str | None = None) -> list[StudyMatch]:
        """C-FIND at STUDY level by study date range (``YYYYMMDD-YYYYMMDD``, open on either side) and modality in
        study: a research cohort, where :class:`StudyQuery` (one patient's or one order's studies) needs a key."""
        identifier = Dataset()
        identifier.QueryRetrieveLevel = "STUDY"
        for key in _STUDY_KEYS:
            setattr(identifier, key, "")
        if date_range:
            identifier.StudyDate = date_range
        if modality:
            identifier.ModalitiesInStudy = modality.upper()
        return self._find(identifier)

    def _find(self, query: Dataset) -> list[StudyMatch]:
        assoc = self._associate()
        matches: list[StudyMatch] = []
        try:
            for status, identifier in assoc.send_c_find(query, StudyRootQueryRetrieveInformationModelFind):
                code = int(getattr(status, "Status", 0xFFFF)) if status else None
                if code is None:
                    raise IngestError(f"C-FIND to {self.peer.ae_title}: no response (timeout or abort)")
                if code in (0xFF00, 0xFF01) and identifier is not None:
                    match = _match_from(identifier)
                    if match is not None:
                        matches.append(match)
                elif code != 0x0000:
                    raise IngestError(f"C-FIND to {self.peer.ae_title} failed with status 0x{code:04X}")
        finally:
            assoc.release()
        return matches

    def move_study(self, study_uid: str) -> MoveResult:
        """Ask the PACS to C-STORE the study to our SCP; returns when the PACS reports it done."""
        identifier = Dataset()
        identifier.QueryRetrieveLevel = "STUDY"
        identifier.StudyInstanceUID = study_uid
        assoc = self._associate()
        final: tuple[int, int, int, int] | None = None
        try:
            for status, _ in assoc.send_c_move(
                identifier, self.move_destination, StudyRootQueryRetrieveInformationModelMove
            ):
                if not status:
                    raise IngestError(f"C-MOVE of study {study_uid}: no response (timeout or abort)")
                code = int(status.Status)
                if code not in (0xFF00,):
                    final = (
                        code,
                        int(status.get("NumberOfCompletedSuboperations", 0) or 0),
                        int(status.get("NumberOfFailedSuboperations", 0) or 0),
                        int(status.get("NumberOfWarningSuboperations", 0) or 0),
                    )
        finally:
            assoc.release()
        if final is None:
            raise IngestError(f"C-MOVE of study {study_uid}: no final response")
        result = MoveResult(study_uid, *final)
        if not result.ok:
            raise IngestError(
                f"C-MOVE of study {study_uid} to {self.move_destination} ended with status 0x{result.status:04X} "
                f"({result.failed} failed, {result.completed} completed)"
            )
        log.info("C-MOVE of study %s: %d objects sent to %s", study_uid, result.completed, self.move_destination)
        return result

    def get_study(self, study_uid: str, receiver: Receiver) -> PullResult:
        """C-GET the study: the PACS sends its objects back on the same association, into ``receiver``.

        No SCP of ours has to listen (as C-MOVE needs); our AE takes the SCP role for the storage SOP classes
        the SCP accepts (``ingest.scp``), and each object is received as the SCP would.
        """
        from pynetdicom import build_role, evt

        from ingest.scp import STORAGE_SOP_CLASSES, TRANSFER_SYNTAXES, status_for

        ae = AE(ae_title=self.calling_ae)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = self.timeout_s
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
        for sop in STORAGE_SOP_CLASSES:
            ae.add_requested_context(sop, list(TRANSFER_SYNTAXES))
        roles: list[Any] = [build_role(sop, scp_role=True) for sop in STORAGE_SOP_CLASSES]
        outcomes: list[Outcome] = []
        source = f"pull:{self.peer.ae_title}"

        def on_store(event: Any) -> int:
            try:
                data = event.encoded_dataset(include_meta=True)
                ts = str(event.context.transfer_syntax)
            except Exception:  # pynetdicom could not give the bytes: cannot understand
                outcomes.append(Outcome.REJECTED)
                return 0xC000
            expected = str(event.request.AffectedSOPInstanceUID or "") or None
            received = receiver.receive(data, source=source, transfer_syntax_uid=ts, expected_sop_instance_uid=expected)
            outcomes.append(received.outcome)
            return status_for(received)

        identifier = Dataset()
        identifier.QueryRetrieveLevel = "STUDY"
        identifier.StudyInstanceUID = study_uid
        assoc = ae.associate(
            self.peer.host, self.peer.port, ae_title=self.peer.ae_title, ext_neg=roles,
            evt_handlers=[(evt.EVT_C_STORE, on_store)],
        )  # fmt: skip
        if not assoc.is_established:
            raise IngestError(
                f"no association with {self.peer.ae_title}@{self.peer.host}:{self.peer.port} "
                f"({'rejected' if assoc.is_rejected else 'aborted or unreachable'})"
            )
        final: int | None = None
        try:
            for status, _ in assoc.send_c_get(identifier, StudyRootQueryRetrieveInformationModelGet):
                if not status:
                    raise IngestError(f"C-GET of study {study_uid}: no response (timeout or abort)")
                if int(status.Status) != 0xFF00:
                    final = int(status.Status)
        finally:
            assoc.release()
        if final is None:
            raise IngestError(f"C-GET of study {study_uid}: no final response")
        if final not in (0x0000, 0xB000):
            raise IngestError(f"C-GET of study {study_uid} from {self.peer.ae_title} ended with status 0x{final:04X}")
        result = _count(outcomes, [study_uid])
        log.info("C-GET of study %s: %d stored, %d duplicate", study_uid, result.stored, result.duplicate)
        return result

    def pull(self, query: StudyQuery) -> list[MoveResult]:
        """Find and move every matching study to our SCP."""
        return [self.move_study(m.study_instance_uid) for m in self.find_studies(query)]


# --------------------------------------------------------------------------- priors


def find_priors(finder: StudyFinder, study: Study, n: int) -> list[StudyMatch]:
    """The ``n`` most recent earlier studies of the same patient, newest first.

    Same patient means the same Patient ID as the current study's first
    identifier; "earlier" compares study dates (a prior dated the same day
    counts, the current study itself never does).  Studies without a date are
    left out: their order relative to the current study is unknown.
    """
    if n <= 0:
        return []
    if not study.patient.identifiers:
        raise IngestError(f"study {study.study_instance_uid}: no patient identifier to look for priors with")
    if study.study_datetime is None:
        raise IngestError(f"study {study.study_instance_uid}: no study date to look for priors before")
    current = study.study_datetime.date()
    pid = study.patient.identifiers[0].value
    found = finder.find_studies(StudyQuery(patient_id=pid, date_to=current))
    priors = [
        m
        for m in found
        if m.study_instance_uid != study.study_instance_uid
        and m.study_date is not None
        and m.study_date <= current
        and (m.patient_id is None or m.patient_id == pid)
    ]
    priors.sort(key=lambda m: m.study_date or date.min, reverse=True)
    return priors[:n]


__all__ = [
    "DicomWebPuller",
    "DimsePuller",
    "MoveResult",
    "PullResult",
    "StudyFinder",
    "StudyMatch",
    "StudyQuery",
    "find_priors",
]
