"""Automation rules: stored and checked per project, run by the outbox consumer as the
rule (actor ``{kind: system, rule_id, on_behalf_of}``) through the same services as a
user, all or none, once per event, never set off by their own events, and switched off
when their owner may no longer manage the project."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import select

from huddle.automation.engine import CURSOR, matches
from huddle.automation.models import AutomationRun
from huddle.automation.schemas import Trigger
from huddle.events.models import Event
from huddle.events.schemas import Actor, Envelope
from huddle.events.service import envelope
from tests.helpers import assert_error, wait_for
from tests.world import World, build_world, events

RULES = "/api/projects/{P}/automations"


async def runs(world: World, rule_id: str, role: str = "viewer") -> list[dict[str, Any]]:
    await world.app.state.dispatcher.flush()
    path = f"/api/projects/{{P}}/automations/{rule_id}/runs"
    return (await world.ok(role, "GET", path))["items"]


async def settled(world: World, rule_id: str, count: int = 1) -> list[dict[str, Any]]:
    """The rule's runs once there are ``count`` of them."""
    return await wait_for(lambda: _at_least(world, rule_id, count))


async def _at_least(world: World, rule_id: str, count: int) -> list[dict[str, Any]] | None:
    found = await runs(world, rule_id)
    return found if len(found) >= count else None


async def quiesce(world: World) -> None:
    """Let the engine catch up with everything committed so far."""
    await world.app.state.dispatcher.flush()
    [engine] = [f for f in world.app.state.events.forwarders if f.name == CURSOR]
    while await engine.forward_pending():
        pass


async def columns(world: World) -> dict[str, str]:
    board = await world.ok("admin", "GET", "/api/projects/{P}/board")
    return {c["key"]: c["id"] for c in board["columns"]}


async def add_review(world: World) -> dict[str, str]:
    await world.ok(
        "admin", "POST", "/api/projects/{P}/columns", 201, json={"name": "Review", "position": 2}
    )
    return await columns(world)


async def reviews_channel(world: World) -> str:
    created = await world.ok(
        "admin", "POST", "/api/workspaces/{W}/channels", 201, json={"name": "reviews"}
    )
    return created["id"]


async def task(world: World, title: str, **fields: Any) -> dict[str, Any]:
    body = {"title": title, **fields}
    return await world.ok("member", "POST", "/api/projects/{P}/tasks", 201, json=body)


async def rule(world: World, body: dict[str, Any], role: str = "admin") -> dict[str, Any]:
    return await world.ok(role, "POST", RULES, 201, json={"name": "Rule", **body})


async def channel_messages(world: World, channel: str) -> list[dict[str, Any]]:
    return (await world.ok("admin", "GET", f"/api/channels/{channel}/messages"))["items"]


def rule_actor(rule_id: str, owner_id: str) -> dict[str, str]:
    return {"kind": "system", "rule_id": rule_id, "on_behalf_of": owner_id}


# --- managing rules ---------------------------------------------------------------------


async def test_rules_are_stored_listed_changed_and_announced(client, app):
    world = await build_world(client, app)
    cols = await add_review(world)
    channel = await reviews_channel(world)
    body = {
        "name": "Review handoff",
        "trigger": {"event": "task.moved", "column_id": cols["review"]},
        "actions": [
            {"type": "assign", "user_id": world.ids["member_id"]},
            {"type": "post_message", "channel_id": channel, "text": "{assignee}: {title}"},
        ],
    }
    created = await world.ok("admin", "POST", RULES, 201, json=body)
    assert created["name"] == "Review handoff" and created["enabled"] is True
    assert created["owner_id"] == created["created_by"] == world.ids["admin_id"]
    assert created["trigger"] == {
        "event": "task.moved",
        "column_id": cols["review"],
        "priority": None,
        "due_passed": False,
    }
    assert created["actions"] == body["actions"]
    assert created["disabled_reason"] is None

    listed = await world.ok("viewer", "GET", RULES)
    assert [r["id"] for r in listed["items"]] == [created["id"]]
    one = await world.ok("viewer", "GET", f"{RULES}/{created['id']}")
    assert one == created

    # The project admin by grant (teammate) may change it, and becomes its owner.
    changed = await world.ok(
        "teammate", "PATCH", f"{RULES}/{created['id']}", json={"name": "Handoff", "enabled": False}
    )
    assert changed["name"] == "Handoff" and changed["enabled"] is False
    assert changed["owner_id"] == world.ids["teammate_id"]
    assert changed["created_by"] == world.ids["admin_id"]

    assert_error(
        await world.call("member", "PATCH", f"{RULES}/{created['id']}", json={"name": "x"}),
        403,
        "forbidden",
    )
    await world.ok("admin", "DELETE", f"{RULES}/{created['id']}", 204)
    assert (await world.ok("admin", "GET", RULES))["items"] == []

    seen = [
        (e["type"], e["data"]["name"], e["actor"])
        for e in await events(world, "viewer", topic=f"project:{world.ids['P']}")
        if e["type"].startswith("automation.")
    ]
    assert seen == [
        ("automation.created", "Review handoff", {"kind": "user", "id": world.ids["admin_id"]}),
        ("automation.updated", "Handoff", {"kind": "user", "id": world.ids["teammate_id"]}),
        ("automation.deleted", "Handoff", {"kind": "user", "id": world.ids["admin_id"]}),
    ]


