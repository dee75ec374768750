"""FastAPI dependencies: the app's context, the caller (bearer token) and role checks.

They are ``async``: FastAPI runs a plain ``def`` dependency in its thread pool, one hop per dependency and
request, which cost more than the checks themselves.  What can block (verifying a token not seen before:
signature, maybe a JWKS fetch) still runs in the pool.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from app.api.auth import AuthError, Principal, Role, TokenVerifier
from app.context import AppContext

bearer = HTTPBearer(auto_error=False, description="JWT from the hospital IdP or `mmdx token`")


async def get_ctx(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


def get_verifier(request: Request) -> TokenVerifier:
    verifier: TokenVerifier = request.app.state.verifier
    return verifier


def client_origin(request: Request) -> str | None:
    """Where a call came from, for the audit log (the peer address; a proxy's forwarded-for is not trusted)."""
    return request.client.host if request.client else None


def unauthorized(detail: str) -> HTTPException:
    return HTTPException(status_code=401, detail=detail, headers={"WWW-Authenticate": "Bearer"})


async def caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    """The authenticated caller: a bearer token (API) checked against ``auth``."""
    verifier = get_verifier(request)
    if not verifier.enabled:
        return verifier.verify("")
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        raise unauthorized("a bearer token is required")
    known = verifier.cached(credentials.credentials)
    if known is not None:
        return known
    try:
        return await run_in_threadpool(verifier.verify, credentials.credentials)
    except AuthError as exc:
        raise unauthorized(str(exc)) from None


def require(allowed: frozenset[Role]) -> Callable[[Principal], Awaitable[Principal]]:
    """A dependency passing callers holding one of ``allowed`` (or admin); 403 for the others."""

    async def check(principal: Annotated[Principal, Depends(caller)]) -> Principal:
        if not principal.may(allowed):
            needed = " or ".join(sorted(str(r) for r in allowed | {Role.ADMIN}))
            raise HTTPException(status_code=403, detail=f"this needs the role {needed}")
        return principal

    return check


Ctx = Annotated[AppContext, Depends(get_ctx)]
