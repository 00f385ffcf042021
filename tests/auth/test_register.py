"""POST /api/auth/register."""

import pytest
from sqlalchemy import select

from huddle.auth.models import User
from tests.helpers import assert_error, register


async def _user_row(app, username):
    async with app.state.db.read_session() as session:
        return await session.scalar(select(User).where(User.username == username))


async def test_register_creates_user_with_hashed_password(client, app):
    response = await client.post(
        "/api/auth/register",
        json={
            "email": "  Alice@Example.COM",
            "username": "Alice",
            "password": "s3cret-password",
            "full_name": " Alice Liddell ",
        },
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {
        "id",
        "email",
        "username",
        "full_name",
        "is_active",
        "is_superuser",
        "created_at",
    }
    assert body["email"] == "alice@example.com"
    assert body["username"] == "alice"
    assert body["full_name"] == "Alice Liddell"
    assert body["is_active"] is True and body["is_superuser"] is False
    assert body["created_at"].endswith(("Z", "+00:00"))
    row = await _user_row(app, "alice")
    assert row is not None and str(row.id) == body["id"]
    assert row.hashed_password.startswith("$argon2id$")
    assert "s3cret-password" not in row.hashed_password
    # UUIDv7: version nibble is 7.
    assert body["id"][14] == "7"


@pytest.mark.parametrize(
    "email",
    ["alice@example.com", "ALICE@EXAMPLE.COM", "Alice@Example.com"],
)
async def test_duplicate_email_is_409_case_insensitively(client, email):
    await register(client, "alice")
    response = await client.post(
        "/api/auth/register", json={"email": email, "username": "other", "password": "password1"}
    )
    body = assert_error(response, 409, "conflict")
    assert body["details"] == {"field": "email"}


async def test_duplicate_username_is_409_case_insensitively(client):
    await register(client, "alice")
    response = await client.post(
        "/api/auth/register",
        json={"email": "new@example.com", "username": "ALICE", "password": "password1"},
    )
    body = assert_error(response, 409, "conflict")
    assert body["details"] == {"field": "username"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "a@example.com", "username": "abc", "password": "short"}, "password"),
        ({"email": "a@example.com", "username": "abc", "password": "x" * 257}, "password"),
        ({"email": "not-an-email", "username": "abc", "password": "password1"}, "email"),
        ({"email": "a@example.com", "username": "ab", "password": "password1"}, "username"),
        ({"email": "a@example.com", "username": "bad name", "password": "password1"}, "username"),
        ({"email": "a@example.com", "username": "-abc", "password": "password1"}, "username"),
        ({"email": "a@example.com", "password": "password1"}, "username"),
        ({"email": "a@example.com", "username": 5, "password": "password1"}, "username"),
        ({"email": "a@example.com", "username": "abc", "password": "password1", "x": 1}, "x"),
    ],
)
async def test_invalid_input_is_422_with_details(client, app, body, field):
    response = await client.post("/api/auth/register", json=body)
    error = assert_error(response, 422, "validation_error")
    assert any(issue["loc"][-1] == field for issue in error["details"]), error
    assert all(set(issue) == {"loc", "msg"} for issue in error["details"])
    async with app.state.db.read_session() as session:
        assert (await session.scalar(select(User))) is None


async def test_malformed_json_is_422(client):
    response = await client.post(
        "/api/auth/register", content=b'{"email": ', headers={"content-type": "application/json"}
    )
    assert_error(response, 422, "validation_error")


async def test_registration_is_rate_limited_per_address(make_settings, start_app):
    from huddle.app import create_app

    client = await start_app(create_app(make_settings(rate_register="2/1h")))
    await register(client)
    await register(client)
    response = await client.post(
        "/api/auth/register",
        json={"email": "third@example.com", "username": "third", "password": "password1"},
    )
    body = assert_error(response, 429, "rate_limited")
    assert 3500 <= int(response.headers["Retry-After"]) <= 3600
    assert body["details"]["retry_after"] == int(response.headers["Retry-After"])