async def test_what_a_rule_names_is_checked_when_it_is_saved(client, app):
    world = await build_world(client, app, chat=True)
    q_board = await world.ok("admin", "GET", "/api/projects/{Q}/board")
    foreign_column = q_board["columns"][0]["id"]

    async def refused(body: dict[str, Any], loc: list[Any], role: str = "admin") -> None:
        response = await world.call(role, "POST", RULES, json={"name": "Bad", **body})
        error = assert_error(response, 422, "validation_error")
        assert [d["loc"] for d in error["details"]] == [["body", *loc]], error

    moved = {"event": "task.moved"}
    await refused(
        {"trigger": {**moved, "column_id": foreign_column}, "actions": [_priority()]},
        ["trigger", "column_id"],
    )
    await refused(
        {"trigger": moved, "actions": [_priority(), {"type": "move", "column_id": foreign_column}]},
        ["actions", 1, "column_id"],
    )
    # the newcomer cannot see the project, so cannot be assigned its tasks
    await refused(
        {"trigger": moved, "actions": [{"type": "assign", "user_id": world.ids["newcomer_id"]}]},
        ["actions", 0, "user_id"],
    )
    # admin is not in the private channel PC2; W2's channel is another workspace's
    for channel in ("PC2", "CH2"):
        await refused(
            {
                "trigger": moved,
                "actions": [
                    {"type": "post_message", "channel_id": world.ids[channel], "text": "x"}
                ],
            },
            ["actions", 0, "channel_id"],
        )
    # unknown placeholders, unbalanced braces, no actions, unknown action or event: 422
    for actions in (
        [{"type": "post_message", "channel_id": world.ids["CH"], "text": "{secret}"}],
        [{"type": "post_message", "channel_id": world.ids["CH"], "text": "oops {title"}],
        [],
        [{"type": "delete_everything"}],
    ):
        response = await world.call(
            "admin", "POST", RULES, json={"name": "Bad", "trigger": moved, "actions": actions}
        )
        assert_error(response, 422, "validation_error")
    response = await world.call(
        "admin",
        "POST",
        RULES,
        json={"name": "Bad", "trigger": {"event": "task.deleted"}, "actions": [_priority()]},
    )
    assert_error(response, 422, "validation_error")
    # braces written as {{ }} are fine
    await rule(
        world,
        {
            "trigger": moved,
            "actions": [
                {"type": "post_message", "channel_id": world.ids["CH"], "text": "{{x}} {title}"}
            ],
        },
    )
    assert len((await world.ok("admin", "GET", RULES))["items"]) == 1


def _priority(value: str = "high") -> dict[str, str]:
    return {"type": "set_priority", "priority": value}


# --- running rules ----------------------------------------------------------------------


