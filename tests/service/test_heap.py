"""The serving process takes its start-up heap out of the garbage collector's way (the API's tail latency)."""

from __future__ import annotations

import gc
import time
from pathlib import Path

import pytest

from app.context import AppContext
from app.service import create_app, settle_heap
from tests.service.conftest import _clean_env, settings_overrides


def _full_collection_s() -> float:
    start = time.perf_counter()
    gc.collect()
    return time.perf_counter() - start


def test_settle_heap_freezes_what_start_up_allocated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _clean_env(monkeypatch)
    ctx = AppContext.create(None, **settings_overrides(tmp_path))
    create_app(ctx)
    assert gc.get_freeze_count() == 0
    tracked = len(gc.get_objects())
    before = min(_full_collection_s() for _ in range(3))
    try:
        settle_heap()
        assert gc.get_freeze_count() >= tracked * 0.9  # nearly everything tracked is now permanent
        assert len(gc.get_objects()) < tracked * 0.1
        after = min(_full_collection_s() for _ in range(3))
        assert after < before / 5, (before, after)
    finally:
        gc.unfreeze()
        ctx.db.dispose()
