"""Auth that holds: every endpoint but health needs a valid token of the right role; production refuses defaults."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from app.api.auth import Role
from app.cli import cli
from app.service import create_app
from core.config import load_settings
from core.errors import ConfigError
from tests.service.conftest import SECRET, STAT_ECG, Service

PUBLIC = {"/healthz", "/readyz", "/docs", "/openapi.json", "/"}


def _concrete(path: str) -> str:
    return (
        path.replace("{study_uid}", STAT_ECG)
        .replace("{version}", "1")
        .replace("{fmt}", "pdf")
        .replace("{item_id}", "1")
    )


def _api_routes(svc: Service) -> list[tuple[str, str]]:
    """Every operation the published OpenAPI document lists, with concrete path parameters."""
    paths = svc.client.get("/openapi.json").json()["paths"]
    return [(m.upper(), _concrete(p)) for p, ops in paths.items() if p not in PUBLIC for m in ops]


def test_every_endpoint_but_health_needs_a_token(svc: Service) -> None:
    routes = _api_routes(svc)
    assert len(routes) >= 12
    for method, path in routes:
        r = svc.client.request(method, path, json={})
        assert r.status_code == 401, (method, path, r.status_code)
        assert r.headers.get("www-authenticate") == "Bearer"
    assert svc.client.get("/healthz").status_code == 200
    assert svc.client.get("/readyz").status_code == 200


def test_wrong_role_is_403_and_right_role_passes(svc: Service) -> None:
    tech = svc.headers(Role.TECHNOLOGIST)
    assert svc.client.get("/api/v1/worklist", headers=tech).status_code == 403
    assert svc.client.post(f"/api/v1/studies/{STAT_ECG}/report/sign", json={}, headers=tech).status_code == 403
    assert svc.client.get("/api/v1/outbox", headers=svc.headers(Role.CLINICIAN)).status_code == 403
    assert svc.client.get("/api/v1/audit", headers=svc.headers(Role.INTEGRATOR)).status_code == 403
    assert svc.client.get("/api/v1/studies", headers=tech).status_code == 200
    assert svc.client.get("/api/v1/worklist", headers=svc.headers(Role.CLINICIAN)).status_code == 200
    assert svc.client.get("/api/v1/audit", headers=svc.headers(Role.ADMIN)).status_code == 200


def _claims(**over: object) -> dict[str, object]:
    now = datetime.now(UTC)
    claims: dict[str, object] = {
        "sub": "u1",
        "roles": ["admin"],
        "iss": "mmdx",
        "aud": "mmdx",
        "exp": int((now + timedelta(minutes=5)).timestamp()),
    }
    claims.update(over)
    return claims


@pytest.mark.parametrize(
    ("what", "token"),
    [
        ("expired", jwt.encode(_claims(exp=int(datetime.now(UTC).timestamp()) - 60), SECRET, algorithm="HS256")),
        ("wrong secret", jwt.encode(_claims(), "another-secret-0123456789abcdef01234", algorithm="HS256")),
        ("wrong audience", jwt.encode(_claims(aud="other"), SECRET, algorithm="HS256")),
        ("wrong issuer", jwt.encode(_claims(iss="evil"), SECRET, algorithm="HS256")),
        ("no expiry", jwt.encode({k: v for k, v in _claims().items() if k != "exp"}, SECRET, algorithm="HS256")),
        ("alg none", jwt.encode(_claims(), None, algorithm="none")),
        ("garbage", "not.a.token"),
    ],
)
def test_bad_tokens_are_401(svc: Service, what: str, token: str) -> None:
    r = svc.client.get("/api/v1/studies", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401, what


def test_tampered_roles_are_401(svc: Service) -> None:
    header, _, sig = svc.token(Role.TECHNOLOGIST).split(".")
    forged = jwt.utils.base64url_encode(json.dumps(_claims(roles=["admin"])).encode()).decode()
    r = svc.client.get("/api/v1/audit", headers={"Authorization": f"Bearer {header}.{forged}.{sig}"})
    assert r.status_code == 401


def _rsa_pair(tmp_path: Path) -> tuple[rsa.RSAPrivateKey, Path, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    priv = tmp_path / "key.pem"
    pub = tmp_path / "pub.pem"
    priv.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    pub.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return key, priv, pub


def test_rs256_public_key_and_mmdx_token(service_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, priv, pub = _rsa_pair(tmp_path)
    svc = service_factory(
        auth={"mode": "token", "algorithm": "RS256", "public_key": pub, "private_key": priv, "issuer": "https://idp"}
    )
    ok = svc.token(Role.CLINICIAN)
    assert svc.client.get("/api/v1/worklist", headers={"Authorization": f"Bearer {ok}"}).status_code == 200
    hs = jwt.encode(_claims(iss="https://idp"), SECRET, algorithm="HS256")  # an HS256 token is refused
    assert svc.client.get("/api/v1/worklist", headers={"Authorization": f"Bearer {hs}"}).status_code == 401


def test_rs256_jwks_url_of_the_idp(service_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    key, _, _ = _rsa_pair(tmp_path)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update(kid="k1", use="sig", alg="RS256")
    body = json.dumps({"keys": [jwk]}).encode()

    class Jwks(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Jwks)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/jwks.json"
        svc = service_factory(auth={"mode": "token", "algorithm": "RS256", "jwks_url": url, "audience": "mmdx-api"})
        good = jwt.encode(_claims(aud="mmdx-api", roles=["clinician"]), key, algorithm="RS256", headers={"kid": "k1"})
        r = svc.client.get("/api/v1/worklist", headers={"Authorization": f"Bearer {good}"})
        assert r.status_code == 200
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        bad = jwt.encode(_claims(aud="mmdx-api"), other, algorithm="RS256", headers={"kid": "k1"})
        assert svc.client.get("/api/v1/worklist", headers={"Authorization": f"Bearer {bad}"}).status_code == 401
    finally:
        server.shutdown()


@pytest.mark.parametrize("secret", [None, "", "changeme", "short-secret"])
def test_production_refuses_default_or_empty_secret(secret: str | None) -> None:
    auth: dict[str, object] = {"mode": "token"}
    if secret is not None:
        auth["token_secret"] = secret
    with pytest.raises(ConfigError, match="token_secret") as info:
        load_settings(profile="production", auth=auth, scp={"allowed_calling_aes": ["MODALITY"]})
    if secret:
        assert secret not in str(info.value)  # the secret is never echoed


def test_serve_refuses_to_start_in_production_with_default_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MMDX_PROFILE", "production")
    monkeypatch.setenv("MMDX_AUTH__MODE", "token")
    monkeypatch.setenv("MMDX_AUTH__TOKEN_SECRET", "changeme")
    monkeypatch.setenv("MMDX_SCP__ALLOWED_CALLING_AES", '["MODALITY"]')
    result = CliRunner().invoke(cli, ["serve"])
    assert result.exit_code == 2
    assert "token_secret" in result.output and "changeme" not in result.output


def test_mmdx_token_is_accepted(svc: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MMDX_AUTH__MODE", "token")
    monkeypatch.setenv("MMDX_AUTH__TOKEN_SECRET", SECRET)
    monkeypatch.setenv("MMDX_DATABASE__URL", f"sqlite:///{svc.root / 'mmdx.db'}")
    result = CliRunner().invoke(cli, ["token", "dr.who", "--role", "clinician", "--name", "Dr Who"])
    assert result.exit_code == 0, result.output
    token = result.output.strip().splitlines()[-1]
    assert svc.client.get("/api/v1/worklist", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert jwt.decode(token, options={"verify_signature": False})["roles"] == ["clinician"]


def test_docs_load_offline(svc: Service) -> None:
    html = svc.client.get("/docs").text
    assert "/static/swagger/swagger-ui-bundle.js" in html and "cdn" not in html.lower()
    js = svc.client.get("/static/swagger/swagger-ui-bundle.js")
    assert js.status_code == 200 and len(js.content) > 100_000
    assert svc.client.get("/static/swagger/swagger-ui.css").status_code == 200
    spec = svc.client.get("/openapi.json").json()
    assert "/api/v1/worklist" in spec["paths"]
    assert (
        any("HTTPBearer" in json.dumps(v) for v in spec["components"]["securitySchemes"].values())
        or spec["components"]["securitySchemes"]
    )


def test_mode_none_is_open_in_development(tmp_path: Path) -> None:
    from app.context import AppContext

    ctx = AppContext.create(
        None,
        database={"url": f"sqlite:///{tmp_path / 'db.sqlite'}"},
        storage={"store_dir": tmp_path / "s", "out_dir": tmp_path / "o", "quarantine_dir": tmp_path / "q"},
    )
    client = TestClient(create_app(ctx))
    assert client.get("/api/v1/worklist").status_code == 200
    ctx.db.dispose()