async def test_a_task_entering_review_is_assigned_and_announced_by_the_rule(client, app):
    world = await build_world(client, app)
    cols = await add_review(world)
    channel = await reviews_channel(world)
    handoff = await rule(
        world,
        {
            "trigger": {"event": "task.moved", "column_id": cols["review"]},
            "actions": [
                {"type": "assign", "user_id": world.ids["member_id"]},
                {
                    "type": "post_message",
                    "channel_id": channel,
                    "text": "{assignee}, please review “{title}” ({column}, {priority})",
                },
            ],
        },
    )
    card = await task(world, "Ship the login page")
    await world.ok("admin", "PATCH", f"/api/tasks/{card['id']}", json={"status": "review"})

    [run] = await settled(world, handoff["id"])
    assert run["status"] == "succeeded" and run["error"] is None
    assert run["task_id"] == card["id"] and run["event_type"] == "task.moved"
    assert run["actions"] == [
        {"type": "assign", "result": "done"},
        {"type": "post_message", "result": "done"},
    ]
    now = await world.ok("member", "GET", f"/api/tasks/{card['id']}")
    assert now["assignee_id"] == world.ids["member_id"] and now["status"] == "review"
    [message] = await channel_messages(world, channel)
    assert message["content"] == "@member, please review “Ship the login page” (Review, none)"
    assert message["author_kind"] == "system" and message["author"] is None
    assert message["mentions"] == [world.ids["member_id"]]

    actor = rule_actor(handoff["id"], world.ids["admin_id"])
    on_project = await events(world, "member", topic=f"project:{world.ids['P']}")
    task_events = [(e["type"], e["actor"]) for e in on_project if e["subject_id"] == card["id"]]
    assert task_events == [
        ("task.created", {"kind": "user", "id": world.ids["member_id"]}),
        ("task.moved", {"kind": "user", "id": world.ids["admin_id"]}),
        ("task.updated", actor),
    ]
    moved = next(e for e in on_project if e["type"] == "task.moved")
    assert moved["data"]["from_column_id"] == cols["todo"]
    in_channel = await events(world, "member", topic=f"channel:{channel}")
    created = [e for e in in_channel if e["type"] == "message.created"]
    assert [e["actor"] for e in created] == [actor]
    mention = await events(world, "member", topic=f"user:{world.ids['member_id']}")
    assert [e["actor"] for e in mention if e["type"] == "mention"] == [actor]

    # Reordering inside Review is not a move into it: nothing runs again.
    other = await task(world, "Other")
    await world.ok(
        "admin", "POST", f"/api/tasks/{other['id']}/move", json={"column_id": cols["review"]}
    )
    await settled(world, handoff["id"], 2)
    await world.ok(
        "admin",
        "POST",
        f"/api/tasks/{card['id']}/move",
        json={"column_id": cols["review"], "after_id": other["id"]},
    )
    await quiesce(world)
    assert len(await runs(world, handoff["id"])) == 2
    assert len(await channel_messages(world, channel)) == 2


async def test_a_redelivered_event_runs_nothing_twice(client, app):
    world = await build_world(client, app)
    channel = await reviews_channel(world)
    announce = await rule(
        world,
        {
            "trigger": {"event": "task.created"},
            "actions": [{"type": "post_message", "channel_id": channel, "text": "New: {title}"}],
        },
    )
    card = await task(world, "Once")
    await settled(world, announce["id"])
    [engine] = [f for f in app.state.events.forwarders if f.name == CURSOR]
    async with app.state.db.read_session() as session:
        row = await session.scalar(
            select(Event).where(
                Event.subject_id == uuid.UUID(card["id"]), Event.type == "task.created"
            )
        )
        assert row is not None
        # TK was created before the rule: however late the engine reads that, no run.
        older = await session.scalar(
            select(Event).where(
                Event.subject_id == uuid.UUID(world.ids["TK"]), Event.type == "task.created"
            )
        )
        assert older is not None
        await engine.bus.publish([envelope(row), envelope(older)])
    assert len(await runs(world, announce["id"])) == 1
    assert [m["content"] for m in await channel_messages(world, channel)] == ["New: Once"]


