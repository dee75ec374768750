"""The outbox loop without network peers: folder delivery, order per study, skips, backoff, dead letters, leases."""

from __future__ import annotations

import hashlib
import random
import threading
from datetime import timedelta
from pathlib import Path

from core.identifiers import FixedClock
from pacs_bridge.loop import OutboxLoop
from pacs_bridge.outcome import Delivered, Outcome, Retry
from store import outbox
from store.db import Database
from store.outbox import OutboxItem, OutboxState
from tests.pacs_bridge.conftest import T0, Versions, settings_with, store_versions
from tests.peers import free_port

ALL = ["sr", "sc", "dicom-pdf", "fhir", "oru", "pdf"]


def _states(db: Database) -> dict[tuple[int, str, str], OutboxState]:
    with db.session() as s:
        return {(i.report_version, i.kind, i.destination): i.state for i in outbox.list_items(s)}


def test_folder_delivery_writes_every_artefact_atomically_and_once(
    tmp_path: Path, versions: Versions, bridge_db: Database
) -> None:
    share = tmp_path / "share"
    settings = settings_with(tmp_path, {"share": {"type": "folder", "path": share}})
    store_versions(bridge_db, versions.all[:1], {k: ["share"] for k in ALL})
    loop = OutboxLoop(bridge_db, settings, FixedClock(T0))
    summary = loop.run_once()
    assert summary.claimed == summary.delivered == 6, summary
    assert loop.run_once().idle
    v1 = versions.all[0]
    uid = versions.study.study_instance_uid
    for art in v1.artefacts:
        if art.kind in ALL:
            copy = share / uid / "v1" / art.path.name
            assert hashlib.sha256(copy.read_bytes()).hexdigest() == art.sha256
    assert not list(share.rglob("*.part"))
    assert set(_states(bridge_db).values()) == {OutboxState.DELIVERED}


class _Recorder:
    """A sender that records the order it was asked to send in, and answers by script."""

    def __init__(self, answer: Outcome | None = None) -> None:
        self.sent: list[OutboxItem] = []
        self.answer = answer or Delivered()

    def send(self, items: list[OutboxItem]) -> list[Outcome]:
        self.sent.extend(items)
        return [self.answer for _ in items]

    def close(self) -> None:
        pass


def test_a_final_never_overtakes_its_preliminary_and_an_amended_never_its_final(
    tmp_path: Path, versions: Versions, bridge_db: Database
) -> None:
    settings = settings_with(tmp_path, {"pacs": {"type": "folder", "path": tmp_path / "p", "skip_superseded": False}})
    store_versions(bridge_db, versions.all[:3], {"sr": ["pacs"]})
    flaky = _Recorder(Retry("PACS busy"))
    clock = FixedClock(T0)
    loop = OutboxLoop(bridge_db, settings, clock, senders={"pacs": flaky}, rng=random.Random(1))
    loop.run_once()
    # only v1 was offered: v2 and v3 wait while v1 is open, even though all are due
    assert [i.report_version for i in flaky.sent] == [1]
    ok = _Recorder()
    loop = OutboxLoop(bridge_db, settings, FixedClock(T0 + timedelta(hours=1)), senders={"pacs": ok})
    for _ in range(3):
        loop.run_once()
    assert [i.report_version for i in ok.sent] == [1, 2, 3]


def test_an_unsent_superseded_preliminary_is_skipped(tmp_path: Path, versions: Versions, bridge_db: Database) -> None:
    settings = settings_with(tmp_path, {"pacs": {"type": "folder", "path": tmp_path / "p"}})
    store_versions(bridge_db, versions.all[:2], {"sr": ["pacs"]})
    rec = _Recorder()
    loop = OutboxLoop(bridge_db, settings, FixedClock(T0), senders={"pacs": rec})
    first = loop.run_once()
    assert first.skipped == 1 and first.delivered == 0
    loop.run_once()
    assert [i.report_version for i in rec.sent] == [2]
    with bridge_db.session() as s:
        assert outbox.list_items(s, state=OutboxState.DEAD) == []  # nothing failed
        (skipped,) = outbox.list_items(s, state=OutboxState.SUPERSEDED)
        assert outbox.retry_all_dead(s, T0) == 0  # an operator's "retry every dead item" leaves it alone
    assert skipped.report_version == 1 and "superseded by version 2" in (skipped.last_error or "")
    assert loop.run_once().idle and [i.report_version for i in rec.sent] == [2]


def test_send_preliminary_false_queues_only_signed_versions(tmp_path: Path, versions: Versions) -> None:
    from app.context import AppContext
    from app.pipeline import destinations_for

    settings = settings_with(
        tmp_path,
        {
            "ehr": {"type": "fhir", "url": "http://x", "send_preliminary": False, "artefacts": ["fhir"]},
            "ris": {"type": "mllp", "host": "127.0.0.1", "port": 2575, "artefacts": ["oru"]},
            "pager": {"type": "webhook", "url": "http://x", "artefacts": ["html"], "min_priority": "stat"},
        },
    )
    ctx = AppContext.__new__(AppContext)
    ctx.settings = settings
    prelim, final = versions.all[0].report, versions.all[1].report
    assert destinations_for(ctx, prelim.kind, prelim) == {"oru": ["ris"]}  # routine: no page, no EHR
    assert destinations_for(ctx, final.kind, final) == {"fhir": ["ehr"], "oru": ["ris"]}


