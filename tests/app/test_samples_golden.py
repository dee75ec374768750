"""Golden files for the bundled samples: every output kind `mmdx run samples/` writes, byte for byte.

The pipeline runs on `samples/` with a fixed clock (and, for the chest radiograph, a model server that
answers a fixed schema-valid draft), so every artefact is deterministic. The golden file lists each
artefact's sha256 per study; `bundle.json` and `oru.hl7` of the ECG studies are kept whole for review.

Refresh after an intended change (an ECG algorithm or report builder change shows up here):
``MMDX_UPDATE_GOLDEN=1 .venv/bin/pytest tests/app/test_samples_golden.py`` and review ``git diff tests/app/golden``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from app.context import AppContext
from app.inputs import collect
from app.pipeline import process_study
from core.identifiers import FixedClock
from tests.app.conftest import FIXED_NOW
from tests.models.openai_server import OpenAIServer, ServerState

GOLDEN = Path(__file__).parent / "golden"
#: read at import: the ``workdir`` fixture clears MMDX_* variables for the test itself
UPDATE = bool(os.environ.get("MMDX_UPDATE_GOLDEN"))
EXPECTED_KINDS = {"bundle.json", "oru.hl7", "report.pdf", "report.html", "report_pdf.dcm"}


def _run(workdir: Path, samples: Path, url: str) -> dict[str, dict[str, str]]:
    cfg = workdir / "site.yaml"
    cfg.write_text(
        json.dumps(
            {
                "models": {
                    "backends": {
                        "cxr-vlm": {
                            "backend": "remote_vlm",
                            "family": "gemma3",
                            "url": url,
                            "served_model": "tiny",
                            "sha256": "cd" * 32,
                        }
                    }
                },
                "model_routing": [{"modality": "CR", "models": ["cxr-vlm"]}],
            }
        )
    )
    ctx = AppContext.create(cfg, clock=FixedClock(FIXED_NOW))
    collected = collect(ctx, [samples])
    out = workdir / "out"
    digests: dict[str, dict[str, str]] = {}
    for uid in collected.study_uids:
        outcome = process_study(ctx, uid, out)
        digests[uid] = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(outcome.artefacts)}
    return digests


def test_every_output_kind_of_the_bundled_samples_matches_the_golden_files(workdir: Path, samples_copy: Path) -> None:
    with OpenAIServer(ServerState(mode="valid")) as srv:
        digests = _run(workdir, samples_copy, srv.url)
    reported = {uid: names for uid, names in digests.items() if names}
    # every study gets a report: ECGs and the radiograph (model) with printouts/key images, the CT exam-only
    assert len(reported) == 4
    for names in reported.values():
        assert set(names) >= EXPECTED_KINDS, sorted(names)
        assert any(n.startswith("sr_") for n in names)
    assert sum(any(n.startswith("sc_") for n in names) for names in reported.values()) == 3
    golden_file = GOLDEN / "samples_digests.json"
    if UPDATE:
        golden_file.write_text(json.dumps(digests, indent=1, sort_keys=True) + "\n")
        for uid, names in reported.items():
            for keep in ("bundle.json", "oru.hl7"):
                if keep in names:
                    (GOLDEN / f"{uid}.{keep}").write_bytes((workdir / "out" / uid / keep).read_bytes())
    assert digests == json.loads(golden_file.read_text())
    for uid in reported:
        for keep in ("bundle.json", "oru.hl7"):
            if (GOLDEN / f"{uid}.{keep}").exists():
                assert (workdir / "out" / uid / keep).read_bytes() == (GOLDEN / f"{uid}.{keep}").read_bytes()


def test_rerun_with_the_same_clock_gives_identical_bytes(tmp_path: Path, workdir: Path, samples_copy: Path) -> None:
    with OpenAIServer(ServerState(mode="valid")) as srv:
        first = _run(workdir, samples_copy, srv.url)
        second_dir = tmp_path / "again"
        second_dir.mkdir()
        os.chdir(second_dir)
        second = _run(second_dir, samples_copy, srv.url)
    assert first == second
