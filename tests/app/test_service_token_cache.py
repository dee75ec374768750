"""Bearer tokens are verified once and kept until they expire, then refused."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import jwt
import pytest

from app.api.auth import AuthError, Role, TokenVerifier, mint_token
from core.config import AuthConfig

SECRET = "cache-test-secret-0123456789abcdef0123456789"


def _config() -> AuthConfig:
    return AuthConfig(mode="token", token_secret=SECRET)


def test_verified_token_is_kept_until_it_expires(monkeypatch: pytest.MonkeyPatch):
    config = _config()
    verifier = TokenVerifier(config)
    token = mint_token(config, "dr.k", [Role.CLINICIAN], now=datetime.now(UTC), ttl_s=2)
    calls = []
    real = jwt.decode
    monkeypatch.setattr(jwt, "decode", lambda *a, **k: calls.append(1) or real(*a, **k))
    first = verifier.verify(token)
    assert first.subject == "dr.k" and first.roles == frozenset({Role.CLINICIAN})
    assert verifier.verify(token) is first and verifier.verify(token) is first
    assert len(calls) == 1  # the signature and claims were checked once
    time.sleep(2.2)
    with pytest.raises(AuthError, match="expired"):
        verifier.verify(token)
    with pytest.raises(AuthError, match="expired"):
        verifier.verify(token)


def test_refused_tokens_are_not_kept():
    config = _config()
    verifier = TokenVerifier(config)
    good = mint_token(config, "dr.k", [Role.CLINICIAN], now=datetime.now(UTC), ttl_s=60)
    forged = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
    for _ in range(2):
        with pytest.raises(AuthError, match="rejected"):
            verifier.verify(forged)
    assert verifier.verify(good).subject == "dr.k"
    other = TokenVerifier(AuthConfig(mode="token", token_secret="another-secret-0123456789abcdef0123456789"))
    with pytest.raises(AuthError, match="rejected"):
        other.verify(good)  # a cache is per verifier (per app and its configuration)
