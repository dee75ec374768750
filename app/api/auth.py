"""Who is calling: bearer JWTs (HS256 secret, RS256 public key or the IdP's JWKS) mapped to mmdx roles.

Roles and what they may do:

==============  ===============================================================
``clinician``   view studies, reports and the worklist; edit, sign, amend, withdraw
``technologist`` upload, study and analysis status, model status
``integrator``  the API read side, outbox status and retry, upload, metrics
``admin``       everything, and the audit log
==============  ===============================================================

With ``auth.mode: none`` (development only; ``production`` refuses it) every
caller is a local user holding all roles.
"""

from __future__ import annotations

import enum
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import jwt

from core.config import AuthConfig
from core.errors import MmdxError
from core.records import Clinician


class AuthError(MmdxError):
    """A token is missing, malformed, expired, wrongly signed, or for another issuer/audience (HTTP 401)."""


class Role(enum.StrEnum):
    """What a caller may do (a token's ``roles`` claim lists them)."""

    CLINICIAN = "clinician"  #: view, edit, sign, amend, withdraw reports
    TECHNOLOGIST = "technologist"  #: upload, study and analysis status
    INTEGRATOR = "integrator"  #: API read side, outbox, metrics
    ADMIN = "admin"  #: everything, and the audit log


#: Role sets of the endpoint groups; ``admin`` passes every check.
VIEW_REPORTS = frozenset({Role.CLINICIAN, Role.INTEGRATOR})
VIEW_STATUS = frozenset({Role.CLINICIAN, Role.INTEGRATOR, Role.TECHNOLOGIST})
SIGN_REPORTS = frozenset({Role.CLINICIAN})
UPLOAD = frozenset({Role.TECHNOLOGIST, Role.INTEGRATOR})
OUTBOX = frozenset({Role.INTEGRATOR})
AUDIT = frozenset({Role.ADMIN})


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller; ``subject`` is the IdP's stable user id (the audit's "who")."""

    subject: str
    name: str
    roles: frozenset[Role]

    def __post_init__(self) -> None:
        if not self.subject.strip():
            raise AuthError("token: expected a non-empty 'sub' claim")

    @property
    def actor(self) -> str:
        return f"user:{self.subject}"

    def may(self, allowed: Iterable[Role]) -> bool:
        return Role.ADMIN in self.roles or bool(self.roles & frozenset(allowed))

    def clinician(self) -> Clinician:
        """The signing clinician this caller is (name and identifier from the token)."""
        return Clinician(name=self.name or self.subject, identifier=self.subject, role="clinician")


#: The caller when ``auth.mode`` is ``none`` (development).
LOCAL_USER = Principal("local", "Local user", frozenset(Role))


def _read_key(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise AuthError(f"auth.{what}: cannot read {path} ({exc.strerror})") from None


class TokenVerifier:
    """Checks signature, expiry, ``iss`` and ``aud`` of a bearer token and returns its :class:`Principal`.

    A token that passed is kept with its ``exp`` (at most :attr:`CACHE_SIZE` of them): a client sends the same
    token with every call, and verifying its signature and claims again cost more than the rest of a cached
    read.  A kept token is answered from memory until it expires, then checked (and refused) again.
    """

    CACHE_SIZE = 4096

    def __init__(self, config: AuthConfig) -> None:
        self.config = config
        self._key: Any = None
        self._verified: dict[str, tuple[Principal, float]] = {}
        self._lock = threading.Lock()
        self._jwks: jwt.PyJWKClient | None = None
        if config.mode != "token":
            return
        if config.algorithm == "HS256":
            self._key = config.token_secret
        elif config.public_key is not None:
            self._key = _read_key(config.public_key, "public_key")
        else:
            assert config.jwks_url is not None  # AuthConfig checks RS256 has one of the two
            self._jwks = jwt.PyJWKClient(config.jwks_url, cache_keys=True, lifespan=300, timeout=10)

    @property
    def enabled(self) -> bool:
        return self.config.mode == "token"

    def cached(self, token: str) -> Principal | None:
        """The caller of a token verified before and not yet expired; None when it must be verified."""
        kept = self._verified.get(token)
        if kept is None:
            return None
        if time.time() < kept[1]:
            return kept[0]
        with self._lock:
            self._verified.pop(token, None)
        return None

    def verify(self, token: str) -> Principal:
        if not self.enabled:
            return LOCAL_USER
        kept = self.cached(token)
        if kept is not None:
            return kept
        principal, exp = self._verify(token)
        with self._lock:
            if len(self._verified) >= self.CACHE_SIZE:
                self._verified.clear()
            self._verified[token] = (principal, exp)
        return principal

    def _verify(self, token: str) -> tuple[Principal, float]:
        try:
            key = self._jwks.get_signing_key_from_jwt(token).key if self._jwks is not None else self._key
            claims = jwt.decode(
                token,
                key,
                algorithms=[self.config.algorithm],
                audience=self.config.audience,
                issuer=self.config.issuer,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("token expired") from None
        except jwt.PyJWKClientError as exc:
            raise AuthError(f"token: no signing key from auth.jwks_url ({exc})") from None
        except jwt.InvalidTokenError as exc:
            raise AuthError(f"token rejected: {exc}") from None
        raw = claims.get(self.config.roles_claim, [])
        if isinstance(raw, str):
            raw = raw.split()
        roles = frozenset(Role(r) for r in raw if r in Role.__members__.values())
        name = claims.get("name") or claims.get("preferred_username") or claims["sub"]
        return Principal(str(claims["sub"]), str(name), roles), float(claims["exp"])


def mint_token(
    config: AuthConfig,
    subject: str,
    roles: Iterable[Role],
    *,
    name: str | None = None,
    now: datetime,
    ttl_s: int | None = None,
) -> str:
    """A token this installation accepts (``mmdx token``, tests); RS256 needs ``auth.private_key``."""
    if config.algorithm == "HS256":
        if not config.token_secret:
            raise AuthError("mmdx token: auth.token_secret is not set (HS256)")
        key: str = config.token_secret
    elif config.private_key is not None:
        key = _read_key(config.private_key, "private_key")
    else:
        raise AuthError("mmdx token: RS256 tokens come from the IdP; set auth.private_key to mint one locally")
    claims = {
        "sub": subject,
        "name": name or subject,
        config.roles_claim: sorted(str(r) for r in roles),
        "iss": config.issuer,
        "aud": config.audience,
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(seconds=ttl_s or config.token_ttl_s)).timestamp()),
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, key, algorithm=config.algorithm)
