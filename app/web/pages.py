"""``/ui``: login, worklist (auto-refresh, stat highlighted), study review with sign-off, outbox."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from app.api.auth import OUTBOX, SIGN_REPORTS, VIEW_REPORTS, AuthError, Principal
from app.api.deps import client_origin
from app.context import AppContext
from app.review import (
    EDITABLE_SECTIONS,
    NoReport,
    ReviewAction,
    ReviewConflict,
    apply_action,
    ecg_printout,
    retry_delivery,
)
from app.web import images
from app.web.session import COOKIE, check_csrf, check_role, csrf_token, page_caller
from core.errors import IngestError, ReportError, StoreError
from core.records import DraftReport, Measurement, PriorityLevel, ReportStatus
from ingest.pixels import load_image
from store import audit, index, outbox
from store import reports as report_store
from store.schema import OutboxState

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).resolve().parent / "templates"))
router = APIRouter(prefix="/ui", include_in_schema=False)
User = Annotated[Principal, Depends(page_caller)]


def _ctx(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


def _page(request: Request, name: str, principal: Principal | None, **values: Any) -> HTMLResponse:
    csrf = csrf_token(request.app.state.csrf_key, request.cookies.get(COOKIE, ""))
    return TEMPLATES.TemplateResponse(
        request, name, {"user": principal, "csrf": csrf, "auth_on": request.app.state.verifier.enabled, **values}
    )


def _waited(seconds: float) -> str:
    minutes = int(seconds // 60)
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"


# --------------------------------------------------------------------------- login


@router.get("/login")
def login_form(request: Request, next: str = "/ui/worklist", error: str | None = None) -> HTMLResponse:
    return _page(request, "login.html", None, next=next if next.startswith("/ui/") else "/ui/worklist", error=error)


@router.post("/login")
def login(
    request: Request,
    token: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/ui/worklist",
) -> Response:
    ctx = _ctx(request)
    verifier = request.app.state.verifier
    target = next if next.startswith("/ui/") else "/ui/worklist"
    try:
        principal = verifier.verify(token.strip())
    except AuthError as exc:
        with ctx.db.session() as session:
            audit.record(
                session,
                actor="anonymous",
                action="login.failed",
                study_uid=None,
                detail=str(exc)[:200],
                at=ctx.clock.now(),
                origin=client_origin(request),
            )
        return _page(request, "login.html", None, next=target, error=str(exc))
    with ctx.db.session() as session:
        audit.record(
            session,
            actor=principal.actor,
            action="login",
            study_uid=None,
            detail="pages session",
            at=ctx.clock.now(),
            origin=client_origin(request),
        )
    response = RedirectResponse(target, status_code=303)
    if verifier.enabled:
        response.set_cookie(
            COOKIE,
            token.strip(),
            httponly=True,
            samesite="strict",
            secure=ctx.settings.auth.cookie_secure,
            path="/",
        )
    return response


@router.post("/logout")
def logout(request: Request, principal: User, csrf: Annotated[str, Form()] = "") -> Response:
    check_csrf(request, csrf)
    response = RedirectResponse("/ui/login", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


# --------------------------------------------------------------------------- worklist


def _rows(request: Request, show: str, modality: str | None) -> list[dict[str, Any]]:
    ctx = _ctx(request)
    now = ctx.clock.now()
    statuses = None if show == "all" else (ReportStatus.PRELIMINARY,)
    rows = request.app.state.worklist_cache.rows(
        ctx, now, statuses=statuses, modality=modality or None, priority=None, kind=None, limit=500
    )
    return [
        {
            "row": r,
            "priority": r.priority.name.lower(),
            "waited": _waited(r.waiting_s(now)),
            "stat": r.priority is PriorityLevel.STAT,
        }
        for r in rows
    ]


@router.get("/worklist")
def worklist_page(request: Request, principal: User, show: str = "waiting", modality: str = "") -> HTMLResponse:
    check_role(principal, VIEW_REPORTS)
    return _page(
        request,
        "worklist.html",
        principal,
        rows=_rows(request, show, modality),
        show=show,
        modality=modality,
        refresh_s=_ctx(request).settings.service.worklist_refresh_s,
    )


@router.get("/worklist/rows")
def worklist_rows(request: Request, principal: User, show: str = "waiting", modality: str = "") -> HTMLResponse:
    """The table body alone: what the page's script swaps in on each refresh."""
    check_role(principal, VIEW_REPORTS)
    return _page(request, "worklist_rows.html", principal, rows=_rows(request, show, modality))


