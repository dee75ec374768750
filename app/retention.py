"""Apply the storage retention policy (``storage.retention_days``, ``storage.output_retention_days``).

Rows change in one transaction (audited), files are removed after it commits: a crash between the two leaves
orphan files, never an index row pointing at a deleted file.  ``mmdx retention`` runs it by hand (``--dry-run``
lists), ``mmdx serve`` once an hour when a policy is set.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from app.context import AppContext
from store import audit, retention

log = logging.getLogger(__name__)


@dataclass
class RetentionResult:
    studies: list[str] = field(default_factory=list)
    object_files: int = 0
    output_files: int = 0
    dry_run: bool = False


def _unlink(paths: list[Path]) -> int:
    removed = 0
    for path in paths:
        try:
            path.unlink()
            removed += 1
        except FileNotFoundError:
            continue
        except OSError as exc:
            log.warning("retention: cannot remove %s (%s)", path, exc.strerror)
    return removed


def apply_retention(ctx: AppContext, *, now: datetime | None = None, dry_run: bool = False) -> RetentionResult:
    storage = ctx.settings.storage
    now = now or ctx.clock.now()
    result = RetentionResult(dry_run=dry_run)
    doomed_objects: list[Path] = []
    doomed_outputs: list[Path] = []
    with ctx.db.session() as session:
        if storage.retention_days is not None:
            cutoff = now - timedelta(days=storage.retention_days)
            result.studies = retention.finished_studies(session, cutoff)
            for uid in result.studies:  # a dry run does the same, then rolls back
                paths = retention.delete_study(session, uid)
                doomed_objects.extend(paths)
                audit.record(
                    session,
                    actor="system:retention",
                    action="retention.delete",
                    study_uid=uid,
                    detail=f"{len(paths)} received object(s) after {storage.retention_days:g} days",
                    at=now,
                )
        if storage.output_retention_days is not None:
            cutoff = now - timedelta(days=storage.output_retention_days)
            outputs = retention.superseded_artefacts(session, cutoff)
            doomed_outputs = [p for _, p in outputs if p.exists()]
        if dry_run:
            session.rollback()
    if dry_run:
        result.object_files = len(doomed_objects)
        result.output_files = len(doomed_outputs)
        return result
    result.object_files = _unlink(doomed_objects)
    result.output_files = _unlink(doomed_outputs)
    if result.studies or result.output_files:
        log.info(
            "retention: %d stud(ies), %d object file(s), %d output file(s) removed",
            len(result.studies),
            result.object_files,
            result.output_files,
        )
    return result
