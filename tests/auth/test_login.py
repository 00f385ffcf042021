"""POST /api/auth/token: password login and its rate limits."""

import httpx
import jwt
import pytest
from sqlalchemy import select, update

from huddle.app import create_app
from huddle.auth.models import RefreshToken, User
from tests.conftest import TEST_SECRET
from tests.helpers import PASSWORD, assert_error, bearer, register


def client_from(app, address: str) -> httpx.AsyncClient:
    """Another client of an already started app, calling from ``address``."""
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=(address, 40000)),
        base_url="http://testserver",
    )


async def _token(client, username, password=PASSWORD):
    return await client.post("/api/auth/token", data={"username": username, "password": password})


@pytest.mark.parametrize("login_name", ["alice", "ALICE", "alice@example.com", "Alice@Example.com"])
async def test_login_with_username_or_email(client, app, login_name):
    user = await register(client, "alice")
    response = await _token(client, login_name)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 900
    claims = jwt.decode(body["access_token"], TEST_SECRET, algorithms=["HS256"])
    assert claims["sub"] == user["id"]
    assert claims["type"] == "access"
    assert claims["exp"] - claims["iat"] == 900
    assert len(claims["jti"]) >= 16
    async with app.state.db.read_session() as session:
        rows = (await session.scalars(select(RefreshToken))).all()
    assert len(rows) == 1 and rows[0].token_hash != body["refresh_token"]
    me = await client.get("/api/auth/me", headers=bearer(body["access_token"]))
    assert me.status_code == 200 and me.json()["username"] == "alice"


async def test_wrong_password_and_unknown_user_look_the_same(client):
    await register(client, "alice")
    wrong = await _token(client, "alice", "wrong password")
    unknown = await _token(client, "nobody", "wrong password")
    for response in (wrong, unknown):
        assert_error(response, 401, "invalid_credentials")
    assert wrong.json() == unknown.json()


async def test_inactive_user_cannot_log_in(client, app):
    await register(client, "alice")
    async with app.state.db.write_session() as session:
        await session.execute(update(User).values(is_active=False))
        await session.commit()
    assert_error(await _token(client, "alice"), 401, "account_disabled")
    # A wrong password still says only "incorrect": no hint the account exists.
    assert_error(await _token(client, "alice", "nope-nope"), 401, "invalid_credentials")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"data": {"username": "alice"}}, "password"),
        ({"data": {"password": "x"}}, "username"),
        ({"data": {"username": "", "password": "x"}}, "username"),
        ({"json": {"username": "alice", "password": PASSWORD}}, "username"),
        ({"data": {"username": "a" * 400, "password": "x"}}, "username"),
    ],
)
async def test_bad_login_forms_are_422(client, kwargs, field):
    response = await client.post("/api/auth/token", **kwargs)
    body = assert_error(response, 422, "validation_error")
    assert any(issue["loc"][-1] == field for issue in body["details"])


async def test_failed_logins_are_limited_per_account(make_settings, start_app):
    app = create_app(make_settings(rate_login="3/15m"))
    client = await start_app(app)
    await register(client, "alice")
    # Three failures from three different addresses: the account is now locked...
    for n in range(3):
        async with client_from(app, f"198.51.100.{n}") as other:
            assert_error(await _token(other, "alice", "bad-password"), 401, "invalid_credentials")
    async with client_from(app, "198.51.100.99") as fresh:
        response = await _token(fresh, "alice")  # ...even for the right password.
    body = assert_error(response, 429, "rate_limited")
    retry_after = int(response.headers["Retry-After"])
    assert 890 <= retry_after <= 900
    assert body["details"] == {"retry_after": retry_after}


async def test_email_and_username_share_one_account_limit(make_settings, start_app):
    app = create_app(make_settings(rate_login="2/15m"))
    client = await start_app(app)
    await register(client, "alice")
    for n, name in enumerate(("alice", "ALICE@example.com")):
        async with client_from(app, f"198.51.100.{n}") as other:
            assert_error(await _token(other, name, "bad-password"), 401, "invalid_credentials")
    async with client_from(app, "198.51.100.77") as other:
        assert_error(await _token(other, "alice@example.com"), 429, "rate_limited")


async def test_failed_logins_are_limited_per_address(make_settings, start_app):
    app = create_app(make_settings(rate_login="3/15m"))
    client = await start_app(app)
    for name in ("alice", "bob", "carol", "dave"):
        await register(client, name)
    for name in ("alice", "bob", "carol"):
        assert_error(await _token(client, name, "bad-password"), 401, "invalid_credentials")
    # This address is blocked, for every account...
    assert_error(await _token(client, "dave"), 429, "rate_limited")
    # ...while dave logs in fine from elsewhere.
    async with client_from(app, "198.51.100.5") as other:
        assert (await _token(other, "dave")).status_code == 200


async def test_successful_login_resets_the_account_counter(make_settings, start_app):
    app = create_app(make_settings(rate_login="3/15m"))
    client = await start_app(app)
    await register(client, "alice")
    for n in range(2):
        async with client_from(app, f"198.51.100.{n}") as other:
            await _token(other, "alice", "bad-password")
    async with client_from(app, "198.51.100.50") as other:
        assert (await _token(other, "alice")).status_code == 200
    for n in range(2):
        async with client_from(app, f"198.51.100.{10 + n}") as other:
            assert_error(await _token(other, "alice", "bad-password"), 401, "invalid_credentials")
    async with client_from(app, "198.51.100.51") as other:
        assert (await _token(other, "alice")).status_code == 200


async def test_login_limits_are_shared_through_redis(make_settings, start_app, redis_settings):
    """Two app instances (think: two workers) count failures in one Redis."""
    settings = make_settings(rate_login="2/15m", **redis_settings)
    first = await start_app(create_app(settings))
    second = await start_app(create_app(settings))
    await register(first, "alice")
    assert_error(await _token(first, "alice", "bad-password"), 401, "invalid_credentials")
    assert_error(await _token(second, "alice", "bad-password"), 401, "invalid_credentials")
    response = await _token(first, "alice")
    assert_error(response, 429, "rate_limited")
    assert 1 <= int(response.headers["Retry-After"]) <= 900


async def test_rehashes_when_hash_parameters_change(make_settings, start_app, app, client):
    await register(client, "alice")
    async with app.state.db.read_session() as session:
        old_hash = await session.scalar(select(User.hashed_password))
    stronger = await start_app(create_app(make_settings(argon2_time_cost=2, argon2_memory_kib=16)))
    assert (await _token(stronger, "alice")).status_code == 200
    async with app.state.db.read_session() as session:
        new_hash = await session.scalar(select(User.hashed_password))
    assert new_hash != old_hash and "m=16,t=2" in new_hash