# --------------------------------------------------------------------------- study review


def _measurement_rows(report: DraftReport) -> list[dict[str, Any]]:
    """One row per measured quantity: our value beside the acquisition device's."""
    by_code: dict[str, dict[str, Measurement]] = defaultdict(dict)
    names: dict[str, str] = {}
    for m in report.measurements:
        key = f"{m.code.value}|{m.site or ''}"
        names[key] = m.code.meaning + (f" ({m.site})" if m.site else "")
        by_code[key]["device" if (m.method or "").startswith("device") else "ours"] = m
    return [
        {
            "name": names[k],
            "ours": f"{v['ours'].value:g} {v['ours'].unit.value}" if "ours" in v else "",
            "device": f"{v['device'].value:g} {v['device'].unit.value}" if "device" in v else "",
        }
        for k, v in by_code.items()
    ]


@router.get("/studies/{study_uid}")
def study_page(study_uid: str, request: Request, principal: User, message: str | None = None) -> HTMLResponse:
    check_role(principal, VIEW_REPORTS)
    ctx = _ctx(request)
    with ctx.db.session(readonly=True) as session:
        study = index.load_study(session, study_uid)
        report = report_store.latest_report(session, study_uid)
        history = report_store.report_history(session, study_uid)
        deliveries = outbox.list_items(session, study_uid=study_uid, limit=50)
    if study is None:
        raise HTTPException(status_code=404, detail=f"study {study_uid} is not in the index")
    with ctx.db.session() as session:
        audit.record(
            session,
            actor=principal.actor,
            action="report.view",
            study_uid=study_uid,
            detail=f"review page, version {report.version if report else '-'}",
            at=ctx.clock.now(),
            origin=client_origin(request),
        )
    existing = {s.code.value for s in report.sections} if report else set()
    viewer = ctx.settings.service.viewer_url
    return _page(
        request,
        "study.html",
        principal,
        study=study,
        report=report,
        history=history,
        deliveries=deliveries,
        measurements=_measurement_rows(report) if report else [],
        key_images=[(m, uid, images.presets_for(m)) for m, uid, _ in images.key_instances(study)],
        has_ecg="ECG" in study.modalities,
        addable={c: code.meaning for c, code in EDITABLE_SECTIONS.items() if c not in existing},
        can_sign=principal.may(SIGN_REPORTS),
        viewer_url=viewer.replace("{study_uid}", study_uid) if viewer else None,
        message=message,
    )


@router.post("/studies/{study_uid}/action")
async def study_action(study_uid: str, request: Request, principal: User) -> Response:
    check_role(principal, SIGN_REPORTS)
    form = await request.form()
    check_csrf(request, str(form.get("csrf", "")))
    try:
        action = ReviewAction(str(form.get("action", "")))
    except ValueError:
        raise HTTPException(status_code=422, detail="action: expected edit, sign, amend or withdraw") from None
    sections = {
        key.removeprefix("section_"): str(value) for key, value in form.multi_items() if key.startswith("section_")
    }
    new_code, new_text = str(form.get("new_code", "")), str(form.get("new_text", "")).strip()
    if new_code and new_text:
        sections[new_code] = new_text
    expected = str(form.get("expected_version", ""))
    ctx = _ctx(request)
    with ctx.db.session(readonly=True) as session:
        latest = report_store.latest_report(session, study_uid)
    if latest is not None:  # only what changed, so "sign" without edits is a plain signature
        current = {s.code.value: s.text for s in latest.sections}
        sections = {k: v for k, v in sections.items() if current.get(k, "").strip() != v.strip()}
    try:
        result = apply_action(
            ctx,
            study_uid,
            action,
            principal.clinician(),
            actor=principal.actor,
            origin=client_origin(request),
            sections=sections or None,
            reason=str(form.get("reason", "")) or None,
            expected_version=int(expected) if expected.isdigit() else None,
        )
    except NoReport as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from None
    except (ReviewConflict, ReportError) as exc:
        return _redirect_study(study_uid, f"not done: {exc}")
    request.app.state.worklist_cache.clear()
    done = f"{action.value}: version {result.report.version} is {result.report.status.value}"
    return _redirect_study(study_uid, done + f", {result.outbox_rows} deliveries queued")


