"""Uploads over HTTP: multipart files (DICOM and ECG, detected by content) and DICOMweb STOW-RS.

Both land in a private temporary folder and go through :func:`app.inputs.collect`, the
same path as ``mmdx run``: objects are copied into the store and indexed,
the rest is quarantined with its reason; a worker analyses the studies once
they are stable.  Nothing is analysed inside the request.
"""

from __future__ import annotations

import email.parser
import email.policy
import re
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, UploadFile
from fastapi.responses import JSONResponse

from app.api.auth import UPLOAD, Principal
from app.api.deps import Ctx, client_origin, require
from app.context import AppContext
from app.inputs import Collected, collect
from store import audit

router = APIRouter(prefix="/api/v1", tags=["upload"])
Uploader = Annotated[Principal, Depends(require(UPLOAD))]

_SAFE = re.compile(r"[^A-Za-z0-9._-]")


def _safe_name(name: str | None, i: int) -> str:
    """The upload's base name without any path or odd character (WFDB pairs need their names kept)."""
    base = _SAFE.sub("_", Path(name or "").name)[:100].lstrip(".")
    return base or f"upload-{i}"


def _check_size(ctx: AppContext, request: Request) -> None:
    limit = ctx.settings.service.max_upload_mb * 1024 * 1024
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise HTTPException(status_code=413, detail=f"upload larger than service.max_upload_mb ({limit} bytes)")


def _ingest(
    ctx: AppContext, files: list[tuple[str, bytes]], principal: Principal, request: Request, how: str
) -> Collected:
    spool = Path(ctx.settings.storage.store_dir) / ".upload"
    spool.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f"{uuid.uuid4().hex}-", dir=spool))
    try:
        for name, data in files:
            (folder / name).write_bytes(data)
        collected = collect(ctx, [folder])
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    with ctx.db.session() as session:
        for uid in collected.study_uids:
            audit.record(
                session,
                actor=principal.actor,
                action="upload",
                study_uid=uid,
                detail=f"{how}: {len(files)} file(s), {collected.new} new object(s)",
                at=ctx.clock.now(),
                origin=client_origin(request),
            )
    return collected


def _summary(collected: Collected) -> dict[str, Any]:
    return {
        "studies": list(collected.study_uids),
        "new": collected.new,
        "duplicate": collected.duplicate,
        "conflict": collected.conflict,
        "rejected": [{"file": Path(r.path).name, "reason": r.reason} for r in collected.rejected],
    }


@router.post("/upload", summary="Upload DICOM and ECG files (multipart/form-data, field 'files')")
async def upload(files: list[UploadFile], ctx: Ctx, principal: Uploader, request: Request) -> JSONResponse:
    _check_size(ctx, request)
    if not files:
        raise HTTPException(status_code=422, detail="files: expected at least one file")
    named: list[tuple[str, bytes]] = []
    seen: set[str] = set()
    for i, f in enumerate(files):
        name = _safe_name(f.filename, i)
        if name in seen:
            name = f"{i}-{name}"
        seen.add(name)
        named.append((name, await f.read()))
    collected = _ingest(ctx, named, principal, request, "upload")
    return JSONResponse(_summary(collected), status_code=200 if collected.readable else 422)


def _related_parts(content_type: str, body: bytes) -> list[bytes]:
    """The bodies of a multipart/related message (STOW-RS request)."""
    if not content_type.lower().startswith("multipart/related") or "boundary=" not in content_type.lower():
        raise HTTPException(
            status_code=415, detail='STOW-RS expects multipart/related; type="application/dicom" with a boundary'
        )
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    if not message.is_multipart():
        raise HTTPException(status_code=400, detail="STOW-RS body: no multipart parts found")
    parts = []
    for part in message.iter_parts():
        if part.get_content_type() != "application/dicom":
            raise HTTPException(
                status_code=415, detail=f"STOW-RS part of type {part.get_content_type()!r}: expected application/dicom"
            )
        payload = part.get_payload(decode=True)
        if isinstance(payload, bytes) and payload:
            parts.append(payload)
    if not parts:
        raise HTTPException(status_code=400, detail="STOW-RS body: no application/dicom part")
    return parts


@router.post(
    "/dicomweb/studies",
    summary="STOW-RS: store DICOM instances (multipart/related; type=application/dicom)",
    openapi_extra={
        "requestBody": {
            "content": {"multipart/related": {"schema": {"type": "string", "format": "binary"}}},
            "required": True,
        }
    },
)
async def stow(ctx: Ctx, principal: Uploader, request: Request) -> JSONResponse:
    _check_size(ctx, request)
    parts = _related_parts(request.headers.get("content-type", ""), await request.body())
    collected = _ingest(ctx, [(f"part-{i}.dcm", p) for i, p in enumerate(parts)], principal, request, "STOW-RS")
    body: dict[str, Any] = {}
    if collected.rejected:
        body["00081198"] = {  # FailedSOPSequence: the reason per failed part (PS3.18 10.5.3)
            "vr": "SQ",
            "Value": [{"00081197": {"vr": "US", "Value": [0xC000]}} for _ in collected.rejected],
        }
    if collected.readable:
        body["00081190"] = {"vr": "UR", "Value": [f"/api/v1/studies/{uid}" for uid in collected.study_uids]}
    # 200: all stored; 202: some failed; 409: none stored (PS3.18 table 10.5.3-1)
    status = 200 if not collected.rejected else 202 if collected.readable else 409
    return JSONResponse(body, status_code=status, media_type="application/dicom+json")
