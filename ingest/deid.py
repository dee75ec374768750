"""De-identification for research exports: DICOM PS3.15 Annex E Basic Application Level Confidentiality Profile.

What it does to each object, in order:

1. refuses (or marks, per ``deid.burned_in_annotation``) objects whose
   (0028,0301) Burned In Annotation is YES — text in the pixels is not removed;
2. removes every private element, curve (50xx) and overlay (60xx) group;
3. applies the action table of :mod:`ingest.deid_profile` to every element,
   inside sequences too, with the options "Retain Longitudinal Temporal
   Information with Full Dates" (dates/times kept) and "Clean Descriptors"
   (descriptions kept with identifying strings removed, structured content
   cleaned instead of removed); person names, dates and times that the table
   does not list (RTPlanDate, vendor additions...) are replaced by dummies too;
4. replaces UIDs consistently: the new UID is a function of a secret salt and
   the original UID (:func:`core.identifiers.derive_uid` under ``uid_root``), so
   references between objects (ReferencedSOPInstanceUID in any sequence) still
   match and a re-run with the same salt gives the same UIDs;
5. records what was done: PatientIdentityRemoved YES, De-identification Method
   (+ CID 7050 codes), Longitudinal Temporal Information Modified.

Patient Name and Patient ID (action Z) get the same salted pseudonym
("a dummy value consistent with the VR" — allowed by Z), so studies of one
patient stay linkable without revealing who.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import re
import uuid
import warnings
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydicom import dcmread
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID

from core.codes import DCM, Code
from core.config import Settings
from core.durable import atomic_write
from core.errors import ConfigError, IngestError
from core.identifiers import derive_uid
from core.version import SOFTWARE_NAME, SOFTWARE_VERSION
from ingest.deid_profile import PHI_SOURCE_KEYWORDS, PROFILE, PROFILE_TAGS
from ingest.pixels import install_log_redaction

install_log_redaction()  # pydicom quotes malformed values (birth dates, names) in its log records

_TEXT_VRS = frozenset({"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UT"})
#: Free-text VRs cleaned inside structured content (never CS/SH/UI: enumerated values and codes stay intact).
_FREE_TEXT_VRS = frozenset({"LO", "LT", "ST", "UC", "UT"})
_CODE_KEYWORDS = frozenset({"LongCodeValue", "URNCodeValue", "MappingResourceName", "ContextGroupVersion"})
_NUMERIC_VRS = frozenset({"US", "SS", "UL", "SL", "FL", "FD", "UV", "SV"})
_DUMMY_TEXT = "ANONYMIZED"
_DUMMY_BY_VR: dict[str, Any] = {
    "DA": "19000101",
    "TM": "000000",
    "DT": "19000101000000",
    "AS": "000D",
    "IS": "0",
    "DS": "0",
}
#: Sequences whose items identify a person by code: emptied rather than recursed into.
_EMPTY_WHEN_DUMMY = frozenset({"PersonIdentificationCodeSequence"})
_DICOM_ROOT = "1.2.840.10008."
_DATE_PATTERNS = (
    re.compile(r"\b\d{4}[-/.]\d{1,2}[-/.]\d{1,2}\b"),
    re.compile(r"\b\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}\b"),
    re.compile(r"\b(19|20)\d{6}\b"),
)
_DICOMDIR_CLASS = "1.2.840.10008.1.3.10"


@dataclass(frozen=True, slots=True)
class DeidOptions:
    """Which profile options apply (see :class:`core.config.DeidConfig`)."""

    retain_longitudinal_temporal: bool = False
    clean_descriptors: bool = True
    burned_in_annotation: str = "refuse"

    @classmethod
    def from_settings(cls, settings: Settings) -> DeidOptions:
        d = settings.deid
        return cls(d.retain_longitudinal_temporal, d.clean_descriptors, d.burned_in_annotation)

    @property
    def method_codes(self) -> tuple[Code, ...]:
        """CID 7050 codes of the profile and the options in force."""
        codes = [DCM.BASIC_CONFIDENTIALITY_PROFILE]
        if self.clean_descriptors:
            codes += [DCM.CLEAN_STRUCTURED_CONTENT_OPTION, DCM.CLEAN_DESCRIPTORS_OPTION]
        if self.retain_longitudinal_temporal:
            codes.append(DCM.RETAIN_LONGITUDINAL_FULL_DATES_OPTION)
        return tuple(codes)


def resolve_action(keyword: str, vr: str, options: DeidOptions) -> str:
    """The single action (D, Z, X, K, C, U) for an element under the options in force.

    Compound codes resolve to the alternative that keeps every IOD conformant
    (PS3.15 E.1.1 allows the choice): X/Z -> Z (a sequence: kept with its items
    processed by the same table), X/D and Z/D and X/Z/D -> D, X/Z/U* -> K with
    the items processed (their UIDs replaced).
    """
    basic, retain_dates, clean = PROFILE[keyword]
    if options.retain_longitudinal_temporal and retain_dates:
        return retain_dates
    if options.clean_descriptors and clean:
        return clean
    if basic == "X/Z":
        return "K" if vr == "SQ" else "Z"  # an emptied sequence breaks "1-n items"; its items are processed instead
    if basic in ("X/D", "Z/D", "X/Z/D"):
        return "D"
    if basic == "X/Z/U*":
        return "K"
    return basic


def _clean_text(value: str, terms: Iterable[str]) -> str:
    """Remove identifying strings (names, IDs, dates) from a descriptor, keeping the rest of its meaning."""
    out = value
    for term in sorted(set(terms), key=len, reverse=True):
        # whole words only: a surname "NAME" must not eat the "NAME" of "PNAME"
        out = re.sub(rf"(?<!\w){re.escape(term)}(?!\w)", "", out, flags=re.IGNORECASE)
    for pattern in _DATE_PATTERNS:
        out = pattern.sub("", out)
    return re.sub(r"\s{2,}", " ", out).strip(" ,;:-_^")


def _phi_terms(ds: Dataset) -> set[str]:
    """Identifying strings of this object (names split into parts, whole IDs, birth date forms)."""
    terms: set[str] = set()
    for keyword in PHI_SOURCE_KEYWORDS:
        elem = ds.get(keyword)
        if elem in (None, ""):
            continue
        values = list(elem) if isinstance(elem, (MultiValue, list, tuple)) else [elem]
        for v in values:
            text = str(v).strip()
            if not text:
                continue
            if dictionary_VR(keyword) == "PN":  # person names: every part ("DOE", "JOHN") on its own
                terms.update(p for p in re.split(r"[\^=\s,]+", text) if len(p) >= 2)
            else:
                terms.add(text)
            if keyword == "PatientBirthDate" and len(text) == 8 and text.isdigit():
                y, m, d = text[:4], text[4:6], text[6:]
                terms.update({f"{y}-{m}-{d}", f"{d}/{m}/{y}", f"{m}/{d}/{y}", f"{d}.{m}.{y}"})
    return terms


@dataclass(slots=True)
class DeidReport:
    """What a de-identification run did (counts only; no identifying values)."""

    files_in: int = 0
    written: int = 0
    refused_burned_in: list[str] = field(default_factory=list)
    marked_burned_in: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    actions: Counter[str] = field(default_factory=Counter)
    uids_replaced: int = 0
    outputs: list[Path] = field(default_factory=list)
    mapping_path: Path | None = None
    salt_is_random: bool = False


class Deidentifier:
    """Applies the profile to datasets, keeping one UID map for a whole study set.

    Use one instance for every object of an export so that references between
    objects are remapped consistently; with the same ``salt`` a later run
    produces the same replacement UIDs and pseudonyms.
    """

    def __init__(self, uid_root: str, options: DeidOptions | None = None, *, salt: str | None = None) -> None:
        self.uid_root = uid_root
        self.options = options or DeidOptions()
        self.salt_is_random = salt is None
        self._salt = salt if salt is not None else uuid.uuid4().hex
        self.uid_map: dict[str, str] = {}
        self.patient_map: dict[str, str] = {}
        self.actions: Counter[str] = Counter()

    @classmethod
    def from_settings(cls, settings: Settings) -> Deidentifier:
        return cls(settings.uid_root, DeidOptions.from_settings(settings), salt=settings.deid.salt)

    # ------------------------------------------------------------------ replacements

    def map_uid(self, uid: str) -> str:
        """The replacement of one UID (well-known DICOM UIDs under 1.2.840.10008 are kept)."""
        uid = uid.strip().rstrip("\x00")
        if not uid or uid.startswith(_DICOM_ROOT):
            return uid
        new = self.uid_map.get(uid)
        if new is None:
            new = derive_uid(self.uid_root, "mmdx-deid", self._salt, uid)
            self.uid_map[uid] = new
        return new

    def pseudonym(self, patient_key: str) -> str:
        """A salted, stable pseudonym for a patient (Patient ID and Patient Name replacement)."""
        if not patient_key:
            return ""
        pseudo = self.patient_map.get(patient_key)
        if pseudo is None:
            digest = hmac.new(self._salt.encode(), patient_key.encode(), hashlib.sha256).hexdigest()
            pseudo = f"ANON{digest[:12].upper()}"
            self.patient_map[patient_key] = pseudo
        return pseudo

    # ------------------------------------------------------------------ the profile

    def deidentify(self, ds: Dataset, source: str = "dataset") -> bool:
        """De-identify ``ds`` in place; True when it was marked (not refused) for burned-in annotation.

        Raises
        ------
        IngestError
            Burned In Annotation is YES and the policy is "refuse"; or the
            object has no SOP Instance UID.
        """
        burned = str(ds.get("BurnedInAnnotation", "") or "").strip().upper() == "YES"
        if burned and self.options.burned_in_annotation == "refuse":
            raise IngestError(
                "(0028,0301) Burned In Annotation is YES: the pixels may show identifying text, which this "
                "profile does not remove; refused (set deid.burned_in_annotation: mark to export anyway)",
                source=source,
            )
        if not str(ds.get("SOPInstanceUID", "") or "").strip():
            raise IngestError("(0008,0018) SOP Instance UID is missing; cannot de-identify consistently", source=source)
        terms = _phi_terms(ds)
        patient_key = str(ds.get("PatientID", "") or "").strip() or str(ds.get("PatientName", "") or "").strip()
        pseudo = self.pseudonym(patient_key)
        ds.remove_private_tags()
        self._process(ds, terms, structured=False)
        ds.PatientName = pseudo
        ds.PatientID = pseudo
        self._stamp(ds, burned)
        self._fix_meta(ds)
        return burned

    def _process(self, ds: Dataset, terms: set[str], *, structured: bool) -> None:
        for elem in list(ds):
            tag = int(elem.tag)
            group = tag >> 16
            if elem.tag.is_private or 0x5000 <= group <= 0x50FF or (0x6000 <= group <= 0x60FF and group % 2 == 0):
                del ds[elem.tag]
                self.actions["X"] += 1
                continue
            keyword = PROFILE_TAGS.get(tag)
            if keyword is None:
                if elem.VR == "SQ":
                    for item in elem.value:
                        self._process(item, terms, structured=structured)
                elif elem.VR == "PN" or (
                    elem.VR in ("DA", "DT", "TM") and not self.options.retain_longitudinal_temporal
                ):
                    # beyond the table: any other person name or date/time is treated like those in it
                    if elem.value not in (None, ""):
                        self.actions["D"] += 1
                        self._dummy(elem, elem.keyword, terms, structured)
                elif (
                    structured
                    and elem.VR in _FREE_TEXT_VRS
                    and elem.keyword not in _CODE_KEYWORDS
                    and isinstance(elem.value, str)
                ):
                    elem.value = _clean_text(elem.value, terms)
                continue
            action = resolve_action(keyword, elem.VR, self.options)
            self.actions[action] += 1
            self._apply(ds, elem, keyword, action, terms, structured)

    def _apply(
        self, ds: Dataset, elem: DataElement, keyword: str, action: str, terms: set[str], structured: bool
    ) -> None:
        vr = elem.VR
        if action == "X":
            del ds[elem.tag]
        elif action == "Z":
            elem.value = Sequence() if vr == "SQ" else (None if vr not in _TEXT_VRS else "")
        elif action == "K":
            if vr == "SQ":
                for item in elem.value:
                    self._process(item, terms, structured=structured)
        elif action == "U":
            self._replace_uids(elem)
        elif action == "C":
            if vr == "SQ":
                for item in elem.value:
                    self._process(item, terms, structured=True)
            elif isinstance(elem.value, str):
                elem.value = _clean_text(elem.value, terms)
            elif elem.VM > 1 and vr in _TEXT_VRS:
                elem.value = [_clean_text(str(v), terms) for v in elem.value]
        elif action == "D":
            self._dummy(elem, keyword, terms, structured)
        else:  # pragma: no cover - the profile table holds only the codes above
            raise IngestError(f"deid profile: unknown action {action!r} for {keyword}")

    def _dummy(self, elem: DataElement, keyword: str, terms: set[str], structured: bool) -> None:
        vr = elem.VR
        if vr == "SQ":
            if keyword in _EMPTY_WHEN_DUMMY:
                elem.value = Sequence()
            else:
                for item in elem.value:
                    self._process(item, terms, structured=structured)
        elif vr == "UI":
            self._replace_uids(elem)
        elif vr in _DUMMY_BY_VR:
            elem.value = _DUMMY_BY_VR[vr]
        elif vr in _TEXT_VRS:
            elem.value = _DUMMY_TEXT
        elif vr in _NUMERIC_VRS:
            elem.value = 0
        else:
            elem.value = b""

    def _replace_uids(self, elem: DataElement) -> None:
        if elem.value in (None, ""):
            return
        if isinstance(elem.value, str):
            elem.value = self.map_uid(elem.value)
        else:
            elem.value = [self.map_uid(str(v)) for v in elem.value]

    def _stamp(self, ds: Dataset, burned: bool) -> None:
        opts = self.options
        ds.PatientIdentityRemoved = "YES"
        method = [f"{SOFTWARE_NAME} {SOFTWARE_VERSION} PS3.15 E.1 Basic Profile"]
        if opts.retain_longitudinal_temporal:
            method.append("Retain Longitudinal Full Dates")
        if opts.clean_descriptors:
            method.append("Clean Descriptors, Clean Structured Content")
        ds.DeidentificationMethod = method if len(method) > 1 else method[0]
        items = []
        for code in opts.method_codes:
            item = Dataset()
            item.CodeValue = code.value
            item.CodingSchemeDesignator = code.scheme
            item.CodeMeaning = code.meaning
            items.append(item)
        ds.DeidentificationMethodCodeSequence = Sequence(items)
        ds.LongitudinalTemporalInformationModified = "UNMODIFIED" if opts.retain_longitudinal_temporal else "REMOVED"
        if burned:
            ds.BurnedInAnnotation = "YES"

    def _fix_meta(self, ds: Dataset) -> None:
        meta = getattr(ds, "file_meta", None)
        if meta is None:
            meta = FileMetaDataset()
            ds.file_meta = meta
        for elem in list(meta):
            if elem.keyword not in ("FileMetaInformationVersion", "MediaStorageSOPClassUID", "TransferSyntaxUID"):
                del meta[elem.tag]
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID

    # ------------------------------------------------------------------ mapping table

    def mapping_rows(self) -> list[tuple[str, str, str]]:
        """(kind, original, replacement) rows: UIDs and patient pseudonyms.  Holds PHI: keep it secret."""
        rows = [("uid", k, v) for k, v in sorted(self.uid_map.items())]
        rows += [("patient", k, v) for k, v in sorted(self.patient_map.items())]
        return rows

    def write_mapping(self, path: Path) -> Path:
        """Write the mapping table as CSV, atomically, readable by the owner only."""
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path, text=True, prefix=".mapping-", suffix=".tmp") as fh:  # created 0600
            writer = csv.writer(fh)
            writer.writerow(["kind", "original", "replacement"])
            writer.writerows(self.mapping_rows())
        return path


# --------------------------------------------------------------------------- files


def _iter_files(inputs: Iterable[Path | str]) -> list[Path]:
    files: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            files.extend(sorted(f for f in p.rglob("*") if f.is_file()))
        else:
            files.append(p)
    return files


def _read_for_deid(path: Path) -> Dataset:
    try:
        return dcmread(path)
    except FileNotFoundError:
        raise IngestError("file not found", source=str(path)) from None
    except InvalidDicomError:
        raise IngestError("not a DICOM Part 10 file (no DICM prefix / File Meta)", source=str(path)) from None
    except Exception as exc:
        raise IngestError(f"not a readable DICOM file ({type(exc).__name__})", source=str(path)) from None


def _write_atomic(ds: Dataset, path: Path, source: str) -> None:
    """Write via a temp file + fsync + rename: an output file is complete or absent."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_write(path, prefix=".deid-", suffix=".tmp") as fh:
            ds.save_as(fh, enforce_file_format=True)
    except Exception as exc:
        # the message of a write error may quote element values: report the type only
        raise IngestError(f"de-identified object could not be written ({type(exc).__name__})", source=source) from None