def _redirect_study(study_uid: str, message: str) -> RedirectResponse:
    return RedirectResponse(f"/ui/studies/{study_uid}?message={quote(message)}", status_code=303)


@router.get("/studies/{study_uid}/images/{sop_uid}.png")
def key_image(study_uid: str, sop_uid: str, request: Request, principal: User, preset: str = "default") -> Response:
    check_role(principal, VIEW_REPORTS)
    ctx = _ctx(request)
    with ctx.db.session(readonly=True) as session:
        study = index.load_study(session, study_uid)
    found = [(m, p) for m, uid, p in images.key_instances(study, limit=100) if uid == sop_uid] if study else []
    if not found:
        raise HTTPException(status_code=404, detail="no such key image")
    modality, path = found[0]
    if preset not in images.presets_for(modality):
        raise HTTPException(status_code=422, detail=f"preset: expected one of {images.presets_for(modality)}")
    try:
        png = images.render_png(load_image(path), preset)
    except IngestError as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from None
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=600"})


@router.get("/studies/{study_uid}/ecg.png")
def ecg_printout_png(study_uid: str, request: Request, principal: User) -> Response:
    check_role(principal, VIEW_REPORTS)
    ctx = _ctx(request)
    with ctx.db.session(readonly=True) as session:
        study = index.load_study(session, study_uid)
    png = ecg_printout(ctx, study) if study is not None else None
    if png is None:
        raise HTTPException(status_code=404, detail="the study has no readable ECG")
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=600"})


# --------------------------------------------------------------------------- outbox


@router.get("/outbox")
def outbox_page(request: Request, principal: User, state: str = "") -> HTMLResponse:
    check_role(principal, OUTBOX)
    ctx = _ctx(request)
    try:
        chosen = OutboxState(state) if state else None
    except ValueError:
        chosen = None
    with ctx.db.session(readonly=True) as session:
        items = outbox.list_items(session, state=chosen, limit=300)
        counts = outbox.counts_by_state(session)
    return _page(
        request,
        "outbox.html",
        principal,
        items=items,
        counts={s.value: n for s, n in counts.items()},
        state=state,
        now=datetime.now(UTC),
    )


@router.post("/outbox/{item_id}/retry")
def outbox_retry(item_id: int, request: Request, principal: User, csrf: Annotated[str, Form()] = "") -> Response:
    check_role(principal, OUTBOX)
    check_csrf(request, csrf)
    try:
        item = retry_delivery(_ctx(request), item_id, actor=principal.actor, origin=client_origin(request))
    except StoreError as exc:
        raise HTTPException(status_code=409, detail=str(exc)) from None
    if item is None:
        raise HTTPException(status_code=404, detail=f"outbox item {item_id} does not exist")
    return RedirectResponse("/ui/outbox", status_code=303)


_TITLES = {403: "Not allowed", 404: "Not found", 409: "Changed meanwhile", 422: "Not accepted"}


def error_page(request: Request, status: int, detail: str) -> HTMLResponse:
    """An HTTP error of a page as a page (the API keeps its JSON errors)."""
    return TEMPLATES.TemplateResponse(
        request,
        "error.html",
        {
            "user": None,
            "csrf": "",
            "auth_on": True,
            "status": status,
            "title": _TITLES.get(status, "Error"),
            "detail": detail,
        },
        status_code=status,
    )
