"""A file-based ECG (WFDB, aECG, MUSE, Sierra XML...) becomes a study of its own.

DICOM ECG waveforms already carry their UIDs.  Other ECG files do not, so the
study, series and instance UIDs are derived from the file content (and the
configured UID root): the same recording always maps to the same study,
whatever its path, and indexing it twice is a no-op.  The study keeps the patient the file
names (identifier with its issuer, name, birth date, sex) and the acquisition time in the
file's own zone; a file without a patient identifier gives a study without one (the outputs
say so each in its standard's way), never a made-up patient.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from core.identifiers import derive_uid
from core.records import ECG_FILE_SOURCE, EcgRecord, Instance, Series, Study

#: SOP classes used to file non-DICOM ECGs in the index.
TWELVE_LEAD_ECG_STORAGE = "1.2.840.10008.5.1.4.1.1.9.1.1"
GENERAL_ECG_STORAGE = "1.2.840.10008.5.1.4.1.1.9.1.2"


@dataclass(frozen=True, slots=True)
class EcgFileStudy:
    """The index records of one ECG file and the files it consists of."""

    study: Study
    series: Series
    instance: Instance
    files: tuple[Path, ...]


def content_sha256(files: Sequence[Path]) -> str:
    """sha256 over the bytes of every file of a recording, in name order."""
    digest = hashlib.sha256()
    for path in sorted(files, key=lambda p: p.name):
        digest.update(path.name.encode() if path.suffix.lower() != ".hea" else b".hea")
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


#: The study description of a recording analysed in windows (``ecg.holter``), not as one resting ECG.
LONG_ECG_DESCRIPTION = "Long ECG recording (Holter, file)"


def ecg_file_study(
    record: EcgRecord, files: Sequence[Path], uid_root: str, *, description: str = "Resting ECG (file)"
) -> EcgFileStudy:
    """Derive the study / series / instance records of a file-based ECG (``record``: its first seconds will do)."""
    sha = content_sha256(files)
    study_uid = derive_uid(uid_root, "ecg-file", "study", sha)
    series_uid = derive_uid(uid_root, "ecg-file", "series", sha)
    sop_uid = derive_uid(uid_root, "ecg-file", "instance", sha)
    sop_class = TWELVE_LEAD_ECG_STORAGE if record.has_standard_12_leads else GENERAL_ECG_STORAGE
    main = files[0]
    instance = Instance(
        sop_instance_uid=sop_uid,
        sop_class_uid=sop_class,
        series_instance_uid=series_uid,
        study_instance_uid=study_uid,
        path=main,
        content_digest=f"sha256:{sha}",
        instance_number=1,
        source=ECG_FILE_SOURCE,  # no DICOM object has this SOP Instance UID: outputs must not reference it
    )
    series = Series(
        series_instance_uid=series_uid,
        study_instance_uid=study_uid,
        modality="ECG",
        series_number=1,
        description=f"ECG {len(record.lead_names)} leads, {record.sampling_rate_hz:g} Hz",
    )
    study = Study(
        study_instance_uid=study_uid,
        patient=record.patient,
        study_datetime=record.acquired_at,
        description=description,
    )
    return EcgFileStudy(study=study, series=series, instance=instance, files=tuple(files))
