"""/api/admin/users: search, pagination, (de)activation, promotion and deletion of accounts.

Who may call these routes is covered by the authorization matrix; these tests cover what
the routes do: the bodies they answer with and what changes (tokens, rows, events).
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import select

from huddle.auth.models import ApiToken, RefreshToken, User
from huddle.events.models import Event
from huddle.workspaces.models import Membership
from tests.helpers import PASSWORD, assert_error, bearer, register
from tests.world import World, build_world, events, unknown_id

USER_FIELDS = {"id", "email", "username", "full_name", "is_active", "is_superuser", "created_at"}


async def _search(world: World, **params: Any) -> dict[str, Any]:
    response = await world.client.get(
        "/api/admin/users", params=params, headers=world.headers["superuser"]
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"items", "next_cursor"}
    return body


async def _usernames(world: World, q: str) -> list[str]:
    body = await _search(world, q=q)
    assert body["next_cursor"] is None
    return sorted(user["username"] for user in body["items"])


async def _user_row(world: World, user_id: str) -> User | None:
    async with world.app.state.db.read_session() as session:
        return await session.get(User, uuid.UUID(user_id))


async def _login(world: World, username: str) -> dict[str, Any]:
    response = await world.client.post(
        "/api/auth/token", data={"username": username, "password": PASSWORD}
    )
    assert response.status_code == 200, response.text
    return response.json()


# --- GET /api/admin/users -----------------------------------------------------------------


async def test_search_matches_email_username_and_full_name_case_insensitively(client, app):
    world = await build_world(client, app)
    jane = await register(
        client, "jdoe", email="Captain.Planet@Example.org", full_name="Jane Quimby"
    )
    await register(client, "someone", full_name="Other Person")

    by_email = await _search(world, q="PLANET@EXAMPLE")
    assert [u["id"] for u in by_email["items"]] == [jane["id"]]
    assert by_email["items"][0] == {
        "id": jane["id"],
        "email": "captain.planet@example.org",
        "username": "jdoe",
        "full_name": "Jane Quimby",
        "is_active": True,
        "is_superuser": False,
        "created_at": jane["created_at"],
    }
    assert await _usernames(world, "JDoE") == ["jdoe"]
    assert await _usernames(world, "jane QUIM") == ["jdoe"]
    # A query matching nothing is an empty page, not an error.
    assert await _usernames(world, "no-such-person") == []
    # Without q, everyone: the world's eight users and the two registered here.
    everyone = await _search(world)
    assert len(everyone["items"]) == 10 and everyone["next_cursor"] is None


async def test_percent_and_underscore_in_q_are_literal(client, app):
    world = await build_world(client, app)
    await register(client, "under_score", full_name="Ann Example")
    await register(client, "underxscore", full_name="Bob Example")
    await register(client, "percent", full_name="100% Done")
    await register(client, "nopercent", full_name="100 Done")

    # As LIKE wildcards these would match every user.
    assert await _usernames(world, "%") == ["percent"]
    assert await _usernames(world, "_") == ["under_score"]
    # As wildcards these would also match the decoys.
    assert await _usernames(world, "r_s") == ["under_score"]
    assert await _usernames(world, "0% d") == ["percent"]
    assert await _usernames(world, "%%") == []
    # A backslash is literal too (and is nobody's).
    assert await _usernames(world, "\\") == []


async def test_q_longer_than_100_characters_is_422(client, app):
    world = await build_world(client, app)
    response = await world.call("superuser", "GET", "/api/admin/users", params={"q": "a" * 101})
    body = assert_error(response, 422, "validation_error")
    assert any("q" in issue["loc"] for issue in body["details"])


async def test_pages_newest_first_with_a_cursor(client, app):
    world = await build_world(client, app)
    for n in range(3):
        await register(client, f"paged{n}")
    async with app.state.db.read_session() as session:
        expected = [str(i) for i in await session.scalars(select(User.id).order_by(User.id.desc()))]
    assert len(expected) == 11

    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = await _search(world, **params)
        pages += 1
        assert 1 <= len(page["items"]) <= 3
        seen += [user["id"] for user in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 4
    assert seen == expected
    # The newest account comes first.
    assert (await _search(world, limit=1))["items"][0]["username"] == "paged2"

    # A search pages the same way.
    first = await _search(world, q="paged", limit=2)
    assert [u["username"] for u in first["items"]] == ["paged2", "paged1"]
    rest = await _search(world, q="paged", limit=2, cursor=first["next_cursor"])
    assert [u["username"] for u in rest["items"]] == ["paged0"]
    assert rest["next_cursor"] is None

    bad = await world.call("superuser", "GET", "/api/admin/users", params={"cursor": "%%%"})
    assert_error(bad, 422, "validation_error")


async def test_bodies_never_carry_a_password_hash(client, app):
    world = await build_world(client, app)
    response = await world.call("superuser", "GET", "/api/admin/users")
    assert response.status_code == 200
    items = response.json()["items"]
    assert items and all(set(user) == USER_FIELDS for user in items)
    patched = await world.call(
        "superuser", "PATCH", "/api/admin/users/{bystander_id}", json={"is_superuser": True}
    )
    assert patched.status_code == 200 and set(patched.json()) == USER_FIELDS
    row = await _user_row(world, world.ids["bystander_id"])
    assert row is not None and row.hashed_password.startswith("$argon2")
    for text in (response.text, patched.text):
        assert "password" not in text and "$argon2" not in text
        assert row.hashed_password not in text
    feed = await events(world, "bystander", topic="user:{bystander_id}")
    assert [e["type"] for e in feed] == ["user.updated"]
    assert set(feed[0]["data"]) == USER_FIELDS


# --- PATCH /api/admin/users/{uid} ---------------------------------------------------------


async def test_deactivation_stops_access_refresh_and_api_tokens(client, app):
    world = await build_world(client, app)
    uid = world.ids["bystander_id"]
    pair = await _login(world, "bystander")
    access = bearer(pair["access_token"])
    created = await client.post("/api/auth/api-tokens", headers=access, json={"name": "ci"})
    assert created.status_code == 201, created.text
    api = bearer(created.json()["token"])
    # Everything works before.
    for headers in (access, api, world.headers["bystander"]):
        me = await client.get("/api/auth/me", headers=headers)
        assert me.status_code == 200 and me.json()["id"] == uid
    rotated = await client.post("/api/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert rotated.status_code == 200, rotated.text
    refresh_token = rotated.json()["refresh_token"]

    response = await world.call(
        "superuser", "PATCH", "/api/admin/users/{bystander_id}", json={"is_active": False}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"] == uid and body["username"] == "bystander"
    assert body["is_active"] is False and body["is_superuser"] is False

    for headers in (access, api, world.headers["bystander"]):
        assert_error(await client.get("/api/auth/me", headers=headers), 401, "invalid_token")
    assert_error(
        await client.post("/api/auth/refresh", json={"refresh_token": refresh_token}),
        401,
        "invalid_token",
    )
    assert_error(
        await client.post("/api/auth/token", data={"username": "bystander", "password": PASSWORD}),
        401,
        "account_disabled",
    )
    row = await _user_row(world, uid)
    assert row is not None and row.is_active is False
    async with app.state.db.read_session() as session:
        refresh_rows = list(
            await session.scalars(select(RefreshToken).where(RefreshToken.user_id == row.id))
        )
        api_rows = list(await session.scalars(select(ApiToken).where(ApiToken.user_id == row.id)))
    assert refresh_rows and all(r.revoked_at is not None for r in refresh_rows)
    assert len(api_rows) == 1 and api_rows[0].revoked_at is not None
    # Listed as inactive.
    listed = (await _search(world, q="bystander"))["items"]
    assert [(u["id"], u["is_active"]) for u in listed] == [(uid, False)]


async def test_reactivation_lets_the_user_sign_in_again_but_old_secrets_stay_dead(client, app):
    world = await build_world(client, app)
    uid = world.ids["bystander_id"]
    pair = await _login(world, "bystander")
    created = await client.post(
        "/api/auth/api-tokens", headers=bearer(pair["access_token"]), json={"name": "ci"}
    )
    api_token = created.json()["token"]
    await world.ok(
        "superuser", "PATCH", "/api/admin/users/{bystander_id}", json={"is_active": False}
    )

    response = await world.call(
        "superuser", "PATCH", "/api/admin/users/{bystander_id}", json={"is_active": True}
    )
    assert response.status_code == 200, response.text
    assert response.json()["is_active"] is True and response.json()["id"] == uid
    row = await _user_row(world, uid)
    assert row is not None and row.is_active is True

    fresh = await _login(world, "bystander")
    me = await client.get("/api/auth/me", headers=bearer(fresh["access_token"]))
    assert me.status_code == 200 and me.json()["is_active"] is True
    # What deactivation revoked is not brought back.
    assert_error(await client.get("/api/auth/me", headers=bearer(api_token)), 401, "invalid_token")
    assert_error(
        await client.post("/api/auth/refresh", json={"refresh_token": pair["refresh_token"]}),
        401,
        "invalid_token",
    )
    # Their workspace membership survived the deactivation.
    ws = await client.get(
        f"/api/workspaces/{world.ids['W']}", headers=bearer(fresh["access_token"])
    )
    assert ws.status_code == 200 and ws.json()["role"] == "member"


async def test_user_updated_events_reach_only_that_user(client, app):
    world = await build_world(client, app)
    uid = world.ids["bystander_id"]
    await world.ok(
        "superuser", "PATCH", "/api/admin/users/{bystander_id}", json={"is_active": False}
    )
    await world.ok(
        "superuser", "PATCH", "/api/admin/users/{bystander_id}", json={"is_active": True}
    )
    # No change, no event.
    same = await world.ok(
        "superuser", "PATCH", "/api/admin/users/{bystander_id}", json={"is_active": True}
    )
    assert same["is_active"] is True

    feed = await events(world, "bystander", topic="user:{bystander_id}")
    assert [e["type"] for e in feed] == ["user.updated", "user.updated"]
    for event, active in zip(feed, (False, True), strict=True):
        assert event["topic"] == f"user:{uid}"
        assert event["subject_id"] == uid
        assert event["workspace_id"] is None
        assert event["actor"] == {"kind": "user", "id": world.ids["superuser_id"]}
        assert event["data"]["id"] == uid and event["data"]["is_active"] is active
    # The unfiltered feed of that user has them too; nobody else sees them.
    assert [e["id"] for e in await events(world, "bystander") if e["type"] == "user.updated"] == [
        e["id"] for e in feed
    ]
    for role in ("member", "admin", "superuser"):
        assert all(e["type"] != "user.updated" for e in await events(world, role))
    denied = await world.call("member", "GET", "/api/events", params={"topic": f"user:{uid}"})
    assert_error(denied, 404, "not_found")


async def test_promote_and_demote_superuser(client, app):
    world = await build_world(client, app)
    uid = world.ids["member_id"]
    assert_error(await world.call("member", "GET", "/api/admin/users"), 403, "forbidden")

    promoted = await world.call(
        "superuser", "PATCH", "/api/admin/users/{member_id}", json={"is_superuser": True}
    )
    assert promoted.status_code == 200, promoted.text
    assert promoted.json()["is_superuser"] is True and promoted.json()["is_active"] is True
    assert (await _user_row(world, uid)).is_superuser is True
    listed = await world.call("member", "GET", "/api/admin/users")
    assert listed.status_code == 200 and len(listed.json()["items"]) == 8

    demoted = await world.call(
        "superuser", "PATCH", "/api/admin/users/{member_id}", json={"is_superuser": False}
    )
    assert demoted.status_code == 200, demoted.text
    assert demoted.json()["is_superuser"] is False
    assert (await _user_row(world, uid)).is_superuser is False
    assert_error(await world.call("member", "GET", "/api/admin/users"), 403, "forbidden")

    feed = await events(world, "member", topic="user:{member_id}")
    assert [(e["type"], e["data"]["is_superuser"]) for e in feed] == [
        ("user.updated", True),
        ("user.updated", False),
    ]


@pytest.mark.parametrize("body", [{"is_active": False}, {"is_superuser": False}])
async def test_superuser_cannot_deactivate_or_demote_themselves(client, app, body):
    world = await build_world(client, app)
    response = await world.call("superuser", "PATCH", "/api/admin/users/{superuser_id}", json=body)
    assert_error(response, 409, "conflict")
    row = await _user_row(world, world.ids["superuser_id"])
    assert row is not None and row.is_active is True and row.is_superuser is True
    assert (await world.call("superuser", "GET", "/api/admin/users")).status_code == 200
    assert await events(world, "superuser", topic="user:{superuser_id}") == []


async def test_a_second_superuser_may_demote_the_first(client, app):
    world = await build_world(client, app)
    await world.ok(
        "superuser", "PATCH", "/api/admin/users/{member_id}", json={"is_superuser": True}
    )
    response = await world.call(
        "member", "PATCH", "/api/admin/users/{superuser_id}", json={"is_superuser": False}
    )
    assert response.status_code == 200, response.text
    assert response.json()["is_superuser"] is False
    assert_error(await world.call("superuser", "GET", "/api/admin/users"), 403, "forbidden")


async def test_unknown_user_is_404(client, app):
    world = await build_world(client, app)
    missing = unknown_id()
    patched = await world.call(
        "superuser", "PATCH", f"/api/admin/users/{missing}", json={"is_active": False}
    )
    assert_error(patched, 404, "not_found")
    assert_error(
        await world.call("superuser", "DELETE", f"/api/admin/users/{missing}"), 404, "not_found"
    )
    assert len((await _search(world))["items"]) == 8


@pytest.mark.parametrize(
    "body",
    [{"is_active": "no"}, {"is_active": 0}, {"is_superuser": None, "role": "god"}, {"email": "x"}],
)
async def test_invalid_patch_is_422_and_changes_nothing(client, app, body):
    world = await build_world(client, app)
    response = await world.call("superuser", "PATCH", "/api/admin/users/{member_id}", json=body)
    assert_error(response, 422, "validation_error")
    row = await _user_row(world, world.ids["member_id"])
    assert row is not None and row.is_active is True and row.is_superuser is False
    assert await events(world, "member", topic="user:{member_id}") == []


# --- DELETE /api/admin/users/{uid} --------------------------------------------------------


async def test_delete_removes_the_row_and_its_memberships(client, app):
    world = await build_world(client, app)
    uid = world.ids["bystander_id"]
    response = await world.call("superuser", "DELETE", "/api/admin/users/{bystander_id}")
    assert response.status_code == 204 and response.content == b""

    assert await _user_row(world, uid) is None
    async with app.state.db.read_session() as session:
        memberships = await session.scalars(
            select(Membership).where(Membership.user_id == uuid.UUID(uid))
        )
        assert list(memberships) == []
        deleted = list(await session.scalars(select(Event).where(Event.type == "user.deleted")))
    assert [(str(e.subject_id), e.data) for e in deleted] == [(uid, {"id": uid})]
    assert await _usernames(world, "bystander") == []
    members = await world.ok("admin", "GET", "/api/workspaces/{W}/members")
    assert uid not in [m["user"]["id"] for m in members["items"]]
    assert_error(await world.call("bystander", "GET", "/api/auth/me"), 401, "invalid_token")
    # Gone means gone: a second delete is 404.
    again = await world.call("superuser", "DELETE", "/api/admin/users/{bystander_id}")
    assert_error(again, 404, "not_found")


async def test_deleting_the_only_admin_of_live_workspaces_is_409(client, app):
    world = await build_world(client, app)
    # admin is the only admin of W; give them a second workspace they alone run.
    w3 = await world.ok("admin", "POST", "/api/workspaces", 201, json={"name": "Third"})
    response = await world.call("superuser", "DELETE", "/api/admin/users/{admin_id}")
    body = assert_error(response, 409, "conflict")
    assert set(body["details"]) == {"workspace_ids"}
    assert sorted(body["details"]["workspace_ids"]) == sorted([world.ids["W"], w3["id"]])
    assert await _user_row(world, world.ids["admin_id"]) is not None
    assert (await world.call("admin", "GET", "/api/workspaces/{W}")).status_code == 200

    # W3 deleted (no longer live) and a second admin in W: now the account can go.
    await world.ok("admin", "DELETE", f"/api/workspaces/{w3['id']}", 204)
    still = assert_error(
        await world.call("superuser", "DELETE", "/api/admin/users/{admin_id}"), 409, "conflict"
    )
    assert still["details"] == {"workspace_ids": [world.ids["W"]]}
    await world.ok(
        "admin", "PATCH", "/api/workspaces/{W}/members/{member_id}", json={"role": "admin"}
    )
    gone = await world.call("superuser", "DELETE", "/api/admin/users/{admin_id}")
    assert gone.status_code == 204, gone.text
    assert await _user_row(world, world.ids["admin_id"]) is None
    members = await world.ok("member", "GET", "/api/workspaces/{W}/members")
    assert [m["user"]["username"] for m in members["items"] if m["role"] == "admin"] == ["member"]


async def test_deleting_the_only_admin_of_a_deleted_workspace_is_allowed(client, app):
    world = await build_world(client, app)
    blocked = await world.call("superuser", "DELETE", "/api/admin/users/{outsider_id}")
    assert assert_error(blocked, 409, "conflict")["details"] == {"workspace_ids": [world.ids["W2"]]}
    await world.ok("outsider", "DELETE", "/api/workspaces/{W2}", 204)
    response = await world.call("superuser", "DELETE", "/api/admin/users/{outsider_id}")
    assert response.status_code == 204, response.text
    assert await _user_row(world, world.ids["outsider_id"]) is None


async def test_superuser_cannot_delete_themselves(client, app):
    world = await build_world(client, app)
    response = await world.call("superuser", "DELETE", "/api/admin/users/{superuser_id}")
    assert_error(response, 409, "conflict")
    assert await _user_row(world, world.ids["superuser_id"]) is not None
    assert (await world.call("superuser", "GET", "/api/auth/me")).status_code == 200
