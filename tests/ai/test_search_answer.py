"""``/api/ai/search`` writes `answer` from the sources it found, citing them by number."""

from __future__ import annotations

import json

import pytest

from tests.ai.scripted_llm import Call, Fail, Reply, ScriptedLLM
from tests.search.test_semantic import RUNBOOK, VACATION, indexed
from tests.world import World

pytestmark = pytest.mark.semantic


async def ask(world: World, query: str) -> dict:
    return await world.ok(
        "viewer", "POST", "/api/ai/search", json={"query": query, "workspace_id": world.ids["W"]}
    )


async def test_answer_from_the_sources_with_citations(ai_world: World, llm: ScriptedLLM, ai_app):
    world = ai_world
    for title, content in (("Runbook", RUNBOOK), ("Holidays", VACATION)):
        await world.ok(
            "member",
            "POST",
            "/api/projects/{P}/documents",
            201,
            json={"title": title, "content": content},
        )
    secret = "# Acquisition\n\nWe are buying Initech; the rollback plan is to walk away."
    await world.ok(
        "admin",
        "POST",
        "/api/projects/{Q}/documents",
        201,
        json={"title": "Deal", "content": secret},
    )
    await indexed(ai_app)
    llm.script(Reply("Run `make rollback` [1]."))

    found = await ask(world, "how do I undo a bad release?")

    assert found["answer"] == "Run `make rollback` [1]."
    assert found["sources"][0]["title"] == "Runbook"
    [request] = llm.requests
    prompt = request["messages"][1]["content"]
    assert prompt.startswith("[1] document “Runbook”: ")
    assert "make rollback" in prompt and prompt.endswith("Question: how do I undo a bad release?")
    # Only what the viewer can read reaches the model (Q is private).
    assert "Initech" not in prompt
    assert "citing them as [1]" in request["messages"][0]["content"]

    # A failing model leaves the sources, without an answer.
    llm.script(Fail(500), Fail(500))
    found = await ask(world, "how many days off do we get?")
    assert found["answer"] is None
    assert found["sources"][0]["title"] == "Holidays"


async def test_the_agents_search_tool_finds_only_what_the_user_can_read(
    ai_world: World, llm: ScriptedLLM, ai_app
):
    world = ai_world
    await world.ok(
        "member",
        "POST",
        "/api/projects/{P}/documents",
        201,
        json={"title": "Runbook", "content": RUNBOOK},
    )
    secret = "# Rollback of the deal\n\nIf the Initech deal fails we roll back to plan B."
    await world.ok(
        "admin",
        "POST",
        "/api/projects/{Q}/documents",
        201,
        json={"title": "Deal", "content": secret},
    )
    await indexed(ai_app)
    created = await world.ok(
        "viewer", "POST", "/api/ai/conversations", 201, json={"workspace_id": world.ids["W"]}
    )
    llm.script(
        Call("search", {"query": "how do I roll back?"}, id="call_search"),
        Call("search", {"query": "roll back", "project_id": world.ids["Q"]}, id="call_secret"),
        Reply("Use make rollback."),
    )
    reply = await world.ok(
        "viewer",
        "POST",
        f"/api/ai/conversations/{created['id']}/messages",
        json={"content": "how do I roll back?"},
    )
    outputs = {m["tool_call_id"]: m["content"] for m in reply["messages"] if m["role"] == "tool"}
    found = json.loads(outputs["call_search"])["sources"]
    assert [s["title"] for s in found] == ["Runbook"]
    assert "Initech" not in outputs["call_search"]
    assert json.loads(outputs["call_secret"])["error"]["code"] == "not_found"
