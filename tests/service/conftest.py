"""A service with two analysed studies (a STAT 12-lead ECG and a routine chest radiograph), token auth on."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.api.auth import Role, mint_token
from app.context import AppContext
from app.inputs import collect
from app.pipeline import process_study
from app.service import create_app

REPO = Path(__file__).resolve().parents[2]
SECRET = "test-secret-0123456789abcdef0123456789abcdef"
STAT_ECG = "2.25.184178573777048938670033994177114697092"  # samples/ecg_wfdb: QT prolongation -> STAT
CHEST_CR = "1.3.6.1.4.1.5962.1.2.9.20040826185059.5457"


def settings_overrides(root: Path, **extra: object) -> dict[str, object]:
    out = {
        "storage": {"store_dir": root / "store", "out_dir": root / "out", "quarantine_dir": root / "q"},
        "database": {"url": f"sqlite:///{root / 'mmdx.db'}"},
        "auth": {"mode": "token", "token_secret": SECRET},
        "destinations": {"share": {"type": "folder", "path": str(root / "share")}},
        "delivery_routing": [{"artefacts": ["fhir", "pdf"], "destinations": ["share"]}],
    }
    for key, value in extra.items():
        base = out.get(key)
        out[key] = {**base, **value} if isinstance(base, dict) and isinstance(value, dict) else value
    return out


@dataclass
class Service:
    ctx: AppContext
    client: TestClient
    root: Path

    def token(self, *roles: Role, sub: str = "u1", name: str = "Dr Test", ttl_s: int | None = None) -> str:
        return mint_token(self.ctx.settings.auth, sub, roles, name=name, now=datetime.now(UTC), ttl_s=ttl_s)

    def headers(self, *roles: Role, sub: str = "u1") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(*roles, sub=sub)}"}


def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("MMDX_"):
            monkeypatch.delenv(key)


@pytest.fixture(scope="module")
def analysed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database + store with the two studies analysed once per module (copied per test)."""
    root = tmp_path_factory.mktemp("analysed")
    ctx = AppContext.create(None, **settings_overrides(root))
    inputs = root / "in"
    for name in ("ecg_wfdb", "chest_cr"):
        shutil.copytree(REPO / "samples" / name, inputs / name)
    collected = collect(ctx, [inputs])
    for uid in collected.study_uids:
        process_study(ctx, uid)
    ctx.db.dispose()
    return root


@pytest.fixture
def service_factory(
    analysed: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., Service]]:
    _clean_env(monkeypatch)
    made: list[AppContext] = []

    def make(**extra: object) -> Service:
        root = tmp_path / f"svc{len(made)}"
        shutil.copytree(analysed, root)
        # the stored paths point into the module's folder; the copy keeps them valid (same files)
        ctx = AppContext.create(None, **settings_overrides(root, **extra))
        made.append(ctx)
        return Service(ctx, TestClient(create_app(ctx)), root)

    yield make
    for ctx in made:
        ctx.db.dispose()


@pytest.fixture
def svc(service_factory: Callable[..., Service]) -> Service:
    return service_factory()
