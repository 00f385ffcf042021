"""Input that must never reach the database, and limits that must hold under concurrency."""

import asyncio
import sqlite3

import httpx
import pytest
from sqlalchemy import select

from huddle.app import create_app
from huddle.auth.models import RefreshToken, User
from huddle.core.db import Database, SessionDep
from tests.helpers import PASSWORD, assert_error, bearer, login, register, user_with_token


def _client(app, address: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=(address, 1)), base_url="http://testserver"
    )


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (
            "/api/auth/register",
            b'{"email":"a@example.com","username":"abc","password":"\\ud800aaaaaaaa"}',
        ),
        (
            "/api/auth/register",
            b'{"email":"a@example.com","username":"abc","password":"aaaaaaaa\\u0000"}',
        ),
        (
            "/api/auth/register",
            b'{"email":"a@example.com","username":"abc","password":"aaaaaaaa","full_name":"x\\u0000y"}',
        ),
        (
            "/api/auth/register",
            b'{"email":"a@example.com","username":"abc","password":"aaaaaaaa","full_name":"\\udfff"}',
        ),
        ("/api/auth/refresh", b'{"refresh_token":"\\u0000"}'),
    ],
)
async def test_nul_and_lone_surrogates_are_422(client, app, path, body):
    response = await client.post(path, content=body, headers={"content-type": "application/json"})
    assert_error(response, 422, "validation_error")
    async with app.state.db.read_session() as session:
        assert (await session.scalar(select(User))) is None


async def test_nul_in_authenticated_bodies_and_forms_is_422(client):
    _, headers = await user_with_token(client, "alice")
    bad = {"name": "ci\x00"}
    assert_error(
        await client.post("/api/auth/api-tokens", headers=headers, json=bad),
        422,
        "validation_error",
    )
    assert_error(
        await client.patch("/api/auth/me", headers=headers, json={"full_name": "\x00"}),
        422,
        "validation_error",
    )
    response = await client.post(
        "/api/auth/token", data={"username": "al\x00ice", "password": PASSWORD}
    )
    assert_error(response, 422, "validation_error")


async def test_database_refusing_a_value_is_422_not_500(settings, start_app, is_postgres):
    """The backstop: a value no schema caught but the database refuses is bad input."""
    app = create_app(settings)

    @app.post("/raw-name")
    async def raw(session: SessionDep, name: str) -> dict[str, str]:
        session.add(User(email="raw@example.com", username="raw", full_name=name))
        await session.flush()
        return {"ok": "stored"}

    client = await start_app(app)
    response = await client.post("/raw-name", params={"name": "a\x00b"})
    if is_postgres:
        assert_error(response, 422, "validation_error")
    else:
        assert response.status_code == 200  # SQLite stores NUL; nothing to refuse


async def test_parallel_wrong_guesses_cannot_exceed_the_limit(make_settings, start_app):
    app = create_app(make_settings(rate_login="5/15m"))
    client = await start_app(app)
    await register(client, "alice")
    clients = [_client(app, f"198.51.100.{n}") for n in range(30)]
    try:
        responses = await asyncio.gather(
            *[
                c.post("/api/auth/token", data={"username": "alice", "password": f"guess-{n}"})
                for n, c in enumerate(clients)
            ]
        )
        statuses = [r.status_code for r in responses]
        assert statuses.count(401) <= 5 and statuses.count(429) >= 25, statuses
        right = await clients[0].post(
            "/api/auth/token", data={"username": "alice", "password": PASSWORD}
        )
        assert_error(right, 429, "rate_limited")
    finally:
        for c in clients:
            await c.aclose()


async def test_successful_logins_do_not_use_up_the_address_allowance(make_settings, start_app):
    app = create_app(make_settings(rate_login="3/15m"))
    client = await start_app(app)
    await register(client, "alice")
    for _ in range(6):
        assert (
            await client.post("/api/auth/token", data={"username": "alice", "password": PASSWORD})
        ).status_code == 200


async def test_current_password_guesses_through_patch_me_are_limited(make_settings, start_app):
    client = await start_app(create_app(make_settings(rate_login="3/15m")))
    _, headers = await user_with_token(client, "alice")
    for n in range(3):
        body = {"password": "new password 123", "current_password": f"guess {n}"}
        assert_error(
            await client.patch("/api/auth/me", headers=headers, json=body),
            401,
            "invalid_credentials",
        )
    body = {"password": "new password 123", "current_password": PASSWORD}
    assert_error(
        await client.patch("/api/auth/me", headers=headers, json=body), 429, "rate_limited"
    )


