"""Bearer authentication: what a token must be to be accepted (GET /api/auth/me)."""

import base64
import json
import time
import uuid

import jwt
import pytest
from sqlalchemy import update

from huddle.auth.models import User
from tests.conftest import TEST_SECRET
from tests.helpers import assert_error, bearer, login, register


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _claims(user_id: str, **overrides):
    now = int(time.time())
    claims = {
        "sub": user_id,
        "iat": now,
        "exp": now + 600,
        "jti": uuid.uuid4().hex,
        "type": "access",
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


async def test_no_token_is_401_not_authenticated(client):
    response = await client.get("/api/auth/me")
    assert_error(response, 401, "not_authenticated")
    assert response.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "header",
    ["Basic dXNlcjpwYXNz", "Bearer", "Bearer ", "Token abc", "bearer", "", "Bearer  "],
)
async def test_malformed_authorization_headers_are_401(client, header):
    response = await client.get("/api/auth/me", headers={"Authorization": header})
    assert response.status_code == 401
    assert response.json()["code"] in ("not_authenticated", "invalid_token")


@pytest.mark.parametrize(
    "token",
    ["garbage", "a.b.c", "a.b", "....", "eyJhbGciOiJIUzI1NiJ9.e30.", "x" * 9000, "héllo"],
)
async def test_garbage_tokens_are_401_invalid_token(client, token):
    response = await client.get(
        "/api/auth/me", headers={"Authorization": f"Bearer {token}".encode()}
    )
    assert_error(response, 401, "invalid_token")


async def test_expired_token_is_401(client):
    user = await register(client)
    now = int(time.time())
    token = jwt.encode(
        _claims(user["id"], iat=now - 1000, exp=now - 10), TEST_SECRET, algorithm="HS256"
    )
    body = assert_error(
        await client.get("/api/auth/me", headers=bearer(token)), 401, "invalid_token"
    )
    assert "expired" in body["error"].lower()


async def test_tampered_token_is_401(client):
    alice = await register(client, "alice")
    bob = await register(client, "bob")
    token = (await login(client, "alice"))["access_token"]
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["sub"] = bob["id"]
    forged = f"{header}.{_b64(claims)}.{signature}"
    assert_error(await client.get("/api/auth/me", headers=bearer(forged)), 401, "invalid_token")
    # Flipping one signature character breaks it too.
    flipped = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    assert_error(await client.get("/api/auth/me", headers=bearer(flipped)), 401, "invalid_token")
    assert alice["id"] != bob["id"]


async def test_alg_none_token_is_refused(client):
    user = await register(client)
    token = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(_claims(user['id']))}."
    assert_error(await client.get("/api/auth/me", headers=bearer(token)), 401, "invalid_token")
    unsigned = jwt.encode(_claims(user["id"]), None, algorithm="none")
    assert_error(await client.get("/api/auth/me", headers=bearer(unsigned)), 401, "invalid_token")


async def test_token_signed_with_another_key_is_refused(client):
    user = await register(client)
    token = jwt.encode(_claims(user["id"]), "another-secret-" + "y" * 32, algorithm="HS256")
    assert_error(await client.get("/api/auth/me", headers=bearer(token)), 401, "invalid_token")


async def test_rs256_token_without_jwks_configured_is_refused(client):
    from cryptography.hazmat.primitives.asymmetric import rsa

    user = await register(client)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode(_claims(user["id"]), key, algorithm="RS256")
    assert_error(await client.get("/api/auth/me", headers=bearer(token)), 401, "invalid_token")


@pytest.mark.parametrize(
    "overrides",
    [
        {"type": "refresh"},
        {"type": None},
        {"sub": None},
        {"exp": None},
        {"jti": None},
        {"sub": "not-a-uuid"},
        {"sub": str(uuid.uuid4())},  # a user that does not exist
        {"iat": "yesterday"},
    ],
)
async def test_tokens_with_wrong_or_missing_claims_are_refused(client, overrides):
    user = await register(client)
    token = jwt.encode(_claims(user["id"], **overrides), TEST_SECRET, algorithm="HS256")
    assert_error(await client.get("/api/auth/me", headers=bearer(token)), 401, "invalid_token")


async def test_deactivated_user_token_stops_working(client, app):
    await register(client, "alice")
    headers = bearer((await login(client, "alice"))["access_token"])
    assert (await client.get("/api/auth/me", headers=headers)).status_code == 200
    async with app.state.db.write_session() as session:
        await session.execute(update(User).values(is_active=False))
        await session.commit()
    body = assert_error(await client.get("/api/auth/me", headers=headers), 401, "invalid_token")
    assert "deactivated" in body["error"]
