"""The FHIR bundle rules as a table: every rule named, with criteria, and report rules quiet without a report."""

from __future__ import annotations

from reports.fhir_rules import BUNDLE_RULES, BundleView
from reports.fhir_validate import check_bundle


def test_every_rule_is_named_once_and_says_its_criteria() -> None:
    names = [r.name for r in BUNDLE_RULES]
    assert len(names) == len(set(names))
    assert all(len(r.criteria) > 20 for r in BUNDLE_RULES)


def test_a_bundle_without_a_report_gets_the_structural_issues_only() -> None:
    issues = check_bundle({"resourceType": "Bundle", "type": "batch", "entry": [{"fullUrl": "x"}]})
    assert [i.path for i in issues] == ["Bundle.type", "Bundle.entry[0]", "Bundle.entry"]
    assert issues[-1].message == "expected exactly one DiagnosticReport, got 0"


def test_the_view_infers_the_stage_from_the_status_unless_asked() -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"resource": {"resourceType": "DiagnosticReport", "status": "final"}}],
    }
    assert BundleView.of(bundle).stage == "signed"
    assert BundleView.of(bundle, "draft").stage == "draft"
    assert any("not allowed at stage 'draft'" in i.message for i in check_bundle(bundle, stage="draft"))
