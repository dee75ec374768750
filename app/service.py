"""The HTTP service (FastAPI): the API under ``/api/v1``, the pages under ``/ui``, health and docs.

Every endpoint but ``/healthz`` and ``/readyz`` needs a caller (a bearer
token for the API, the session cookie for the pages) when ``auth.mode`` is
``token``; the OpenAPI document, ``/docs`` and the static assets are public
and load without internet (Swagger UI is served from the installed
``swagger-ui-bundle`` package, never a CDN).
"""

from __future__ import annotations

import gc
import os
from pathlib import Path
from typing import Annotated, Any

import swagger_ui_bundle
from fastapi import Depends, FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy import text
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.api import ops, orders, reports, upload
from app.api.auth import OUTBOX, Principal, TokenVerifier
from app.api.deps import require
from app.api.metrics import HttpLatency, Metrics
from app.api.view_log import ViewLog
from app.context import AppContext
from app.web import pages
from app.web.session import csrf_key
from core.version import SOFTWARE_VERSION

STATIC_DIR = Path(__file__).resolve().parent / "web" / "static"


def readiness(ctx: AppContext, components: dict[str, bool]) -> dict[str, dict[str, Any]]:
    """Each dependency's state: the database, the storage folders, models, destinations, supervised parts."""
    checks: dict[str, dict[str, Any]] = {}
    try:
        with ctx.db.session(readonly=True) as session:
            session.execute(text("SELECT 1"))
        checks["database"] = {"ok": True}
    except Exception as exc:
        checks["database"] = {"ok": False, "error": type(exc).__name__}
    storage = ctx.settings.storage
    folders = [storage.store_dir, storage.out_dir, storage.quarantine_dir]
    bad = [str(f) for f in folders if not (Path(f).is_dir() and os.access(f, os.W_OK))]
    checks["storage"] = {"ok": not bad, **({"not_writable": bad} if bad else {})}
    try:
        infos = ctx.registry.describe_all()
        missing = [i.name for i in infos if not i.available]
        checks["models"] = {"ok": True, "configured": len(infos), "unavailable": missing}
    except Exception as exc:  # a broken registry file must not take readiness down with a 500
        checks["models"] = {"ok": False, "error": type(exc).__name__}
    checks["destinations"] = {"ok": True, "configured": sorted(ctx.settings.destinations)}
    for name, up in components.items():
        checks[name] = {"ok": up}
    return checks


def settle_heap() -> None:
    """Take what start-up allocated out of the garbage collector's way (``gc.freeze``), once the app is built.

    The service imports some 2,800 modules (scipy, pandas, pydicom, reportlab, ...): about 390,000 tracked
    objects that live as long as the process.  Every full collection walked them all, 0.2-0.6 s with every
    request in flight waiting, several times in a 10 s load test: that was the API's p99.  Frozen, a full
    collection takes about 2 ms.  Only for the serving process (tests build many apps in one process).
    """
    gc.collect()
    gc.freeze()


def create_app(ctx: AppContext, *, components: dict[str, bool] | None = None) -> FastAPI:
    """Build the application around one context (tests pass their own).

    ``components`` maps the parts ``mmdx serve`` supervises (``scp``, ``worker``, ``sender``) to whether they
    run; ``/readyz`` reports them.
    """
    api = FastAPI(
        title="mmdx",
        version=SOFTWARE_VERSION,
        description="Studies, draft reports, sign-off, worklist and deliveries. Bearer JWT (`mmdx token`).",
        docs_url=None,
        redoc_url=None,
    )
    api.state.ctx = ctx
    api.state.verifier = TokenVerifier(ctx.settings.auth)
    api.state.csrf_key = csrf_key(api.state.verifier)
    api.state.worklist_cache = reports.WorklistCache()
    api.state.view_log = ViewLog(ctx.db)
    api.state.components = components if components is not None else {}
    metrics = Metrics(ctx)
    api.add_middleware(HttpLatency, histogram=metrics.http)
    api.mount("/static/swagger", StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), name="swagger")
    api.mount("/static/app", StaticFiles(directory=STATIC_DIR), name="static")

    @api.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if request.url.path.startswith("/ui/") and exc.status_code >= 400:
            return pages.error_page(request, exc.status_code, str(exc.detail))
        return await http_exception_handler(request, exc)

    @api.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok", "version": SOFTWARE_VERSION}

    @api.get("/readyz", tags=["health"])
    def readyz(request: Request) -> JSONResponse:
        """Readiness: database, storage, models, destinations and the supervised parts (503 if one is down)."""
        checks = readiness(ctx, request.app.state.components)
        ready = all(c["ok"] for c in checks.values())
        body = {"status": "ready" if ready else "not ready", "checks": checks}
        return JSONResponse(body, status_code=200 if ready else 503)

    @api.get("/metrics", tags=["health"], response_class=Response)
    def prometheus(_: Annotated[Principal, Depends(require(OUTBOX))]) -> Response:
        """Prometheus metrics: received, analysed, stage latencies, outbox depth by state, errors by kind."""
        return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @api.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="mmdx API",
            swagger_js_url="/static/swagger/swagger-ui-bundle.js",
            swagger_css_url="/static/swagger/swagger-ui.css",
            swagger_favicon_url="/static/swagger/favicon-32x32.png",
        )

    @api.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/ui/worklist", status_code=303)

    api.include_router(reports.router)
    api.include_router(ops.router)
    api.include_router(orders.router)
    api.include_router(upload.router)
    api.include_router(pages.router)
    return api
