"""Actions go through the services the API uses: deactivate/reactivate, revoke."""

from __future__ import annotations

import uuid

import httpx
from fastapi import FastAPI
from sqlalchemy import select

from huddle.auth.models import ApiToken, RefreshToken, User
from huddle.events.models import Event
from tests.admin_panel.conftest import panel_login
from tests.helpers import bearer
from tests.world import add_user


async def _user(app: FastAPI, user_id: str) -> User:
    async with app.state.db.read_session() as session:
        user = await session.get(User, uuid.UUID(user_id))
        assert user is not None
        return user


async def _events(app: FastAPI, user_id: str) -> list[Event]:
    await app.state.dispatcher.flush()
    async with app.state.db.read_session() as session:
        rows = await session.scalars(
            select(Event).where(Event.subject_id == uuid.UUID(user_id)).order_by(Event.id)
        )
        return list(rows)


async def test_deactivate_goes_through_the_admin_service(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    root, _ = await add_user(app, "root", superuser=True)
    target, headers = await add_user(app, "target")
    other, other_headers = await add_user(app, "other")
    created = await client.post("/api/auth/api-tokens", json={"name": "ci"}, headers=headers)
    assert created.status_code == 201, created.text
    api_token = created.json()["token"]
    pair = await client.post(
        "/api/auth/token", data={"username": "target", "password": "correct horse battery"}
    )
    assert pair.status_code == 200
    assert (await client.get("/api/auth/me", headers=bearer(api_token))).status_code == 200

    await panel_login(client, "root")
    response = await client.get("/admin/user/action/deactivate", params={"pks": target["id"]})
    assert response.status_code == 302
    assert response.headers["location"].endswith("/admin/user/list")

    assert (await _user(app, target["id"])).is_active is False
    assert (await _user(app, other["id"])).is_active is True
    [event] = await _events(app, target["id"])
    assert event.type == "user.updated"
    assert event.topic == f"user:{target['id']}"
    assert event.actor == {"kind": "user", "id": root["id"]}
    assert event.data["is_active"] is False
    assert event.seq is not None  # dispatched after the commit
    # Signed out everywhere: access token, API token and refresh token all refused.
    assert (await client.get("/api/auth/me", headers=headers)).status_code == 401
    assert (await client.get("/api/auth/me", headers=bearer(api_token))).status_code == 401
    refresh = await client.post(
        "/api/auth/refresh", json={"refresh_token": pair.json()["refresh_token"]}
    )
    assert refresh.status_code == 401
    async with app.state.db.read_session() as session:
        live = await session.scalar(
            select(RefreshToken).where(
                RefreshToken.user_id == uuid.UUID(target["id"]), RefreshToken.revoked_at.is_(None)
            )
        )
        assert live is None
    assert (await client.get("/api/auth/me", headers=other_headers)).status_code == 200
    # The list shows the outcome.
    page = await client.get("/admin/user/list")
    assert "1 user(s) deactivated" in page.text

    back = await client.get("/admin/user/action/reactivate", params={"pks": target["id"]})
    assert back.status_code == 302
    assert (await _user(app, target["id"])).is_active is True
    events = await _events(app, target["id"])
    assert [e.type for e in events] == ["user.updated", "user.updated"]
    assert events[1].data["is_active"] is True
    # Reactivation does not bring the revoked API token back.
    assert (await client.get("/api/auth/me", headers=bearer(api_token))).status_code == 401


async def test_a_superuser_cannot_deactivate_themself_and_nothing_changes(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    root, _ = await add_user(app, "root", superuser=True)
    target, _ = await add_user(app, "target")
    await panel_login(client, "root")
    response = await client.get(
        "/admin/user/action/deactivate", params={"pks": f"{target['id']},{root['id']}"}
    )
    assert response.status_code == 302
    # All or nothing: the service refused the self-deactivation, so the batch rolled back.
    assert (await _user(app, target["id"])).is_active is True
    assert (await _user(app, root["id"])).is_active is True
    assert await _events(app, target["id"]) == []
    page = await client.get("/admin/user/list")
    assert "Nothing changed: You cannot deactivate or demote yourself" in page.text


async def test_revoke_api_token(app: FastAPI, client: httpx.AsyncClient) -> None:
    await add_user(app, "root", superuser=True)
    _, headers = await add_user(app, "owner")
    kept = (
        await client.post("/api/auth/api-tokens", json={"name": "kept"}, headers=headers)
    ).json()
    gone = (
        await client.post("/api/auth/api-tokens", json={"name": "gone"}, headers=headers)
    ).json()
    await panel_login(client, "root")
    listing = await client.get("/admin/api-token/list")
    assert listing.status_code == 200 and gone["prefix"] in listing.text
    response = await client.get("/admin/api-token/action/revoke", params={"pks": gone["id"]})
    assert response.status_code == 302
    assert (await client.get("/api/auth/me", headers=bearer(gone["token"]))).status_code == 401
    assert (await client.get("/api/auth/me", headers=bearer(kept["token"]))).status_code == 200
    async with app.state.db.read_session() as session:
        row = await session.get(ApiToken, uuid.UUID(gone["id"]))
        assert row is not None and row.revoked_at is not None
    # Revoking again is harmless.
    again = await client.get("/admin/api-token/action/revoke", params={"pks": gone["id"]})
    assert again.status_code == 302


async def test_views_cannot_create_edit_delete_or_export(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    root, _ = await add_user(app, "root", superuser=True)
    await panel_login(client, "root")
    uid = root["id"]
    assert (await client.get("/admin/user/create")).status_code == 403
    assert (await client.get(f"/admin/user/edit/{uid}")).status_code == 403
    edit = await client.post(f"/admin/user/edit/{uid}", data={"is_superuser": "false"})
    assert edit.status_code == 403
    assert (await client.delete("/admin/user/delete", params={"pks": uid})).status_code == 403
    assert (await client.get("/admin/user/export/csv")).status_code == 403
    assert (await client.get("/admin/user/export/json")).status_code == 403
    assert (await _user(app, uid)).is_superuser is True
