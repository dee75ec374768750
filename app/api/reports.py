"""``/api/v1``: studies, report versions and their downloads, the sign-off actions, the worklist."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from app.api.auth import SIGN_REPORTS, VIEW_REPORTS, VIEW_STATUS, Principal
from app.api.deps import Ctx, client_origin, require
from app.api.view_log import ViewLog
from app.context import AppContext
from app.review import NoReport, ReviewAction, ReviewConflict, apply_action
from core.errors import ReportError
from core.records import PriorityLevel, ReportKind, ReportStatus
from store import audit, index, jobs
from store import reports as report_store
from store.search import WouldWait, report_payload_bytes, search_studies
from store.worklist import WorklistRow, change_token, worklist

router = APIRouter(prefix="/api/v1", tags=["reports"])

Viewer = Annotated[Principal, Depends(require(VIEW_REPORTS))]
StatusViewer = Annotated[Principal, Depends(require(VIEW_STATUS))]
Signer = Annotated[Principal, Depends(require(SIGN_REPORTS))]

#: Download formats -> artefact kind of the stored version.
FORMATS: dict[str, str] = {
    "fhir": "fhir",
    "pdf": "pdf",
    "html": "html",
    "sr": "sr",
    "dicom-pdf": "dicom-pdf",
    "sc": "sc",
    "oru": "oru",
}


def _iso(value: datetime | date | None) -> str | None:
    return value.isoformat() if value is not None else None


def worklist_json(row: WorklistRow, now: datetime) -> dict[str, Any]:
    return {
        "study_instance_uid": row.study_uid,
        "accession_number": row.accession_number,
        "patient_name": row.patient_name,
        "study_datetime": _iso(row.study_datetime),
        "description": row.description,
        "modalities": list(row.modalities),
        "body_parts": list(row.body_parts),
        "priority": row.priority.name.lower(),
        "priority_reason": row.priority_reason,
        "report_status": row.status.value,
        "report_kind": row.kind.value,
        "report_version": row.version,
        "waiting_since": _iso(row.waiting_since),
        "waiting_s": round(row.waiting_s(now)),
        "opened_by": row.opened_by,
        "ai_status": "failed" if row.model_errors else None,
        "model_errors": list(row.model_errors),
    }


def _check_uid(uid: str) -> str:
    if not uid or len(uid) > 64 or not all(p.isdigit() for p in uid.split(".")):
        raise HTTPException(status_code=404, detail="not a study instance UID")
    return uid


@router.get("/studies", summary="Search studies")
def studies(
    ctx: Ctx,
    _: StatusViewer,
    patient_id: Annotated[str | None, Query(max_length=64)] = None,
    accession: Annotated[str | None, Query(max_length=64)] = None,
    modality: Annotated[str | None, Query(max_length=16)] = None,
    date_from: date | None = None,
    date_to: date | None = None,
    status: ReportStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> list[dict[str, Any]]:
    """Studies matching every filter, most recently received first (no demographics)."""
    with ctx.db.session(readonly=True) as session:
        found = search_studies(
            session,
            patient_id=patient_id,
            accession=accession,
            modality=modality,
            date_from=date_from,
            date_to=date_to,
            status=status,
            limit=limit,
            offset=offset,
        )
    return [
        {
            "study_instance_uid": s.study_uid,
            "accession_number": s.accession_number,
            "study_datetime": _iso(s.study_datetime),
            "description": s.description,
            "modalities": list(s.modalities),
            "series": s.series,
            "instances": s.instances,
            "report_status": s.report_status.value if s.report_status else None,
            "report_version": s.report_version,
            "first_received_at": _iso(s.first_received_at),
        }
        for s in found
    ]


@router.get("/studies/{study_uid}", summary="Study detail: series, instances, analysis status, report versions")
def study_detail(study_uid: str, ctx: Ctx, _: StatusViewer) -> dict[str, Any]:
    uid = _check_uid(study_uid)
    with ctx.db.session(readonly=True) as session:
        study = index.load_study(session, uid)
        if study is None:
            raise HTTPException(status_code=404, detail=f"study {uid} is not in the index")
        job_rows = jobs.list_jobs(session, study_uid=uid, limit=20)
        history = report_store.report_history(session, uid)
    return {
        "study_instance_uid": uid,
        "accession_number": study.accession_number,
        "study_datetime": _iso(study.study_datetime),
        "description": study.description,
        "modalities": list(study.modalities),
        "series": [
            {
                "series_instance_uid": s.series_instance_uid,
                "modality": s.modality,
                "body_part": s.body_part,
                "description": s.description,
                "instances": len(s.instances),
            }
            for s in study.series
        ],
        "jobs": [
            {
                "id": j.id,
                "state": j.state.value,
                "attempts": j.attempts,
                "created_at": _iso(j.created_at),
                "started_at": _iso(j.started_at),
                "finished_at": _iso(j.finished_at),
                "duration_s": (j.finished_at - j.started_at).total_seconds()
                if j.finished_at and j.started_at
                else None,
                "error": j.error,
            }
            for j in job_rows
        ],
        "reports": [_version_json(v) for v in history],
    }


def _version_json(v: report_store.ReportVersionInfo) -> dict[str, Any]:
    return {
        "version": v.version,
        "status": v.status.value,
        "kind": v.kind.value,
        "priority": v.priority.level.name.lower(),
        "priority_reason": v.priority.reason,
        "signed_by": v.signed_by_name,
        "signed_at": _iso(v.signed_at),
        "created_at": _iso(v.created_at),
        "formats": sorted({k for k, kind in FORMATS.items() if any(a.kind == kind for a in v.artefacts)} | {"json"}),
    }


@router.get("/studies/{study_uid}/reports", summary="Every version of the study's report")
def report_versions(study_uid: str, ctx: Ctx, _: Viewer) -> list[dict[str, Any]]:
    uid = _check_uid(study_uid)
    with ctx.db.session(readonly=True) as session:
        return [_version_json(v) for v in report_store.report_history(session, uid)]


def _audit(ctx: Ctx, principal: Principal, request: Request, action: str, uid: str, detail: str) -> None:
    audit.append(
        ctx.db,
        actor=principal.actor,
        action=action,
        study_uid=uid,
        detail=detail,
        at=ctx.clock.now(),
        origin=client_origin(request),
    )


@router.get("/studies/{study_uid}/reports/{version}", summary="One report version as JSON ('latest' for the newest)")
async def report_json(
    study_uid: str,
    version: Annotated[str, PathParam(pattern=r"^(latest|[0-9]{1,6})$")],
    ctx: Ctx,
    principal: Viewer,
    request: Request,
) -> Response:
    uid = _check_uid(study_uid)
    if not (version == "latest" or (version.isdigit() and 0 < int(version) < 10**6)):
        raise HTTPException(status_code=404, detail="version: expected 'latest' or a number")
    wanted = None if version == "latest" else int(version)
    try:  # on the loop: a WAL read does not wait for writers, and a thread hop (GIL handover) costs more
        found = report_payload_bytes(ctx.db, uid, wanted, wait=False)
    except WouldWait:
        found = await run_in_threadpool(report_payload_bytes, ctx.db, uid, wanted)
    if found is None:
        raise HTTPException(status_code=404, detail=f"study {uid} has no report version {version}")
    view_log: ViewLog = request.app.state.view_log
    await view_log.write(
        actor=principal.actor,
        action="report.view",
        study_uid=uid,
        detail=f"version {found[0]} (json)",
        at=ctx.clock.now(),
        origin=client_origin(request),
    )
    # the stored JSON is report_to_json's output: sent as stored, not parsed and re-encoded
    return Response(found[1], media_type="application/json")


@router.get(
    "/studies/{study_uid}/reports/{version}/{fmt}",
    summary="Download a report version: fhir, pdf, html, sr, dicom-pdf, sc, oru",
    response_class=FileResponse,
)
def report_download(
    study_uid: str,
    version: Annotated[int, PathParam(ge=1, le=10**6)],
    fmt: Literal["fhir", "pdf", "html", "sr", "dicom-pdf", "sc", "oru"],
    ctx: Ctx,
    principal: Viewer,
    request: Request,
) -> FileResponse:
    uid = _check_uid(study_uid)
    with ctx.db.session(readonly=True) as session:
        history = {v.version: v for v in report_store.report_history(session, uid)}
    info = history.get(version)
    if info is None:
        raise HTTPException(status_code=404, detail=f"study {uid} has no report version {version}")
    found = [a for a in info.artefacts if a.kind == FORMATS[fmt]]
    if not found or not Path(found[0].path).is_file():
        raise HTTPException(status_code=404, detail=f"version {version} has no {fmt} artefact on disk")
    art = found[0]
    _audit(ctx, principal, request, "report.export", uid, f"version {version} ({fmt})")
    return FileResponse(art.path, media_type=art.media_type, filename=f"{uid}_v{version}_{Path(art.path).name}")


class EditRequest(BaseModel):
    """New section texts by LOINC code (an empty text removes a section)."""

    model_config = ConfigDict(extra="forbid")
    sections: dict[Annotated[str, Field(max_length=16)], Annotated[str, Field(max_length=20_000)]] = Field(
        default_factory=dict, max_length=20
    )
    expected_version: int | None = Field(None, ge=1, le=10**6, description="409 when the newest version differs")


class SignRequest(EditRequest):
    """Sign the draft (optionally with last edits)."""


class WithdrawRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: Annotated[str, Field(min_length=1, max_length=2000)]
    expected_version: int | None = Field(None, ge=1, le=10**6)


def _act(
    ctx: Ctx,
    uid: str,
    action: ReviewAction,
    principal: Principal,
    request: Request,
    *,
    sections: dict[str, str] | None = None,
    reason: str | None = None,
    expected_version: int | None = None,
) -> dict[str, Any]:
    uid = _check_uid(uid)
    try:
        result = apply_action(
            ctx,
            uid,
            action,
            principal.clinician(),
            actor=principal.actor,
            origin=client_origin(request),
            sections=sections,
            reason=reason,
            expected_version=expected_version,
        )
    except NoReport as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from None
    except ReviewConflict as exc:
        raise HTTPException(status_code=409, detail=str(exc)) from None
    except ReportError as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from None
    request.app.state.worklist_cache.clear()
    return {
        "study_instance_uid": uid,
        "version": result.report.version,
        "status": result.report.status.value,
        "outbox_items": result.outbox_rows,
    }


@router.post("/studies/{study_uid}/report/edit", summary="Edit the draft: a new preliminary version")
def edit(study_uid: str, body: EditRequest, ctx: Ctx, principal: Signer, request: Request) -> dict[str, Any]:
    return _act(
        ctx,
        study_uid,
        ReviewAction.EDIT,
        principal,
        request,
        sections=body.sections,
        expected_version=body.expected_version,
    )


@router.post("/studies/{study_uid}/report/sign", summary="Sign the draft: a new final version, delivered")
def sign(study_uid: str, body: SignRequest, ctx: Ctx, principal: Signer, request: Request) -> dict[str, Any]:
    return _act(
        ctx,
        study_uid,
        ReviewAction.SIGN,
        principal,
        request,
        sections=body.sections or None,
        expected_version=body.expected_version,
    )


@router.post("/studies/{study_uid}/report/amend", summary="Amend a signed report: a new amended version")
def amend(study_uid: str, body: EditRequest, ctx: Ctx, principal: Signer, request: Request) -> dict[str, Any]:
    return _act(
        ctx,
        study_uid,
        ReviewAction.AMEND,
        principal,
        request,
        sections=body.sections,
        expected_version=body.expected_version,
    )


@router.post("/studies/{study_uid}/report/withdraw", summary="Withdraw: a new entered-in-error version")
def withdraw(study_uid: str, body: WithdrawRequest, ctx: Ctx, principal: Signer, request: Request) -> dict[str, Any]:
    return _act(
        ctx,
        study_uid,
        ReviewAction.WITHDRAW,
        principal,
        request,
        reason=body.reason,
        expected_version=body.expected_version,
    )


@router.get("/worklist", summary="Reports to read: stat, urgent, routine, then longest waiting")
async def get_worklist(
    ctx: Ctx,
    _: Viewer,
    request: Request,
    status: Annotated[list[ReportStatus] | None, Query()] = None,
    all_statuses: bool = False,
    modality: Annotated[str | None, Query(max_length=16)] = None,
    priority: Literal["stat", "urgent", "routine"] | None = None,
    kind: ReportKind | None = None,
    limit: Annotated[int, Query(ge=1, le=2000)] = 500,
) -> Response:
    cache: WorklistCache = request.app.state.worklist_cache
    now = ctx.clock.now()
    query: dict[str, Any] = {
        "statuses": None if all_statuses else tuple(status or [ReportStatus.PRELIMINARY]),
        "modality": modality,
        "priority": PriorityLevel[priority.upper()] if priority else None,
        "kind": kind,
        "limit": limit,
    }
    # a list kept and checked within the last second is answered here; else the thread pool reads the database
    body = cache.fresh_body(now, **query)
    if body is None:
        async with cache.refreshing:  # one request re-checks the database; the others then find it fresh
            body = cache.fresh_body(now, **query)
            if body is None:
                body = await run_in_threadpool(lambda: cache.body(ctx, now, **query))
    return Response(body, media_type="application/json")


@dataclass
class _Kept:
    token: tuple[int | None, ...]
    checked: float
    rows: list[WorklistRow]
    docs: list[dict[str, Any]]
    body: tuple[int, bytes] | None = None


class WorklistCache:
    """The last worklist of each query, kept while the database has not changed.

    Within ``TTL_S`` of the last check a kept list is answered as it is; after that one cheap statement
    (:func:`store.worklist.change_token`) says whether to re-read.  The serialized answer is kept per second
    (waiting times count in seconds).  This process's own writes clear it (:meth:`clear`); another process's
    show within ``TTL_S``.
    """

    TTL_S = 1.0

    def __init__(self) -> None:
        self._kept: dict[tuple[object, ...], _Kept] = {}
        #: Held (on the event loop) by the one API request re-checking an expired list.
        self.refreshing = asyncio.Lock()

    def clear(self) -> None:
        self._kept.clear()

    @staticmethod
    def _key(query: dict[str, Any]) -> tuple[object, ...]:
        return tuple(sorted(query.items()))

    def fresh_body(self, now: datetime, **query: Any) -> bytes | None:
        """The answer when a list is kept and was checked within ``TTL_S`` (no database); else None."""
        kept = self._kept.get(self._key(query))
        if kept is None or time.monotonic() - kept.checked >= self.TTL_S:
            return None
        return self._serialized(kept, now)

    def entry(self, ctx: AppContext, now: datetime, **query: Any) -> _Kept:
        key = self._key(query)
        kept = self._kept.get(key)
        mono = time.monotonic()
        if kept is not None and mono - kept.checked < self.TTL_S:
            return kept
        with ctx.db.session(readonly=True) as session:
            token = change_token(session)
            if kept is not None and kept.token == token:
                kept.checked = mono
                return kept
            rows = worklist(session, now, **query)
        kept = _Kept(token, mono, rows, [worklist_json(r, now) for r in rows])
        if len(self._kept) > 64:
            self._kept.clear()
        self._kept[key] = kept
        return kept

    def rows(self, ctx: AppContext, now: datetime, **query: Any) -> list[WorklistRow]:
        return self.entry(ctx, now, **query).rows

    def body(self, ctx: AppContext, now: datetime, **query: Any) -> bytes:
        return self._serialized(self.entry(ctx, now, **query), now)

    @staticmethod
    def _serialized(kept: _Kept, now: datetime) -> bytes:
        second = int(now.timestamp())
        if kept.body is not None and kept.body[0] == second:
            return kept.body[1]
        docs = [{**d, "waiting_s": round(r.waiting_s(now))} for d, r in zip(kept.docs, kept.rows, strict=True)]
        data = json.dumps(docs, ensure_ascii=False, separators=(",", ":")).encode()
        kept.body = (second, data)
        return data
