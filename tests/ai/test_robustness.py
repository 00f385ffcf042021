"""What goes wrong around the assistant: failing tools, retried requests, stale actions,
bad times, empty answers, prompts whose author lost their rights."""

from __future__ import annotations

import json
from typing import Any

import pytest

from huddle.ai import tools
from huddle.ai.summaries import newest_that_fit
from tests.ai.scripted_llm import Call, Fail, Reply, ScriptedLLM
from tests.helpers import assert_error
from tests.world import World, add_chat


async def conversation(world: World, role: str = "member") -> str:
    created = await world.ok(
        role, "POST", "/api/ai/conversations", 201, json={"workspace_id": world.ids["W"]}
    )
    return str(created["id"])


async def test_a_tool_that_crashes_is_reported_and_the_history_stays_valid(
    ai_world: World, llm: ScriptedLLM, monkeypatch: pytest.MonkeyPatch
):
    world = ai_world

    async def broken(*args: Any) -> Any:
        raise RuntimeError("SELECT secret FROM somewhere")

    monkeypatch.setitem(
        tools.TOOLS, "get_task", tools.Tool("get_task", "Read one task.", tools.TaskRef, broken)
    )
    cid = await conversation(world)
    llm.script(Call("get_task", {"task_id": world.ids["TK"]}, id="call_x"), Reply("It failed."))

    reply = await world.ok(
        "member", "POST", f"/api/ai/conversations/{cid}/messages", json={"content": "read TK"}
    )

    assert reply["message"]["content"] == "It failed."
    [output] = [m for m in reply["messages"] if m["role"] == "tool"]
    assert json.loads(output["content"])["error"]["code"] == "internal_error"
    assert "SELECT" not in json.dumps(reply) and "SELECT" not in json.dumps(llm.requests)
    # The next turn sends a well-formed history: every call followed by its result.
    llm.script(Reply("Still here."))
    await world.ok(
        "member", "POST", f"/api/ai/conversations/{cid}/messages", json={"content": "again"}
    )
    roles = [m["role"] for m in llm.requests[-1]["messages"]]
    assert roles == ["system", "user", "assistant", "tool", "assistant", "user"]


