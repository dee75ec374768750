"""Turn the paths given to ``mmdx run`` into indexed studies.

DICOM goes through :mod:`ingest.files`; every other file is offered to the ECG
format detector (by content, not by extension), and a file-based ECG becomes a
study of its own.  What neither accepts is quarantined with its reason.  This
module is the only place where ``ingest`` and ``ecg`` meet, which is why it
lives in ``app``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from app.context import AppContext
from app.ecg_studies import ecg_file_study
from core.errors import EcgError
from ecg.readers import detect_format, read_ecg
from ecg.readers.members import record_files
from ingest.files import Rejected, index_scan, scan
from store import index


@dataclass(frozen=True, slots=True)
class Collected:
    """What a run found: the studies it touched and what it could not use."""

    study_uids: tuple[str, ...]
    new: int
    duplicate: int
    conflict: int
    rejected: tuple[Rejected, ...]
    empty_folders: tuple[Path, ...]

    @property
    def readable(self) -> bool:
        return bool(self.study_uids)


def collect(ctx: AppContext, paths: Sequence[Path]) -> Collected:
    """Scan, route and index ``paths``; idempotent (a second run indexes nothing new)."""
    now = ctx.clock.now()
    result = scan(paths)
    rejected: list[Rejected] = list(result.broken_dicom)
    study_uids: dict[str, None] = {s.study.study_instance_uid: None for s in result.dicom}
    with ctx.db.session() as session:
        counts = index_scan(session, result, now)
        new, duplicate, conflict = counts.new, counts.duplicate, counts.conflict
        consumed: set[Path] = set()
        for path in result.other_files:
            if path in consumed:
                continue
            reason = next(r.reason for r in result.rejected if r.path == path)
            if detect_format(path) is None:
                rejected.append(Rejected(path, f"{reason}; not a known ECG format either", dicom=False))
                continue
            try:
                record = read_ecg(path)
                files = record_files(path)
            except EcgError as exc:
                rejected.append(Rejected(path, str(exc), dicom=False))
                continue
            consumed.update(files)
            filed = ecg_file_study(record, files, ctx.settings.uid_root)
            outcome = index.add_instance(
                session, study=filed.study, series=filed.series, instance=filed.instance, received_at=now
            )
            new += outcome is index.IndexResult.NEW
            duplicate += outcome is index.IndexResult.DUPLICATE
            conflict += outcome is index.IndexResult.CONFLICT
            study_uids[filed.study.study_instance_uid] = None
        rejected = [r for r in rejected if r.path not in consumed]
        for r in rejected:
            index.add_quarantine(session, path=str(r.path), reason=r.reason, source="file", received_at=now)
    return Collected(
        study_uids=tuple(study_uids),
        new=new,
        duplicate=duplicate,
        conflict=conflict,
        rejected=tuple(rejected),
        empty_folders=result.empty_folders,
    )
