"""Orders over HTTP: a FHIR ServiceRequest (or a Bundle of them) POSTed by the EHR, and the stored orders.

``POST /api/v1/orders`` takes ``application/fhir+json``; each ServiceRequest is stored as an
order (a second one with the same placer identifier updates it) and answered with its
outcome; a resource that cannot be taken is a 422 naming the field, never patient data.
``GET /api/v1/orders`` lists the orders with their matched study (no patient data).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Request

from app.api.auth import UPLOAD, VIEW_STATUS, Principal
from app.api.deps import Ctx, client_origin, require
from core.errors import IngestError, StoreError
from ingest.orders.intake import accept_service_request
from store import audit
from store import orders as order_store

router = APIRouter(prefix="/api/v1", tags=["orders"])
Placer = Annotated[Principal, Depends(require(UPLOAD))]
Viewer = Annotated[Principal, Depends(require(VIEW_STATUS))]


@router.post("/orders", status_code=201)
def post_orders(
    ctx: Ctx, principal: Placer, request: Request, resource: Annotated[dict[str, Any], Body()]
) -> dict[str, Any]:
    """Store the ServiceRequest(s) of the body: ``{"orders": [{"id": n, "created": bool}, ...]}``."""
    if resource.get("resourceType") == "Bundle":
        resources = [e.get("resource") or {} for e in resource.get("entry") or []]
    else:
        resources = [resource]
    out = []
    for i, r in enumerate(resources):
        try:
            order_id, created = accept_service_request(ctx.db, r, ctx.clock.now())
        except (IngestError, StoreError) as exc:
            raise HTTPException(status_code=422, detail=f"entry {i}: {exc}") from None
        out.append({"id": order_id, "created": created})
    with ctx.db.session() as session:
        audit.record(
            session,
            actor=principal.actor,
            action="orders.received",
            study_uid=None,
            detail=f"FHIR ServiceRequest: {sum(o['created'] for o in out)} new, "
            f"{sum(not o['created'] for o in out)} updated",
            at=ctx.clock.now(),
            origin=client_origin(request),
        )
    return {"orders": out}


@router.get("/orders")
def get_orders(ctx: Ctx, principal: Viewer, limit: int = 100) -> list[dict[str, Any]]:
    """Stored orders, newest first: numbers, procedure, status, matched study (no patient data)."""
    with ctx.db.session(readonly=True) as session:
        stored = order_store.list_orders(session, limit=min(max(limit, 1), 1000))
    return [
        {
            "placer": s.order.placer_number,
            "filler": s.order.filler_number,
            "accession": s.order.accession_number,
            "procedure": s.order.procedure.display if s.order.procedure else None,
            "status": s.order.status.value,
            "source": s.order.source.value,
            "study_instance_uid": s.study_instance_uid,
            "match": s.strength.value if s.strength else None,
            "conflicts": list(s.conflicts),
        }
        for s in stored
    ]
