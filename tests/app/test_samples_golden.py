"""Golden files for the bundled samples: every output kind `mmdx run samples/` writes, by content.

The pipeline runs on `samples/` with a fixed clock (and, for the chest radiograph, a model server that
answers a fixed schema-valid draft), so every artefact is deterministic. The golden file holds each
artefact's semantic content per study (`tests/semantic.py`: DICOM attributes and SR content tree, PDF
text, FHIR resources, HL7 segments, pictures as thumbnails), so a library upgrade that changes bytes but
not content passes, and a clinical change shows up as a readable diff. Re-running gives identical bytes
(checked separately).

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
from tests import semantic
from tests.app.conftest import FIXED_NOW
from tests.models.openai_server import OpenAIServer, ServerState

GOLDEN = Path(__file__).parent / "golden"
#: read at import: the ``workdir`` fixture clears MMDX_* variables for the test itself
UPDATE = bool(os.environ.get("MMDX_UPDATE_GOLDEN"))
EXPECTED_KINDS = {"bundle.json", "oru.hl7", "report.pdf", "report.html", "report_pdf.dcm"}


def _run(workdir: Path, samples: Path, url: str) -> dict[str, dict[str, Path]]:
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
    files: dict[str, dict[str, Path]] = {}
    for uid in collected.study_uids:
        outcome = process_study(ctx, uid, out)
        files[uid] = {p.name: p for p in sorted(outcome.artefacts)}
    return files


def _digests(files: dict[str, dict[str, Path]]) -> dict[str, dict[str, str]]:
    return {
        uid: {n: hashlib.sha256(p.read_bytes()).hexdigest() for n, p in names.items()} for uid, names in files.items()
    }


def test_every_output_kind_of_the_bundled_samples_matches_the_golden_files(workdir: Path, samples_copy: Path) -> None:
    with OpenAIServer(ServerState(mode="valid")) as srv:
        files = _run(workdir, samples_copy, srv.url)
    reported = {uid: names for uid, names in files.items() if names}
    # every study gets a report: ECGs and the radiograph (model) with printouts/key images, the CT exam-only
    assert len(reported) == 4
    for names in reported.values():
        assert set(names) >= EXPECTED_KINDS, sorted(names)
        assert any(n.startswith("sr_") for n in names)
    assert sum(any(n.startswith("sc_") for n in names) for names in reported.values()) == 3
    content = {uid: {n: semantic.summary(n, p.read_bytes()) for n, p in names.items()} for uid, names in files.items()}
    golden_file = GOLDEN / "samples_content.json"
    if UPDATE:
        golden_file.write_text(json.dumps(content, indent=1, sort_keys=True, ensure_ascii=False) + "\n")
    expected = json.loads(golden_file.read_text())
    assert sorted(expected) == sorted(content), "studies differ from the golden file"
    for uid, names in content.items():
        assert sorted(expected[uid]) == sorted(names), f"{uid}: artefacts differ from the golden file"
        for name, summary in names.items():
            diffs = semantic.differences(expected[uid][name], summary)
            assert not diffs, f"{uid}/{name} changed (see the module docstring to refresh):\n" + "\n".join(diffs[:20])


def test_rerun_with_the_same_clock_gives_identical_bytes(tmp_path: Path, workdir: Path, samples_copy: Path) -> None:
    with OpenAIServer(ServerState(mode="valid")) as srv:
        first = _digests(_run(workdir, samples_copy, srv.url))
        second_dir = tmp_path / "again"
        second_dir.mkdir()
        os.chdir(second_dir)
        second = _digests(_run(second_dir, samples_copy, srv.url))
    assert first == second
