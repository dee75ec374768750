"""Fast parts of ``mmdx batch``: cohort columns, run-state transitions, progress output, pseudonyms."""

from __future__ import annotations

import io
import json
import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest
from rich.console import Console

from app.batch import cohort, pseudonyms
from app.batch.progress import LogReporter, RichReporter, reporter_for
from core.codes import LOINC, UCUM
from core.errors import StoreError
from core.records import Measurement
from store import runs
from store.db import Database
from store.schema import BatchItemState

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def _m(code, value, unit, site=None):
    return Measurement(code=code, value=value, unit=unit, site=site)


def test_measurement_columns_are_named_with_their_unit_and_per_lead_values_stay_out():
    row = cohort.empty_row(0, "study", "a")
    qrs, rate, ms, per_min = LOINC.QRS_DURATION, LOINC.HEART_RATE, UCUM.MS, UCUM.BPM
    cohort.fill_measurements(row, [_m(qrs, 96, ms), _m(rate, 61, per_min), _m(qrs, 120, ms, site="V1")])
    assert row["measurements"] == {"ecg_qrs_duration_ms": 96.0, "ecg_heart_rate_per_min": 61.0}
    other = cohort.empty_row(1, "file", "b")
    table = cohort.cohort_table([other, row])  # rows come back in item order, columns in a fixed order
    assert table.column("item").to_pylist() == [0, 1]
    assert table.column_names[: len(cohort.BASE_COLUMNS)] == list(cohort.BASE_COLUMNS)
    assert table.column_names[len(cohort.BASE_COLUMNS) :] == ["ecg_heart_rate_per_min", "ecg_qrs_duration_ms"]
    assert cohort.units_of(table) == {"ecg_heart_rate_per_min": "/min", "ecg_qrs_duration_ms": "ms"}
    assert table.column("ecg_qrs_duration_ms").to_pylist() == [96.0, None]


@pytest.fixture
def db(tmp_path: Path):
    d = Database(f"sqlite:///{tmp_path}/m.db")
    d.migrate()
    yield d
    d.dispose()


def test_an_item_finishes_once(db: Database):
    with db.session() as s:
        runs.create_run(s, "r1", "src", "out", {}, NOW)
        added = runs.add_items(
            s, "r1", [runs.NewItem(0, "a", "study"), runs.NewItem(1, "b", "file", error="broken")], NOW
        )
        assert added == 2
        assert runs.add_items(s, "r1", [runs.NewItem(0, "a", "study")], NOW) == 0  # re-planning adds nothing
    with db.session() as s:
        (item,) = runs.items(s, "r1", BatchItemState.PENDING)
        assert runs.finish_item(s, item.id, row={"item": 0}, fhir=None, error=None, seconds=1.0, now=NOW)
        assert not runs.finish_item(s, item.id, row={"item": 0}, fhir=None, error=None, seconds=1.0, now=NOW)
        with pytest.raises(StoreError, match="exactly one"):
            runs.finish_item(s, item.id, row=None, fhir=None, error=None, seconds=1.0, now=NOW)
    with db.session(readonly=True) as s:
        c = runs.counts(s, "r1")
        assert (c[BatchItemState.DONE], c[BatchItemState.FAILED], c[BatchItemState.PENDING]) == (1, 1, 0)
    with pytest.raises(StoreError):
        runs.NewItem(-1, "x", "study")


def test_rich_progress_on_a_terminal_and_log_lines_otherwise(caplog: pytest.LogCaptureFixture):
    buf = io.StringIO()
    term = Console(file=buf, force_terminal=True, width=150)
    rep = reporter_for(term)
    assert isinstance(rep, RichReporter)
    rep.start(4, 1, 0)
    rep.advance(True, 101)
    rep.advance(False, 102)
    rep.stop()
    text = buf.getvalue()
    assert "3/4" in text and "failed 1" in text and "w0:1 w1:1" in text
    assert isinstance(reporter_for(Console(file=io.StringIO(), force_terminal=False)), LogReporter)
    caplog.set_level(logging.INFO, logger="mmdx.batch")
    log_rep = LogReporter(every_s=0.0)
    log_rep.start(3, 0, 0)
    log_rep.advance(True, 1)
    log_rep.stop()
    lines = [r.getMessage() for r in caplog.records if r.name == "mmdx.batch"]
    assert lines[0].startswith("batch: 0 done, 0 failed, 3 remaining of 3")
    assert lines[-1].startswith("batch: 1 done, 0 failed, 2 remaining of 3") and "items/s" in lines[-1]


