"""GET/PATCH /api/auth/me."""

from sqlalchemy import select

from huddle.auth.models import RefreshToken
from tests.helpers import PASSWORD, assert_error, bearer, login, register, user_with_token


async def test_me_returns_the_caller_without_secrets(client):
    user, headers = await user_with_token(client, "alice")
    response = await client.get("/api/auth/me", headers=headers)
    assert response.status_code == 200
    assert response.json() == user
    assert "hashed_password" not in response.text


async def test_patch_profile_fields(client):
    _, headers = await user_with_token(client, "alice")
    response = await client.patch(
        "/api/auth/me", headers=headers, json={"full_name": "Alice L.", "username": "Alice2"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["full_name"] == "Alice L." and response.json()["username"] == "alice2"
    assert (await client.get("/api/auth/me", headers=headers)).json()["username"] == "alice2"
    assert (
        await client.post("/api/auth/token", data={"username": "alice2", "password": PASSWORD})
    ).status_code == 200


async def test_patch_rejects_taken_username_and_email(client):
    await register(client, "bob")
    _, headers = await user_with_token(client, "alice")
    body = assert_error(
        await client.patch("/api/auth/me", headers=headers, json={"username": "BOB"}),
        409,
        "conflict",
    )
    assert body["details"] == {"field": "username"}
    body = assert_error(
        await client.patch(
            "/api/auth/me",
            headers=headers,
            json={"email": "bob@example.com", "current_password": PASSWORD},
        ),
        409,
        "conflict",
    )
    assert body["details"] == {"field": "email"}


async def test_email_and_password_changes_need_the_current_password(client):
    _, headers = await user_with_token(client, "alice")
    for body in ({"password": "new password!"}, {"email": "new@example.com"}):
        assert_error(
            await client.patch("/api/auth/me", headers=headers, json=body), 422, "validation_error"
        )
    wrong = {"password": "new password!", "current_password": "not it at all"}
    assert_error(
        await client.patch("/api/auth/me", headers=headers, json=wrong), 401, "invalid_credentials"
    )
    assert (
        await client.post("/api/auth/token", data={"username": "alice", "password": PASSWORD})
    ).status_code == 200


async def test_password_change_revokes_all_refresh_tokens(client, app):
    _, headers = await user_with_token(client, "alice")
    other_device = await login(client, "alice")
    response = await client.patch(
        "/api/auth/me",
        headers=headers,
        json={"password": "brand new password", "current_password": PASSWORD},
    )
    assert response.status_code == 200, response.text
    refresh = await client.post(
        "/api/auth/refresh", json={"refresh_token": other_device["refresh_token"]}
    )
    assert_error(refresh, 401, "invalid_token")
    async with app.state.db.read_session() as session:
        assert all(r.revoked_at is not None for r in await session.scalars(select(RefreshToken)))
    old = await client.post("/api/auth/token", data={"username": "alice", "password": PASSWORD})
    assert_error(old, 401, "invalid_credentials")
    new = await client.post(
        "/api/auth/token", data={"username": "alice", "password": "brand new password"}
    )
    assert new.status_code == 200


async def test_patch_validation(client):
    _, headers = await user_with_token(client, "alice")
    for body in (
        {"is_superuser": True},
        {"username": "x"},
        {"password": "short", "current_password": PASSWORD},
    ):
        assert_error(
            await client.patch("/api/auth/me", headers=headers, json=body), 422, "validation_error"
        )
    assert (await client.get("/api/auth/me", headers=headers)).json()["is_superuser"] is False


async def test_me_needs_authentication(client):
    assert_error(
        await client.patch("/api/auth/me", json={"full_name": "x"}), 401, "not_authenticated"
    )
    assert_error(await client.get("/api/auth/me", headers=bearer("nope")), 401, "invalid_token")
