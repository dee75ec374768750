"""Metrics, readiness, uploads (multipart and STOW-RS with dicomweb-client against uvicorn on loopback)."""

from __future__ import annotations

import pydicom
from dicomweb_client.api import DICOMwebClient
from prometheus_client.parser import text_string_to_metric_families

from app.api.auth import Role
from tests.service.conftest import REPO, STAT_ECG, Service
from tests.service.live import serve

CT_UID = "1.2.826.0.1.3680043.9.4245.1760717064491086528325869788156915668"  # samples/ct_head


def test_metrics(svc: Service) -> None:
    h = svc.headers(Role.INTEGRATOR)
    svc.client.get("/api/v1/outbox", headers=h)
    assert svc.client.get("/metrics", headers=svc.headers(Role.CLINICIAN)).status_code == 403
    r = svc.client.get("/metrics", headers=h)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(r.text)}
    received = families["mmdx_received_objects"].samples[0].value
    assert received == 2  # the ECG recording and the radiograph
    depth = {s.labels["state"]: s.value for s in families["mmdx_outbox_items"].samples}
    assert depth["pending"] == 4 and depth["dead"] == 0
    assert depth["superseded"] == 0 and "sent" not in depth  # a skipped draft is counted apart from dead letters
    assert {s.labels["kind"] for s in families["mmdx_errors"].samples} >= {"analysis_failed", "delivery_dead"}
    assert "mmdx_stage_seconds" in families
    http = [s for s in families["mmdx_http_request_seconds"].samples if s.name.endswith("_count")]
    assert any(s.labels["route"] == "/api/v1/outbox" and s.value >= 1 for s in http)


def test_readyz_reports_each_check(svc: Service) -> None:
    body = svc.client.get("/readyz").json()
    assert body["status"] == "ready"
    assert set(body["checks"]) >= {"database", "storage", "models", "destinations"}
    assert body["checks"]["destinations"]["configured"] == ["share"]


def test_multipart_upload_indexes_and_rejects(svc: Service) -> None:
    h = svc.headers(Role.TECHNOLOGIST, sub="tech.1")
    files = [
        ("files", (p.name, p.read_bytes(), "application/octet-stream"))
        for p in (REPO / "samples" / "ct_head").iterdir()
    ]
    files.append(("files", ("notes.txt", b"not a study", "text/plain")))
    r = svc.client.post("/api/v1/upload", files=files, headers=h)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["studies"] == [CT_UID] and body["new"] == 4
    assert body["rejected"][0]["file"] == "notes.txt"
    again = svc.client.post("/api/v1/upload", files=files[:1], headers=h).json()
    assert again["new"] == 0 and again["duplicate"] == 1
    found = svc.client.get("/api/v1/studies?modality=CT", headers=h).json()
    assert found[0]["instances"] == 4
    assert svc.client.post("/api/v1/upload", files=files[:1], headers=svc.headers(Role.CLINICIAN)).status_code == 403
    only_text = svc.client.post("/api/v1/upload", files=files[-1:], headers=h)
    assert only_text.status_code == 422
    ecg = [
        ("files", (p.name, p.read_bytes(), "application/octet-stream"))
        for p in (REPO / "samples" / "ecg_wfdb").iterdir()
    ]
    wfdb = svc.client.post("/api/v1/upload", files=ecg, headers=h).json()  # a WFDB record: .hea + .dat, by content
    assert wfdb["studies"] == [STAT_ECG] and wfdb["duplicate"] == 1


def test_stow_rs_with_dicomweb_client(service_factory) -> None:  # type: ignore[no-untyped-def]
    svc = service_factory()
    datasets = [pydicom.dcmread(p) for p in sorted((REPO / "samples" / "ct_head").iterdir())]
    with serve(svc.client.app) as base:  # type: ignore[arg-type]
        client = DICOMwebClient(
            url=f"{base}/api/v1/dicomweb", headers={"Authorization": f"Bearer {svc.token(Role.INTEGRATOR)}"}
        )
        result = client.store_instances(datasets)
        assert f"/api/v1/studies/{CT_UID}" in str(result)
        unauthenticated = DICOMwebClient(url=f"{base}/api/v1/dicomweb")
        try:
            unauthenticated.store_instances(datasets[:1])
            raise AssertionError("STOW-RS without a token was accepted")
        except Exception as exc:
            assert "401" in str(exc)
    detail = svc.client.get(f"/api/v1/studies/{CT_UID}", headers=svc.headers(Role.TECHNOLOGIST)).json()
    assert sum(s["instances"] for s in detail["series"]) == 4
    assert STAT_ECG != CT_UID
