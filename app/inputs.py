"""Turn the paths given to ``mmdx run`` into indexed studies.

DICOM goes through :mod:`ingest.scan` and :mod:`ingest.indexing`; every other file is offered to the ECG
format detector (by content, not by extension), and a file-based ECG becomes a
study of its own, its files copied into the store as DICOM objects are (a moved
or deleted source does not break the study).  What neither accepts is
quarantined with its reason.  This module is the only place where ``ingest``
and ``ecg`` meet, which is why it lives in ``app``.

The ECG readers run in a child process with ``limits.parse_memory_bytes`` of
address space and ``limits.parse_timeout_s`` (:mod:`app.isolated`): whatever one
file makes a reader do (allocate, loop, raise), it becomes that file's
quarantine reason and the run goes on.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from app.context import AppContext
from app.ecg_studies import LONG_ECG_DESCRIPTION, EcgFileStudy, ecg_file_study
from app.isolated import InputRefused, runner
from core.config import LimitsConfig
from core.errors import EcgError, IngestError, StoreError
from ecg.holter import STRIP_S, check_length, long_recording, needs_windows
from ecg.readers import detect_format, read_ecg
from ecg.readers.limits import check_declared_samples, check_sampling_rate, declared_samples_limit
from ecg.readers.members import record_files
from ingest.filestore import FileStore
from ingest.indexing import index_scan
from ingest.scan import Rejected, check_regular, display_path, read_regular, scan
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


def examine_ecg(
    path: str, uid_root: str, max_samples: int, max_hours: float = LimitsConfig().max_ecg_hours
) -> tuple[str, EcgFileStudy | str]:
    """In the child process: ``("ecg", records)``, ``("not-ecg", "")`` or ``("error", reason)``.

    A WFDB recording over ``max_samples`` (a Holter: analysed in windows, :mod:`ecg.holter`) is examined by its
    header and first seconds only, and refused beyond ``max_hours``.  Plain tuples cross the process boundary
    (an exception with extra constructor arguments does not unpickle).
    """
    p = Path(path)
    try:
        if detect_format(p) is None:
            return "not-ecg", ""
        if needs_windows(p, max_samples):
            return "ecg", _long_ecg_study(p, uid_root, max_samples, max_hours)
        with declared_samples_limit(max_samples):
            record = read_ecg(p)
        # whatever the format declared, what is indexed is a plausible recording of bounded size
        check_sampling_rate(record.sampling_rate_hz, "recording", path)
        check_declared_samples(int(record.signal.size), "recording", path)
        files = record_files(p)
        return "ecg", ecg_file_study(record, files, uid_root)
    except EcgError as exc:
        reason = str(exc)
        return "error", reason.removeprefix(f"{path}: ")


def _long_ecg_study(p: Path, uid_root: str, max_samples: int, max_hours: float) -> EcgFileStudy:
    """The study of a recording analysed in windows, from its header and first seconds (never read whole)."""
    rec = long_recording(p)
    if rec is None:  # needs_windows said it is one
        raise EcgError("not a WFDB recording", source=str(p))
    check_length(rec, max_hours, max_samples)
    head = rec.read(0, min(rec.n_samples, int(STRIP_S * rec.fs)))
    return ecg_file_study(head, record_files(p), uid_root, description=LONG_ECG_DESCRIPTION)


#: Recording files larger than this are copied into the store in pieces, not read whole (a Holter's samples).
_READ_WHOLE_BYTES = 64 << 20


def _store_recording(filestore: FileStore, filed: EcgFileStudy, limit: int) -> Path:
    """Copy the recording's files into the store; the path of its main file there."""
    files: list[tuple[str, bytes | Path]] = []
    for f in filed.files:
        data = read_regular(f, min(limit, _READ_WHOLE_BYTES)) if _size(f) <= _READ_WHOLE_BYTES else None
        if data is None:
            check_regular(f, limit)  # a regular file within limits.max_object_bytes, copied in pieces
        files.append((f.name, f if data is None else data))
    inst = filed.instance
    folder = filestore.put_recording(
        files,
        study_uid=inst.study_instance_uid,
        series_uid=inst.series_instance_uid,
        sop_instance_uid=inst.sop_instance_uid,
    )
    return folder / filed.files[0].name


def collect(ctx: AppContext, paths: Sequence[Path]) -> Collected:
    """Scan, route and index ``paths``; idempotent (a second run indexes nothing new)."""
    now = ctx.clock.now()
    limits = ctx.settings.limits
    result = scan(paths, limits)
    not_ecg: list[Rejected] = []
    study_uids: dict[str, None] = {s.study.study_instance_uid: None for s in result.dicom}
    storage = ctx.settings.storage
    filestore = FileStore(Path(storage.store_dir), fsync=storage.fsync)
    reasons = {r.path: r.reason for r in result.rejected}
    with ctx.db.session() as session:
        # objects are copied into the store (atomically) so the index never points at a file that may go away
        counts = index_scan(session, result, now, store=filestore)
        new, duplicate, conflict = counts.new, counts.duplicate, counts.conflict
        consumed: set[Path] = set()
        offered = set(result.other_files)
        isolated = runner(limits.parse_timeout_s, limits.parse_memory_bytes)
        for path in result.other_files:
            if path in consumed:
                continue
            try:
                kind, found = isolated.call(
                    examine_ecg, str(path), ctx.settings.uid_root, limits.max_ecg_samples, limits.max_ecg_hours
                )
            except InputRefused as exc:
                not_ecg.append(Rejected(path, str(exc), dicom=False))
                continue
            if kind == "not-ecg" or not isinstance(found, EcgFileStudy):
                why = found if kind == "error" else f"{reasons[path]}; not a known ECG format either"
                not_ecg.append(Rejected(path, str(why), dicom=False))
                continue
            try:
                stored = _store_recording(filestore, found, limits.max_object_bytes)
            except (IngestError, StoreError) as exc:
                not_ecg.append(Rejected(path, f"cannot store the recording: {exc}", dicom=False))
                continue
            consumed.update(found.files)
            outcome = index.add_instance(
                session,
                study=found.study,
                series=found.series,
                instance=replace(found.instance, path=stored),
                received_at=now,
            )
            new += outcome is index.IndexResult.NEW
            duplicate += outcome is index.IndexResult.DUPLICATE
            conflict += outcome is index.IndexResult.CONFLICT
            study_uids[found.study.study_instance_uid] = None
        not_ecg = [r for r in not_ecg if r.path not in consumed]
        for r in not_ecg:
            index.add_quarantine(
                session,
                path=display_path(r.path),
                reason=display_path(r.reason),
                source="file",
                received_at=now,
                sha256=_sha256(r.path, limits.max_object_bytes),
            )
    return Collected(
        study_uids=tuple(study_uids),
        new=new,
        duplicate=duplicate,
        conflict=conflict,
        rejected=(*(r for r in result.rejected if r.path not in offered), *not_ecg),
        empty_folders=result.empty_folders,
    )


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0  # read_regular says why


def _sha256(path: Path, limit: int) -> str | None:
    """sha256 of a regular file of at most ``limit`` bytes, read in pieces (a refused Holter may be gigabytes)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except (OSError, ValueError):
        return None
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode) or st.st_size > limit:
            return None
        os.set_blocking(fh.fileno(), True)
        digest = hashlib.sha256()
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
