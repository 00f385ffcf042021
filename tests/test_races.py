"""Concurrency: what two requests at the same moment must never do."""

from __future__ import annotations

import asyncio
import base64
import json
import time

from sqlalchemy import select

from huddle.access.service import workspace_role
from huddle.core.db import SESSION_STARTED
from huddle.workspaces.models import Membership
from tests.helpers import assert_error
from tests.world import add_user, build_world, events


async def test_role_read_from_an_old_snapshot_is_not_cached(client, app):
    world = await build_world(client, app)
    async with app.state.db.read_session() as old:
        old.info[SESSION_STARTED] = time.time() - 10  # began before the demotion below
        await old.execute(select(Membership))  # its snapshot starts here
        await world.ok(
            "admin", "PATCH", "/api/workspaces/{W}/members/{member_id}", json={"role": "viewer"}
        )
        await workspace_role(
            old, app.state.role_cache, world.ids_uuid("W"), world.ids_uuid("member_id")
        )
    assert (await world.ok("member", "GET", "/api/workspaces/{W}"))["role"] == "viewer"
    assert_error(
        await world.call("member", "POST", "/api/workspaces/{W}/projects", json={"name": "x"}),
        403,
        "forbidden",
    )


async def test_two_admins_demoting_each_other_leave_one_admin(client, app):
    world = await build_world(client, app)
    await world.ok(
        "admin", "PATCH", "/api/workspaces/{W}/members/{member_id}", json={"role": "admin"}
    )
    responses = await asyncio.gather(
        world.call(
            "admin", "PATCH", "/api/workspaces/{W}/members/{member_id}", json={"role": "member"}
        ),
        world.call(
            "member", "PATCH", "/api/workspaces/{W}/members/{admin_id}", json={"role": "member"}
        ),
    )
    assert sorted(r.status_code for r in responses) in ([200, 409], [200, 403], [200, 404])
    members = await world.ok("viewer", "GET", "/api/workspaces/{W}/members")
    assert [m["role"] for m in members["items"]].count("admin") == 1


async def test_concurrent_moves_with_one_etag_one_wins(client, app):
    world = await build_world(client, app)
    task = await world.ok(
        "member", "POST", "/api/projects/{P}/tasks", 201, json={"title": "contested"}
    )
    responses = await asyncio.gather(
        *[
            world.call(
                "member",
                "POST",
                f"/api/tasks/{task['id']}/move",
                json={"column_id": world.ids[column]},
                headers={"If-Match": '"1"'},
            )
            for column in ("C_doing", "C_done")
        ]
    )
    assert sorted(r.status_code for r in responses) == [200, 412]
    assert (await world.ok("member", "GET", f"/api/tasks/{task['id']}"))["version"] == 2


async def test_deleting_a_column_while_tasks_arrive_never_500s(client, app):
    world = await build_world(client, app)
    extra = await world.ok("admin", "POST", "/api/projects/{P}/columns", 201, json={"name": "Temp"})
    responses = await asyncio.gather(
        world.call(
            "admin", "DELETE", f"/api/columns/{extra['id']}", params={"move_to": world.ids["C"]}
        ),
        *[
            world.call(
                "member",
                "POST",
                "/api/projects/{P}/tasks",
                json={"title": f"t{n}", "column_id": extra["id"]},
            )
            for n in range(4)
        ],
    )
    assert all(r.status_code < 500 for r in responses), [r.text for r in responses]
    board = await world.ok("member", "GET", "/api/projects/{P}/board")
    assert extra["id"] not in [c["id"] for c in board["columns"]]


async def test_concurrent_writes_of_the_same_row_give_409_not_500(client, app):
    world = await build_world(client, app)
    grants = await asyncio.gather(
        *[
            world.call(
                "admin",
                "PUT",
                "/api/projects/{P}/permissions/{bystander_id}",
                json={"role": "member"},
            )
            for _ in range(3)
        ]
    )
    assert {r.status_code for r in grants} == {200}
    adds = await asyncio.gather(
        *[
            world.call(
                "admin",
                "POST",
                "/api/teams/{T}/members",
                json={"user_id": world.ids["bystander_id"]},
            )
            for _ in range(3)
        ]
    )
    assert sorted(r.status_code for r in adds) == [201, 409, 409]
    columns = await asyncio.gather(
        *[
            world.call("admin", "POST", "/api/projects/{P}/columns", json={"name": f"N{n}"})
            for n in range(3)
        ]
    )
    assert {r.status_code for r in columns} == {201}
    positions = [c["position"] for c in await world.ok("admin", "GET", "/api/projects/{P}/columns")]
    assert positions == list(range(len(positions)))


async def test_revoke_racing_accept_never_both_succeed(client, app):
    world = await build_world(client, app)
    invitation = await world.ok(
        "admin", "POST", "/api/workspaces/{W}/invitations", 201, json={"email": "racer@example.com"}
    )
    _, headers = await add_user(app, "racer")
    accept, revoke = await asyncio.gather(
        client.post(
            "/api/invitations/accept", json={"token": invitation["token"]}, headers=headers
        ),
        world.call("admin", "DELETE", f"/api/workspaces/{{W}}/invitations/{invitation['id']}"),
    )
    assert (accept.status_code, revoke.status_code) in ((200, 409), (410, 204))
    types = [e["type"] for e in await events(world, "admin") if e["subject_id"] == invitation["id"]]
    assert types in (
        ["invitation.created", "invitation.accepted"],
        ["invitation.created", "invitation.revoked"],
    )


async def test_odd_cursors_are_422(client, app):
    world = await build_world(client, app)
    for raw in ([1, "a", "b"], [[1], "a", "b"], {"x": 1}, "text"):
        cursor = base64.urlsafe_b64encode(json.dumps(raw).encode()).decode().rstrip("=")
        for path in ("/api/projects/{P}/tasks", "/api/me/tasks"):
            response = await world.call("member", "GET", path, params={"cursor": cursor})
            assert_error(response, 422, "validation_error")
