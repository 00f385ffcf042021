"""Workspace members (adding, roles, the last admin, leaving) and workspace slugs.

Who may call these routes is covered by the authorization matrix; these tests cover the
bodies, the conflicts and what each change does.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import update

from huddle.auth.models import User
from tests.helpers import assert_error
from tests.world import World, add_user, build_world, events, unknown_id

MEMBER_FIELDS = {"user", "role", "joined_at"}
WORKSPACE_FIELDS = {"id", "name", "slug", "owner_id", "created_at", "data_retention_days", "role"}


def _summary(world: World, name: str) -> dict[str, str]:
    user = world.users[name]
    return {
        "id": user["id"],
        "username": name,
        "email": user["email"],
        "full_name": name.title(),
    }


async def _roles(world: World) -> dict[str, str]:
    """username → role of every member of W (one page holds them all)."""
    page = await world.ok("admin", "GET", "/api/workspaces/{W}/members")
    assert page["next_cursor"] is None
    return {m["user"]["username"]: m["role"] for m in page["items"]}


async def _cursor(world: World) -> int:
    return (await events(world, "admin"))[-1]["id"]


WORLD_MEMBERS = {
    "admin": "admin",
    "member": "member",
    "viewer": "viewer",
    "bystander": "member",
    "teammate": "member",
}


# --- adding members -----------------------------------------------------------------------


async def test_add_by_email(client, app):
    world = await build_world(client, app)
    before = await _cursor(world)
    response = await world.call(
        "admin",
        "POST",
        "/api/workspaces/{W}/members",
        json={"email": "NewComer@Example.com", "role": "viewer"},
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == MEMBER_FIELDS
    assert body["user"] == _summary(world, "newcomer")
    assert body["role"] == "viewer"
    assert isinstance(body["joined_at"], str) and body["joined_at"]

    workspace = await world.ok("newcomer", "GET", "/api/workspaces/{W}")
    assert workspace["id"] == world.ids["W"] and workspace["role"] == "viewer"
    assert (await _roles(world))["newcomer"] == "viewer"
    listed = await world.ok("newcomer", "GET", "/api/workspaces")
    assert [w["id"] for w in listed["items"]] == [world.ids["W"]]
    feed = await events(world, "newcomer", since=before)
    assert [e["type"] for e in feed] == ["member.added"]
    assert feed[0]["data"] == {**body, "workspace_id": world.ids["W"]}
    assert feed[0]["subject_id"] == world.ids["newcomer_id"]


async def test_add_by_user_id_defaults_to_member(client, app):
    world = await build_world(client, app)
    response = await world.call(
        "admin", "POST", "/api/workspaces/{W}/members", json={"user_id": world.ids["newcomer_id"]}
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == MEMBER_FIELDS
    assert body["user"] == _summary(world, "newcomer") and body["role"] == "member"
    assert (await world.ok("newcomer", "GET", "/api/workspaces/{W}"))["role"] == "member"
    # The listed member is the same as the answer.
    page = await world.ok("member", "GET", "/api/workspaces/{W}/members")
    assert body in page["items"]


async def test_add_as_admin_gives_admin_rights(client, app):
    world = await build_world(client, app)
    body = await world.ok(
        "admin",
        "POST",
        "/api/workspaces/{W}/members",
        201,
        json={"user_id": world.ids["newcomer_id"], "role": "admin"},
    )
    assert body["role"] == "admin"
    invitations = await world.call("newcomer", "GET", "/api/workspaces/{W}/invitations")
    assert invitations.status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        {"email": "nobody@example.com"},
        {"user_id": "01a20000-0000-7000-8000-000000000000"},
        {"email": "deactivated@example.com"},
    ],
)
async def test_unknown_or_inactive_user_is_404(client, app, body):
    world = await build_world(client, app)
    await add_user(app, "deactivated")
    async with app.state.db.write_session() as session:
        await session.execute(
            update(User).where(User.username == "deactivated").values(is_active=False)
        )
        await session.commit()
    response = await world.call("admin", "POST", "/api/workspaces/{W}/members", json=body)
    assert_error(response, 404, "not_found")
    assert await _roles(world) == WORLD_MEMBERS


@pytest.mark.parametrize("by", ["user_id", "email"])
async def test_already_a_member_is_409(client, app, by):
    world = await build_world(client, app)
    before = await _cursor(world)
    key = world.ids["viewer_id"] if by == "user_id" else "viewer@example.com"
    response = await world.call(
        "admin", "POST", "/api/workspaces/{W}/members", json={by: key, "role": "admin"}
    )
    assert_error(response, 409, "conflict")
    # The existing membership is untouched (still a viewer), and nothing was recorded.
    assert await _roles(world) == WORLD_MEMBERS
    assert await events(world, "admin", since=before) == []


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"role": "member"},
        {"user_id": "{newcomer_id}", "email": "newcomer@example.com"},
        {"user_id": "{newcomer_id}", "role": "owner"},
        {"email": "newcomer@example.com", "role": "ADMIN "},
        {"email": "not-an-email"},
        {"user_id": "not-a-uuid"},
        {"user_id": "{newcomer_id}", "extra": True},
        {"user_id": None, "email": None},
    ],
)
async def test_invalid_add_body_is_422(client, app, body):
    world = await build_world(client, app)
    payload = {k: v.format(**world.ids) if isinstance(v, str) else v for k, v in body.items()}
    response = await world.call("admin", "POST", "/api/workspaces/{W}/members", json=payload)
    error = assert_error(response, 422, "validation_error")
    assert isinstance(error["details"], list) and error["details"]
    assert all({"loc", "msg"} <= set(issue) for issue in error["details"])
    assert await _roles(world) == WORLD_MEMBERS
    assert_error(await world.call("newcomer", "GET", "/api/workspaces/{W}"), 404, "not_found")


# --- roles --------------------------------------------------------------------------------


async def test_change_role_and_its_event(client, app):
    world = await build_world(client, app)
    before = await _cursor(world)
    assert_error(
        await world.call("member", "GET", "/api/workspaces/{W}/invitations"), 403, "forbidden"
    )
    response = await world.call(
        "admin", "PATCH", "/api/workspaces/{W}/members/{member_id}", json={"role": "admin"}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == MEMBER_FIELDS
    assert body["user"] == _summary(world, "member") and body["role"] == "admin"

    # The new role takes effect at once.
    assert (await world.ok("member", "GET", "/api/workspaces/{W}"))["role"] == "admin"
    assert (await world.call("member", "GET", "/api/workspaces/{W}/invitations")).status_code == 200
    assert (await _roles(world))["member"] == "admin"

    # Setting the same role again is a no-op: same answer, no event.
    same = await world.ok(
        "admin", "PATCH", "/api/workspaces/{W}/members/{member_id}", json={"role": "admin"}
    )
    assert same == body

    feed = await events(world, "viewer", since=before)
    assert [e["type"] for e in feed] == ["member.role_changed"]
    event = feed[0]
    assert event["topic"] == f"workspace:{world.ids['W']}"
    assert event["workspace_id"] == world.ids["W"]
    assert event["subject_id"] == world.ids["member_id"]
    assert event["actor"] == {"kind": "user", "id": world.ids["admin_id"]}
    assert event["data"] == {**body, "workspace_id": world.ids["W"]}


async def test_demote_to_viewer_removes_write_rights(client, app):
    world = await build_world(client, app)
    body = await world.ok(
        "admin", "PATCH", "/api/workspaces/{W}/members/{member_id}", json={"role": "viewer"}
    )
    assert body["role"] == "viewer"
    response = await world.call(
        "member", "POST", "/api/workspaces/{W}/projects", json={"name": "Nope"}
    )
    assert_error(response, 403, "forbidden")


async def test_change_role_errors(client, app):
    world = await build_world(client, app)
    bad_role = await world.call(
        "admin", "PATCH", "/api/workspaces/{W}/members/{member_id}", json={"role": "owner"}
    )
    assert_error(bad_role, 422, "validation_error")
    empty = await world.call("admin", "PATCH", "/api/workspaces/{W}/members/{member_id}", json={})
    assert_error(empty, 422, "validation_error")
    for uid in (world.ids["newcomer_id"], world.ids["outsider_id"], unknown_id()):
        response = await world.call(
            "admin", "PATCH", f"/api/workspaces/{{W}}/members/{uid}", json={"role": "viewer"}
        )
        assert_error(response, 404, "not_found")
    assert await _roles(world) == WORLD_MEMBERS


# --- the last admin -----------------------------------------------------------------------


@pytest.mark.parametrize("role", ["member", "viewer"])
async def test_last_admin_cannot_be_demoted(client, app, role):
    world = await build_world(client, app)
    before = await _cursor(world)
    response = await world.call(
        "admin", "PATCH", "/api/workspaces/{W}/members/{admin_id}", json={"role": role}
    )
    assert_error(response, 409, "conflict")
    assert (await _roles(world))["admin"] == "admin"
    assert (await world.ok("admin", "GET", "/api/workspaces/{W}"))["role"] == "admin"
    assert await events(world, "admin", since=before) == []


async def test_last_admin_cannot_leave_or_be_removed(client, app):
    world = await build_world(client, app)
    before = await _cursor(world)
    response = await world.call("admin", "DELETE", "/api/workspaces/{W}/members/{admin_id}")
    assert_error(response, 409, "conflict")
    assert await _roles(world) == WORLD_MEMBERS
    assert (await world.ok("admin", "GET", "/api/workspaces/{W}"))["role"] == "admin"
    assert await events(world, "admin", since=before) == []


async def test_once_another_admin_exists_the_first_can_step_down_and_leave(client, app):
    world = await build_world(client, app)
    await world.ok(
        "admin", "PATCH", "/api/workspaces/{W}/members/{member_id}", json={"role": "admin"}
    )
    demoted = await world.call(
        "admin", "PATCH", "/api/workspaces/{W}/members/{admin_id}", json={"role": "viewer"}
    )
    assert demoted.status_code == 200, demoted.text
    assert demoted.json()["role"] == "viewer"
    assert (await world.ok("admin", "GET", "/api/workspaces/{W}"))["role"] == "viewer"

    # Now `member` is the last admin and is held to the same rule.
    assert_error(
        await world.call(
            "member", "PATCH", "/api/workspaces/{W}/members/{member_id}", json={"role": "member"}
        ),
        409,
        "conflict",
    )
    assert_error(
        await world.call("member", "DELETE", "/api/workspaces/{W}/members/{member_id}"),
        409,
        "conflict",
    )

    # Re-promoted, the first admin may now leave as an admin.
    await world.ok(
        "member", "PATCH", "/api/workspaces/{W}/members/{admin_id}", json={"role": "admin"}
    )
    left = await world.call("admin", "DELETE", "/api/workspaces/{W}/members/{admin_id}")
    assert left.status_code == 204 and left.content == b""
    assert_error(await world.call("admin", "GET", "/api/workspaces/{W}"), 404, "not_found")
    roles = await world.ok("member", "GET", "/api/workspaces/{W}/members")
    assert {m["user"]["username"]: m["role"] for m in roles["items"]} == {
        **{k: v for k, v in WORLD_MEMBERS.items() if k != "admin"},
        "member": "admin",
    }


async def test_an_admin_may_remove_another_admin(client, app):
    world = await build_world(client, app)
    await world.ok(
        "admin", "PATCH", "/api/workspaces/{W}/members/{member_id}", json={"role": "admin"}
    )
    response = await world.call("admin", "DELETE", "/api/workspaces/{W}/members/{member_id}")
    assert response.status_code == 204
    assert "member" not in await _roles(world)
    assert_error(await world.call("member", "GET", "/api/workspaces/{W}"), 404, "not_found")


# --- leaving and removal ------------------------------------------------------------------


async def test_a_member_leaves_and_loses_access(client, app):
    world = await build_world(client, app)
    before = await _cursor(world)
    response = await world.call("viewer", "DELETE", "/api/workspaces/{W}/members/{viewer_id}")
    assert response.status_code == 204 and response.content == b""

    assert_error(await world.call("viewer", "GET", "/api/workspaces/{W}"), 404, "not_found")
    assert_error(await world.call("viewer", "GET", "/api/projects/{P}"), 404, "not_found")
    assert (await world.ok("viewer", "GET", "/api/workspaces"))["items"] == []
    assert "viewer" not in await _roles(world)
    feed = await events(world, "admin", since=before)
    assert [e["type"] for e in feed] == ["member.removed"]
    assert feed[0]["actor"] == {"kind": "user", "id": world.ids["viewer_id"]}
    assert feed[0]["subject_id"] == world.ids["viewer_id"]
    assert feed[0]["data"]["user"] == _summary(world, "viewer")
    assert feed[0]["data"]["role"] == "viewer"
    assert feed[0]["data"]["workspace_id"] == world.ids["W"]
    # Leaving twice: no longer a member, so the workspace itself is not found.
    again = await world.call("viewer", "DELETE", "/api/workspaces/{W}/members/{viewer_id}")
    assert_error(again, 404, "not_found")


async def test_removing_someone_not_in_the_workspace_is_404(client, app):
    world = await build_world(client, app)
    for uid in (world.ids["outsider_id"], world.ids["newcomer_id"], unknown_id()):
        response = await world.call("admin", "DELETE", f"/api/workspaces/{{W}}/members/{uid}")
        assert_error(response, 404, "not_found")
    assert await _roles(world) == WORLD_MEMBERS


async def test_removal_takes_team_memberships_and_grants_with_it(client, app):
    world = await build_world(client, app)
    team = await world.ok("admin", "GET", "/api/teams/{T}/members")
    assert [u["id"] for u in team["items"]] == [world.ids["teammate_id"]]
    grants = (await world.ok("admin", "GET", "/api/projects/{P}/permissions"))["items"]
    assert {"user_id": world.ids["teammate_id"], "role": "admin"}.items() <= next(
        g for g in grants if g["user_id"] == world.ids["teammate_id"]
    ).items()
    await world.ok(
        "admin", "PUT", "/api/projects/{Q}/team-permissions/{T}", json={"role": "member"}
    )
    assert (await world.ok("teammate", "GET", "/api/projects/{Q}"))["role"] == "member"

    response = await world.call("admin", "DELETE", "/api/workspaces/{W}/members/{teammate_id}")
    assert response.status_code == 204 and response.content == b""

    assert (await world.ok("admin", "GET", "/api/teams/{T}/members"))["items"] == []
    grants = (await world.ok("admin", "GET", "/api/projects/{P}/permissions"))["items"]
    assert world.ids["teammate_id"] not in [g["user_id"] for g in grants]
    # The team's own grant stays: it belongs to the team, not to the removed member.
    q_grants = (await world.ok("admin", "GET", "/api/projects/{Q}/permissions"))["items"]
    assert world.ids["T"] in [g["team_id"] for g in q_grants]

    # Rejoining starts from the role given now, not from the forgotten grants.
    await world.ok(
        "admin",
        "POST",
        "/api/workspaces/{W}/members",
        201,
        json={"user_id": world.ids["teammate_id"], "role": "viewer"},
    )
    assert (await world.ok("teammate", "GET", "/api/projects/{P}"))["role"] == "viewer"
    assert_error(await world.call("teammate", "GET", "/api/projects/{Q}"), 404, "not_found")
    assert (await world.ok("admin", "GET", "/api/teams/{T}/members"))["items"] == []


# --- listing ------------------------------------------------------------------------------


async def test_members_list_pages_in_join_order(client, app):
    world = await build_world(client, app)
    pages: list[dict[str, Any]] = []
    cursor = None
    while True:
        path = "/api/workspaces/{W}/members?limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = await world.ok("viewer", "GET", path)
        assert set(page) == {"items", "next_cursor"}
        pages.append(page)
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [len(p["items"]) for p in pages] == [2, 2, 1]
    items = [item for page in pages for item in page["items"]]
    assert [m["user"]["username"] for m in items] == list(WORLD_MEMBERS)
    assert [m["role"] for m in items] == list(WORLD_MEMBERS.values())
    for item in items:
        assert set(item) == MEMBER_FIELDS
        assert item["user"] == _summary(world, item["user"]["username"])
    joined = [datetime.fromisoformat(m["joined_at"].replace("Z", "+00:00")) for m in items]
    assert joined == sorted(joined)
    assert_error(
        await world.call("viewer", "GET", "/api/workspaces/{W}/members?cursor=%%%"),
        422,
        "validation_error",
    )
    assert_error(
        await world.call("viewer", "GET", "/api/workspaces/{W}/members?limit=0"),
        422,
        "validation_error",
    )


# --- workspaces and slugs -----------------------------------------------------------------


async def _owner(client: httpx.AsyncClient, app: FastAPI, name: str = "alice") -> dict[str, Any]:
    user, headers = await add_user(app, name)
    return {**user, "headers": headers}


async def _create(client: httpx.AsyncClient, owner: dict[str, Any], **body: Any) -> httpx.Response:
    return await client.post("/api/workspaces", json=body, headers=owner["headers"])


async def _slugs(client: httpx.AsyncClient, owner: dict[str, Any]) -> list[str]:
    response = await client.get("/api/workspaces", headers=owner["headers"])
    assert response.status_code == 200
    return sorted(w["slug"] for w in response.json()["items"])


async def test_create_with_an_explicit_slug(client, app):
    alice = await _owner(client, app)
    response = await _create(client, alice, name="Acme Corp", slug="ACME")
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == WORKSPACE_FIELDS
    assert body["name"] == "Acme Corp" and body["slug"] == "acme"
    assert body["owner_id"] == alice["id"] and body["role"] == "admin"
    fetched = await client.get(f"/api/workspaces/{body['id']}", headers=alice["headers"])
    assert fetched.status_code == 200 and fetched.json() == body
    members = await client.get(f"/api/workspaces/{body['id']}/members", headers=alice["headers"])
    assert [(m["user"]["id"], m["role"]) for m in members.json()["items"]] == [
        (alice["id"], "admin")
    ]


async def test_duplicate_slug_is_409(client, app):
    alice = await _owner(client, app)
    bob = await _owner(client, app, "bob")
    assert (await _create(client, alice, name="Acme", slug="acme")).status_code == 201
    for owner, slug in ((bob, "acme"), (alice, "Acme")):
        response = await _create(client, owner, name="Other", slug=slug)
        assert assert_error(response, 409, "conflict")["details"] == {"field": "slug"}
    assert await _slugs(client, alice) == ["acme"]
    assert await _slugs(client, bob) == []


async def test_slug_is_derived_from_the_name(client, app):
    alice = await _owner(client, app)
    bob = await _owner(client, app, "bob")
    first = await _create(client, alice, name="Acme Corp")
    assert first.status_code == 201 and first.json()["slug"] == "acme-corp"
    second = await _create(client, bob, name="  ACME  corp!! ")
    assert second.status_code == 201 and second.json()["slug"] == "acme-corp-2"
    third = await _create(client, alice, name="Acme Corp")
    assert third.status_code == 201 and third.json()["slug"] == "acme-corp-3"
    # A name with nothing slug-worthy still gets a valid slug.
    odd = await _create(client, alice, name="!!!")
    assert odd.status_code == 201
    assert odd.json()["slug"] and odd.json()["slug"].replace("-", "").isalnum()
    assert await _slugs(client, alice) == sorted(["acme-corp", "acme-corp-3", odd.json()["slug"]])
    assert await _slugs(client, bob) == ["acme-corp-2"]


@pytest.mark.parametrize(
    "slug",
    ["-acme", "acme-", "ac me", "acme_corp", "acme.corp", "", "a" * 81, "äcme", "acme~1"],
)
async def test_invalid_slug_is_422(client, app, slug):
    alice = await _owner(client, app)
    response = await _create(client, alice, name="Acme", slug=slug)
    body = assert_error(response, 422, "validation_error")
    assert any("slug" in issue["loc"] for issue in body["details"])
    assert await _slugs(client, alice) == []


async def test_deleting_a_workspace_frees_its_slug(client, app):
    alice = await _owner(client, app)
    bob = await _owner(client, app, "bob")
    old = (await _create(client, alice, name="Acme", slug="acme")).json()
    auto = (await _create(client, alice, name="Acme Corp")).json()
    assert auto["slug"] == "acme-corp"
    for ws in (old, auto):
        response = await client.delete(f"/api/workspaces/{ws['id']}", headers=alice["headers"])
        assert response.status_code == 204 and response.content == b""
        gone = await client.get(f"/api/workspaces/{ws['id']}", headers=alice["headers"])
        assert_error(gone, 404, "not_found")
    assert await _slugs(client, alice) == []

    again = await _create(client, bob, name="New Acme", slug="acme")
    assert again.status_code == 201, again.text
    assert again.json()["slug"] == "acme" and again.json()["id"] != old["id"]
    auto_again = await _create(client, bob, name="Acme Corp")
    assert auto_again.status_code == 201 and auto_again.json()["slug"] == "acme-corp"
    assert await _slugs(client, bob) == ["acme", "acme-corp"]