async def test_a_model_failure_mid_turn_leaves_a_valid_history(ai_world: World, llm: ScriptedLLM):
    world = ai_world
    cid = await conversation(world)
    llm.script(Call("list_projects", {}, id="call_a"), Fail(500), Fail(500))
    response = await world.call(
        "member", "POST", f"/api/ai/conversations/{cid}/messages", json={"content": "go"}
    )
    body = assert_error(response, 502, "ai_provider_error")
    assert "SELECT" not in body["error"]
    llm.script(Reply("Back."))
    await world.ok(
        "member", "POST", f"/api/ai/conversations/{cid}/messages", json={"content": "again"}
    )
    sent = llm.requests[-1]["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "tool", "user"]
    assert sent[2]["tool_calls"][0]["id"] == sent[3]["tool_call_id"] == "call_a"


async def test_a_retry_with_the_same_key_after_a_failure_does_not_repeat_writes(
    ai_world: World, llm: ScriptedLLM
):
    world = ai_world
    cid = await conversation(world)
    llm.script(
        Call("create_task", {"project_id": "Public", "title": "Once"}, id="c1"),
        Fail(500),
        Fail(500),
    )
    headers = {"Idempotency-Key": "turn-1"}
    path = f"/api/ai/conversations/{cid}/messages"
    first = await world.call("member", "POST", path, json={"content": "make Once"}, headers=headers)
    assert_error(first, 502, "ai_provider_error")
    assert "x-huddle-keep-error" not in first.headers
    again = await world.call("member", "POST", path, json={"content": "make Once"}, headers=headers)
    assert again.status_code == 502
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    tasks = (await world.ok("member", "GET", "/api/projects/{P}/tasks"))["items"]
    assert [t["title"] for t in tasks].count("Once") == 1
    stored = await world.ok("member", "GET", f"/api/ai/conversations/{cid}")
    assert [m["content"] for m in stored["messages"] if m["role"] == "user"] == ["make Once"]
    assert len(llm.requests) == 3  # no second turn


async def test_confirming_an_action_that_can_no_longer_be_done(ai_world: World, llm: ScriptedLLM):
    world = ai_world
    task = await world.ok("member", "POST", "/api/projects/{P}/tasks", 201, json={"title": "Gone"})
    cid = await conversation(world)
    llm.script(Call("delete_task", {"task_id": task["id"]}), Reply("Confirm it."))
    reply = await world.ok(
        "member", "POST", f"/api/ai/conversations/{cid}/messages", json={"content": "delete"}
    )
    [action] = reply["pending_actions"]
    await world.ok("member", "DELETE", f"/api/tasks/{task['id']}", 204)

    response = await world.call("member", "POST", f"/api/ai/actions/{action['id']}/confirm")

    assert_error(response, 404, "not_found")
    detail = await world.ok("member", "GET", f"/api/ai/conversations/{cid}")
    assert detail["pending_actions"] == []  # no longer offered
    again = await world.call("member", "POST", f"/api/ai/actions/{action['id']}/confirm")
    assert_error(again, 409, "conflict")


async def test_an_empty_answer_is_stored_as_such(ai_world: World, llm: ScriptedLLM):
    world = ai_world
    cid = await conversation(world)
    llm.script(Reply(""))
    reply = await world.ok(
        "member", "POST", f"/api/ai/conversations/{cid}/messages", json={"content": "hi"}
    )
    assert reply["message"]["role"] == "assistant"
    assert reply["message"]["content"] == "(The model gave no answer.)"


async def test_times_without_a_zone(ai_world: World, llm: ScriptedLLM):
    world = ai_world
    await add_chat(world)
    response = await world.call(
        "member",
        "POST",
        "/api/ai/summarize",
        json={"channel_id": world.ids["CH"], "since": "2026-01-01T00:00:00"},
    )
    assert_error(response, 422, "validation_error")
    # A model that leaves the zone out gets UTC.
    cid = await conversation(world)
    llm.script(
        Call("summarize_channel", {"channel_id": world.ids["CH"], "since": "2020-01-01T00:00:00"}),
        Reply("- hello"),
        Reply("Someone said hello."),
    )
    reply = await world.ok(
        "member", "POST", f"/api/ai/conversations/{cid}/messages", json={"content": "summary?"}
    )
    [output] = [m for m in reply["messages"] if m["role"] == "tool"]
    assert json.loads(output["content"]) == {"summary": "- hello", "message_count": 1}


async def test_a_shared_prompt_belongs_to_the_workspaces_current_admins(ai_world: World):
    world = ai_world
    await world.ok(
        "admin", "PATCH", "/api/workspaces/{W}/members/{member_id}", json={"role": "admin"}
    )
    prompt = await world.ok(
        "member",
        "POST",
        "/api/prompts",
        201,
        json={
            "name": "Team",
            "content": "Be kind.",
            "workspace_id": world.ids["W"],
            "shared": True,
        },
    )
    path = f"/api/prompts/{prompt['id']}"
    await world.ok(
        "admin", "PATCH", "/api/workspaces/{W}/members/{member_id}", json={"role": "viewer"}
    )
    # Demoted: its author reads it like any member, but changes it no more.
    await world.ok("member", "GET", path)
    assert_error(await world.call("member", "PATCH", path, json={"content": "x"}), 403, "forbidden")
    assert_error(await world.call("member", "DELETE", path), 403, "forbidden")
    await world.ok("admin", "DELETE", "/api/workspaces/{W}/members/{member_id}", 204)
    assert_error(await world.call("member", "PATCH", path, json={"content": "x"}), 404, "not_found")
    assert (await world.ok("viewer", "GET", path))["content"] == "Be kind."
    # The workspace's admins still manage it.
    changed = await world.ok("admin", "PATCH", path, json={"content": "Be kinder."})
    assert changed["content"] == "Be kinder."


def test_a_long_channel_is_summarised_from_its_newest_messages():
    lines = [f"line {n:03d} " + "x" * 90 for n in range(100)]  # 99 chars + a newline each
    kept = newest_that_fit(lines, 1000)
    assert kept == lines[-10:]
    assert newest_that_fit(["y" * 5000], 1000) == ["y" * 5000]
