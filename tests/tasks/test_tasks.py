"""Tasks and the board: order, moves, versions, filters, my tasks, events."""

from __future__ import annotations

import asyncio

from sqlalchemy import event, func, select

from huddle.tasks import ranking
from huddle.tasks.models import Task
from tests.helpers import assert_error, background
from tests.world import build_world, events


async def _new(world, title, role="member", project="{P}", **fields):
    return await world.ok(
        role, "POST", f"/api/projects/{project}/tasks", 201, json={"title": title, **fields}
    )


async def assert_counts_match(app):
    """Every column's stored task_count equals the tasks really in it."""
    from huddle.tasks.models import BoardColumn

    async with app.state.db.read_session() as session:
        stored = dict((await session.execute(select(BoardColumn.id, BoardColumn.task_count))).all())
        actual = dict(
            (
                await session.execute(select(Task.column_id, func.count()).group_by(Task.column_id))
            ).all()
        )
    assert stored == {cid: actual.get(cid, 0) for cid in stored}


async def _board_titles(world, role="member", project="{P}"):
    board = await world.ok(role, "GET", f"/api/projects/{project}/board")
    return {c["key"]: [t["title"] for t in c["tasks"]] for c in board["columns"]}


async def _move(world, task, column, role="member", expect=200, **anchors):
    body = {"column_id": world.ids[column], **{f"{k}_id": v["id"] for k, v in anchors.items()}}
    return await world.ok(role, "POST", f"/api/tasks/{task['id']}/move", expect, json=body)


async def test_board_starts_with_default_columns(client, app):
    world = await build_world(client, app)
    board = await world.ok("viewer", "GET", "/api/projects/{P}/board")
    assert [(c["name"], c["key"], c["is_done"], c["position"]) for c in board["columns"]] == [
        ("To do", "todo", False, 0),
        ("In progress", "in_progress", False, 1),
        ("Done", "done", True, 2),
    ]
    assert (
        board["columns"][0]["task_count"] == 1
        and board["columns"][0]["tasks"][0]["title"] == "Ship it"
    )


