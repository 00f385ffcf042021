"""Workflow rules: allowed transitions and WIP limits, enforced on every way a task enters
a column, with 409 and nothing written when a rule forbids it."""

from __future__ import annotations

import asyncio

import httpx

from tests.helpers import assert_error
from tests.world import World, build_world, events


async def _board(world: World) -> dict[str, str]:
    board = await world.ok("admin", "GET", "/api/projects/{P}/board")
    return {c["key"]: c["id"] for c in board["columns"]}


async def _task(world: World, title: str, column_id: str | None = None) -> dict:
    body = {"title": title} | ({"column_id": column_id} if column_id else {})
    return await world.ok("member", "POST", "/api/projects/{P}/tasks", 201, json=body)


async def _rules(world: World, cols: dict[str, str], limit: int | None = 1) -> dict:
    return await world.ok(
        "admin",
        "PUT",
        "/api/projects/{P}/workflow",
        json={
            "transitions": [
                {"from_column_id": cols["todo"], "to_column_id": cols["in_progress"]},
                {"from_column_id": cols["in_progress"], "to_column_id": cols["done"]},
                {"from_column_id": cols["in_progress"], "to_column_id": cols["todo"]},
            ],
            "wip_limits": [{"column_id": cols["in_progress"], "limit": limit}],
        },
    )


async def test_rules_are_stored_shown_on_the_board_and_announced(client, app):
    world = await build_world(client, app)
    cols = await _board(world)
    empty = await world.ok("viewer", "GET", "/api/projects/{P}/workflow")
    assert empty["transitions"] == [] and empty["wip_limits"] == []

    saved = await _rules(world, cols, limit=2)
    assert len(saved["transitions"]) == 3
    assert saved["wip_limits"] == [{"column_id": cols["in_progress"], "limit": 2}]
    assert await world.ok("viewer", "GET", "/api/projects/{P}/workflow") == saved
    board = await world.ok("viewer", "GET", "/api/projects/{P}/board")
    assert board["workflow"] == saved
    seen = await events(world, "viewer", topic=f"project:{world.ids['P']}")
    assert seen[-1]["type"] == "workflow.updated" and seen[-1]["data"] == saved

    assert_error(
        await world.call("member", "PUT", "/api/projects/{P}/workflow", json={}), 403, "forbidden"
    )
    other = await world.ok(
        "admin", "POST", "/api/workspaces/{W}/projects", 201, json={"name": "Other"}
    )
    their = (await world.ok("admin", "GET", f"/api/projects/{other['id']}/board"))["columns"]
    for body in (
        {"transitions": [{"from_column_id": cols["todo"], "to_column_id": their[0]["id"]}]},
        {"transitions": [{"from_column_id": cols["todo"], "to_column_id": cols["todo"]}]},
        {"wip_limits": [{"column_id": cols["todo"], "limit": 0}]},
        {"wip_limits": [{"column_id": cols["todo"], "limit": 1}] * 2},
    ):
        assert_error(
            await world.call("admin", "PUT", "/api/projects/{P}/workflow", json=body),
            422,
            "validation_error",
        )
    assert await world.ok("viewer", "GET", "/api/projects/{P}/workflow") == saved


async def test_illegal_moves_and_full_columns_are_refused_and_change_nothing(client, app):
    world = await build_world(client, app)
    cols = await _board(world)
    first = await _task(world, "First")
    second = await _task(world, "Second")
    await _rules(world, cols)
    before = await world.ok("admin", "GET", "/api/projects/{P}/board")

    # To do -> Done skips a step.
    refused = assert_error(
        await world.call(
            "member", "POST", f"/api/tasks/{first['id']}/move", json={"column_id": cols["done"]}
        ),
        409,
        "workflow_violation",
    )
    assert refused["details"]["rule"] == "transition"
    assert refused["details"]["allowed_to_column_ids"] == [cols["in_progress"]]
    # The same through PATCH status.
    assert_error(
        await world.call("member", "PATCH", f"/api/tasks/{first['id']}", json={"status": "done"}),
        409,
        "workflow_violation",
    )
    assert await world.ok("admin", "GET", "/api/projects/{P}/board") == before

    # One place in progress: the first move takes it, the second is refused.
    await world.ok(
        "member", "POST", f"/api/tasks/{first['id']}/move", json={"column_id": cols["in_progress"]}
    )
    full = assert_error(
        await world.call(
            "member",
            "POST",
            f"/api/tasks/{second['id']}/move",
            json={"column_id": cols["in_progress"]},
        ),
        409,
        "workflow_violation",
    )
    assert full["details"] == {
        "rule": "wip_limit",
        "column_id": cols["in_progress"],
        "limit": 1,
        "count": 1,
    }
    assert (await world.ok("member", "GET", f"/api/tasks/{second['id']}"))["status"] == "todo"
    assert_error(
        await world.call(
            "member",
            "POST",
            "/api/projects/{P}/tasks",
            json={"title": "Third", "column_id": cols["in_progress"]},
        ),
        409,
        "workflow_violation",
    )
    # Moving within the full column, and out of it along a rule, are fine.
    await world.ok(
        "member", "POST", f"/api/tasks/{first['id']}/move", json={"column_id": cols["in_progress"]}
    )
    await world.ok(
        "member", "POST", f"/api/tasks/{first['id']}/move", json={"column_id": cols["done"]}
    )
    await world.ok(
        "member", "POST", f"/api/tasks/{second['id']}/move", json={"column_id": cols["in_progress"]}
    )
    moves = [
        e
        for e in await events(world, "member", topic=f"project:{world.ids['P']}")
        if e["type"] == "task.moved"
    ]
    assert len(moves) == 4  # the refused ones recorded nothing

    # No rules: anything goes again.
    await world.ok(
        "admin", "PUT", "/api/projects/{P}/workflow", json={"transitions": [], "wip_limits": []}
    )
    await world.ok(
        "member", "POST", f"/api/tasks/{second['id']}/move", json={"column_id": cols["done"]}
    )


async def test_two_moves_cannot_both_take_the_last_place(client, app):
    world = await build_world(client, app)
    cols = await _board(world)
    tasks = [await _task(world, f"T{n}") for n in range(4)]
    await _rules(world, cols, limit=1)

    async def move(task):
        return await world.call(
            "member",
            "POST",
            f"/api/tasks/{task['id']}/move",
            json={"column_id": cols["in_progress"]},
        )

    answers: list[httpx.Response] = await asyncio.gather(*(move(t) for t in tasks))
    codes = sorted(r.status_code for r in answers)
    assert codes == [200, 409, 409, 409], [r.text for r in answers]
    board = await world.ok("admin", "GET", "/api/projects/{P}/board")
    progress = next(c for c in board["columns"] if c["key"] == "in_progress")
    assert progress["task_count"] == 1 and len(progress["tasks"]) == 1
