"""``mmdx batch`` over manifests (PNG/JPEG research images, ECG paths, study UIDs), report tables, and ``--deid``."""

from __future__ import annotations

import base64
import csv
import io
import json
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pydicom
import pytest
from PIL import Image as PILImage
from typer.testing import CliRunner

from app.batch import BatchOptions, run_batch
from app.batch.images import image_model_input
from app.cli import cli
from app.context import AppContext
from core.errors import ConfigError
from core.identifiers import derive_uid
from tests.app.batch_inputs import dicom_ecg_copies, wfdb_copies

pytestmark = pytest.mark.slow


def _write_png(path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    PILImage.fromarray(rng.integers(0, 255, (64, 48), dtype=np.uint8)).save(path)


def _rows(out: Path) -> list[dict]:
    return sorted(pq.read_table(out / "cohort.parquet").to_pylist(), key=lambda r: r["item"])


def test_manifest_of_research_images_and_ecgs(workdir: Path):
    data = workdir / "data"
    (data / "images").mkdir(parents=True)
    _write_png(data / "images" / "00000001_000.png", 1)
    PILImage.fromarray(np.full((40, 30, 3), 128, np.uint8)).save(data / "images" / "00000002_000.jpg")
    wfdb_copies(data / "ecg", 1)
    manifest = data / "manifest.csv"
    with manifest.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "patient", "age", "sex", "view", "label"])
        w.writerow(["images/00000001_000.png", "p1", "61", "M", "PA", "Cardiomegaly"])
        w.writerow(["images/00000002_000.jpg", "p2", "45", "F", "AP", "No Finding"])
        w.writerow(["ecg/wfdb_00000/1.hea", "p3", "", "", "", ""])
        w.writerow(["images/missing.png", "p4", "", "", "", ""])
    ctx = AppContext.create()
    result = run_batch(ctx, BatchOptions(str(manifest), workdir / "out", workers=1))
    assert result.counts["done"] == 3 and result.counts["failed"] == 1
    rows = _rows(workdir / "out")
    png, jpg, ecg, missing = rows
    assert (png["kind"], png["modality"], png["view"], png["patient_sex"], png["patient_age_years"]) == (
        "image", "DX", "PA", "M", 61.0,
    )  # fmt: skip
    assert png["manifest_label"] == "Cardiomegaly" and png["manifest_patient"] == "p1"
    assert png["study_instance_uid"].startswith("2.25.")
    assert png["errors"].startswith("No radiology model is configured")  # said plainly, not an empty row
    assert jpg["view"] == "AP" and jpg["status"] == "done"
    assert ecg["kind"] == "study" and ecg["ecg_qrs_duration_ms"] is not None and ecg["manifest_patient"] == "p3"
    assert missing["status"] == "failed" and missing["errors"] == "no such file"
    # nothing of the images was indexed as if it were DICOM
    with ctx.db.session(readonly=True) as session:
        from sqlalchemy import text

        assert session.execute(text("select count(*) from studies")).scalar() == 1


def test_image_model_input_takes_its_header_from_the_manifest(tmp_path: Path):
    _write_png(tmp_path / "a.png", 3)
    inp = image_model_input(tmp_path / "a.png", {"view": "lateral", "age": "70", "sex": "F"}, "2.25")
    assert inp.modality == "DX" and inp.body_part == "CHEST"
    assert inp.images[0].view_position == "LL" and inp.images[0].pixels.shape == (64, 48)
    assert inp.context.patient_age_years == 70.0 and inp.context.patient_sex == "F"
    with pytest.raises(ConfigError.__mro__[1], match="manifest column 'age'"):
        image_model_input(tmp_path / "a.png", {"age": "seventy"}, "2.25")


