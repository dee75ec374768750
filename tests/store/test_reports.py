"""Report versions + artefacts + outbox rows as one unit of work."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from core.errors import StoreError
from core.records import PriorityLevel, ReportStatus
from store import audit, outbox
from store.db import Database
from store.reports import (
    ArtefactRecord,
    latest_report,
    report_history,
    save_report_version,
)
from store.schema import ArtefactRow, OutboxRow, ReportVersionRow
from tests.store.conftest import T0, sha
from tests.store.reports_helpers import STUDY, full_report

ROUTES = {"sr": ["pacs"], "fhir": ["ehr"], "pdf": ["pacs", "archive"]}


def artefacts(version: int = 1) -> list[ArtefactRecord]:
    return [
        ArtefactRecord("sr", Path(f"/var/out/v{version}/sr.dcm"), sha(f"sr{version}"), "application/dicom", "1.2.9.1"),
        ArtefactRecord(
            "fhir", Path(f"/var/out/v{version}/bundle.json"), sha(f"fhir{version}"), "application/fhir+json"
        ),
        ArtefactRecord("pdf", Path(f"/var/out/v{version}/report.pdf"), sha(f"pdf{version}"), "application/pdf"),
        ArtefactRecord("html", Path(f"/var/out/v{version}/report.html"), sha(f"html{version}"), "text/html"),
    ]


def _counts(db: Database) -> tuple[int | None, ...]:
    with db.session() as s:
        return tuple(s.scalar(select(func.count(t.id))) for t in (ReportVersionRow, ArtefactRow, OutboxRow))


def test_save_and_load_latest(db):
    with db.session() as s:
        rid = save_report_version(s, full_report(1), artefacts(1), ROUTES, T0)
    assert isinstance(rid, int)
    assert _counts(db) == (1, 4, 4)  # html has no route: stored, not delivered
    with db.session() as s:
        assert latest_report(s, STUDY) == full_report(1)
        assert latest_report(s, "1.2.3") is None
        items = outbox.due(s, T0, 10)
    assert sorted((i.kind, i.destination) for i in items) == [
        ("fhir", "ehr"),
        ("pdf", "archive"),
        ("pdf", "pacs"),
        ("sr", "pacs"),
    ]
    sr = next(i for i in items if i.kind == "sr")
    assert sr.sop_instance_uid == "1.2.9.1" and sr.study_uid == STUDY and sr.report_version == 1
    assert sr.path == Path("/var/out/v1/sr.dcm") and sr.sha256 == sha("sr1") and sr.attempts == 0


def test_versions_must_follow_each_other(db):
    with db.session() as s:
        save_report_version(s, full_report(1), [], ROUTES, T0)
    with db.session() as s, pytest.raises(StoreError, match=r"version 3 cannot be stored, expected version 2"):
        save_report_version(s, full_report(3, signed=True), [], ROUTES, T0)
    with db.session() as s, pytest.raises(StoreError, match=r"version 1 cannot be stored, expected version 2"):
        save_report_version(s, full_report(1), [], ROUTES, T0)
    signed = full_report(2, signed=True)
    with db.session() as s:
        save_report_version(s, signed, artefacts(2), ROUTES, T0 + timedelta(hours=1))
    with db.session() as s:
        assert latest_report(s, STUDY) == signed
        history = report_history(s, STUDY)
    assert [(h.version, h.status) for h in history] == [(1, ReportStatus.PRELIMINARY), (2, ReportStatus.FINAL)]
    assert history[0].signed_by_name is None and history[0].artefacts == ()
    assert history[1].signed_by_name == "Dr A Reader" and history[1].signed_by_id == "RAD-17"
    assert history[1].signed_at == signed.signature.signed_at  # type: ignore[union-attr]
    assert [a.kind for a in history[1].artefacts] == ["sr", "fhir", "pdf", "html"]
    assert history[1].priority.level is PriorityLevel.URGENT


def test_failed_outbox_insert_stores_nothing(db):
    """UNIQUE(artefact, destination) fails on the last insert: the version and artefacts go too."""
    bad_routes = {"sr": ["pacs"], "pdf": ["archive", "archive"]}
    with pytest.raises(StoreError, match=r"version 1 was not stored: a constraint failed"), db.session() as s:
        audit.record(s, actor="worker:w1", action="analysed", study_uid=STUDY, detail="v1", at=T0)
        save_report_version(s, full_report(1), artefacts(1), bad_routes, T0)
    assert _counts(db) == (0, 0, 0)
    with db.session() as s:
        assert latest_report(s, STUDY) is None
        assert audit.history(s, STUDY) == []  # the whole unit rolled back, the audit line too
    with db.session() as s:  # and the same version can then be stored cleanly
        save_report_version(s, full_report(1), artefacts(1), ROUTES, T0)
    assert _counts(db) == (1, 4, 4)


def test_error_later_in_the_unit_rolls_back_the_version(db):
    with pytest.raises(RuntimeError, match="delivery routing crashed"), db.session() as s:
        save_report_version(s, full_report(1), artefacts(1), ROUTES, T0)
        raise RuntimeError("delivery routing crashed")
    assert _counts(db) == (0, 0, 0)


def test_artefact_record_validation():
    with pytest.raises(StoreError, match=r"ArtefactRecord.kind: expected one of .* got 'docx'"):
        ArtefactRecord("docx", Path("/x"), sha("x"), "application/msword")
    with pytest.raises(StoreError, match="sha256 of /x: expected 64 hex digits"):
        ArtefactRecord("pdf", Path("/x"), "abc", "application/pdf")


def test_report_on_postgresql(pg_db):
    with pg_db.session() as s:
        save_report_version(s, full_report(1), artefacts(1), ROUTES, T0)
    with pytest.raises(StoreError, match="constraint failed"), pg_db.session() as s:
        save_report_version(s, full_report(2, signed=True), artefacts(2), {"sr": ["a", "a"]}, T0)
    with pg_db.session() as s:
        assert latest_report(s, STUDY) == full_report(1)
        assert len(outbox.due(s, T0, 100)) == 4
