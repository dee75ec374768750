"""The worker and `mmdx run` give each model up to its max_batch studies at once (issue 20, item 4)."""

from __future__ import annotations

import json
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import generate_uid
from typer.testing import CliRunner

from app.cli import cli
from app.context import AppContext
from app.worker import run_batch
from core.identifiers import FixedClock
from tests.app.conftest import FIXED_NOW
from tests.models.openai_server import OpenAIServer, ServerState


def _studies(src: Path, dest: Path, n: int) -> Path:
    """``n`` copies of the sample radiograph, each its own study."""
    dest.mkdir()
    for i in range(n):
        for f in sorted(src.rglob("*.dcm")):
            ds = pydicom.dcmread(f)
            ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
            ds.save_as(dest / f"{i}_{f.name}")
    return dest


def _config(path: Path, url: str) -> Path:
    spec = {
        "backend": "remote_vlm",
        "url": url,
        "served_model": "tiny",
        "sha256": "cd" * 32,
        "max_batch": 4,
        "concurrency": 4,
        "options": {"retries": 0},
    }
    cfg = {"models": {"backends": {"vlm": spec}}, "model_routing": [{"modality": "CR", "models": ["vlm"]}]}
    path.write_text(json.dumps(cfg))
    return path


def test_worker_sends_the_claimed_studies_to_the_model_together(workdir: Path, samples_copy: Path) -> None:
    folder = _studies(samples_copy / "chest_cr", workdir / "many", 3)
    state = ServerState(mode="valid", delay_s=1.0)
    with OpenAIServer(state) as srv:
        cfg = _config(workdir / "site.yaml", srv.url)
        assert CliRunner().invoke(cli, ["run", str(folder), "--index-only", "--config", str(cfg)]).exit_code == 0
        base = AppContext.create(cfg)
        late = AppContext(base.settings, base.db, FixedClock(FIXED_NOW.replace(year=2099)))
        results = run_batch(late, out_dir=workdir / "out")
    assert len(results) == 3 and all(r.outcome is not None and r.outcome.report is not None for r in results)
    assert len(state.requests) == 3 and state.peak_in_flight >= 2, (
        "the studies reached the model together (one by one: 1)"
    )


def test_mmdx_run_batches_too(workdir: Path, samples_copy: Path) -> None:
    folder = _studies(samples_copy / "chest_cr", workdir / "many", 3)
    state = ServerState(mode="valid", delay_s=1.0)
    with OpenAIServer(state) as srv:
        cfg = _config(workdir / "site.yaml", srv.url)
        res = CliRunner().invoke(cli, ["run", str(folder), "--out", "out", "--config", str(cfg)])
    assert res.exit_code == 0, res.output
    assert len(state.requests) == 3 and state.peak_in_flight >= 2
    summaries = json.loads((workdir / "out" / "studies.json").read_text())
    assert all(s["report"] and s["report"]["status"] == "preliminary" for s in summaries)


def test_the_read_ahead_loads_each_study_once(
    workdir: Path, samples_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pipeline takes the study (and its order match) the models' read-ahead loaded (issue 20: overhead)."""
    from store import index

    folder = _studies(samples_copy / "chest_cr", workdir / "many", 3)
    state = ServerState(mode="valid")
    with OpenAIServer(state) as srv:
        cfg = _config(workdir / "site.yaml", srv.url)
        assert CliRunner().invoke(cli, ["run", str(folder), "--index-only", "--config", str(cfg)]).exit_code == 0
        base = AppContext.create(cfg)
        late = AppContext(base.settings, base.db, FixedClock(FIXED_NOW.replace(year=2099)))
        loads: list[str] = []
        real = index.load_study
        monkeypatch.setattr(index, "load_study", lambda s, uid: loads.append(uid) or real(s, uid))
        results = run_batch(late, out_dir=workdir / "out")
    assert len(results) == 3 and all(r.outcome is not None and r.outcome.report is not None for r in results)
    assert sorted(loads) == sorted(r.outcome.study_uid for r in results if r.outcome), loads


def test_warm_up_loads_models_and_never_stops_the_worker(workdir: Path, caplog: pytest.LogCaptureFixture) -> None:
    """`mmdx worker` pays model loading and the outputs' first-use costs at start, not in the first study."""
    import logging

    from app.worker import warm_up
    from tests.models.tiny import build_tiny_gemma3

    tiny = build_tiny_gemma3(workdir / "gemma3")
    backends = {
        "vlm": {"backend": "local_vlm", "family": "gemma3", "path": str(tiny)},
        "absent": {"backend": "local_vlm", "path": str(workdir / "nowhere")},
    }
    cfg = workdir / "site.yaml"
    cfg.write_text(json.dumps({"models": {"backends": backends}}))
    ctx = AppContext.create(cfg)
    with caplog.at_level(logging.INFO, logger="app.worker"):
        warm_up(ctx)  # a model that cannot run is its routed studies' failure, not the worker's
    assert ctx.registry.backend("vlm")._model is not None  # type: ignore[attr-defined]
    assert any("warm-up done" in r.getMessage() for r in caplog.records)
