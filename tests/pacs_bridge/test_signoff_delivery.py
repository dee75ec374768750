"""Sign, amend, withdraw through the app's review path (what the API and pages call): each new version's artefacts
enter the outbox and reach every peer kind (PACS by C-STORE, FHIR server, RIS by MLLP, a share), in order."""

from __future__ import annotations

from pathlib import Path

import httpx
import yaml

from app.context import AppContext
from app.inputs import collect
from app.pipeline import process_study
from app.review import ReviewAction, apply_action
from core.config import load_settings
from core.identifiers import FixedClock
from core.records import Clinician
from pacs_bridge.loop import OutboxLoop
from store import outbox
from store.db import Database
from store.outbox import OutboxState
from tests.pacs_bridge.conftest import REPO, T0
from tests.pacs_bridge.test_orthanc import new_instances
from tests.peers import free_port, start_fhir_server, start_mllp_listener, start_orthanc, stop_pid


def test_each_transition_reaches_each_peer_kind(tmp_path: Path) -> None:
    orthanc, pacs = start_orthanc(tmp_path / "orthanc", mmdx_port=free_port())
    fhir = start_fhir_server(tmp_path / "fhir")
    ris = start_mllp_listener(tmp_path / "mllp", "AA")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "database": {"url": f"sqlite:///{tmp_path / 'db.sqlite'}"},
                "storage": {
                    "store_dir": str(tmp_path / "store"),
                    "out_dir": str(tmp_path / "out"),
                    "quarantine_dir": str(tmp_path / "q"),
                    "fsync": False,
                },
                "destinations": {
                    "pacs": {
                        "type": "dicom",
                        "host": "127.0.0.1",
                        "port": orthanc.dicom_port,
                        "ae_title": "ORTHANC",
                        "artefacts": ["sr", "sc", "dicom-pdf"],
                    },
                    "ehr": {"type": "fhir", "url": fhir.url, "artefacts": ["fhir"], "send_preliminary": False},
                    "ris": {"type": "mllp", "host": "127.0.0.1", "port": ris.port, "artefacts": ["oru"]},
                    "share": {"type": "folder", "path": str(tmp_path / "share"), "artefacts": ["pdf"]},
                },
            }
        )
    )
    settings = load_settings(cfg, use_project_defaults=False)
    ctx = AppContext(settings, Database.from_settings(settings), FixedClock(T0, step_s=1))
    try:
        (uid,) = collect(ctx, [REPO / "samples" / "ecg_dicom"]).study_uids
        process_study(ctx, uid)
        loop = OutboxLoop(ctx.db, settings, ctx.clock)
        doctor = Clinician("Reader^Ann", "RAD-7", "cardiologist")

        def deliver() -> None:
            while not loop.run_once().idle:
                pass
            with ctx.db.session() as s:
                items = outbox.list_items(s)
            assert {i.state for i in items} == {OutboxState.DELIVERED}, [(i.destination, i.last_error) for i in items]

        deliver()  # the preliminary: PACS, RIS and share, not the EHR (send_preliminary: false)
        assert fhir.search("DiagnosticReport") == []
        apply_action(ctx, uid, ReviewAction.SIGN, doctor, actor="ann")
        deliver()
        assert [r["status"] for r in fhir.search("DiagnosticReport")] == ["final"]
        apply_action(
            ctx, uid, ReviewAction.AMEND, doctor, actor="ann", sections={"19005-8": "Addendum: no change on review."}
        )
        deliver()
        apply_action(ctx, uid, ReviewAction.WITHDRAW, doctor, actor="ann", reason="wrong patient")
        deliver()
        with ctx.db.session() as s:
            items = outbox.list_items(s)
        per_dest = {
            d: sorted({i.report_version for i in items if i.destination == d}) for d in ("pacs", "ehr", "ris", "share")
        }
        assert per_dest == {"pacs": [1, 2, 3, 4], "ehr": [2, 3, 4], "ris": [1, 2, 3, 4], "share": [1, 2, 3, 4]}
        assert [m["result_status"] for m in ris.received()] == ["P", "F", "C", "W"]
        statuses = {r["status"] for r in fhir.search("DiagnosticReport")}
        assert "entered-in-error" in statuses
        # the withdrawal sent a rejection note (KOS) to the PACS; every object arrived once
        pacs_items = [i for i in items if i.destination == "pacs"]
        assert len(new_instances(orthanc)) == len(pacs_items)
        kos = [
            i
            for i in httpx.get(f"{orthanc.url}/series", params={"expand": ""}, timeout=10).json()
            if i["MainDicomTags"].get("Modality") == "KO"
        ]
        assert len(kos) == 1
        assert len(list((tmp_path / "share" / uid).glob("v*/report.pdf"))) == 4
    finally:
        ctx.db.dispose()
        stop_pid(pacs)
        stop_pid(fhir.proc)
        stop_pid(ris.proc)
