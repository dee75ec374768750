"""Turn the paths given to ``mmdx run`` into indexed studies.

DICOM goes through :mod:`ingest.files`; every other file is offered to the ECG
format detector (by content, not by extension), and a file-based ECG becomes a
study of its own.  What neither accepts is quarantined with its reason.  This
module is the only place where ``ingest`` and ``ecg`` meet, which is why it
lives in ``app``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from app.context import AppContext
from app.ecg_studies import ecg_file_study
from core.errors import EcgError
from ecg.readers import detect_format, read_ecg
from ecg.readers.members import record_files
from ingest.files import Rejected, index_scan, scan
from ingest.filestore import FileStore
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
    not_ecg: list[Rejected] = []
    study_uids: dict[str, None] = {s.study.study_instance_uid: None for s in result.dicom}
    storage = ctx.settings.storage
    filestore = FileStore(Path(storage.store_dir), fsync=storage.fsync)
    with ctx.db.session() as session:
        # objects are copied into the store (atomically) so the index never points at a file that may go away
        counts = index_scan(session, result, now, store=filestore)
        new, duplicate, conflict = counts.new, counts.duplicate, counts.conflict
        consumed: set[Path] = set()
        for path in result.other_files:
            if path in consumed:
                continue
            reason = next(r.reason for r in result.rejected if r.path == path)
            if detect_format(path) is None:
                not_ecg.append(Rejected(path, f"{reason}; not a known ECG format either", dicom=False))
                continue
            try:
                record = read_ecg(path)
                files = record_files(path)
            except EcgError as exc:
                not_ecg.append(Rejected(path, str(exc), dicom=False))
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
        not_ecg = [r for r in not_ecg if r.path not in consumed]
        for r in not_ecg:
            index.add_quarantine(
                session, path=str(r.path), reason=r.reason, source="file", received_at=now, sha256=_sha256(r.path)
            )
    return Collected(
        study_uids=tuple(study_uids),
        new=new,
        duplicate=duplicate,
        conflict=conflict,
        rejected=(*result.broken_dicom, *not_ecg),
        empty_folders=result.empty_folders,
    )


def _sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None
