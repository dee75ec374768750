"""A real PACS accepts and serves what mmdx builds: STOW-RS into Orthanc (loopback, free port, stopped by PID).

The objects must land in the source study as new series (SR, SC, DOC), QIDO must find them, and the
PDF Orthanc hands back from the Encapsulated PDF must be the report's PDF byte for byte.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from reports.outputs import build_outputs
from tests.peers import free_port, start_orthanc, stop_pid
from tests.reports import helpers as h

BOUNDARY = "mmdx-stow-boundary"


@pytest.fixture()
def orthanc(tmp_path: Path) -> Iterator[str]:
    peer, proc = start_orthanc(tmp_path, mmdx_port=free_port())
    try:
        yield peer.url
    finally:
        stop_pid(proc)


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