def deidentify_files(
    inputs: Iterable[Path | str],
    out_dir: Path | str,
    settings: Settings,
    *,
    deidentifier: Deidentifier | None = None,
) -> DeidReport:
    """De-identify files and folders into ``out_dir/<study>/<series>/<instance>.dcm`` (new UIDs only in paths).

    One :class:`Deidentifier` spans the whole call, so every study in the set
    is remapped consistently.  Files that fail (not DICOM, refused for burned-in
    annotation) are listed in the report with a PHI-free reason; the others
    are written.  The mapping table is written only when
    ``deid.keep_mapping`` is set and ``deid.mapping_path`` names a file.
    """
    cfg = settings.deid
    if cfg.keep_mapping and cfg.mapping_path is None:
        raise ConfigError("deid.keep_mapping is true but deid.mapping_path is not set")
    deid = deidentifier or Deidentifier.from_settings(settings)
    out = Path(out_dir)
    report = DeidReport(salt_is_random=deid.salt_is_random)
    for path in _iter_files(inputs):
        report.files_in += 1
        try:
            with warnings.catch_warnings():  # pydicom warnings quote element values: no PHI in logs
                warnings.simplefilter("ignore")
                ds = _read_for_deid(path)
                if str(ds.file_meta.get("MediaStorageSOPClassUID", "")) == _DICOMDIR_CLASS:
                    raise IngestError("DICOMDIR is not exported (rebuild one over the output)", source=str(path))
                marked = deid.deidentify(ds, str(path))
                study = str(ds.get("StudyInstanceUID", "") or "") or "no-study-uid"
                series = str(ds.get("SeriesInstanceUID", "") or "") or "no-series-uid"
                target = out / study / series / f"{ds.SOPInstanceUID}.dcm"
                _write_atomic(ds, target, str(path))
        except IngestError as exc:
            reason = str(exc)
            if "Burned In Annotation" in reason:
                report.refused_burned_in.append(str(path))
            report.failed.append((str(path), reason))
            continue
        except Exception as exc:  # malformed values deep in a data set: report the type only (messages quote values)
            report.failed.append((str(path), f"{path}: could not be de-identified ({type(exc).__name__})"))
            continue
        if marked:
            report.marked_burned_in.append(str(path))
        report.written += 1
        report.outputs.append(target)
    report.actions = Counter(deid.actions)
    report.uids_replaced = len(deid.uid_map)
    if cfg.keep_mapping and cfg.mapping_path is not None:
        report.mapping_path = deid.write_mapping(Path(cfg.mapping_path))
    return report
