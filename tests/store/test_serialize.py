"""DraftReport <-> JSON round trip (hypothesis over text, numbers and instants)."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.codes import LOINC, UCUM, Code
from core.errors import StoreError
from core.records import (
    Clinician,
    DraftReport,
    Finding,
    Measurement,
    Priority,
    PriorityLevel,
    Producer,
    ProducerKind,
    ReportKind,
    ReportSection,
    ReportStatus,
    Signature,
)
from store.serialize import FORMAT, report_from_json, report_to_json
from tests.store.reports_helpers import full_report

text = st.text(min_size=1, max_size=40).filter(lambda s: s.strip() != "")
finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
zones = st.builds(lambda m: timezone(timedelta(minutes=m)), st.integers(-23 * 60, 23 * 60))
instants = st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1), timezones=zones)
codes = st.builds(Code, text, st.sampled_from(["LN", "SCT", "DCM", "MMDX"]), text)


@st.composite
def reports(draw: st.DrawFn) -> DraftReport:
    producer = Producer(
        draw(st.sampled_from(list(ProducerKind))), draw(text), draw(text), draw(st.text(min_size=1, max_size=64))
    )
    measurement = Measurement(
        draw(codes), draw(finite), UCUM.MS, site=draw(st.none() | text), method=draw(st.none() | text)
    )
    findings = tuple(
        Finding(
            concept=draw(st.none() | codes),
            text=draw(text),
            producer=producer,
            probability=draw(st.none() | st.floats(0.0, 1.0)),
            criteria=tuple(draw(st.lists(st.text(max_size=20), max_size=3))),
            measurements=(measurement,),
            critical=draw(st.booleans()),
        )
        for _ in range(draw(st.integers(0, 3)))
    )
    status = draw(st.sampled_from(list(ReportStatus)))
    signature = None
    if status in (ReportStatus.FINAL, ReportStatus.AMENDED) or (
        status is ReportStatus.ENTERED_IN_ERROR and draw(st.booleans())
    ):
        signature = Signature(Clinician(draw(text), draw(text), role=draw(text)), draw(instants))
    level = draw(st.sampled_from(list(PriorityLevel)))
    return DraftReport(
        study_instance_uid="1.2.3",
        kind=draw(st.sampled_from(list(ReportKind))),
        created_at=draw(instants),
        status=status,
        version=draw(st.integers(1, 10_000)),
        sections=tuple(ReportSection(draw(codes), draw(text)) for _ in range(draw(st.integers(0, 3)))),
        findings=findings,
        measurements=(measurement,),
        priority=Priority(level, draw(text)),
        provenance=(producer,),
        signature=signature,
        replaces_version=draw(st.none() | st.integers(1, 10_000)),
    )


@settings(max_examples=150, deadline=None)
@given(reports())
def test_round_trip_through_json_text(report: DraftReport) -> None:
    payload = json.loads(json.dumps(report_to_json(report)))
    back = report_from_json(payload)
    assert back == report
    assert back.created_at.utcoffset() == report.created_at.utcoffset()


def test_every_field_of_a_full_report_survives():
    report = full_report(2, signed=True)
    back = report_from_json(json.loads(json.dumps(report_to_json(report))))
    assert back == report
    for f in dataclasses.fields(DraftReport):
        assert getattr(back, f.name) == getattr(report, f.name), f.name
    assert back.findings[0].evidence[1].end_s == 1.25
    assert back.priority.level is PriorityLevel.URGENT


def test_payload_is_validated_again_on_load():
    payload = report_to_json(full_report())
    payload["findings"][0]["probability"] = 1.5
    with pytest.raises(StoreError, match=r"DraftReport\.findings\[0\].*probability"):
        report_from_json(payload)


def test_unknown_format_and_fields_are_refused():
    payload = report_to_json(full_report())
    with pytest.raises(StoreError, match="expected _format"):
        report_from_json({**payload, "_format": "other/9"})
    payload["colour"] = "blue"
    with pytest.raises(StoreError, match=r"unknown fields \['colour'\]"):
        report_from_json(payload)


def test_missing_field_with_default_loads_older_payloads():
    payload = report_to_json(full_report())
    del payload["replaces_version"]
    assert report_from_json(payload).replaces_version is None
    assert payload["_format"] == FORMAT


def test_wrong_type_names_the_field():
    payload = report_to_json(full_report())
    payload["version"] = "two"
    with pytest.raises(StoreError, match=r"DraftReport\.version: expected int, got str"):
        report_from_json(payload)


def test_naive_instants_round_trip_too():
    report = DraftReport(
        "1.2.3", ReportKind.ECG, datetime(2026, 1, 1, 8, 0), sections=(ReportSection(LOINC.EKG_NARRATIVE, "ok"),)
    )
    assert report_from_json(report_to_json(report)) == report
    assert report_to_json(report)["created_at"] == "2026-01-01T08:00:00"