def test_pseudonyms_are_keyed_and_dates_move_together():
    row = cohort.empty_row(3, "study", "Smith_John/ecg.dcm")
    row.update(patient_id="MRN1", study_instance_uid="1.2.3.4.5", acquisition_date="2020-02-29")
    row["manifest"] = {"patient": "MRN1", "name": "Smith^John", "study_date": "2020-03-01", "label": "x"}
    a, b = pseudonyms.deidentify_row(row, "k1"), pseudonyms.deidentify_row(row, "k2")
    assert a["patient_id"] == a["manifest"]["patient"] != b["patient_id"]
    assert a["source_path"] == "item-3" and "name" not in a["manifest"] and a["manifest"]["label"] == "x"
    days = pseudonyms.shift_days("k1", "MRN1")
    assert days != 0 and abs(days) <= pseudonyms.MAX_SHIFT_DAYS
    from datetime import date, timedelta

    assert a["acquisition_date"] == (date(2020, 2, 29) + timedelta(days=days)).isoformat()
    assert a["manifest"]["study_date"] == (date(2020, 3, 1) + timedelta(days=days)).isoformat()
    assert (
        a["study_instance_uid"] != "1.2.3.4.5"
        and a["study_instance_uid"] == pseudonyms.deidentify_row(row, "k1")["study_instance_uid"]
    )
    bundle = {
        "resourceType": "Bundle",
        "entry": [
            {"resource": {"resourceType": "Patient", "id": "p1", "identifier": [{"value": "MRN1"}],
                          "name": [{"family": "Smith"}], "birthDate": "1950-01-01", "gender": "male"}},
            {"resource": {"resourceType": "Observation", "subject": {"reference": "Patient/p1", "display": "Smith"},
                          "effectiveDateTime": "2020-02-29T10:00:00Z"}},
        ],
    }  # fmt: skip
    out = json.loads(pseudonyms.deidentify_fhir(json.dumps(bundle), "k1"))
    patient, obs = (e["resource"] for e in out["entry"])
    assert patient == {"resourceType": "Patient", "id": pseudonyms.pseudonym("k1", "MRN1"), "gender": "male"}
    assert obs["subject"] == {"reference": f"Patient/{patient['id']}"}
    assert obs["effectiveDateTime"].startswith((date(2020, 2, 29) + timedelta(days=days)).isoformat())


def test_limit_walks_only_the_first_items_of_a_large_tree(tmp_path: Path):
    """--limit N reads the files of N items and stops: the rest of the tree is never scanned."""
    import time

    from app.batch.sources import first_items
    from tests.app.batch_inputs import wfdb_copies

    wfdb_copies(tmp_path / "a", 3)  # a/wfdb_00000/1.dat, 1.hea, ...
    (tmp_path / "a" / "x_notes.txt").write_text("x\n", encoding="utf-8")
    junk = tmp_path / "z"
    junk.mkdir()
    for i in range(20_000):
        (junk / f"{i:06d}.dcm").write_bytes(b"not a DICOM file")
    t0 = time.perf_counter()
    picked = first_items(tmp_path, 2)
    took = time.perf_counter() - t0
    # the .dat comes first by name, and belongs to its .hea's recording: one item, both files
    assert sorted(str(p.relative_to(tmp_path)) for p in picked) == [
        "a/wfdb_00000/1.dat", "a/wfdb_00000/1.hea", "a/wfdb_00001/1.dat", "a/wfdb_00001/1.hea",
    ]  # fmt: skip
    assert took < 5, f"{took:.1f} s: the walk did not stop"
    more = first_items(tmp_path, 5)
    assert [p.name for p in more[-2:]] == ["x_notes.txt", "000000.dcm"]  # a refused file is an item too
    assert len(more) == 8


def test_workers_default_is_the_usable_cores_and_help_says_so(monkeypatch: pytest.MonkeyPatch):
    from typer.testing import CliRunner

    from app.cli import cli
    from app.commands.batch import usable_cores

    assert usable_cores() == len(__import__("os").sched_getaffinity(0))
    monkeypatch.setenv("COLUMNS", "250")  # Rich wraps the help in a box at the terminal width
    res = CliRunner().invoke(cli, ["batch", "--help"])
    assert res.exit_code == 0
    assert f"usable cores: {usable_cores()} here" in " ".join(res.output.split())