async def test_rules_do_not_set_off_rules(client, app, caplog):
    world = await build_world(client, app)
    cols = await columns(world)
    there = await rule(
        world,
        {
            "trigger": {"event": "task.moved", "column_id": cols["in_progress"]},
            "actions": [{"type": "move", "column_id": cols["done"]}],
        },
    )
    back = await rule(
        world,
        {
            "trigger": {"event": "task.moved", "column_id": cols["done"]},
            "actions": [{"type": "move", "column_id": cols["in_progress"]}],
        },
    )
    card = await task(world, "Ping-pong")
    caplog.set_level("DEBUG", logger="huddle.automation")
    await world.ok("member", "PATCH", f"/api/tasks/{card['id']}", json={"status": "in_progress"})
    [run] = await settled(world, there["id"])
    await quiesce(world)
    assert run["status"] == "succeeded"
    assert await runs(world, back["id"]) == []
    now = await world.ok("member", "GET", f"/api/tasks/{card['id']}")
    assert now["status"] == "done" and now["completed_at"] is not None
    assert "rules do not set off rules" in caplog.text


async def test_all_or_none_and_the_failure_is_recorded(client, app):
    """A move a WIP limit forbids fails the run: the assignment before it is undone."""
    world = await build_world(client, app)
    cols = await columns(world)
    await world.ok(
        "admin",
        "PUT",
        "/api/projects/{P}/workflow",
        json={"wip_limits": [{"column_id": cols["in_progress"], "limit": 1}]},
    )
    await task(world, "Already busy", column_id=cols["in_progress"])
    urgent = await rule(
        world,
        {
            "trigger": {"event": "task.created", "priority": "urgent"},
            "actions": [
                {"type": "assign", "user_id": world.ids["admin_id"]},
                {"type": "move", "column_id": cols["in_progress"]},
            ],
        },
    )
    calm = await task(world, "Calm", priority="low")
    card = await task(world, "Fire", priority="urgent")
    [run] = await settled(world, urgent["id"])
    assert run["task_id"] == card["id"]  # the low-priority task set nothing off
    assert run["status"] == "failed" and run["actions"] == []
    assert run["error"]["code"] == "workflow_violation" and run["error"]["action"] == 1
    now = await world.ok("member", "GET", f"/api/tasks/{card['id']}")
    assert now["assignee_id"] is None and now["status"] == "todo"
    assert calm["id"] != card["id"]
    # the rule stays on: a failed run is not an access problem
    assert (await world.ok("admin", "GET", f"{RULES}/{urgent['id']}"))["enabled"] is True


async def test_a_rule_whose_owner_lost_access_stops_and_says_why(client, app):
    world = await build_world(client, app)
    uid = world.ids["bystander_id"]
    await world.ok("admin", "PATCH", f"/api/workspaces/{{W}}/members/{uid}", json={"role": "admin"})
    raise_it = await rule(
        world,
        {"trigger": {"event": "task.created"}, "actions": [_priority("high")]},
        role="bystander",
    )
    await world.ok(
        "admin", "PATCH", f"/api/workspaces/{{W}}/members/{uid}", json={"role": "member"}
    )
    first = await task(world, "After the demotion")
    [run] = await settled(world, raise_it["id"])
    assert run["status"] == "failed" and run["error"]["code"] == "owner_lost_access"
    assert "bystander" in run["error"]["message"]
    stopped = await world.ok("admin", "GET", f"{RULES}/{raise_it['id']}")
    assert stopped["enabled"] is False and "no longer an admin" in stopped["disabled_reason"]
    assert (await world.ok("member", "GET", f"/api/tasks/{first['id']}"))["priority"] == "none"
    announced = [
        e
        for e in await events(world, "viewer", topic=f"project:{world.ids['P']}")
        if e["type"] == "automation.updated"
    ]
    assert announced[-1]["data"]["enabled"] is False
    assert announced[-1]["actor"] == {"kind": "system", "rule_id": raise_it["id"]}

    # A stopped rule runs no more, until an admin takes it over by switching it on.
    await task(world, "While stopped")
    await quiesce(world)
    assert len(await runs(world, raise_it["id"])) == 1
    revived = await world.ok("admin", "PATCH", f"{RULES}/{raise_it['id']}", json={"enabled": True})
    assert revived["owner_id"] == world.ids["admin_id"] and revived["disabled_reason"] is None
    later = await task(world, "After the revival")
    runs_now = await settled(world, raise_it["id"], 2)
    assert runs_now[0]["status"] == "succeeded" and runs_now[0]["task_id"] == later["id"]
    assert (await world.ok("member", "GET", f"/api/tasks/{later['id']}"))["priority"] == "high"