def test_refusing_destination_is_dead_lettered_after_max_attempts_and_others_unaffected(
    tmp_path: Path, versions: Versions, bridge_db: Database
) -> None:
    closed = free_port()  # nothing listens: every try is refused
    settings = settings_with(
        tmp_path,
        {
            "ris": {"type": "mllp", "host": "127.0.0.1", "port": closed, "max_attempts": 3, "base_delay_s": 10},
            "share": {"type": "folder", "path": tmp_path / "share"},
        },
    )
    store_versions(bridge_db, versions.all[:1], {"oru": ["ris", "share"]})
    now = T0
    delays = []
    for attempt in range(1, 4):
        loop = OutboxLoop(bridge_db, settings, FixedClock(now), rng=random.Random(attempt))
        summary = loop.run_once()
        loop.close()
        assert summary.claimed >= 1
        with bridge_db.session() as s:
            (ris,) = outbox.list_items(s, destination="ris")
        assert ris.attempts == attempt
        if attempt < 3:
            assert ris.state is OutboxState.PENDING
            delay = (ris.next_attempt_at - now).total_seconds()
            # exponential with jitter: 10 * 2^(n-1) scaled by 0.8..1.2
            assert 0.8 * 10 * 2 ** (attempt - 1) <= delay <= 1.2 * 10 * 2 ** (attempt - 1)
            delays.append(delay)
            now = ris.next_attempt_at
    assert ris.state is OutboxState.DEAD
    assert "gave up after 3 attempts" in (ris.last_error or "") and "refused" in (ris.last_error or "").lower()
    assert _states(bridge_db)[(1, "oru", "share")] is OutboxState.DELIVERED


def test_a_crashed_senders_claims_come_back_after_the_lease(
    tmp_path: Path, versions: Versions, bridge_db: Database
) -> None:
    settings = settings_with(tmp_path, {"share": {"type": "folder", "path": tmp_path / "s"}}, lease_s=60)
    store_versions(bridge_db, versions.all[:1], {"sr": ["share"], "oru": ["share"]})
    with bridge_db.session() as s:  # a sender claims, then dies before recording anything
        assert len(outbox.claim_due(s, T0, 10, lease_s=60)) == 2
    rec = _Recorder()
    assert (
        OutboxLoop(bridge_db, settings, FixedClock(T0 + timedelta(seconds=59)), senders={"share": rec}).run_once().idle
    )
    later = OutboxLoop(bridge_db, settings, FixedClock(T0 + timedelta(seconds=61)), senders={"share": rec})
    assert later.run_once().delivered == 2
    assert len(rec.sent) == 2


def test_a_removed_destination_is_dead_lettered(tmp_path: Path, versions: Versions, bridge_db: Database) -> None:
    store_versions(bridge_db, versions.all[:1], {"sr": ["gone"]})
    settings = settings_with(tmp_path, {"share": {"type": "folder", "path": tmp_path / "s"}})
    assert OutboxLoop(bridge_db, settings, FixedClock(T0)).run_once().dead == 1
    with bridge_db.session() as s:
        (item,) = outbox.list_items(s)
    assert "no longer configured" in (item.last_error or "")


def test_run_forever_stops_on_the_event(tmp_path: Path, versions: Versions, bridge_db: Database) -> None:
    settings = settings_with(tmp_path, {"share": {"type": "folder", "path": tmp_path / "s"}})
    store_versions(bridge_db, versions.all[:1], {"sr": ["share"]})
    stop = threading.Event()
    loop = OutboxLoop(bridge_db, settings, FixedClock(T0))
    t = threading.Thread(target=loop.run_forever, args=(stop,))
    t.start()
    for _ in range(100):
        if set(_states(bridge_db).values()) == {OutboxState.DELIVERED}:
            break
        stop.wait(0.05)
    stop.set()
    t.join(5)
    assert not t.is_alive()
    assert set(_states(bridge_db).values()) == {OutboxState.DELIVERED}


def test_the_next_batch_is_claimed_ahead_and_given_back_on_close(
    tmp_path: Path, versions: Versions, bridge_db: Database
) -> None:
    settings = settings_with(tmp_path, {"share": {"type": "folder", "path": tmp_path / "s"}}, batch_size=2)
    store_versions(bridge_db, versions.all[:1], {k: ["share"] for k in ("sr", "sc", "oru", "fhir")})
    loop = OutboxLoop(bridge_db, settings, FixedClock(T0))
    assert loop.run_once().delivered == 2
    loop.close()  # the two claimed ahead were not sent: due again now, not after the lease
    with bridge_db.session() as s:
        assert len(outbox.due(s, T0, 10)) == 2
    again = OutboxLoop(bridge_db, settings, FixedClock(T0))
    assert again.run_once().delivered == 2
    assert again.run_once().idle
    again.close()
