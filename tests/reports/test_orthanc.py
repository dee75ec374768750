"""A real PACS accepts and serves what mmdx builds: STOW-RS into Orthanc (loopback, free port, stopped by PID).

The objects must land in the source study as new series (SR, SC, DOC), QIDO must find them, and the
PDF Orthanc hands back from the Encapsulated PDF must be the report's PDF byte for byte.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from reports.outputs import build_outputs
from tests.reports import helpers as h

ORTHANC = "/usr/sbin/Orthanc"
BOUNDARY = "mmdx-stow-boundary"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture()
def orthanc(tmp_path: Path) -> Iterator[str]:
    if not Path(ORTHANC).exists() or shutil.which("storescu") is None:
        if os.environ.get("CI"):
            pytest.fail("Orthanc is required in CI")
        pytest.skip("Orthanc not installed")
    port = _free_port()
    config = {
        "Name": "REPORTS-TEST-PACS",
        "StorageDirectory": str(tmp_path / "db"),
        "IndexDirectory": str(tmp_path / "db"),
        "Plugins": ["/usr/share/orthanc/plugins/libOrthancDicomWeb.so"],
        "HttpPort": port,
        "DicomPort": _free_port(),
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": True, "Host": "127.0.0.1"},
    }
    cfg = tmp_path / "orthanc.json"
    cfg.write_text(json.dumps(config))
    with (tmp_path / "orthanc.log").open("wb") as log:
        proc = subprocess.Popen([ORTHANC, str(cfg)], stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"Orthanc exited with {proc.returncode}")
            try:
                if httpx.get(f"{url}/system", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("Orthanc did not start")
            time.sleep(0.1)
        yield url
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)


def _stow(url: str, parts: list[bytes]) -> dict:
    body = (
        b"".join(f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode() + p + b"\r\n" for p in parts)
        + f"--{BOUNDARY}--\r\n".encode()
    )
    r = httpx.post(
        f"{url}/dicom-web/studies",
        content=body,
        headers={
            "Content-Type": f'multipart/related; type="application/dicom"; boundary={BOUNDARY}',
            "Accept": "application/dicom+json",
        },
        timeout=60,
    )
    r.raise_for_status()
    return r.json()


@pytest.mark.integration
def test_orthanc_stores_and_serves_every_dicom_artefact(orthanc: str) -> None:
    out = build_outputs(h.chest_report(), h.chest_study(), h.context(), images=(h.chest_key_image(),))
    dicom = [a for a in out.artefacts if a.is_dicom]
    result = _stow(orthanc, [a.data for a in dicom])
    failed = result.get("00081198", {}).get("Value", [])  # FailedSOPSequence (present but empty on success)
    assert not failed, f"Orthanc refused: {failed}"
    stored = {item["00081155"]["Value"][0] for item in result["00081199"]["Value"]}  # ReferencedSOPSequence
    assert stored == {a.sop_instance_uid for a in dicom}

    series = httpx.get(f"{orthanc}/dicom-web/studies/{h.CR_STUDY_UID}/series", timeout=30).json()
    modalities = sorted(s["00080060"]["Value"][0] for s in series)
    assert modalities == ["DOC", "OT", "SR", "SR"]
    sr = httpx.get(f"{orthanc}/dicom-web/studies/{h.CR_STUDY_UID}/series", params={"Modality": "SR"}, timeout=30)
    assert len(sr.json()) == 2

    pdf_artefact = out.get("report_pdf.dcm")
    found = httpx.post(
        f"{orthanc}/tools/find",
        json={"Level": "Instance", "Query": {"SOPInstanceUID": pdf_artefact.sop_instance_uid}},
        timeout=30,
    ).json()
    (orthanc_id,) = found
    served = httpx.get(f"{orthanc}/instances/{orthanc_id}/pdf", timeout=30).content
    assert served == out.get("report.pdf").data
