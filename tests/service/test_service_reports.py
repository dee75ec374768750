"""The report API through the real app: worklist order, versions, downloads, edit/sign/amend/withdraw, audit."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from app.api.auth import Role
from app.cli import cli
from store import audit, outbox
from tests.service.conftest import CHEST_CR, STAT_ECG, Service


def test_worklist_stat_first_with_reason(svc: Service) -> None:
    rows = svc.client.get("/api/v1/worklist", headers=svc.headers(Role.CLINICIAN)).json()
    assert [r["study_instance_uid"] for r in rows] == [STAT_ECG, CHEST_CR]
    stat = rows[0]
    assert stat["priority"] == "stat" and "QT" in stat["priority_reason"]
    assert stat["modalities"] == ["ECG"] and stat["report_status"] == "preliminary"
    assert rows[1]["body_parts"] == ["CHEST"]
    only_cr = svc.client.get("/api/v1/worklist?modality=CR", headers=svc.headers(Role.CLINICIAN)).json()
    assert [r["study_instance_uid"] for r in only_cr] == [CHEST_CR]
    stat_only = svc.client.get("/api/v1/worklist?priority=stat", headers=svc.headers(Role.CLINICIAN)).json()
    assert [r["study_instance_uid"] for r in stat_only] == [STAT_ECG]


def test_study_search_and_detail(svc: Service) -> None:
    h = svc.headers(Role.TECHNOLOGIST)
    found = svc.client.get("/api/v1/studies?modality=ECG", headers=h).json()
    assert [s["study_instance_uid"] for s in found] == [STAT_ECG]
    assert svc.client.get("/api/v1/studies?status=final", headers=h).json() == []
    detail = svc.client.get(f"/api/v1/studies/{STAT_ECG}", headers=h).json()
    assert detail["series"][0]["modality"] == "ECG" and detail["reports"][0]["status"] == "preliminary"
    assert "fhir" in detail["reports"][0]["formats"] and "pdf" in detail["reports"][0]["formats"]
    assert svc.client.get("/api/v1/studies/1.2.3.4", headers=h).status_code == 404


def test_report_json_and_downloads_are_audited(svc: Service) -> None:
    h = svc.headers(Role.CLINICIAN, sub="dr.a")
    report = svc.client.get(f"/api/v1/studies/{STAT_ECG}/reports/latest", headers=h).json()
    assert report["status"] == "preliminary" and report["version"] == 1
    fhir = svc.client.get(f"/api/v1/studies/{STAT_ECG}/reports/1/fhir", headers=h)
    assert fhir.status_code == 200 and json.loads(fhir.content)["resourceType"] == "Bundle"
    pdf = svc.client.get(f"/api/v1/studies/{STAT_ECG}/reports/1/pdf", headers=h)
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    sr = svc.client.get(f"/api/v1/studies/{STAT_ECG}/reports/1/sr", headers=h)
    assert sr.status_code == 200 and sr.content[128:132] == b"DICM"
    with svc.ctx.db.session() as session:
        actions = [(e.actor, e.action) for e in audit.history(session, STAT_ECG)]
    assert ("user:dr.a", "report.view") in actions
    assert actions.count(("user:dr.a", "report.export")) == 3


def test_edit_sign_amend_withdraw(svc: Service) -> None:
    h = svc.headers(Role.CLINICIAN, sub="dr.b")
    url = f"/api/v1/studies/{STAT_ECG}/report"
    r = svc.client.post(f"{url}/edit", json={"sections": {"19005-8": "QT prolongation, check drugs."}}, headers=h)
    assert r.status_code == 200 and r.json()["version"] == 2 and r.json()["status"] == "preliminary"
    stale = svc.client.post(f"{url}/sign", json={"expected_version": 1}, headers=h)
    assert stale.status_code == 409
    signed = svc.client.post(f"{url}/sign", json={"expected_version": 2}, headers=h)
    assert signed.status_code == 200, signed.text
    assert signed.json() == {
        "study_instance_uid": STAT_ECG,
        "version": 3,
        "status": "final",
        "outbox_items": 2,  # fhir + pdf to the folder destination
    }
    again = svc.client.post(f"{url}/sign", json={}, headers=h)
    assert again.status_code == 422 and "preliminary" in again.json()["detail"]
    latest = svc.client.get(f"/api/v1/studies/{STAT_ECG}/reports/latest", headers=h).json()
    assert latest["signature"]["clinician"]["identifier"] == "dr.b"
    assert any("check drugs" in s["text"] for s in latest["sections"])
    amended = svc.client.post(f"{url}/amend", json={"sections": {"19005-8": "QT 520 ms."}}, headers=h).json()
    assert amended["status"] == "amended" and amended["version"] == 4
    gone = svc.client.post(f"{url}/withdraw", json={"reason": "wrong patient"}, headers=h).json()
    assert gone["status"] == "entered-in-error"
    worklist = svc.client.get("/api/v1/worklist", headers=h).json()
    assert STAT_ECG not in [r["study_instance_uid"] for r in worklist]  # no longer waiting
    with svc.ctx.db.session() as session:
        items = outbox.list_items(session, study_uid=STAT_ECG)
        trail = [(e.actor, e.action, e.origin) for e in audit.history(session, STAT_ECG)]
    assert {(i.report_version, i.kind) for i in items} >= {(3, "fhir"), (3, "pdf"), (5, "fhir")}
    for action in ("report.edit", "report.sign", "report.amend", "report.withdraw"):
        assert ("user:dr.b", action, "testclient") in trail
    versions = svc.client.get(f"/api/v1/studies/{STAT_ECG}/reports", headers=h).json()
    assert [v["status"] for v in versions] == ["preliminary", "preliminary", "final", "amended", "entered-in-error"]
    assert versions[2]["signed_by"] == "Dr Test"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"sections": {"99999-9": "x"}}, 422),  # unknown section code
        ({"sections": {}}, 422),  # an edit that changes nothing
        ({"sections": "nope"}, 422),
        ({"unexpected": 1}, 422),
    ],
)
def test_bad_edits_are_422(svc: Service, body: object, code: int) -> None:
    r = svc.client.post(f"/api/v1/studies/{STAT_ECG}/report/edit", json=body, headers=svc.headers(Role.CLINICIAN))
    assert r.status_code == code


def test_outbox_api_and_retry(svc: Service) -> None:
    svc.client.post(f"/api/v1/studies/{CHEST_CR}/report/sign", json={}, headers=svc.headers(Role.CLINICIAN))
    h = svc.headers(Role.INTEGRATOR, sub="int.1")
    body = svc.client.get("/api/v1/outbox", headers=h).json()
    assert body["counts"]["pending"] == len(body["items"]) == 6  # fhir + pdf of each preliminary, and the signed
    signed = svc.client.get(f"/api/v1/outbox?study_uid={CHEST_CR}", headers=h).json()["items"]
    assert {(i["report_version"], i["kind"]) for i in signed} == {(1, "fhir"), (1, "pdf"), (2, "fhir"), (2, "pdf")}
    item = signed[0]["id"]
    assert svc.client.post(f"/api/v1/outbox/{item}/retry", headers=h).status_code == 409  # only dead items
    with svc.ctx.db.session() as session:
        outbox.mark_dead(session, item, "refused", svc.ctx.clock.now())
    assert svc.client.post(f"/api/v1/outbox/{item}/retry", headers=h).status_code == 200
    assert svc.client.post("/api/v1/outbox/999999/retry", headers=h).status_code == 404
    log = svc.client.get("/api/v1/audit?action=outbox.retry", headers=svc.headers(Role.ADMIN)).json()
    assert log[0]["actor"] == "user:int.1" and log[0]["origin"] == "testclient"


def test_cli_worklist_and_audit(svc: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    svc.client.get(f"/api/v1/studies/{STAT_ECG}/reports/latest", headers=svc.headers(Role.CLINICIAN, sub="dr.c"))
    for key, value in {
        "MMDX_DATABASE__URL": f"sqlite:///{svc.root / 'mmdx.db'}",
        "MMDX_STORAGE__STORE_DIR": str(svc.root / "store"),
        "MMDX_STORAGE__OUT_DIR": str(svc.root / "out"),
        "MMDX_STORAGE__QUARANTINE_DIR": str(svc.root / "q"),
    }.items():
        monkeypatch.setenv(key, value)
    wl = CliRunner().invoke(cli, ["worklist"])
    assert wl.exit_code == 0, wl.output
    lines = wl.output.splitlines()
    stat_line = next(i for i, line in enumerate(lines) if STAT_ECG[:20] in line)
    cr_line = next(i for i, line in enumerate(lines) if CHEST_CR[:20] in line)
    assert stat_line < cr_line and "stat" in lines[stat_line] and "user:dr.c" in lines[stat_line]
    log = CliRunner().invoke(cli, ["audit", "--action", "report.view"])
    assert log.exit_code == 0 and "user:dr.c" in log.output and "report.view" in log.output
