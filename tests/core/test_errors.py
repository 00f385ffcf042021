"""The one error contract and the request-owned transaction."""

import logging

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession

from huddle.app import create_app
from huddle.auth.models import User
from huddle.core.db import SessionDep
from huddle.core.errors import AppError, Conflict
from tests.helpers import assert_error


async def _user_count(app) -> int:
    async with app.state.db.read_session() as session:
        return int(await session.scalar(select(func.count()).select_from(User)))


async def test_failing_commit_gives_an_error_response_not_201(client, app, monkeypatch):
    real_commit = AsyncSession.commit

    async def failing_commit(self):
        raise OperationalError("COMMIT", {}, Exception("disk I/O error"))

    monkeypatch.setattr(AsyncSession, "commit", failing_commit)
    response = await client.post(
        "/api/auth/register",
        json={"email": "a@example.com", "username": "alice", "password": "password1"},
    )
    monkeypatch.setattr(AsyncSession, "commit", real_commit)
    body = assert_error(response, 500, "internal_error")
    assert set(body["details"]) == {"request_id"}
    assert body["details"]["request_id"] == response.headers["X-Request-ID"]
    assert "disk" not in response.text and "Traceback" not in response.text
    assert await _user_count(app) == 0


async def test_unhandled_exception_is_500_in_shape_and_logged(settings, start_app, caplog):
    app = create_app(settings)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internals: password=hunter2")

    client = await start_app(app)
    with caplog.at_level(logging.ERROR, logger="huddle"):
        response = await client.get("/boom", headers={"X-Request-ID": "req-123"})
    body = assert_error(response, 500, "internal_error")
    assert body["details"] == {"request_id": "req-123"}
    assert response.headers["X-Request-ID"] == "req-123"
    assert "hunter2" not in response.text
    assert any("req-123" in r.getMessage() and r.exc_info for r in caplog.records)


async def test_app_error_with_keep_changes_commits(settings, start_app):
    """An AppError that must stick (e.g. refresh-token reuse) commits; others roll back."""
    app = create_app(settings)

    class Sticky(Conflict):
        keep_changes = True

    async def add_user(session: AsyncSession, name: str) -> None:
        session.add(User(email=f"{name}@example.com", username=name, hashed_password=None))
        await session.flush()

    @app.post("/sticky")
    async def sticky(session: SessionDep) -> None:
        await add_user(session, "kept")
        raise Sticky("kept anyway")

    @app.post("/plain")
    async def plain(session: SessionDep) -> None:
        await add_user(session, "dropped")
        raise Conflict("rolled back")

    client = await start_app(app)
    assert_error(await client.post("/sticky"), 409, "conflict")
    assert_error(await client.post("/plain"), 409, "conflict")
    async with app.state.db.read_session() as session:
        names = set(await session.scalars(select(User.username)))
    assert names == {"kept"}


async def test_unknown_route_and_wrong_method(client):
    body = assert_error(await client.get("/api/nope"), 404, "not_found")
    assert body["error"] == "Not Found"
    response = await client.delete("/api/auth/me")
    assert_error(response, 405, "method_not_allowed")
    assert "GET" in response.headers["allow"]


async def test_request_id_is_generated_or_kept(client):
    generated = await client.get("/health")
    assert len(generated.headers["X-Request-ID"]) == 32
    kept = await client.get("/health", headers={"X-Request-ID": "abc-DEF.1"})
    assert kept.headers["X-Request-ID"] == "abc-DEF.1"
    replaced = await client.get("/health", headers={"X-Request-ID": "bad id\twith junk"})
    assert replaced.headers["X-Request-ID"] != "bad id\twith junk"


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b"not json", "application/json"),
        (b"[1, 2, 3]", "application/json"),
        (b"null", "application/json"),
        (b'{"email": "a@b.c"}', "text/plain"),
        (b"\x00\x01\x02", "application/octet-stream"),
    ],
)
async def test_odd_bodies_are_422(client, content, content_type):
    response = await client.post(
        "/api/auth/register", content=content, headers={"content-type": content_type}
    )
    assert_error(response, 422, "validation_error")


def test_app_error_defaults():
    err = AppError()
    assert (err.status_code, err.code, err.message) == (
        500,
        "internal_error",
        "Internal server error",
    )
    assert Conflict("x", details={"a": 1}).details == {"a": 1}


async def test_every_response_carries_the_security_headers(settings, start_app):
    app = create_app(settings)

    @app.get("/boom-again")
    async def boom() -> None:
        raise RuntimeError("unhandled")

    client = await start_app(app)
    for response in (
        await client.get("/health"),
        await client.get("/api/workspaces"),  # 401 in the error shape
        await client.get("/no/such/route"),
        await client.get("/boom-again"),  # the last-resort 500
    ):
        headers = response.headers
        assert headers["X-Content-Type-Options"] == "nosniff", response.url
        assert headers["X-Frame-Options"] == "DENY"
        assert headers["Content-Security-Policy"] == "frame-ancestors 'none'"
        assert headers["Referrer-Policy"] == "no-referrer"
        assert "Strict-Transport-Security" not in headers  # plain HTTP: no HSTS
    secure = httpx.AsyncClient(transport=client._transport, base_url="https://testserver")
    async with secure:
        response = await secure.get("/health")
    assert response.headers["Strict-Transport-Security"].startswith("max-age=31536000")