async def test_a_task_whose_due_date_passed(client, app):
    world = await build_world(client, app)
    overdue = await rule(
        world,
        {
            "trigger": {"event": "task.updated", "due_passed": True},
            "actions": [_priority("urgent")],
        },
    )
    card = await task(world, "Late")
    tomorrow = (datetime.now(UTC).date() + timedelta(days=1)).isoformat()
    await world.ok("member", "PATCH", f"/api/tasks/{card['id']}", json={"due_date": tomorrow})
    yesterday = (datetime.now(UTC).date() - timedelta(days=1)).isoformat()
    await world.ok("member", "PATCH", f"/api/tasks/{card['id']}", json={"due_date": yesterday})
    [run] = await settled(world, overdue["id"])
    assert run["status"] == "succeeded"
    assert (await world.ok("member", "GET", f"/api/tasks/{card['id']}"))["priority"] == "urgent"


async def test_a_message_to_a_channel_the_owner_left_fails_the_run(client, app):
    world = await build_world(client, app, chat=True)
    private = await world.ok(
        "admin",
        "POST",
        "/api/workspaces/{W}/channels",
        201,
        json={"name": "leads", "is_private": True},
    )
    rule_body = {
        "trigger": {"event": "task.created"},
        "actions": [
            _priority("low"),
            {"type": "post_message", "channel_id": private["id"], "text": "{title}"},
        ],
    }
    posting = await rule(world, rule_body)
    await world.ok("admin", "DELETE", f"/api/channels/{private['id']}", 204)
    card = await task(world, "Nowhere to say it")
    [run] = await settled(world, posting["id"])
    assert run["status"] == "failed" and run["error"]["code"] == "not_found"
    assert run["error"]["action"] == 1
    assert (await world.ok("member", "GET", f"/api/tasks/{card['id']}"))["priority"] == "none"


def test_matching():
    column = uuid.uuid4()
    other = uuid.uuid4()
    today = date(2026, 12, 8)

    def event(type_: str, **data: Any) -> Envelope:
        return Envelope(
            id=1,
            type=type_,
            topic="project:x",
            workspace_id=None,
            subject_id=None,
            actor=Actor.system(),
            data={"project_id": "p", "priority": "none", "due_date": None, **data},
            created_at=datetime(2026, 12, 8, 12, tzinfo=UTC),
        )

    into = Trigger(event="task.moved", column_id=column)
    assert matches(into, event("task.moved", column_id=str(column), from_column_id=str(other)))
    assert not matches(into, event("task.moved", column_id=str(column), from_column_id=str(column)))
    assert not matches(into, event("task.moved", column_id=str(other), from_column_id=str(column)))
    assert not matches(into, event("task.updated", column_id=str(column)))
    urgent = Trigger(event="task.created", priority="urgent")
    assert matches(urgent, event("task.created", priority="urgent"))
    assert not matches(urgent, event("task.created", priority="high"))
    late = Trigger(event="task.updated", due_passed=True)
    yesterday = (today - timedelta(days=1)).isoformat()
    assert matches(late, event("task.updated", due_date=yesterday))
    assert not matches(late, event("task.updated", due_date=today.isoformat()))
    assert not matches(late, event("task.updated", due_date=None))
    assert not matches(late, event("task.updated", due_date=yesterday, completed_at="2026-12-07"))


async def test_runs_are_pruned_to_the_newest(client, app, monkeypatch):
    from huddle.automation import engine

    monkeypatch.setattr(engine, "KEEP_RUNS", 3)
    world = await build_world(client, app)
    counted = await rule(world, {"trigger": {"event": "task.created"}, "actions": [_priority()]})
    made = [await task(world, f"T{i}") for i in range(5)]
    await settled(world, counted["id"], 3)
    await quiesce(world)
    kept = await runs(world, counted["id"])
    assert [r["task_id"] for r in kept] == [t["id"] for t in reversed(made[2:])]
    async with app.state.db.read_session() as session:
        stored = (await session.scalars(select(AutomationRun.id))).all()
    assert len(stored) == 3
