"""The HTTP service: health, readiness and the study index (FastAPI)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, HTTPException
from sqlalchemy import text

from app.context import AppContext
from core.version import SOFTWARE_VERSION
from store import index


def create_app(ctx: AppContext) -> FastAPI:
    """Build the FastAPI application around one context (tests pass their own)."""
    api = FastAPI(title="mmdx", version=SOFTWARE_VERSION)

    @api.get("/healthz")
    def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok", "version": SOFTWARE_VERSION}

    @api.get("/readyz")
    def readyz() -> dict[str, str]:
        """Readiness: the database answers."""
        try:
            with ctx.db.session() as session:
                session.execute(text("SELECT 1"))
        except Exception as exc:
            raise HTTPException(status_code=503, detail=f"database unavailable: {type(exc).__name__}") from None
        return {"status": "ready"}

    @api.get("/api/v1/studies")
    def studies() -> list[dict[str, Any]]:
        """Indexed studies without demographics."""
        with ctx.db.session() as session:
            rows = index.list_studies(session)
        return [
            {
                "study_instance_uid": s.study_instance_uid,
                "study_datetime": s.study_datetime.isoformat() if s.study_datetime else None,
                "modalities": list(s.modalities),
                "series": len(s.series),
                "instances": s.instance_count,
            }
            for s in rows
        ]

    return api
