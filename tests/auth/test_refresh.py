"""POST /api/auth/refresh and /logout: single-use refresh tokens with family revocation."""

import asyncio
from datetime import timedelta

from sqlalchemy import func, select, update

from huddle.auth.models import RefreshToken, User
from huddle.core.time import utcnow
from tests.helpers import assert_error, bearer, login, register


async def _refresh(client, token):
    return await client.post("/api/auth/refresh", json={"refresh_token": token})


async def _family_state(app):
    async with app.state.db.read_session() as session:
        rows = (await session.scalars(select(RefreshToken).order_by(RefreshToken.created_at))).all()
    return rows


async def test_refresh_rotates_and_old_token_dies(client, app):
    await register(client, "alice")
    first = await login(client, "alice")
    response = await _refresh(client, first["refresh_token"])
    assert response.status_code == 200, response.text
    second = response.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert (
        await client.get("/api/auth/me", headers=bearer(second["access_token"]))
    ).status_code == 200
    rows = await _family_state(app)
    assert len(rows) == 2
    old, new = rows
    assert old.family_id == new.family_id
    assert old.revoked_at is not None and old.replaced_by == new.id
    assert new.revoked_at is None
    # The successor keeps working.
    third = await _refresh(client, second["refresh_token"])
    assert third.status_code == 200


async def test_reusing_a_refresh_token_revokes_the_family(client, app):
    await register(client, "alice")
    first = await login(client, "alice")
    other_login = await login(client, "alice")  # a second device: a separate family
    second = (await _refresh(client, first["refresh_token"])).json()
    # The stolen old token comes back:
    reuse = await _refresh(client, first["refresh_token"])
    body = assert_error(reuse, 401, "invalid_token")
    assert "already used" in body["error"]
    assert reuse.headers["WWW-Authenticate"] == "Bearer"
    # ...and the legitimate successor is dead too (the whole family).
    assert_error(await _refresh(client, second["refresh_token"]), 401, "invalid_token")
    rows = await _family_state(app)
    family = [r for r in rows if r.family_id == rows[0].family_id]
    assert len(family) == 2 and all(r.revoked_at is not None for r in family)
    # The other device's login is untouched.
    assert (await _refresh(client, other_login["refresh_token"])).status_code == 200


async def test_concurrent_refreshes_with_one_token_yield_one_winner(client, app):
    await register(client, "alice")
    tokens = await login(client, "alice")
    responses = await asyncio.gather(*[_refresh(client, tokens["refresh_token"]) for _ in range(5)])
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(200) == 1, statuses
    assert all(s in (200, 401) for s in statuses)
    # Whatever the interleaving, no token of that family survives a detected reuse.
    rows = await _family_state(app)
    assert all(r.revoked_at is not None for r in rows)
    assert len(rows) <= 2


async def test_unknown_and_expired_refresh_tokens(client, app):
    await register(client, "alice")
    tokens = await login(client, "alice")
    assert_error(await _refresh(client, "not-a-token"), 401, "invalid_token")
    async with app.state.db.write_session() as session:
        await session.execute(
            update(RefreshToken).values(expires_at=utcnow() - timedelta(seconds=1))
        )
        await session.commit()
    body = assert_error(await _refresh(client, tokens["refresh_token"]), 401, "invalid_token")
    assert "expired" in body["error"].lower()


async def test_refresh_refused_for_deactivated_user(client, app):
    await register(client, "alice")
    tokens = await login(client, "alice")
    async with app.state.db.write_session() as session:
        await session.execute(update(User).values(is_active=False))
        await session.commit()
    assert_error(await _refresh(client, tokens["refresh_token"]), 401, "invalid_token")


async def test_bad_refresh_bodies_are_422(client):
    for body in ({}, {"refresh_token": ""}, {"refresh_token": 5}, {"refresh_token": "x" * 500}):
        assert_error(await client.post("/api/auth/refresh", json=body), 422, "validation_error")
    response = await client.post(
        "/api/auth/refresh", content=b"\xff\xfe", headers={"content-type": "application/json"}
    )
    assert_error(response, 422, "validation_error")


async def test_logout_revokes_the_family_only(client, app):
    await register(client, "alice")
    first = await login(client, "alice")
    second = await login(client, "alice")
    rotated = (await _refresh(client, first["refresh_token"])).json()
    response = await client.post(
        "/api/auth/logout", json={"refresh_token": rotated["refresh_token"]}
    )
    assert response.status_code == 204 and response.content == b""
    assert_error(await _refresh(client, rotated["refresh_token"]), 401, "invalid_token")
    assert (await _refresh(client, second["refresh_token"])).status_code == 200
    # Logging out twice is harmless; an unknown token is 401.
    again = await client.post("/api/auth/logout", json={"refresh_token": rotated["refresh_token"]})
    assert again.status_code == 204
    assert_error(
        await client.post("/api/auth/logout", json={"refresh_token": "nope"}), 401, "invalid_token"
    )
    async with app.state.db.read_session() as session:
        live = await session.scalar(
            select(func.count()).select_from(RefreshToken).where(RefreshToken.revoked_at.is_(None))
        )
    assert live == 1  # only the second device's successor
