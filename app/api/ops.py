"""``/api/v1``: outbox status and retry, model registry status, the audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi import Path as PathParam

from app.api.auth import AUDIT, OUTBOX, VIEW_STATUS, Principal
from app.api.deps import Ctx, client_origin, require
from app.review import retry_delivery
from core.errors import StoreError
from models.registry import summary
from store import audit, outbox
from store.outbox import OutboxItem
from store.schema import OutboxState

router = APIRouter(prefix="/api/v1", tags=["operations"])

Integrator = Annotated[Principal, Depends(require(OUTBOX))]


def outbox_json(item: OutboxItem) -> dict[str, Any]:
    return {
        "id": item.id,
        "destination": item.destination,
        "state": item.state.value,
        "attempts": item.attempts,
        "next_attempt_at": item.next_attempt_at.isoformat(),
        "last_error": item.last_error,
        "updated_at": item.updated_at.isoformat(),
        "kind": item.kind,
        "study_instance_uid": item.study_uid,
        "report_version": item.report_version,
    }


@router.get("/outbox", summary="Deliveries, newest first, with their state and last error")
def list_outbox(
    ctx: Ctx,
    _: Integrator,
    state: OutboxState | None = None,
    study_uid: Annotated[str | None, Query(max_length=64)] = None,
    destination: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> dict[str, Any]:
    with ctx.db.session(readonly=True) as session:
        items = outbox.list_items(session, state=state, study_uid=study_uid, destination=destination, limit=limit)
        counts = outbox.counts_by_state(session)
    return {"counts": {s.value: n for s, n in counts.items()}, "items": [outbox_json(i) for i in items]}


@router.post("/outbox/{item_id}/retry", summary="Retry a dead delivery now")
def retry_outbox(
    item_id: Annotated[int, PathParam(ge=1, le=2**31 - 1)], ctx: Ctx, principal: Integrator, request: Request
) -> dict[str, Any]:
    try:
        item = retry_delivery(ctx, item_id, actor=principal.actor, origin=client_origin(request))
    except StoreError as exc:
        raise HTTPException(status_code=409, detail=str(exc)) from None
    if item is None:
        raise HTTPException(status_code=404, detail=f"outbox item {item_id} does not exist")
    return {"id": item_id, "state": OutboxState.PENDING.value}


@router.get("/models", summary="Configured model backends: files, hashes, what is missing")
def models_status(ctx: Ctx, _: Annotated[Principal, Depends(require(VIEW_STATUS))]) -> dict[str, Any]:
    return summary(ctx.registry.describe_all())


@router.get("/audit", summary="The audit log, newest first (admin)")
def read_audit(
    ctx: Ctx,
    _: Annotated[Principal, Depends(require(AUDIT))],
    actor: Annotated[str | None, Query(max_length=128)] = None,
    action: Annotated[str | None, Query(max_length=64)] = None,
    study_uid: Annotated[str | None, Query(max_length=64)] = None,
    since: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 100,
) -> list[dict[str, Any]]:
    if since is not None and since.tzinfo is None:
        raise HTTPException(status_code=422, detail="since: expected a time with a zone offset")
    with ctx.db.session(readonly=True) as session:
        rows = audit.search(session, actor=actor, action=action, study_uid=study_uid, since=since, limit=limit)
    return [
        {
            "id": r.id,
            "at": r.at.isoformat(),
            "actor": r.actor,
            "action": r.action,
            "study_instance_uid": r.study_uid,
            "detail": r.detail,
            "origin": r.origin,
        }
        for r in rows
    ]
