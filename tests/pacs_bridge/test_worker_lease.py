"""Jobs are leased too: a killed worker's job goes to another worker, its late result is not stored twice,
a heartbeat keeps a long job, and the worker delivers the outbox it fills."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest

from app.context import AppContext
from app.inputs import collect
from app.pipeline import StudyOutcome, process_study
from app.worker import _Heartbeat, run_forever, run_one
from core.config import load_settings
from core.errors import StoreError
from core.identifiers import FixedClock
from store import jobs, outbox
from store import reports as report_store
from store.db import Database
from store.outbox import OutboxState
from tests.pacs_bridge.conftest import REPO, T0


def _ctx(tmp_path: Path, clock: FixedClock, **service: object) -> AppContext:
    import yaml

    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "database": {"url": f"sqlite:///{tmp_path / 'w.db'}"},
                "storage": {
                    "store_dir": str(tmp_path / "store"),
                    "out_dir": str(tmp_path / "out"),
                    "quarantine_dir": str(tmp_path / "q"),
                    "fsync": False,
                },
                "scp": {"stable_age_s": 1},
                "service": {"job_lease_s": 60, **service},
                "destinations": {"share": {"type": "folder", "path": str(tmp_path / "share")}},
                "delivery_routing": [{"artefacts": ["sr", "oru", "fhir"], "destinations": ["share"]}],
                "bridge": {"poll_s": 0.05},
            }
        )
    )
    settings = load_settings(cfg, use_project_defaults=False)
    return AppContext(settings, Database.from_settings(settings), clock)


def test_a_killed_workers_job_goes_to_another_and_its_late_result_is_not_stored(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, FixedClock(T0))
    (uid,) = collect(ctx, [REPO / "samples" / "ecg_dicom"]).study_uids
    from ingest.stability import dispatch_stable

    with ctx.db.session() as s:
        dispatch_stable(s, T0 + timedelta(seconds=5), 1)
        job_a = jobs.claim_next(s, "worker-A", T0 + timedelta(seconds=5))
    assert job_a is not None  # worker A claimed it, then was SIGKILLed: no heartbeat any more
    late = AppContext(ctx.settings, ctx.db, FixedClock(T0 + timedelta(seconds=120)))
    with late.db.session() as s:  # worker B's round: the stale claim comes back and B takes it
        assert jobs.requeue_stale(s, late.clock.now() - timedelta(seconds=60)) == 1
        job_b = jobs.claim_next(s, "worker-B", late.clock.now())
    assert job_b is not None and job_b.id == job_a.id and job_b.attempts == 2

    def finish_as(me: str):
        def finish(session, outcome: StudyOutcome) -> None:
            jobs.complete(session, job_a.id, late.clock.now(), worker_id=me)

        return finish

    # A was only paused: it comes back and tries to store its result: refused, and nothing of it is kept
    with pytest.raises(StoreError, match="held by worker worker-B"):
        process_study(late, uid, finish=finish_as("worker-A"))
    with ctx.db.session() as s:
        assert report_store.report_history(s, uid) == []
        assert outbox.list_items(s) == []
    done = process_study(late, uid, finish=finish_as("worker-B"))
    assert done.report_version == 1
    with ctx.db.session() as s:
        assert [v.version for v in report_store.report_history(s, uid)] == [1]
        info = jobs.get_job(s, job_a.id)
    assert info is not None and info.state is jobs.JobState.DONE and info.worker_id == "worker-B"
    ctx.db.dispose()


def test_run_one_requeues_a_stale_job_itself(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, FixedClock(T0))
    collect(ctx, [REPO / "samples" / "ecg_dicom"])
    from ingest.stability import dispatch_stable

    with ctx.db.session() as s:
        dispatch_stable(s, T0 + timedelta(seconds=5), 1)
        assert jobs.claim_next(s, "dead-worker", T0 + timedelta(seconds=5)) is not None
    soon = AppContext(ctx.settings, ctx.db, FixedClock(T0 + timedelta(seconds=30)))
    assert run_one(soon, me="B") is None  # the lease (60 s) has not run out
    late = AppContext(ctx.settings, ctx.db, FixedClock(T0 + timedelta(seconds=120)))
    result = run_one(late, me="B")
    assert result is not None and result.error is None and result.outcome is not None
    ctx.db.dispose()


def test_the_heartbeat_keeps_a_long_job_claimed(tmp_path: Path) -> None:
    clock = FixedClock(T0)
    ctx = _ctx(tmp_path, clock, job_lease_s=0.3)
    with ctx.db.session() as s:
        jobs.enqueue(s, "1.2.3", "a" * 64, T0)
        job = jobs.claim_next(s, "me", T0)
    assert job is not None
    ctx.clock = FixedClock(T0 + timedelta(hours=1))
    with _Heartbeat(ctx, job.id, "me"):
        time.sleep(0.5)
    with ctx.db.session() as s:
        info = jobs.get_job(s, job.id)
        assert info is not None and info.claimed_at == T0 + timedelta(hours=1)
        assert jobs.requeue_stale(s, T0 + timedelta(minutes=30)) == 0
    ctx.db.dispose()


def test_the_worker_delivers_what_it_stores(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, FixedClock(T0))
    (uid,) = collect(ctx, [REPO / "samples" / "ecg_dicom"]).study_uids
    ctx.clock = FixedClock(T0 + timedelta(hours=1))  # the study is stable now
    assert run_forever(ctx, stop=threading.Event(), once=True) == 1
    with ctx.db.session() as s:
        items = outbox.list_items(s)
    assert len(items) == 3 and {i.state for i in items} == {OutboxState.DELIVERED}
    assert sorted(p.name for p in (tmp_path / "share" / uid / "v1").iterdir()) == [
        "bundle.json",
        "oru.hl7",
        "sr_ecg.dcm",
    ]
    ctx.db.dispose()
