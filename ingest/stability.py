"""Study completeness: dispatch a study for analysis once it has been quiet long enough.

DIMSE has no "study complete" message, so, like Orthanc's ``StableAge``, a
study counts as stable when no new instance arrived for ``scp.stable_age_s``
seconds.  Each stable study gets one job per *content version* (a hash of its
instances kept by the index): dispatching again changes nothing, and an
instance that arrives after dispatch makes a new content version and so,
once the study is quiet again, exactly one new job.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from core.errors import StoreError
from store import index as idx
from store import jobs

log = logging.getLogger(__name__)


def dispatch_stable(session: Session, now: datetime, stable_age_s: float) -> list[int]:
    """Enqueue a job for every study quiet since ``now - stable_age_s`` whose content has none yet.

    Parameters
    ----------
    session:
        A write session; the jobs are committed with it.
    now:
        Timezone-aware current time (inject a fixed clock in tests).
    stable_age_s:
        ``settings.scp.stable_age_s``.

    Returns
    -------
    list[int]
        Ids of the jobs created by this call (empty when nothing became stable).
    """
    if now.tzinfo is None:
        raise StoreError("dispatch_stable: expected a timezone-aware 'now'")
    if stable_age_s <= 0:
        raise StoreError(f"dispatch_stable: expected stable_age_s > 0, got {stable_age_s}")
    cutoff = now - timedelta(seconds=stable_age_s)
    created: list[int] = []
    for study_uid in idx.studies_quiet_since(session, cutoff):
        version = idx.content_version(session, study_uid)
        job_id = jobs.enqueue(session, study_uid, version, now)
        if job_id is not None:
            created.append(job_id)
            log.info("study %s stable: job %d for content %s", study_uid, job_id, version[:12])
    return created