async def test_login_does_not_hold_the_sqlite_write_lock_while_hashing(
    client, app, settings, monkeypatch
):
    if not settings.is_sqlite:
        pytest.skip("SQLite-specific locking (this run is on PostgreSQL)")
    await register(client, "alice")
    path = settings.database_url.split("///", 1)[1]
    hasher = app.state.auth.hasher
    real_verify = hasher.verify
    observed = []

    async def verify_and_probe(password, hashed):
        probe = sqlite3.connect(path, timeout=0)
        try:
            probe.execute("BEGIN IMMEDIATE")  # fails at once if anyone holds the write lock
            probe.execute("ROLLBACK")
            observed.append("free")
        except sqlite3.OperationalError as exc:
            observed.append(str(exc))
        finally:
            probe.close()
        return await real_verify(password, hashed)

    monkeypatch.setattr(hasher, "verify", verify_and_probe)
    assert (
        await client.post("/api/auth/token", data={"username": "alice", "password": PASSWORD})
    ).status_code == 200
    assert observed == ["free"]


async def test_family_revocation_catches_a_rotation_in_flight(settings, postgres_only):
    """A replayed token revokes the successor a concurrent rotation is still committing."""
    from huddle.auth import service
    from huddle.core.errors import InvalidToken

    db = Database(settings)
    try:
        async with db.write_session() as session:
            user = User(email="v@example.com", username="victim", hashed_password=None)
            session.add(user)
            await session.flush()
            t0 = (await service.issue_tokens(session, settings, user)).refresh_token
            await session.commit()
        async with db.write_session() as session:
            t1 = (await service.refresh(session, settings, t0)).refresh_token
            await session.commit()
        thief = db.write_session()
        t2 = (await service.refresh(thief, settings, t1)).refresh_token  # not committed yet

        async def replay_old_token() -> str:
            async with db.write_session() as session:
                try:
                    await service.refresh(session, settings, t0)
                except InvalidToken as exc:
                    await session.commit()  # keep_changes, as the request does
                    return exc.code
            return "accepted"

        replay = asyncio.create_task(replay_old_token())
        await asyncio.sleep(0.3)  # let the replay block on the thief's row lock
        assert not replay.done()
        await thief.commit()
        await thief.close()
        assert await replay == "invalid_token"
        async with db.write_session() as session:
            with pytest.raises(InvalidToken):
                await service.refresh(session, settings, t2)
        async with db.read_session() as session:
            assert all(
                r.revoked_at is not None for r in await session.scalars(select(RefreshToken))
            )
    finally:
        await db.dispose()


async def test_refused_cors_preflight_is_in_the_error_shape(make_settings, start_app):
    client = await start_app(create_app(make_settings(cors_origins=["https://app.example"])))
    allowed = await client.options(
        "/api/auth/token",
        headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"},
    )
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://app.example"
    refused = await client.options(
        "/api/auth/token",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    body = assert_error(refused, 400, "cors_refused")
    assert "origin" in body["error"].lower()


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b"--x\r\n", "multipart/form-data"),
        (b"username=" + b"a" * (600 * 1024) + b"&password=x", "application/x-www-form-urlencoded"),
    ],
)
async def test_unparseable_bodies_are_422(client, content, content_type):
    response = await client.post(
        "/api/auth/token", content=content, headers={"content-type": content_type}
    )
    assert_error(response, 422, "validation_error")


async def test_a_form_over_the_body_limit_is_413(client):
    """The body limit (HUDDLE_MAX_BODY_KB, 1 MB by default) answers before any form parser."""
    content = b"username=" + b"a" * (1024 * 1024 + 10) + b"&password=x"
    response = await client.post(
        "/api/auth/token",
        content=content,
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    body = assert_error(response, 413, "payload_too_large")
    assert body["details"] == {"limit": 1024 * 1024}


async def test_logout_and_me_still_work_after_hardening(client):
    await register(client, "alice")
    tokens = await login(client, "alice")
    assert (
        await client.get("/api/auth/me", headers=bearer(tokens["access_token"]))
    ).status_code == 200
    assert (
        await client.post("/api/auth/logout", json={"refresh_token": tokens["refresh_token"]})
    ).status_code == 204
