"""Teams: handles, membership, their project grants, and the events they emit.

Who may call these routes is covered by the authorization matrix; these tests cover the
bodies, the conflicts and what each change does.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers import assert_error
from tests.world import World, build_world, events, unknown_id

TEAM_FIELDS = {"id", "workspace_id", "name", "handle", "created_at"}


def _summary(world: World, name: str) -> dict[str, str]:
    user = world.users[name]
    return {
        "id": user["id"],
        "username": name,
        "email": user["email"],
        "full_name": name.title(),
    }


async def _team_members(world: World, team: str = "{T}") -> list[str]:
    page = await world.ok("admin", "GET", f"/api/teams/{team}/members")
    assert page["next_cursor"] is None
    return [user["username"] for user in page["items"]]


async def _handles(world: World, role: str = "admin", ws: str = "{W}") -> list[str]:
    page = await world.ok(role, "GET", f"/api/workspaces/{ws}/teams")
    return sorted(team["handle"] for team in page["items"])


async def _cursor(world: World) -> int:
    feed = await events(world, "admin")
    return feed[-1]["id"]


# --- create, rename, handles --------------------------------------------------------------


async def test_create_normalises_the_handle(client, app):
    world = await build_world(client, app)
    response = await world.call(
        "admin",
        "POST",
        "/api/workspaces/{W}/teams",
        json={"name": "  Design 2 ", "handle": "@Design-2"},
    )
    assert response.status_code == 201, response.text
    team = response.json()
    assert set(team) == TEAM_FIELDS
    assert team["handle"] == "design-2"
    assert team["name"] == "Design 2"
    assert team["workspace_id"] == world.ids["W"]
    # Readable by any member, and listed.
    assert await world.ok("viewer", "GET", f"/api/teams/{team['id']}") == team
    assert await _handles(world, "viewer") == ["design", "design-2"]
    assert await world.ok("admin", "GET", f"/api/teams/{team['id']}/members") == {
        "items": [],
        "next_cursor": None,
    }


@pytest.mark.parametrize("handle", ["DESIGN", "@design", " design "])
async def test_duplicate_handle_in_the_same_workspace_is_409(client, app, handle):
    world = await build_world(client, app)
    before = await _cursor(world)
    response = await world.call(
        "admin", "POST", "/api/workspaces/{W}/teams", json={"name": "Other", "handle": handle}
    )
    body = assert_error(response, 409, "conflict")
    assert body["details"] == {"field": "handle"}
    assert await _handles(world) == ["design"]
    assert await events(world, "admin", since=before) == []


async def test_same_handle_in_another_workspace_is_fine(client, app):
    world = await build_world(client, app)
    response = await world.call(
        "outsider",
        "POST",
        "/api/workspaces/{W2}/teams",
        json={"name": "Design", "handle": "design"},
    )
    assert response.status_code == 201, response.text
    assert response.json()["handle"] == "design"
    assert response.json()["workspace_id"] == world.ids["W2"]
    assert await _handles(world, "outsider", "{W2}") == ["design", "ops"]
    assert await _handles(world) == ["design"]


@pytest.mark.parametrize(
    "body",
    [
        {"name": "X", "handle": "-bad"},
        {"name": "X", "handle": "has space"},
        {"name": "X", "handle": "@"},
        {"name": "X", "handle": "a" * 41},
        {"name": "", "handle": "ok"},
        {"handle": "ok"},
        {"name": "X"},
        {"name": "X", "handle": "ok", "extra": 1},
    ],
)
async def test_invalid_team_body_is_422(client, app, body):
    world = await build_world(client, app)
    response = await world.call("admin", "POST", "/api/workspaces/{W}/teams", json=body)
    assert_error(response, 422, "validation_error")
    assert await _handles(world) == ["design"]


async def test_rename_and_change_handle(client, app):
    world = await build_world(client, app)
    renamed = await world.call("admin", "PATCH", "/api/teams/{T}", json={"name": "Design Team"})
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["name"] == "Design Team" and renamed.json()["handle"] == "design"
    assert renamed.json()["id"] == world.ids["T"]

    rehandled = await world.call("admin", "PATCH", "/api/teams/{T}", json={"handle": "@UX"})
    assert rehandled.status_code == 200, rehandled.text
    assert rehandled.json()["handle"] == "ux" and rehandled.json()["name"] == "Design Team"
    assert await world.ok("member", "GET", "/api/teams/{T}") == rehandled.json()
    # The old handle is free again.
    again = await world.ok(
        "admin", "POST", "/api/workspaces/{W}/teams", 201, json={"name": "D", "handle": "design"}
    )
    assert await _handles(world) == ["design", "ux"]

    # Its own handle is no conflict; another team's is.
    same = await world.call("admin", "PATCH", "/api/teams/{T}", json={"handle": "UX"})
    assert same.status_code == 200 and same.json()["handle"] == "ux"
    taken = await world.call("admin", "PATCH", f"/api/teams/{again['id']}", json={"handle": "ux"})
    assert assert_error(taken, 409, "conflict")["details"] == {"field": "handle"}
    assert (await world.ok("admin", "GET", f"/api/teams/{again['id']}"))["handle"] == "design"

    bad = await world.call("admin", "PATCH", "/api/teams/{T}", json={"handle": "no spaces"})
    assert_error(bad, 422, "validation_error")
    assert (await world.ok("admin", "GET", "/api/teams/{T}"))["handle"] == "ux"


async def test_unknown_team_is_404(client, app):
    world = await build_world(client, app)
    missing = unknown_id()
    for method, path, body in (
        ("GET", f"/api/teams/{missing}", None),
        ("PATCH", f"/api/teams/{missing}", {"name": "X"}),
        ("DELETE", f"/api/teams/{missing}", None),
        ("GET", f"/api/teams/{missing}/members", None),
        ("POST", f"/api/teams/{missing}/members", {"user_id": world.ids["member_id"]}),
    ):
        assert_error(await world.call("admin", method, path, json=body), 404, "not_found")
    assert await _handles(world) == ["design"]


# --- members ------------------------------------------------------------------------------


async def test_add_member_and_list_members(client, app):
    world = await build_world(client, app)
    response = await world.call(
        "admin", "POST", "/api/teams/{T}/members", json={"user_id": world.ids["bystander_id"]}
    )
    assert response.status_code == 201, response.text
    assert response.json() == _summary(world, "bystander")

    page = await world.ok("viewer", "GET", "/api/teams/{T}/members")
    assert page["next_cursor"] is None
    assert sorted(page["items"], key=lambda u: u["username"]) == [
        _summary(world, "bystander"),
        _summary(world, "teammate"),
    ]
    # Pages of one, in a stable order, covering both.
    first = await world.ok("admin", "GET", "/api/teams/{T}/members?limit=1")
    assert len(first["items"]) == 1 and first["next_cursor"]
    second = await world.ok(
        "admin", "GET", f"/api/teams/{{T}}/members?limit=1&cursor={first['next_cursor']}"
    )
    assert second["next_cursor"] is None
    assert {u["id"] for u in first["items"] + second["items"]} == {
        world.ids["bystander_id"],
        world.ids["teammate_id"],
    }


@pytest.mark.parametrize("who", ["outsider", "newcomer", "superuser"])
async def test_adding_someone_outside_the_workspace_is_422(client, app, who):
    world = await build_world(client, app)
    response = await world.call(
        "admin", "POST", "/api/teams/{T}/members", json={"user_id": world.ids[f"{who}_id"]}
    )
    body = assert_error(response, 422, "validation_error")
    assert [issue["loc"] for issue in body["details"]] == [["body", "user_id"]]
    assert await _team_members(world) == ["teammate"]


async def test_adding_an_unknown_user_is_422(client, app):
    world = await build_world(client, app)
    response = await world.call(
        "admin", "POST", "/api/teams/{T}/members", json={"user_id": unknown_id()}
    )
    assert_error(response, 422, "validation_error")
    bad = await world.call("admin", "POST", "/api/teams/{T}/members", json={"user_id": "nope"})
    assert_error(bad, 422, "validation_error")
    assert await _team_members(world) == ["teammate"]


async def test_adding_twice_is_409(client, app):
    world = await build_world(client, app)
    before = await _cursor(world)
    response = await world.call(
        "admin", "POST", "/api/teams/{T}/members", json={"user_id": world.ids["teammate_id"]}
    )
    assert_error(response, 409, "conflict")
    assert await _team_members(world) == ["teammate"]
    assert await events(world, "admin", since=before) == []


async def test_remove_member(client, app):
    world = await build_world(client, app)
    response = await world.call("admin", "DELETE", "/api/teams/{T}/members/{teammate_id}")
    assert response.status_code == 204 and response.content == b""
    assert await _team_members(world) == []
    # Still a member of the workspace.
    assert (await world.ok("teammate", "GET", "/api/workspaces/{W}"))["role"] == "member"
    again = await world.call("admin", "DELETE", "/api/teams/{T}/members/{teammate_id}")
    assert_error(again, 404, "not_found")


@pytest.mark.parametrize("who", ["member", "outsider", None])
async def test_removing_a_non_member_is_404(client, app, who):
    world = await build_world(client, app)
    uid = world.ids[f"{who}_id"] if who else unknown_id()
    response = await world.call("admin", "DELETE", f"/api/teams/{{T}}/members/{uid}")
    assert_error(response, 404, "not_found")
    assert await _team_members(world) == ["teammate"]


# --- grants through teams -----------------------------------------------------------------


async def _grant_team_on_q(world: World, role: str = "viewer") -> dict[str, Any]:
    assert_error(await world.call("teammate", "GET", "/api/projects/{Q}"), 404, "not_found")
    grant = await world.ok(
        "admin", "PUT", "/api/projects/{Q}/team-permissions/{T}", json={"role": role}
    )
    assert grant["team_id"] == world.ids["T"] and grant["user_id"] is None
    project = await world.ok("teammate", "GET", "/api/projects/{Q}")
    assert project["id"] == world.ids["Q"] and project["role"] == role
    return grant


async def test_deleting_a_team_ends_its_grants(client, app):
    world = await build_world(client, app)
    await _grant_team_on_q(world, "member")
    grants = (await world.ok("admin", "GET", "/api/projects/{Q}/permissions"))["items"]
    assert [g["team_id"] for g in grants if g["team_id"]] == [world.ids["T"]]
    user_grants = [g for g in grants if g["team_id"] is None]
    listed = await world.ok("teammate", "GET", "/api/workspaces/{W}/projects")
    assert world.ids["Q"] in [p["id"] for p in listed["items"]]

    response = await world.call("admin", "DELETE", "/api/teams/{T}")
    assert response.status_code == 204 and response.content == b""

    assert_error(await world.call("teammate", "GET", "/api/projects/{Q}"), 404, "not_found")
    # Only the team's grant went; grants to users stay.
    assert (await world.ok("admin", "GET", "/api/projects/{Q}/permissions"))["items"] == user_grants
    listed = await world.ok("teammate", "GET", "/api/workspaces/{W}/projects")
    assert world.ids["Q"] not in [p["id"] for p in listed["items"]]
    assert_error(await world.call("admin", "GET", "/api/teams/{T}"), 404, "not_found")
    assert_error(await world.call("admin", "GET", "/api/teams/{T}/members"), 404, "not_found")
    assert await _handles(world) == []
    # The teammate's own grant on P and their membership are untouched.
    assert (await world.ok("teammate", "GET", "/api/projects/{P}"))["role"] == "admin"
    # The handle is free again, and a new team of that name grants nothing.
    fresh = await world.ok(
        "admin", "POST", "/api/workspaces/{W}/teams", 201, json={"name": "D", "handle": "design"}
    )
    await world.ok(
        "admin",
        "POST",
        f"/api/teams/{fresh['id']}/members",
        201,
        json={"user_id": world.ids["teammate_id"]},
    )
    assert_error(await world.call("teammate", "GET", "/api/projects/{Q}"), 404, "not_found")


async def test_leaving_a_team_ends_its_grants_for_that_user(client, app):
    world = await build_world(client, app)
    await _grant_team_on_q(world)
    await world.ok(
        "admin", "POST", "/api/teams/{T}/members", 201, json={"user_id": world.ids["member_id"]}
    )
    assert (await world.ok("member", "GET", "/api/projects/{Q}"))["role"] == "viewer"

    await world.ok("admin", "DELETE", "/api/teams/{T}/members/{teammate_id}", 204)
    assert_error(await world.call("teammate", "GET", "/api/projects/{Q}"), 404, "not_found")
    assert (await world.ok("member", "GET", "/api/projects/{Q}"))["role"] == "viewer"
    grants = (await world.ok("admin", "GET", "/api/projects/{Q}/permissions"))["items"]
    assert [g["team_id"] for g in grants if g["team_id"]] == [world.ids["T"]]


# --- events -------------------------------------------------------------------------------


async def test_each_team_change_emits_exactly_one_event(client, app):
    world = await build_world(client, app)
    before = await _cursor(world)
    created = await world.ok(
        "admin", "POST", "/api/workspaces/{W}/teams", 201, json={"name": "QA", "handle": "@QA"}
    )
    tid = created["id"]
    # Failed changes record nothing.
    assert_error(
        await world.call(
            "admin", "POST", "/api/workspaces/{W}/teams", json={"name": "QA", "handle": "qa"}
        ),
        409,
        "conflict",
    )
    updated = await world.ok("admin", "PATCH", f"/api/teams/{tid}", json={"name": "Quality"})
    await world.ok(
        "admin", "POST", f"/api/teams/{tid}/members", 201, json={"user_id": world.ids["member_id"]}
    )
    assert_error(
        await world.call(
            "admin", "POST", f"/api/teams/{tid}/members", json={"user_id": world.ids["member_id"]}
        ),
        409,
        "conflict",
    )
    await world.ok("admin", "DELETE", f"/api/teams/{tid}/members/{{member_id}}", 204)
    await world.ok("admin", "DELETE", f"/api/teams/{tid}", 204)

    feed = await events(world, "viewer", since=before)
    assert [e["type"] for e in feed] == [
        "team.created",
        "team.updated",
        "team.member_added",
        "team.member_removed",
        "team.deleted",
    ]
    for event in feed:
        assert event["topic"] == f"workspace:{world.ids['W']}"
        assert event["workspace_id"] == world.ids["W"]
        assert event["subject_id"] == tid
        assert event["actor"] == {"kind": "user", "id": world.ids["admin_id"]}
    created_e, updated_e, added_e, removed_e, deleted_e = feed
    assert created_e["data"] == created
    assert created_e["data"]["handle"] == "qa"
    assert updated_e["data"] == updated
    assert updated_e["data"]["name"] == "Quality"
    membership = {"team_id": tid, "workspace_id": world.ids["W"], "user": _summary(world, "member")}
    assert added_e["data"] == membership
    assert removed_e["data"] == membership
    assert deleted_e["data"]["id"] == tid
    # Other workspaces see none of it.
    assert all(e["subject_id"] != tid for e in await events(world, "outsider"))