async def test_build_a_board_and_move_cards_exactly(client, app):
    world = await build_world(client, app)
    a, b, c = [await _new(world, t) for t in ("A", "B", "C")]
    assert (await _board_titles(world))["todo"] == ["Ship it", "A", "B", "C"]
    await _move(world, c, "C", before=a)  # C above A
    assert (await _board_titles(world))["todo"] == ["Ship it", "C", "A", "B"]
    await _move(world, a, "C", after=b)  # A below B (last)
    assert (await _board_titles(world))["todo"] == ["Ship it", "C", "B", "A"]
    moved = await _move(world, b, "C_doing")  # into an empty column
    assert moved["status"] == "in_progress" and moved["column_id"] == world.ids["C_doing"]
    await _move(world, c, "C_doing", after=b)
    await _move(world, a, "C_doing", after=b, before=c)  # between two adjacent cards
    titles = await _board_titles(world)
    assert titles == {"todo": ["Ship it"], "in_progress": ["B", "A", "C"], "done": []}
    # The list shows the same order, across columns, page by page.
    seen, cursor = [], None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = await world.ok("viewer", "GET", "/api/projects/{P}/tasks", params=params)
        seen += [t["title"] for t in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == ["Ship it", "B", "A", "C"]
    column_only = await world.ok(
        "viewer", "GET", "/api/projects/{P}/tasks", params={"status": "in_progress"}
    )
    assert [t["title"] for t in column_only["items"]] == ["B", "A", "C"]


async def test_done_columns_set_and_clear_completed_at(client, app):
    world = await build_world(client, app)
    task = await _new(world, "Finish")
    assert task["completed_at"] is None and task["status"] == "todo"
    done = await world.ok("member", "PATCH", f"/api/tasks/{task['id']}", json={"status": "done"})
    assert done["status"] == "done" and done["completed_at"] is not None
    back = await _move(world, task, "C")
    assert back["completed_at"] is None and back["status"] == "todo"
    assert (await _board_titles(world))["todo"][-1] == "Finish"


async def test_versions_etags_and_if_match(client, app):
    world = await build_world(client, app)
    task = await _new(world, "Versioned")
    response = await world.call("member", "GET", f"/api/tasks/{task['id']}")
    assert response.headers["ETag"] == '"1"' and response.json()["version"] == 1
    first = await world.call(
        "member",
        "PATCH",
        f"/api/tasks/{task['id']}",
        json={"title": "V2"},
        headers={"If-Match": '"1"'},
    )
    assert first.status_code == 200 and first.headers["ETag"] == '"2"'
    stale = await world.call(
        "admin",
        "PATCH",
        f"/api/tasks/{task['id']}",
        json={"title": "lost"},
        headers={"If-Match": '"1"'},
    )
    body = assert_error(stale, 412, "precondition_failed")
    assert body["details"] == {"current_version": 2}
    bare = await world.call(
        "admin",
        "PATCH",
        f"/api/tasks/{task['id']}",
        json={"title": "V3"},
        headers={"If-Match": "2"},
    )
    assert bare.status_code == 200 and bare.json()["version"] == 3
    moved = await _move(world, task, "C_doing")
    assert moved["version"] == 4
    assert (await world.ok("viewer", "GET", f"/api/tasks/{task['id']}"))["title"] == "V3"
    no_change = await world.ok("member", "PATCH", f"/api/tasks/{task['id']}", json={"title": "V3"})
    assert no_change["version"] == 4


async def test_fields_validation_and_assignee_rules(client, app):
    world = await build_world(client, app)
    created = await _new(
        world,
        "  Trimmed  ",
        assignee_id=world.ids["viewer_id"],
        priority="high",
        due_date="2026-12-01",
        description="d",
    )
    assert (
        created["title"] == "Trimmed"
        and created["priority"] == "high"
        and created["due_date"] == "2026-12-01"
    )
    assert (
        created["creator_id"] == world.ids["member_id"]
        and created["assignee_id"] == world.ids["viewer_id"]
    )
    for body in (
        {"title": "   "},
        {"title": "x" * 501},
        {"title": "ok", "priority": "critical"},
        {"title": "ok", "due_date": "tomorrow"},
        {"title": "ok", "assignee_id": world.ids["outsider_id"]},
        {"title": "ok", "column_id": world.ids["P2"]},
        {"title": "ok", "unknown": 1},
    ):
        assert_error(
            await world.call("member", "POST", "/api/projects/{P}/tasks", json=body),
            422,
            "validation_error",
        )
    # Private project Q: a workspace member without a grant cannot be assigned there.
    qt = world.ids["QT"]
    bad = await world.call(
        "admin", "PATCH", f"/api/tasks/{qt}", json={"assignee_id": world.ids["member_id"]}
    )
    assert_error(bad, 422, "validation_error")
    cleared = await world.ok(
        "member",
        "PATCH",
        f"/api/tasks/{created['id']}",
        json={"assignee_id": None, "due_date": None},
    )
    assert cleared["assignee_id"] is None and cleared["due_date"] is None
    assert_error(
        await world.call("member", "PATCH", f"/api/tasks/{created['id']}", json={"title": None}),
        422,
        "validation_error",
    )
    assert_error(
        await world.call("member", "PATCH", f"/api/tasks/{created['id']}", json={"status": "nope"}),
        422,
        "validation_error",
    )


async def test_move_anchor_rules(client, app):
    world = await build_world(client, app)
    a, b, c = [await _new(world, t) for t in ("A", "B", "C")]
    other = await _new(world, "Elsewhere", column_id=world.ids["C_doing"])
    cases = [
        {"before": other},  # anchor in another column
        {"before": a},  # anchor is the task itself (moving a)
        {"after": c, "before": b},  # wrong order
        {"after": world_task(world, "TK"), "before": c},  # not adjacent
    ]
    for anchors in cases:
        body = {"column_id": world.ids["C"], **{f"{k}_id": v["id"] for k, v in anchors.items()}}
        response = await world.call("member", "POST", f"/api/tasks/{a['id']}/move", json=body)
        assert_error(response, 422, "validation_error")
    assert_error(
        await world.call(
            "member", "POST", f"/api/tasks/{a['id']}/move", json={"column_id": world.ids["P"]}
        ),
        422,
        "validation_error",
    )
    assert (await _board_titles(world))["todo"] == ["Ship it", "A", "B", "C"]


def world_task(world, name):
    return {"id": world.ids[name]}


async def test_filters(client, app):
    world = await build_world(client, app)
    await _new(world, "Mine early", assignee_id=world.ids["member_id"], due_date="2026-01-10")
    await _new(world, "Mine late", assignee_id=world.ids["member_id"], due_date="2026-03-10")
    await _new(world, "Viewer's", assignee_id=world.ids["viewer_id"])
    done = await _new(world, "Finished report")
    await _move(world, done, "C_done")

    async def titles(**params):
        page = await world.ok("member", "GET", "/api/projects/{P}/tasks", params=params)
        return sorted(t["title"] for t in page["items"])

    assert await titles(assignee_id="me") == ["Mine early", "Mine late"]
    assert await titles(assignee_id=world.ids["viewer_id"]) == ["Viewer's"]
    assert await titles(assignee_id="none") == ["Finished report", "Ship it"]
    assert await titles(completed="true") == ["Finished report"]
    assert await titles(q="REPORT") == ["Finished report"]
    assert await titles(q="%") == []
    assert await titles(due_before="2026-02-01") == ["Mine early"]
    assert await titles(due_after="2026-02-01") == ["Mine late"]
    assert await titles(status="done") == ["Finished report"]
    assert await titles(column_id=world.ids["C_done"]) == ["Finished report"]
    for bad in (
        {"assignee_id": "someone"},
        {"completed": "maybe"},
        {"due_before": "x"},
        {"cursor": "%%%"},
        {"limit": 0},
    ):
        assert_error(
            await world.call("member", "GET", "/api/projects/{P}/tasks", params=bad),
            422,
            "validation_error",
        )


async def test_my_tasks_only_shows_what_i_can_see(client, app):
    world = await build_world(client, app)
    await _new(world, "Public for member", assignee_id=world.ids["member_id"])
    await world.ok(
        "admin", "PUT", "/api/projects/{Q}/permissions/{member_id}", json={"role": "member"}
    )
    await _new(
        world, "Private for member", role="admin", project="{Q}", assignee_id=world.ids["member_id"]
    )
    await _new(world, "For viewer", assignee_id=world.ids["viewer_id"])
    mine = await world.ok("member", "GET", "/api/me/tasks")
    assert sorted(t["title"] for t in mine["items"]) == ["Private for member", "Public for member"]
    # Losing the grant hides the private task at once.
    await world.ok("admin", "DELETE", "/api/projects/{Q}/permissions/{member_id}", 204)
    mine = await world.ok("member", "GET", "/api/me/tasks")
    assert [t["title"] for t in mine["items"]] == ["Public for member"]
    assert (await world.ok("outsider", "GET", "/api/me/tasks"))["items"] == []
    # Leaving the workspace hides everything there.
    await world.ok("member", "DELETE", "/api/workspaces/{W}/members/{member_id}", 204)
    assert (await world.ok("member", "GET", "/api/me/tasks"))["items"] == []


async def test_activity_and_events_carry_the_task(client, app):
    world = await build_world(client, app)
    cursor = (await events(world, "member"))[-1]["id"]
    task = await _new(world, "Tracked")
    await world.ok("member", "PATCH", f"/api/tasks/{task['id']}", json={"priority": "urgent"})
    await _move(world, task, "C_doing")
    new = await events(world, "member", since=cursor)
    assert [e["type"] for e in new] == ["task.created", "task.updated", "task.moved"]
    assert {e["topic"] for e in new} == {f"project:{world.ids['P']}"}
    assert new[-1]["data"]["status"] == "in_progress" and new[-1]["data"]["position"]
    assert new[-1]["data"]["version"] == 3
    activity = (await world.ok("viewer", "GET", f"/api/tasks/{task['id']}/activity"))["items"]
    assert [e["type"] for e in activity] == ["task.created", "task.updated", "task.moved"]
    await world.ok("member", "DELETE", f"/api/tasks/{task['id']}", 204)
    assert (await events(world, "member", since=cursor))[-1]["type"] == "task.deleted"
    await assert_counts_match(app)
    assert_error(await world.call("member", "GET", f"/api/tasks/{task['id']}"), 404, "not_found")


async def test_delete_own_vs_others_and_archived_projects(client, app):
    world = await build_world(client, app)
    own = await _new(world, "Mine")
    assert_error(await world.call("member", "DELETE", "/api/tasks/{TK}"), 403, "forbidden")
    await world.ok("member", "DELETE", f"/api/tasks/{own['id']}", 204)
    await world.ok("admin", "PATCH", "/api/projects/{P}", json={"archived": True})
    assert_error(
        await world.call("member", "POST", "/api/projects/{P}/tasks", json={"title": "x"}),
        409,
        "conflict",
    )
    assert_error(
        await world.call("member", "PATCH", "/api/tasks/{TK}", json={"title": "x"}), 409, "conflict"
    )
    assert (await world.ok("viewer", "GET", "/api/projects/{P}/board"))["columns"][0][
        "task_count"
    ] == 1


async def test_columns_create_rename_reorder_delete(client, app):
    world = await build_world(client, app)
    review = await world.ok(
        "admin",
        "POST",
        "/api/projects/{P}/columns",
        201,
        json={"name": "In Review!", "position": 2},
    )
    assert review["key"] == "in_review" and review["position"] == 2
    keys = [c["key"] for c in await world.ok("viewer", "GET", "/api/projects/{P}/columns")]
    assert keys == ["todo", "in_progress", "in_review", "done"]
    assert_error(
        await world.call(
            "admin", "POST", "/api/projects/{P}/columns", json={"name": "x", "key": "todo"}
        ),
        409,
        "conflict",
    )
    renamed = await world.ok(
        "admin", "PATCH", f"/api/columns/{review['id']}", json={"name": "QA", "position": 0}
    )
    assert renamed["key"] == "in_review" and renamed["name"] == "QA" and renamed["position"] == 0
    # The first column is now QA: new tasks land there unless told otherwise.
    assert (await _new(world, "In QA"))["status"] == "in_review"
    a, b = (
        await _new(world, "A", column_id=world.ids["C"]),
        await _new(world, "B", column_id=world.ids["C"]),
    )
    # A non-empty column needs move_to; tasks keep their order at the end of the target.
    assert_error(await world.call("admin", "DELETE", "/api/columns/{C}"), 409, "conflict")
    assert_error(
        await world.call("admin", "DELETE", "/api/columns/{C}", params={"move_to": world.ids["C"]}),
        422,
        "validation_error",
    )
    await _new(world, "Already done", column_id=world.ids["C_done"])
    await world.ok(
        "admin", "DELETE", "/api/columns/{C}", 204, params={"move_to": world.ids["C_done"]}
    )
    titles = await _board_titles(world)
    assert titles == {
        "in_review": ["In QA"],
        "in_progress": [],
        "done": ["Already done", "Ship it", "A", "B"],
    }
    moved = await world.ok("viewer", "GET", f"/api/tasks/{a['id']}")
    assert moved["completed_at"] is not None and moved["status"] == "done"
    assert [
        c["position"] for c in await world.ok("viewer", "GET", "/api/projects/{P}/columns")
    ] == [0, 1, 2]
    await assert_counts_match(app)
    types = [e["type"] for e in await events(world, "member") if e["type"].startswith("column.")]
    assert types == [
        "column.created",
        "column.reordered",
        "column.updated",
        "column.reordered",
        "column.deleted",
    ]
    del b


async def test_last_column_cannot_be_deleted(client, app):
    world = await build_world(client, app)
    for column in ("C_doing", "C"):
        target = {"move_to": world.ids["C_done"]}
        await world.ok("admin", "DELETE", f"/api/columns/{{{column}}}", 204, params=target)
    assert_error(await world.call("admin", "DELETE", "/api/columns/{C_done}"), 409, "conflict")


async def test_rebalancing_keeps_the_order(client, app, monkeypatch):
    monkeypatch.setattr(ranking, "MAX_RANK_LENGTH", 4)
    world = await build_world(client, app)
    first, last = await _new(world, "first"), await _new(world, "last")
    # Insert repeatedly right below "first": ranks grow until the column is rebalanced.
    for n in range(12):
        task = await _new(world, f"n{n}")
        await _move(world, task, "C", after=first)
    titles = (await _board_titles(world))["todo"]
    assert titles == ["Ship it", "first"] + [f"n{n}" for n in reversed(range(12))] + ["last"]
    async with app.state.db.read_session() as session:
        longest = await session.scalar(select(func.max(func.length(Task.position))))
        ranks = list(
            await session.scalars(
                select(Task.position).where(Task.column_id == world.ids_uuid("C"))
            )
        )
    assert longest <= 5 and len(set(ranks)) == len(ranks)
    del last


async def test_board_and_list_statement_counts_are_constant(client, app, monkeypatch):
    import huddle.access.service as access_service

    monkeypatch.setattr(access_service, "_CLOCK_MARGIN", -3600.0)  # cache roles at once
    world = await build_world(client, app)
    engine = app.state.db.engine.sync_engine
    seen: list[str] = []

    def count(_conn, _cursor, statement, *_args):
        if statement.startswith("SELECT") and not background(statement):
            seen.append(statement)

    async def statements(path, **params):
        await app.state.dispatcher.flush()
        await world.ok("member", "GET", path, params=params)  # warm the role cache
        seen.clear()
        event.listen(engine, "before_cursor_execute", count)
        try:
            await world.ok("member", "GET", path, params=params)
        finally:
            event.remove(engine, "before_cursor_execute", count)
        return len(seen)

    before = [
        await statements("/api/projects/{P}/board"),
        await statements("/api/projects/{P}/tasks"),
        await statements("/api/me/tasks"),
    ]
    for n in range(40):
        await _new(
            world,
            f"T{n}",
            column_id=world.ids[("C", "C_doing", "C_done")[n % 3]],
            assignee_id=world.ids["member_id"],
        )
    after = [
        await statements("/api/projects/{P}/board"),
        await statements("/api/projects/{P}/tasks"),
        await statements("/api/me/tasks"),
    ]
    assert after == before, (before, after)
    assert max(after) <= 6


async def test_concurrent_moves_never_duplicate_or_lose_positions(client, app, postgres_only):
    world = await build_world(client, app)
    tasks = [await _new(world, f"card {n}") for n in range(12)]
    anchor = tasks[0]
    moves = [
        world.call(
            "member", "POST", f"/api/tasks/{t['id']}/move", json={"column_id": world.ids["C_doing"]}
        )
        for t in tasks[1:6]
    ] + [
        world.call(
            "member",
            "POST",
            f"/api/tasks/{t['id']}/move",
            json={"column_id": world.ids["C"], "after_id": anchor["id"]},
        )
        for t in tasks[6:]
    ]
    responses = await asyncio.gather(*moves)
    assert all(r.status_code == 200 for r in responses), [
        r.text for r in responses if r.status_code != 200
    ]
    async with app.state.db.read_session() as session:
        rows = (await session.execute(select(Task.column_id, Task.position))).all()
    by_column: dict = {}
    for column_id, position in rows:
        by_column.setdefault(column_id, []).append(position)
    assert all(len(set(p)) == len(p) for p in by_column.values()), by_column
    board = await world.ok("member", "GET", "/api/projects/{P}/board")
    assert sum(c["task_count"] for c in board["columns"]) == 13
    await assert_counts_match(app)
    assert sorted(t["title"] for c in board["columns"] for t in c["tasks"]) == sorted(
        ["Ship it"] + [t["title"] for t in tasks]
    )


async def test_admin_tasks_filters(client, app):
    world = await build_world(client, app)
    mine = await _new(world, "Assigned to member", assignee_id=world.ids["member_id"])
    done = await _new(world, "Done one")
    await _move(world, done, "C_done")
    other = await world.ok(
        "outsider", "POST", "/api/projects/{P2}/tasks", 201, json={"title": "In W2"}
    )

    async def titles(**params):
        page = await world.ok("superuser", "GET", "/api/admin/tasks", params=params)
        return sorted(t["title"] for t in page["items"])

    everything = await titles()
    assert {"Assigned to member", "Done one", "In W2", "Ship it", "Hidden"} <= set(everything)
    assert await titles(user_id=world.ids["member_id"]) == ["Assigned to member"]
    assert await titles(project_id=world.ids["P2"]) == ["In W2"]
    assert await titles(status="done") == ["Done one"]
    assert await titles(project_id=world.ids["P"], q="one") == ["Done one"]
    page = await world.ok("superuser", "GET", "/api/admin/tasks", params={"limit": 2})
    assert len(page["items"]) == 2 and page["next_cursor"]
    rest = await world.ok(
        "superuser", "GET", "/api/admin/tasks", params={"cursor": page["next_cursor"]}
    )
    assert not {t["id"] for t in page["items"]} & {t["id"] for t in rest["items"]}
    assert_error(await world.call("admin", "GET", "/api/admin/tasks"), 403, "forbidden")
    del mine, other


async def test_marking_a_column_done_completes_its_tasks(client, app):
    world = await build_world(client, app)
    task = await _new(world, "In progress", column_id=world.ids["C_doing"])
    await world.ok("admin", "PATCH", "/api/columns/{C_doing}", json={"is_done": True})
    done = await world.ok("member", "GET", f"/api/tasks/{task['id']}")
    assert done["completed_at"] is not None and done["version"] == 2
    completed = await world.ok(
        "member", "GET", "/api/projects/{P}/tasks", params={"completed": "true"}
    )
    assert task["id"] in [t["id"] for t in completed["items"]]
    await world.ok("admin", "PATCH", "/api/columns/{C_doing}", json={"is_done": False})
    assert (await world.ok("member", "GET", f"/api/tasks/{task['id']}"))["completed_at"] is None


async def test_rebalancing_publishes_every_new_position(client, app, monkeypatch):
    monkeypatch.setattr(ranking, "MAX_RANK_LENGTH", 3)
    world = await build_world(client, app)
    first = await _new(world, "first")
    for n in range(8):
        await _move(world, await _new(world, f"n{n}"), "C", after=first)
    rebalanced = [e for e in await events(world, "member") if e["type"] == "column.rebalanced"]
    assert rebalanced, "no rebalance happened"
    # Replaying the events gives the server's order.
    positions: dict[str, str] = {}
    for e in await events(world, "member"):
        if e["type"] in ("task.created", "task.moved") and e["data"]["column_id"] == world.ids["C"]:
            positions[e["data"]["id"]] = e["data"]["position"]
        elif e["type"] == "column.rebalanced" and e["data"]["column_id"] == world.ids["C"]:
            positions.update(e["data"]["positions"])
    board = await world.ok("member", "GET", "/api/projects/{P}/board")
    server_order = [t["id"] for t in board["columns"][0]["tasks"]]
    assert sorted(positions, key=positions.get) == server_order


async def test_my_tasks_and_admin_honour_status_and_column(client, app):
    world = await build_world(client, app)
    todo = await _new(world, "open", assignee_id=world.ids["member_id"])
    done = await _new(world, "closed", assignee_id=world.ids["member_id"])
    await _move(world, done, "C_done")
    mine = await world.ok("member", "GET", "/api/me/tasks", params={"status": "done"})
    assert [t["id"] for t in mine["items"]] == [done["id"]]
    mine = await world.ok("member", "GET", "/api/me/tasks", params={"column_id": world.ids["C"]})
    assert [t["id"] for t in mine["items"]] == [todo["id"]]
    admin = await world.ok(
        "superuser", "GET", "/api/admin/tasks", params={"column_id": world.ids["C_done"]}
    )
    assert [t["id"] for t in admin["items"]] == [done["id"]]


async def test_activity_pages_by_seq(client, app):
    world = await build_world(client, app)
    task = await _new(world, "busy")
    for n in range(5):
        await world.ok("member", "PATCH", f"/api/tasks/{task['id']}", json={"title": f"busy {n}"})
    await app.state.dispatcher.flush()
    first = await world.ok(
        "viewer", "GET", f"/api/tasks/{task['id']}/activity", params={"limit": 4}
    )
    assert len(first["items"]) == 4 and first["next_cursor"]
    rest = await world.ok(
        "viewer", "GET", f"/api/tasks/{task['id']}/activity", params={"since": first["next_cursor"]}
    )
    assert [e["type"] for e in first["items"] + rest["items"]] == ["task.created"] + [
        "task.updated"
    ] * 5
    assert rest["next_cursor"] is None
