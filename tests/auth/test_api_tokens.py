"""Personal API tokens: /api/auth/api-tokens."""

from datetime import timedelta

from sqlalchemy import select, update

from huddle.auth.models import ApiToken, User
from huddle.core.time import utcnow
from tests.helpers import assert_error, bearer, user_with_token


async def _create(client, headers, **body):
    response = await client.post(
        "/api/auth/api-tokens", headers=headers, json={"name": "ci", **body}
    )
    assert response.status_code == 201, response.text
    return response.json()


async def _wait_for_last_used(app, token_id):
    import asyncio

    for _ in range(100):
        async with app.state.db.read_session() as session:
            token = await session.get(ApiToken, token_id)
            if token.last_used_at is not None:
                return token.last_used_at
        await asyncio.sleep(0.02)
    raise AssertionError("last_used_at was never recorded")


async def test_create_shows_secret_once_and_stores_only_a_hash(client, app):
    _, headers = await user_with_token(client, "alice")
    created = await _create(client, headers, expires_in_days=30)
    assert set(created) == {
        "id",
        "name",
        "prefix",
        "created_at",
        "last_used_at",
        "expires_at",
        "token",
    }
    assert created["token"].startswith("hud_") and created["prefix"] == created["token"][:12]
    async with app.state.db.read_session() as session:
        row = await session.scalar(select(ApiToken))
    assert row.token_hash != created["token"] and created["token"] not in row.token_hash
    assert timedelta(days=29) < row.expires_at - utcnow() <= timedelta(days=30)
    listed = (await client.get("/api/auth/api-tokens", headers=headers)).json()
    assert listed["next_cursor"] is None
    assert [t["id"] for t in listed["items"]] == [created["id"]]
    assert "token" not in listed["items"][0]


async def test_api_token_works_as_bearer_and_records_use(client, app):
    user, headers = await user_with_token(client, "alice")
    created = await _create(client, headers)
    me = await client.get("/api/auth/me", headers=bearer(created["token"]))
    assert me.status_code == 200 and me.json()["id"] == user["id"]
    import uuid

    assert await _wait_for_last_used(app, uuid.UUID(created["id"]))


async def test_revoked_expired_and_unknown_tokens_are_refused(client, app):
    _, headers = await user_with_token(client, "alice")
    revoked = await _create(client, headers, name="old")
    expiring = await _create(client, headers, name="soon")
    response = await client.delete(f"/api/auth/api-tokens/{revoked['id']}", headers=headers)
    assert response.status_code == 204
    assert_error(
        await client.get("/api/auth/me", headers=bearer(revoked["token"])), 401, "invalid_token"
    )
    async with app.state.db.write_session() as session:
        await session.execute(
            update(ApiToken)
            .where(ApiToken.name == "soon")
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
        await session.commit()
    assert_error(
        await client.get("/api/auth/me", headers=bearer(expiring["token"])), 401, "invalid_token"
    )
    assert_error(await client.get("/api/auth/me", headers=bearer("hud_nope")), 401, "invalid_token")
    listed = (await client.get("/api/auth/api-tokens", headers=headers)).json()["items"]
    assert [t["name"] for t in listed] == ["soon"]


async def test_api_token_of_deactivated_user_is_refused(client, app):
    _, headers = await user_with_token(client, "alice")
    created = await _create(client, headers)
    async with app.state.db.write_session() as session:
        await session.execute(update(User).values(is_active=False))
        await session.commit()
    assert_error(
        await client.get("/api/auth/me", headers=bearer(created["token"])), 401, "invalid_token"
    )


async def test_tokens_are_private_to_their_owner(client):
    _, alice = await user_with_token(client, "alice")
    _, bob = await user_with_token(client, "bob")
    token = await _create(client, alice)
    assert (await client.get("/api/auth/api-tokens", headers=bob)).json()["items"] == []
    assert_error(
        await client.delete(f"/api/auth/api-tokens/{token['id']}", headers=bob), 404, "not_found"
    )
    assert (await client.get("/api/auth/me", headers=bearer(token["token"]))).status_code == 200


async def test_listing_pages_with_a_cursor(client):
    _, headers = await user_with_token(client, "alice")
    ids = [(await _create(client, headers, name=f"t{n}"))["id"] for n in range(5)]
    first = (await client.get("/api/auth/api-tokens?limit=2", headers=headers)).json()
    assert [t["id"] for t in first["items"]] == ids[::-1][:2]
    second = (
        await client.get(
            f"/api/auth/api-tokens?limit=2&cursor={first['next_cursor']}", headers=headers
        )
    ).json()
    third = (
        await client.get(
            f"/api/auth/api-tokens?limit=2&cursor={second['next_cursor']}", headers=headers
        )
    ).json()
    assert [t["id"] for t in second["items"] + third["items"]] == ids[::-1][2:]
    assert third["next_cursor"] is None
    assert_error(
        await client.get("/api/auth/api-tokens?cursor=%%%", headers=headers),
        422,
        "validation_error",
    )
    assert_error(
        await client.get("/api/auth/api-tokens?limit=201", headers=headers), 422, "validation_error"
    )
    assert_error(
        await client.get("/api/auth/api-tokens?limit=0", headers=headers), 422, "validation_error"
    )


async def test_api_token_validation_and_auth(client):
    _, headers = await user_with_token(client, "alice")
    for body in (
        {},
        {"name": ""},
        {"name": "x" * 101},
        {"name": "ok", "expires_in_days": 0},
        {"name": "ok", "expires_in_days": "5"},
        {"name": "ok", "expires_in_days": True},
    ):
        assert_error(
            await client.post("/api/auth/api-tokens", headers=headers, json=body),
            422,
            "validation_error",
        )
    assert_error(
        await client.post("/api/auth/api-tokens", json={"name": "x"}), 401, "not_authenticated"
    )
    assert_error(await client.get("/api/auth/api-tokens"), 401, "not_authenticated")
    assert_error(
        await client.delete("/api/auth/api-tokens/not-a-uuid", headers=headers),
        422,
        "validation_error",
    )
