"""Put a scan (:mod:`ingest.scan`) into the index, idempotently.

Objects are copied into the file store first when one is given (zip members have no file of their
own); broken DICOM and refused inputs become quarantine entries with their reason, which
``store.index.add_quarantine`` keeps unique, so running an import twice adds nothing the second time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING

from core.errors import StoreError
from ingest.filestore import FileStore, Placement
from ingest.scan import ScanResult, display_path

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class IndexCounts:
    """What :func:`index_scan` did."""

    new: int = 0
    duplicate: int = 0
    conflict: int = 0
    quarantined: int = 0


def index_scan(
    session: Session,
    result: ScanResult,
    received_at: datetime,
    *,
    store: FileStore | None = None,
    quarantine_other: bool = False,
) -> IndexCounts:
    """Add a scan to the index; running it twice adds nothing the second time.

    Parameters
    ----------
    store:
        Copy every object into the file store first (required for zip members,
        which have no file of their own); without it files are indexed where they are.
    quarantine_other:
        Also quarantine non-DICOM files on disk (by default the caller does, after the ECG readers had a go);
        broken DICOM, zip members and missing paths are always quarantined here.
    """
    from store import index as idx
    from store.index_writer import IndexWriter, NewInstance

    new = duplicate = conflict = 0
    quarantined_before = idx.count_quarantine(session)  # add_quarantine is idempotent: count what it added
    batch: list[NewInstance] = []
    for item in result.dicom:
        instance = item.instance
        if store is not None:
            try:
                placed = store.put(
                    item.read_bytes(),
                    study_uid=instance.study_instance_uid,
                    series_uid=instance.series_instance_uid,
                    sop_instance_uid=instance.sop_instance_uid,
                    digest=instance.content_digest,
                )
            except (StoreError, OSError) as exc:
                idx.add_quarantine(
                    session,
                    path=display_path(item.path),
                    reason=f"cannot store: {display_path(str(exc))}",
                    source="file",
                    received_at=received_at,
                )
                continue
            if placed.placement is Placement.CONFLICT:
                log.warning("content %s: its SOP Instance UID is stored with other content", instance.content_digest)
            instance = replace(instance, path=placed.path)
        elif item.archive is not None or display_path(item.path) != str(item.path):
            reason = (
                "zip member needs a file store to be indexed"
                if item.archive is not None
                else "file name is not valid UTF-8 text: needs a file store to be indexed"
            )
            idx.add_quarantine(
                session, path=display_path(item.path), reason=reason, source="file", received_at=received_at
            )
            continue
        batch.append(NewInstance(item.study, item.series, instance, item.size))
    for outcome in IndexWriter().add_to(session, batch, received_at=received_at):
        if outcome is idx.IndexResult.NEW:
            new += 1
        elif outcome is idx.IndexResult.DUPLICATE:
            duplicate += 1
        else:
            conflict += 1
    for rej in result.rejected:
        quarantine = rej.dicom or quarantine_other or not rej.offerable
        shown = display_path(rej.path)
        if quarantine:
            idx.add_quarantine(session, path=shown, reason=rej.reason, source="file", received_at=received_at)
    quarantined = idx.count_quarantine(session) - quarantined_before
    return IndexCounts(new=new, duplicate=duplicate, conflict=conflict, quarantined=quarantined)
