"""Saved prompt templates: personal or shared in a workspace, usable as a system prompt."""

from __future__ import annotations

from tests.ai.scripted_llm import Reply, ScriptedLLM
from tests.helpers import assert_error
from tests.world import World


async def test_personal_and_shared_prompts(ai_world: World):
    world = ai_world
    mine = await world.ok(
        "member", "POST", "/api/prompts", 201, json={"name": "Terse", "content": "Be terse."}
    )
    assert (mine["shared"], mine["workspace_id"], mine["owner_id"]) == (
        False,
        None,
        world.ids["member_id"],
    )
    # Only a workspace admin shares.
    response = await world.call(
        "member",
        "POST",
        "/api/prompts",
        json={"name": "X", "content": "Y", "workspace_id": world.ids["W"], "shared": True},
    )
    assert_error(response, 403, "forbidden")
    response = await world.call(
        "member", "POST", "/api/prompts", json={"name": "X", "content": "Y", "shared": True}
    )
    assert_error(response, 422, "validation_error")
    team = await world.ok(
        "admin",
        "POST",
        "/api/prompts",
        201,
        json={"name": "Team", "content": "French.", "workspace_id": world.ids["W"], "shared": True},
    )

    # Each sees their own and what is shared in their workspaces.
    def names(page: dict) -> list[str]:
        return sorted(p["name"] for p in page["items"])

    assert names(await world.ok("member", "GET", "/api/prompts")) == ["Team", "Terse"]
    assert names(await world.ok("viewer", "GET", "/api/prompts")) == ["Team"]
    assert names(await world.ok("outsider", "GET", "/api/prompts")) == []
    assert names(
        await world.ok("member", "GET", f"/api/prompts?workspace_id={world.ids['W']}")
    ) == ["Team"]
    # Members read a shared prompt but do not change it; its owner's admins do.
    await world.ok("viewer", "GET", f"/api/prompts/{team['id']}")
    response = await world.call("member", "PATCH", f"/api/prompts/{team['id']}", json={"name": "Z"})
    assert_error(response, 403, "forbidden")
    renamed = await world.ok(
        "admin", "PATCH", f"/api/prompts/{team['id']}", json={"name": "Équipe"}
    )
    assert renamed["name"] == "Équipe" and renamed["content"] == "French."
    # Nobody else sees a personal prompt.
    for role in ("admin", "viewer", "outsider", "superuser"):
        assert_error(await world.call(role, "GET", f"/api/prompts/{mine['id']}"), 404, "not_found")
    await world.ok("member", "DELETE", f"/api/prompts/{mine['id']}", 204)
    assert_error(await world.call("member", "GET", f"/api/prompts/{mine['id']}"), 404, "not_found")


async def test_bad_prompts_are_422(ai_world: World):
    for body in (
        {"name": "", "content": "x"},
        {"name": "x", "content": ""},
        {"name": "x", "content": "y" * 20_001},
        {"name": "x", "content": "y", "shared": "yes"},
        {"name": "x"},
    ):
        response = await ai_world.call("member", "POST", "/api/prompts", json=body)
        assert_error(response, 422, "validation_error")


async def test_a_prompt_becomes_the_conversations_system_prompt(ai_world: World, llm: ScriptedLLM):
    world = ai_world
    team = await world.ok(
        "admin",
        "POST",
        "/api/prompts",
        201,
        json={
            "name": "Team",
            "content": "Answer in French.",
            "workspace_id": world.ids["W"],
            "shared": True,
        },
    )
    created = await world.ok(
        "member",
        "POST",
        "/api/ai/conversations",
        201,
        json={
            "workspace_id": world.ids["W"],
            "prompt_id": team["id"],
            "system_prompt": "Be brief.",
        },
    )
    assert created["system_prompt"] == "Answer in French.\n\nBe brief."
    llm.script(Reply("Bonjour."))
    await world.ok(
        "member", "POST", f"/api/ai/conversations/{created['id']}/messages", json={"content": "hi"}
    )
    system = llm.requests[0]["messages"][0]
    assert system["role"] == "system"
    assert system["content"].endswith("Answer in French.\n\nBe brief.")
    # Someone else's personal prompt cannot be used (nor is its existence told).
    private = await world.ok(
        "admin", "POST", "/api/prompts", 201, json={"name": "Mine", "content": "Secret."}
    )
    response = await world.call(
        "member", "POST", "/api/ai/conversations", json={"prompt_id": private["id"]}
    )
    assert_error(response, 404, "not_found")
