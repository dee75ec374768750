"""The service on PostgreSQL (a real Debian server started by the test): analyse, worklist, sign, outbox, audit."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from app.api.auth import Role, mint_token
from app.context import AppContext
from app.inputs import collect
from app.pipeline import process_study
from app.service import create_app
from store.db import Database
from tests.service.conftest import CHEST_CR, REPO, STAT_ECG, settings_overrides
from tests.store.conftest import pg_url  # noqa: F401  (the session's PostgreSQL cluster)

pytestmark = pytest.mark.integration


def test_service_on_postgresql(pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    fresh = Database(pg_url)
    with fresh.engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    fresh.dispose()
    overrides = settings_overrides(tmp_path)
    overrides["database"] = {"url": pg_url}
    ctx = AppContext.create(None, **overrides)
    try:
        for name in ("ecg_wfdb", "chest_cr"):
            shutil.copytree(REPO / "samples" / name, tmp_path / "in" / name)
        for uid in collect(ctx, [tmp_path / "in"]).study_uids:
            process_study(ctx, uid)
        client = TestClient(create_app(ctx))
        token = mint_token(
            ctx.settings.auth, "dr.pg", [Role.CLINICIAN, Role.INTEGRATOR, Role.ADMIN], now=datetime.now(UTC)
        )
        h = {"Authorization": f"Bearer {token}"}
        rows = client.get("/api/v1/worklist", headers=h).json()
        assert [r["study_instance_uid"] for r in rows] == [STAT_ECG, CHEST_CR]
        assert (
            client.get("/api/v1/studies?modality=CR&status=preliminary", headers=h).json()[0]["study_instance_uid"]
            == CHEST_CR
        )
        signed = client.post(f"/api/v1/studies/{STAT_ECG}/report/sign", json={"expected_version": 1}, headers=h)
        assert signed.status_code == 200 and signed.json()["status"] == "final"
        assert (
            client.post(f"/api/v1/studies/{STAT_ECG}/report/sign", json={"expected_version": 1}, headers=h).status_code
            == 409
        )
        outbox = client.get(f"/api/v1/outbox?study_uid={STAT_ECG}", headers=h).json()
        assert {(i["report_version"], i["kind"]) for i in outbox["items"]} >= {(2, "fhir"), (2, "pdf")}
        trail = client.get(f"/api/v1/audit?study_uid={STAT_ECG}", headers=h).json()
        assert trail[0]["action"] == "report.sign" and trail[0]["actor"] == "user:dr.pg"
        assert client.get("/readyz").json()["checks"]["database"]["ok"]
    finally:
        ctx.db.dispose()