def test_parquet_manifest_of_study_uids_and_report_table(workdir: Path):
    ctx = AppContext.create()
    src = workdir / "in"
    dicom_ecg_copies(src, 1)
    run_batch(ctx, BatchOptions(str(src), workdir / "first"))  # indexes the study
    uid = derive_uid("2.25", "batch-test", "study", "0")
    manifest = workdir / "uids.parquet"
    pq.write_table(pa.table({"study_uid": [uid, "1.2.3.4.5"], "report_text": ["No pneumothorax.", ""]}), manifest)
    run_batch(ctx, BatchOptions(str(manifest), workdir / "out"))
    rows = _rows(workdir / "out")
    assert rows[0]["status"] == "done" and rows[0]["study_instance_uid"] == uid
    assert json.loads(rows[0]["labels"])["pneumothorax"] == "absent"
    assert rows[1]["status"] == "failed" and "not in the index" in rows[1]["errors"]

    reports = workdir / "reports.csv"
    reports.write_text("id,report_text\nr1,Moderate cardiomegaly. No pleural effusion.\nr2,\n", encoding="utf-8")
    run_batch(ctx, BatchOptions(str(reports), workdir / "labels"))
    r1, r2 = _rows(workdir / "labels")
    labels = json.loads(r1["labels"])
    assert labels["cardiomegaly"] == "present" and labels["effusion"] == "absent"
    assert r1["model_ids"] == "mmdx-report-labeler"
    assert r2["status"] == "failed" and r2["errors"] == "empty report text"


PHI = ("DOE", "JANE", "MRN778899", "19650412", "1965-04-12", "03028041970546", "Galliera", "13002689")


def _pdf_text(data: bytes) -> str:
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(data))
    return "\n".join(page.extract_text() or "" for page in reader.pages) + json.dumps(
        {k: str(v) for k, v in (reader.metadata or {}).items()}
    )


def _all_text(out: Path) -> dict[str, str]:
    """Every output file as text: its bytes, and decoded where they are packed: Parquet (values and metadata),
    PDF (page text and metadata), a PDF inside DICOM (Encapsulated Document), zlib in DICOM/FHIR JSON base64."""
    texts = {}
    for f in sorted(p for p in out.rglob("*") if p.is_file()):
        data = f.read_bytes()
        raw = data.decode("latin-1")
        if f.suffix == ".parquet":
            t = pq.read_table(f)
            raw += json.dumps(t.to_pylist()) + str(t.schema)
        elif data.startswith(b"%PDF"):
            raw += _pdf_text(data)
        elif f.suffix == ".dcm":
            ds = pydicom.dcmread(f)
            raw += str(ds)  # every element, in sequences too
            if "EncapsulatedDocument" in ds:
                raw += _pdf_text(bytes(ds.EncapsulatedDocument))
        elif f.suffix in (".json", ".ndjson"):
            for b64 in re.findall(r'"data": ?"([A-Za-z0-9+/=]+)"', raw):  # FHIR attachments
                blob = base64.b64decode(b64)
                raw += _pdf_text(blob) if blob.startswith(b"%PDF") else blob.decode("utf-8", "replace")
        texts[str(f.relative_to(out))] = raw
    return texts


