"""External identity providers: tokens verified against a JWKS served by a real local server."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from sqlalchemy import func, select, update

from huddle.app import create_app
from huddle.auth.models import ExternalIdentity, User
from tests.helpers import assert_error, bearer, register

ISSUER = "https://id.example.test"
AUDIENCE = "huddle-api"


class JWKSServer:
    """Serves ``/.well-known/jwks.json`` from whatever keys the test puts in ``keys``."""

    def __init__(self) -> None:
        self.keys: list[dict] = []
        self.requests = 0
        self.down = False
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requests += 1
                if outer.down or self.path != "/.well-known/jwks.json":
                    self.send_response(503 if outer.down else 404)
                    self.end_headers()
                    return
                body = json.dumps({"keys": outer.keys}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/.well-known/jwks.json"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def add(self, private_key, kid: str, alg: str) -> None:
        jwk = json.loads(
            jwt.algorithms.get_default_algorithms()[alg].to_jwk(private_key.public_key())
        )
        self.keys.append({**jwk, "kid": kid, "alg": alg, "use": "sig"})

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def jwks():
    server = JWKSServer()
    yield server
    server.close()


@pytest.fixture(scope="module")
def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
async def idp_client(jwks, rsa_key, make_settings, start_app):
    jwks.add(rsa_key, "rsa-1", "RS256")
    app = create_app(make_settings(jwt_jwks_url=jwks.url, jwt_issuer=ISSUER, jwt_audience=AUDIENCE))
    client = await start_app(app)
    client.app = app
    return client


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _hs256_by_hand(claims: dict, secret: bytes, kid: str) -> str:
    """PyJWT refuses to sign with a PEM as HMAC secret; an attacker would not."""
    head = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    body = _b64(json.dumps(claims).encode())
    signature = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{_b64(signature)}"


def make_token(key, kid="rsa-1", alg="RS256", **overrides) -> str:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "idp|12345",
        "email": "Grace@Example.com",
        "email_verified": True,
        "name": "Grace Hopper",
        "preferred_username": "grace",
        "iat": now,
        "exp": now + 300,
    }
    claims.update(overrides)
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode(claims, key, algorithm=alg, headers={"kid": kid} if kid else None)


async def test_first_token_creates_the_user_and_later_ones_reuse_it(idp_client, rsa_key):
    first = await idp_client.get("/api/auth/me", headers=bearer(make_token(rsa_key)))
    assert first.status_code == 200, first.text
    user = first.json()
    assert user["email"] == "grace@example.com"
    assert user["username"] == "grace"
    assert user["full_name"] == "Grace Hopper"
    second = await idp_client.get("/api/auth/me", headers=bearer(make_token(rsa_key)))
    assert second.json()["id"] == user["id"]
    async with idp_client.app.state.db.read_session() as session:
        assert await session.scalar(select(func.count()).select_from(User)) == 1
        identity = await session.scalar(select(ExternalIdentity))
    assert (identity.issuer, identity.subject, str(identity.user_id)) == (
        ISSUER,
        "idp|12345",
        user["id"],
    )
    # An external-only account has no password to log in with.
    response = await idp_client.post(
        "/api/auth/token", data={"username": "grace", "password": "anything1"}
    )
    assert_error(response, 401, "invalid_credentials")


@pytest.mark.parametrize(
    ("make_key", "alg"),
    [
        (lambda: ec.generate_private_key(ec.SECP256R1()), "ES256"),
        (lambda: ed25519.Ed25519PrivateKey.generate(), "EdDSA"),
    ],
)
async def test_es256_and_eddsa_keys(jwks, idp_client, make_key, alg):
    key = make_key()
    jwks.add(key, f"{alg}-key", alg)
    idp_client.app.state.external_verifier.refetch_interval = 0
    token = make_token(
        key, kid=f"{alg}-key", alg=alg, sub=f"{alg}-user", email=f"{alg}@example.com"
    )
    response = await idp_client.get("/api/auth/me", headers=bearer(token))
    assert response.status_code == 200, response.text
    assert response.json()["email"] == f"{alg.lower()}@example.com"


@pytest.mark.parametrize(
    "overrides",
    [
        {"iss": "https://evil.example"},
        {"iss": None},
        {"aud": "someone-else"},
        {"aud": None},
        {"exp": int(time.time()) - 60},
        {"exp": None},
        {"sub": None},
        {"email": None},
        {"email": 42},
        {"email": "not-an-email"},
    ],
)
async def test_bad_claims_are_refused(idp_client, rsa_key, overrides):
    response = await idp_client.get(
        "/api/auth/me", headers=bearer(make_token(rsa_key, **overrides))
    )
    assert_error(response, 401, "invalid_token")
    async with idp_client.app.state.db.read_session() as session:
        assert await session.scalar(select(func.count()).select_from(User)) == 0


async def test_wrong_keys_and_algorithms_are_refused(idp_client, rsa_key, jwks):
    impostor = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert_error(
        await idp_client.get("/api/auth/me", headers=bearer(make_token(impostor))),
        401,
        "invalid_token",
    )
    unknown_kid = make_token(rsa_key, kid="nope")
    assert_error(
        await idp_client.get("/api/auth/me", headers=bearer(unknown_kid)), 401, "invalid_token"
    )
    # Algorithm confusion: the public key used as an HMAC secret.
    public_pem = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "x",
        "iat": now,
        "exp": now + 60,
        "email": "x@example.com",
    }
    forged = _hs256_by_hand(claims, public_pem, kid="rsa-1")
    assert_error(await idp_client.get("/api/auth/me", headers=bearer(forged)), 401, "invalid_token")
    unsigned = jwt.encode(claims, None, algorithm="none", headers={"kid": "rsa-1"})
    assert_error(
        await idp_client.get("/api/auth/me", headers=bearer(unsigned)), 401, "invalid_token"
    )


async def test_existing_account_is_linked_only_with_a_verified_email(idp_client, rsa_key):
    local = await register(idp_client, "gracelocal", email="grace@example.com")
    unverified = make_token(rsa_key, email_verified=False)
    body = assert_error(
        await idp_client.get("/api/auth/me", headers=bearer(unverified)), 401, "invalid_token"
    )
    assert "email_verified" in body["error"]
    verified = await idp_client.get("/api/auth/me", headers=bearer(make_token(rsa_key)))
    assert verified.status_code == 200 and verified.json()["id"] == local["id"]


async def test_username_collisions_get_a_suffix(idp_client, rsa_key):
    await register(idp_client, "grace")
    response = await idp_client.get(
        "/api/auth/me", headers=bearer(make_token(rsa_key, email="other@example.com"))
    )
    assert response.status_code == 200 and response.json()["username"] == "grace-2"


async def test_deactivated_external_user_is_refused(idp_client, rsa_key):
    assert (
        await idp_client.get("/api/auth/me", headers=bearer(make_token(rsa_key)))
    ).status_code == 200
    async with idp_client.app.state.db.write_session() as session:
        await session.execute(update(User).values(is_active=False))
        await session.commit()
    response = await idp_client.get("/api/auth/me", headers=bearer(make_token(rsa_key)))
    assert_error(response, 401, "invalid_token")


async def test_key_rotation_refetches_the_jwks(idp_client, jwks):
    assert jwks.requests == 0
    new_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    old_key_token = make_token(new_key, kid="rsa-2")
    # The first fetch does not know rsa-2 yet: refused, and no refetch within 30 s.
    assert_error(
        await idp_client.get("/api/auth/me", headers=bearer(old_key_token)), 401, "invalid_token"
    )
    assert jwks.requests == 1
    jwks.add(new_key, "rsa-2", "RS256")
    assert_error(
        await idp_client.get("/api/auth/me", headers=bearer(old_key_token)), 401, "invalid_token"
    )
    assert jwks.requests == 1
    idp_client.app.state.external_verifier.refetch_interval = 0
    response = await idp_client.get(
        "/api/auth/me", headers=bearer(make_token(new_key, kid="rsa-2"))
    )
    assert response.status_code == 200, response.text
    assert jwks.requests == 2


async def test_jwks_unreachable_is_503_not_500(idp_client, rsa_key, jwks):
    jwks.down = True
    response = await idp_client.get("/api/auth/me", headers=bearer(make_token(rsa_key)))
    assert_error(response, 503, "service_unavailable")


async def test_local_tokens_still_work_with_jwks_configured(idp_client):
    await register(idp_client, "ada")
    tokens = (
        await idp_client.post(
            "/api/auth/token", data={"username": "ada", "password": "correct horse battery"}
        )
    ).json()
    assert (
        await idp_client.get("/api/auth/me", headers=bearer(tokens["access_token"]))
    ).status_code == 200


async def test_concurrent_first_sight_creates_one_user(idp_client, rsa_key):
    import asyncio

    token = make_token(rsa_key, sub=f"race-{uuid.uuid4().hex}")
    responses = await asyncio.gather(
        *[idp_client.get("/api/auth/me", headers=bearer(token)) for _ in range(5)]
    )
    assert {r.status_code for r in responses} == {200}
    assert len({r.json()["id"] for r in responses}) == 1
