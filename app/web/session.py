"""The pages' session: the same bearer token, kept in an HttpOnly SameSite=Strict cookie, plus a CSRF token.

The login form takes a token (from the hospital IdP or ``mmdx token``), checks
it like the API does and stores it in the cookie; the session ends when the
token expires.  Every form that changes something carries ``csrf``, an HMAC
of the session cookie under a server key (derived from the HS256 secret, so it
survives a restart; random per process otherwise): a page of another site
can neither read it nor guess it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from urllib.parse import quote

from fastapi import HTTPException, Request

from app.api.auth import AuthError, Principal, Role, TokenVerifier

COOKIE = "mmdx_session"


def csrf_key(verifier: TokenVerifier) -> bytes:
    secret = verifier.config.token_secret
    if verifier.enabled and verifier.config.algorithm == "HS256" and secret:
        return hashlib.sha256(b"mmdx-csrf:" + secret.encode()).digest()
    return secrets.token_bytes(32)


def csrf_token(key: bytes, session_value: str) -> str:
    return hmac.new(key, session_value.encode(), hashlib.sha256).hexdigest()


def _login_redirect(request: Request) -> HTTPException:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return HTTPException(status_code=303, headers={"Location": f"/ui/login?next={quote(target, safe='')}"})


def page_caller(request: Request) -> Principal:
    """The signed-in user, or a redirect to the login form."""
    verifier: TokenVerifier = request.app.state.verifier
    value = request.cookies.get(COOKIE, "")
    if not verifier.enabled:
        return verifier.verify("")
    if not value:
        raise _login_redirect(request)
    try:
        return verifier.verify(value)
    except AuthError:
        raise _login_redirect(request) from None


def check_role(principal: Principal, allowed: frozenset[Role]) -> None:
    if not principal.may(allowed):
        needed = " or ".join(sorted(str(r) for r in allowed | {Role.ADMIN}))
        raise HTTPException(status_code=403, detail=f"this page needs the role {needed}")


def check_csrf(request: Request, submitted: str) -> None:
    expected = csrf_token(request.app.state.csrf_key, request.cookies.get(COOKIE, ""))
    if not submitted or not hmac.compare_digest(expected, submitted):
        raise HTTPException(status_code=403, detail="the form is stale or not from this site: reload the page")