def test_deid_outputs_carry_no_source_identifier(workdir: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("MMDX_DEID__SALT", "project-key-for-the-test")
    src = workdir / "in"
    dicom_ecg_copies(src / "dicom", 2, patient=("DOE^JANE", "MRN778899", "19650412"))
    wfdb_copies(src / "wfdb", 1)
    (src / "broken_DOE_JANE.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00")
    manifest = workdir / "m.csv"
    manifest.write_text(
        "path,patient,study_date,name\n"
        f"{src}/dicom/ecg_00000.dcm,MRN778899,2013-01-25,DOE^JANE\n"
        f"{src}/dicom/ecg_00001.dcm,MRN778899,2013-01-25,DOE^JANE\n",
        encoding="utf-8",
    )
    ctx = AppContext.create()
    plain = run_batch(ctx, BatchOptions(str(src), workdir / "plain"))
    assert plain.counts["done"] == 3, plain.summary["failures"]
    assert any("MRN778899" in t for t in _all_text(workdir / "plain").values())  # the check can fail

    result = run_batch(ctx, BatchOptions(str(src), workdir / "deid", deid=True, reports=True))
    assert result.counts == plain.counts
    run_batch(ctx, BatchOptions(str(manifest), workdir / "deid_manifest", deid=True, reports=True))
    plain_reports = run_batch(ctx, BatchOptions(str(src), workdir / "plain_reports", reports=True))
    assert plain_reports.counts["done"] == 3
    plain_texts = _all_text(workdir / "plain_reports")
    for kind in ("report.pdf", "report_pdf.dcm", "report.html", "sr_ecg.dcm", "bundle.json"):
        # the check can fail: the same files of the plain run carry the patient (PDF text and DICOM included)
        assert any(k.endswith(kind) and "MRN778899" in t for k, t in plain_texts.items()), kind
    uids = [derive_uid("2.25", "batch-test", "study", str(i)) for i in range(2)]
    names = ["ecg_00000", "ecg_00001", "wfdb_00000", "broken_DOE_JANE", str(src)]
    for out in (workdir / "deid", workdir / "deid_manifest"):
        texts = _all_text(out)
        assert any(k.startswith("fhir/") for k in texts) and "cohort.parquet" in texts
        reports = {k.rsplit("/", 1)[-1] for k in texts if k.startswith("studies/")}
        assert {"report.pdf", "report_pdf.dcm", "report.html", "sr_ecg.dcm", "bundle.json", "oru.hl7"} <= reports
        assert not any(k.startswith("studies/") and k.rsplit("/", 1)[-1].startswith("sc_") for k in texts)
        for name, text in texts.items():
            for needle in (*PHI, *uids, *names):
                found = re.search(rf"(?<![A-Za-z0-9]){re.escape(needle)}(?![A-Za-z0-9])", text, re.IGNORECASE)
                assert found is None, f"{needle!r} in {out.name}/{name}"
    rows = _rows(workdir / "deid")
    plain_rows = _rows(workdir / "plain")
    dicom = [(p, d) for p, d in zip(plain_rows, rows, strict=True) if p["source_path"].startswith("dicom/")]
    # one patient: the same pseudonym, the same (non-zero) date shift for both studies
    assert len({d["patient_id"] for _, d in dicom}) == 1 and dicom[0][1]["patient_id"].startswith("P")
    shifts = {
        (np.datetime64(d["acquisition_date"]) - np.datetime64(p["acquisition_date"])).astype(int) for p, d in dicom
    }
    assert len(shifts) == 1 and shifts != {0}
    # measurements and statements are kept
    assert [d["ecg_qrs_duration_ms"] for _, d in dicom] == [p["ecg_qrs_duration_ms"] for p, _ in dicom]
    # the report files carry the row's pseudonym, mapped UID and shifted date, and the PS3.15 stamp
    first = dicom[0][1]
    sr = pydicom.dcmread(workdir / "deid" / "studies" / first["study_instance_uid"] / "v1" / "sr_ecg.dcm")
    assert str(sr.PatientID) == first["patient_id"] and sr.StudyInstanceUID == first["study_instance_uid"]
    assert sr.PatientIdentityRemoved == "YES" and "BirthDate" not in str(sr.get("PatientBirthDate", ""))
    pdf = _pdf_text((workdir / "deid" / "studies" / first["study_instance_uid"] / "v1" / "report.pdf").read_bytes())
    assert first["patient_id"] in pdf
    # stable within the project key: the manifest run pseudonymises the patient the same way
    manifest_rows = _rows(workdir / "deid_manifest")
    assert manifest_rows[0]["manifest_patient"] == manifest_rows[1]["manifest_patient"]
    assert "manifest_name" not in manifest_rows[0]


def test_deid_needs_a_project_key(workdir: Path):
    ctx = AppContext.create()
    with pytest.raises(ConfigError, match="deid.salt"):
        run_batch(ctx, BatchOptions(str(workdir), workdir / "out", deid=True, reports=True))


def test_cli_dry_run_and_errors(workdir: Path):
    src = workdir / "in"
    wfdb_copies(src, 2)
    runner = CliRunner()
    res = runner.invoke(cli, ["batch", str(src), "--out", str(workdir / "out"), "--dry-run"])
    assert res.exit_code == 0, res.output
    assert "study" in res.output and "2" in res.output
    res = runner.invoke(cli, ["batch", str(workdir / "nope"), "--out", str(workdir / "out")])
    assert res.exit_code == 2 and "no such file or folder" in " ".join(res.output.split())


@pytest.mark.integration
def test_pacs_query_pulls_through_ingest_and_runs(workdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from tests.peers import free_port, start_orthanc, stop_pid

    orthanc, proc = start_orthanc(tmp_path / "orthanc", mmdx_port=free_port())
    try:
        for path in dicom_ecg_copies(tmp_path / "pacs_in", 2):
            orthanc.upload(path)
        monkeypatch.setenv("MMDX_PULL__DICOMWEB_URL", f"{orthanc.url}/dicom-web")
        ctx = AppContext.create()
        query = BatchOptions("pacs", workdir / "dry", date_from="2013-01-01", modality="ECG")
        dry = run_batch(ctx, query, dry_run=True)
        assert dry.planned == {"study": 2}
        with ctx.db.session(readonly=True) as session:
            from sqlalchemy import text

            assert session.execute(text("select count(*) from studies")).scalar() == 0  # nothing pulled
        none = run_batch(ctx, BatchOptions("pacs", workdir / "none", date_from="2014-01-01"), dry_run=True)
        assert none.planned == {}
        result = run_batch(
            ctx, BatchOptions("pacs", workdir / "out", date_from="2013-01-01", date_to="2013-12-31", modality="ECG")
        )
        assert result.counts["done"] == 2
        rows = _rows(workdir / "out")
        uids = sorted(derive_uid("2.25", "batch-test", "study", str(i)) for i in range(2))
        assert [r["study_instance_uid"] for r in rows] == uids
        assert all(r["source_path"] == f"pacs:{r['study_instance_uid']}" and r["ecg_qrs_duration_ms"] for r in rows)
        with pytest.raises(ConfigError, match="--from"):
            run_batch(ctx, BatchOptions("pacs", workdir / "bad", date_from="last year"), dry_run=True)
    finally:
        stop_pid(proc)


@pytest.mark.integration
def test_pacs_query_by_cfind_and_cmove_into_our_scp(workdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from ingest.scp import StorageServer
    from tests.peers import free_port, start_orthanc, stop_pid

    mmdx_port = free_port()
    orthanc, proc = start_orthanc(tmp_path / "orthanc", mmdx_port=mmdx_port)
    server = None
    try:
        for path in dicom_ecg_copies(tmp_path / "pacs_in", 3):
            orthanc.upload(path)
        for key, value in (("AE_TITLE", orthanc.ae_title), ("HOST", "127.0.0.1"), ("PORT", str(orthanc.dicom_port))):
            monkeypatch.setenv(f"MMDX_PULL__DIMSE_PEER__{key}", value)
        ctx = AppContext.create()
        dry = run_batch(
            ctx, BatchOptions("pacs", workdir / "dry", date_from="2013-01-01", modality="ECG"), dry_run=True
        )
        assert dry.planned == {"study": 3}  # C-FIND (no pull.dicomweb_url: auto is dimse)
        none = BatchOptions("pacs", workdir / "none", modality="CT", via="dimse")
        assert run_batch(ctx, none, dry_run=True).planned == {}
        # no SCP listening for the C-MOVE: each study is a failed item with its reason, the run completes
        lost = run_batch(ctx, BatchOptions("pacs", workdir / "lost", date_to="2013-12-31", limit=1))
        assert lost.counts["failed"] == 1 and "pull failed: C-MOVE" in _rows(workdir / "lost")[0]["errors"]

        server = StorageServer(ctx.settings, ctx.db, port=mmdx_port)
        server.start()
        result = run_batch(
            ctx, BatchOptions("pacs", workdir / "out", date_from="2013-01-01", modality="ECG", via="dimse", limit=2)
        )
        assert result.counts["done"] == 2 and result.counts["items"] == 2
        rows = _rows(workdir / "out")
        uids = sorted(derive_uid("2.25", "batch-test", "study", str(i)) for i in range(3))[:2]
        assert [r["study_instance_uid"] for r in rows] == uids
        assert all(r["source_path"] == f"pacs:{r['study_instance_uid']}" and r["ecg_qrs_duration_ms"] for r in rows)
        with pytest.raises(ConfigError, match="--via: expected one of auto, dicomweb, dimse, cget"):
            run_batch(ctx, BatchOptions("pacs", workdir / "bad", via="wado-uri"), dry_run=True)
        server.stop()
        server = None
        # C-GET: the objects come back on the batch's own association, no SCP of ours listening
        got = run_batch(ctx, BatchOptions("pacs", workdir / "cget", date_from="2013-01-01", via="cget"))
        assert got.counts["done"] == 3 and got.counts["failed"] == 0
        assert [r["study_instance_uid"] for r in _rows(workdir / "cget")][:2] == uids
    finally:
        if server is not None:
            server.stop()
        stop_pid(proc)


def test_chosen_analyses_and_models_run_alone_and_are_recorded(workdir: Path):
    from app.plan import NOT_CHOSEN
    from tests.app.test_ecg_model import _weights

    weights = _weights(workdir / "ecg.pt", "AFIB")
    cfg = workdir / "site.yaml"
    spec = {"backend": "ecg_cnn", "path": str(weights)}
    cfg.write_text(
        json.dumps(
            {
                "models": {"backends": {"ecg-a": spec, "ecg-b": spec}},
                "model_routing": [{"kind": "ecg", "models": ["ecg-a", "ecg-b"]}],
            }
        )
    )
    src = workdir / "in"
    wfdb_copies(src, 1)
    _write_png(src / "zz.png", 5)
    ctx = AppContext.create(cfg)
    with pytest.raises(ConfigError, match=r"--model ecg-c: not a configured model; configured: ecg-a, ecg-b"):
        run_batch(ctx, BatchOptions(str(src), workdir / "bad", models=("ecg-a", "ecg-c")), dry_run=True)
    with pytest.raises(ConfigError, match=r"--analyses xray: .*ecg, images, labeler"):
        BatchOptions(str(src), workdir / "bad", analyses=("ecg", "xray"))

    run_batch(ctx, BatchOptions(str(src), workdir / "a", analyses=("ecg",), models=("ecg-a",)))
    ecg, png = _rows(workdir / "a")
    assert "ecg-a" in ecg["model_ids"].split(";") and "ecg-b" not in ecg["model_ids"]
    assert ecg["ecg_qrs_duration_ms"] is not None
    assert png["status"] == "not chosen" and "'images'" in png["errors"]
    summary = json.loads((workdir / "a" / "summary.json").read_text())
    assert summary["options"]["analyses"] == ["ecg"] and summary["options"]["models"] == ["ecg-a"]
    assert "Analyses: ecg; models: ecg-a" in (workdir / "a" / "summary.md").read_text()

    run_batch(ctx, BatchOptions(str(src), workdir / "both", analyses=("ecg",)))
    ecg_both, _ = _rows(workdir / "both")
    assert {"ecg-a", "ecg-b"} <= set(ecg_both["model_ids"].split(";"))

    run_batch(ctx, BatchOptions(str(src), workdir / "img", analyses=("images",)))
    ecg_skipped, png_run = _rows(workdir / "img")
    assert ecg_skipped["status"] == "no report" and NOT_CHOSEN in ecg_skipped["errors"]
    assert ecg_skipped.get("ecg_qrs_duration_ms") is None  # no ECG was measured: no such column
    assert png_run["status"] == "done"

    res = CliRunner().invoke(
        cli, ["batch", str(src), "--out", str(workdir / "cli"), "--dry-run", "--model", "nope", "--config", str(cfg)]
    )
    assert res.exit_code == 2 and "configured: ecg-a, ecg-b" in " ".join(res.output.split())
