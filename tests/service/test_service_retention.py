"""Retention: received objects of finished studies and superseded outputs go; nothing the outbox still needs."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from app.api.auth import Role
from app.cli import cli
from app.retention import apply_retention
from store import audit, index, outbox
from store import reports as report_store
from tests.service.conftest import CHEST_CR, STAT_ECG, Service


def _object_paths(svc: Service, uid: str) -> list[Path]:
    with svc.ctx.db.session() as session:
        study = index.load_study(session, uid)
    assert study is not None
    return [Path(i.path) for s in study.series for i in s.instances]


def test_retention_keeps_what_the_outbox_needs(
    service_factory: Callable[..., Service], monkeypatch: pytest.MonkeyPatch
) -> None:
    svc = service_factory(storage={"retention_days": 1, "output_retention_days": 1})
    h = svc.headers(Role.CLINICIAN, Role.ADMIN)
    assert svc.client.post(f"/api/v1/studies/{CHEST_CR}/report/sign", json={}, headers=h).status_code == 200
    objects = _object_paths(svc, CHEST_CR)
    assert objects and all(p.exists() for p in objects)
    later = svc.ctx.clock.now() + timedelta(days=2)

    with svc.ctx.db.session() as session:
        history = report_store.report_history(session, CHEST_CR)
    v1 = {a.kind: a.path for a in history[0].artefacts}
    v2_files = [a.path for a in history[1].artefacts]

    # signed, but deliveries are still pending: the objects stay, and so do v1's files the outbox still sends
    assert apply_retention(svc.ctx, now=later).studies == []
    assert all(p.exists() for p in objects)
    assert v1["fhir"].exists() and v1["pdf"].exists()  # pending deliveries to the folder destination
    assert not v1["html"].exists()  # superseded and never to be delivered: gone

    with svc.ctx.db.session() as session:
        for item in outbox.list_items(session, study_uid=CHEST_CR):
            outbox.mark_delivered(session, item.id, svc.ctx.clock.now())

    dry = apply_retention(svc.ctx, now=later, dry_run=True)
    assert dry.studies == [CHEST_CR] and dry.object_files == len(objects) and all(p.exists() for p in objects)
    with svc.ctx.db.session() as session:
        assert index.load_study(session, CHEST_CR) is not None  # the dry run changed nothing

    done = apply_retention(svc.ctx, now=later)
    assert done.studies == [CHEST_CR] and done.object_files == len(objects)
    assert not any(p.exists() for p in objects)
    assert not any(p.exists() for p in v1.values())  # superseded and delivered
    assert all(p.exists() for p in v2_files)  # the newest version's files stay
    with svc.ctx.db.session() as session:
        assert index.load_study(session, CHEST_CR) is None
        assert index.load_study(session, STAT_ECG) is not None  # unsigned draft: kept
        assert [e.action for e in audit.history(session, CHEST_CR)][-1] == "retention.delete"
    # the report history outlives the received objects
    versions = svc.client.get(f"/api/v1/studies/{CHEST_CR}/reports", headers=h).json()
    assert [v["status"] for v in versions] == ["preliminary", "final"]

    for key, value in {
        "MMDX_DATABASE__URL": f"sqlite:///{svc.root / 'mmdx.db'}",
        "MMDX_STORAGE__STORE_DIR": str(svc.root / "store"),
        "MMDX_STORAGE__OUT_DIR": str(svc.root / "out"),
        "MMDX_STORAGE__QUARANTINE_DIR": str(svc.root / "q"),
        "MMDX_STORAGE__RETENTION_DAYS": "1",
    }.items():
        monkeypatch.setenv(key, value)
    result = CliRunner().invoke(cli, ["retention", "--dry-run"])
    assert result.exit_code == 0 and "would remove: 0 stud(ies)" in result.output
