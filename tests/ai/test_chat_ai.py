"""Channel summaries (map-reduce), @ai answers in chat, and the summarize tool, against
the scripted OpenAI-compatible server."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select

from huddle.ai.mentions import CURSOR
from huddle.ai.models import AIUsage
from huddle.events.models import Event
from huddle.events.service import envelope
from tests.ai.scripted_llm import Call, Fail, Reply, Respond, ScriptedLLM, Step
from tests.helpers import assert_error, wait_for
from tests.world import World, add_chat, events


async def post(world: World, role: str, channel: str, content: str, **extra: Any) -> dict[str, Any]:
    return await world.ok(
        role, "POST", f"/api/channels/{channel}/messages", 201, json={"content": content, **extra}
    )


def user_text(body: dict[str, Any]) -> str:
    return "\n".join(m["content"] for m in body["messages"] if m["role"] == "user")


async def test_summary_of_what_the_caller_can_read(ai_world: World, llm: ScriptedLLM):
    world = ai_world
    await add_chat(world)
    await post(world, "admin", world.ids["CH"], "Release is on Friday; Alice writes the notes.")
    await post(world, "member", world.ids["CH"], "I will test the upgrade path.")
    llm.script(Reply("- Release Friday (notes: Alice)\n- member tests the upgrade"))

    summary = await world.ok(
        "viewer", "POST", "/api/ai/summarize", json={"channel_id": world.ids["CH"]}
    )

    assert summary == {
        "summary": "- Release Friday (notes: Alice)\n- member tests the upgrade",
        "message_count": 3,
    }
    [request] = llm.requests
    assert request["max_tokens"] == 1024
    assert "#general" in request["messages"][0]["content"]
    text = user_text(request)
    assert "admin: Release is on Friday; Alice writes the notes." in text
    assert "member: I will test the upgrade path." in text
    assert text.index("hello everyone") < text.index("Release is on Friday")
    assert "tools" not in request
    # Private channel: members only; the admin is not in PC2; other workspaces: 404.
    for role, channel in (("admin", "PC2"), ("outsider", "CH"), ("viewer", "PC2")):
        response = await world.call(
            role, "POST", "/api/ai/summarize", json={"channel_id": world.ids[channel]}
        )
        assert_error(response, 404, "not_found")
    assert len(llm.requests) == 1


async def test_only_messages_after_since(ai_world: World, llm: ScriptedLLM):
    world = ai_world
    await add_chat(world)
    await asyncio.sleep(0.01)
    since = datetime.now(UTC).isoformat()
    await asyncio.sleep(0.01)
    await post(world, "member", world.ids["CH"], "Newer news.")
    llm.script(Reply("- newer news"))
    summary = await world.ok(
        "member", "POST", "/api/ai/summarize", json={"channel_id": world.ids["CH"], "since": since}
    )
    assert summary["message_count"] == 1
    assert "hello everyone" not in user_text(llm.requests[0])
    # Nothing new: no model call.
    summary = await world.ok(
        "member",
        "POST",
        "/api/ai/summarize",
        json={"channel_id": world.ids["CH"], "since": datetime.now(UTC).isoformat()},
    )
    assert summary == {"summary": "There are no messages to summarise.", "message_count": 0}
    assert len(llm.requests) == 1


async def test_a_long_channel_is_summarised_in_parts_then_merged(
    ai_settings, start_app, llm: ScriptedLLM
):
    from huddle.app import create_app
    from tests.world import build_world

    app = create_app(ai_settings(ai_context_tokens=500, rate_messages="1000/1m"))
    world = await build_world(await start_app(app), app)
    await add_chat(world)
    for n in range(40):
        await post(world, "member", world.ids["CH"], f"Update {n:02d}: " + "details " * 20)

    def step(body: dict[str, Any]) -> Step:
        system = body["messages"][0]["content"]
        if system.startswith("These are summaries"):
            return Reply("MERGED")
        first = user_text(body).split("\n")[0]
        return Reply(f"part starting {first[:40]}")

    llm.script(*[Respond(step)] * 10)
    summary = await world.ok(
        "member", "POST", "/api/ai/summarize", json={"channel_id": world.ids["CH"]}
    )

    assert summary == {"summary": "MERGED", "message_count": 41}
    maps = [r for r in llm.requests if r["messages"][0]["content"].startswith("Summarise")]
    merges = [r for r in llm.requests if r["messages"][0]["content"].startswith("These are")]
    assert len(maps) >= 3 and len(merges) == 1
    # Every message went into exactly one part, in order, and each part fits the budget.
    seen = [line for r in maps for line in user_text(r).split("\n")]
    assert len(seen) == 41
    assert all(len(user_text(r)) <= 2000 for r in maps)
    assert [line.split(": ", 1)[1][:9] for line in seen[1:3]] == ["Update 00", "Update 01"]
    assert user_text(merges[0]).count("part starting") == len(maps)
    async with app.state.db.read_session() as session:
        calls = await session.scalar(
            select(func.count()).select_from(AIUsage).where(AIUsage.purpose == "summary")
        )
    assert calls == len(maps) + 1


async def test_summarize_without_a_model_is_503(client, app):
    from tests.world import build_world

    world = await build_world(client, app)
    await add_chat(world)
    response = await world.call(
        "member", "POST", "/api/ai/summarize", json={"channel_id": world.ids["CH"]}
    )
    assert_error(response, 503, "ai_unavailable")
    response = await world.call(
        "admin", "POST", "/api/ai/summarize", json={"channel_id": world.ids["PC2"]}
    )
    assert_error(response, 404, "not_found")


async def test_the_agent_summarises_a_channel_with_its_tool(ai_world: World, llm: ScriptedLLM):
    world = ai_world
    await add_chat(world)
    await post(world, "member", world.ids["PC"], "Core is quiet this week.")
    created = await world.ok(
        "viewer", "POST", "/api/ai/conversations", 201, json={"workspace_id": world.ids["W"]}
    )
    llm.script(
        Call("summarize_channel", {"channel_id": world.ids["PC2"]}, id="call_private"),
        Call("summarize_channel", {"channel_id": world.ids["PC"]}, id="call_core"),
        Reply("- nothing much"),  # the summary the tool asks for
        Reply("Core is quiet."),
    )
    reply = await world.ok(
        "viewer",
        "POST",
        f"/api/ai/conversations/{created['id']}/messages",
        json={"content": "what happened in core?"},
    )
    assert reply["message"]["content"] == "Core is quiet."
    tools = {m["tool_call_id"]: m["content"] for m in reply["messages"] if m["role"] == "tool"}
    assert '"not_found"' in tools["call_private"]  # viewer is not in PC2
    assert '"message_count": 1' in tools["call_core"]
    assert '"summary": "- nothing much"' in tools["call_core"]
    assert "Core is quiet this week." in user_text(llm.requests[2])


async def ai_messages(world: World, channel: str, parent: str | None = None) -> list[dict]:
    path = f"/api/channels/{channel}/messages" + (f"?parent_id={parent}" if parent else "")
    items = (await world.ok("member", "GET", path))["items"]
    return [m for m in items if m["author_kind"] == "ai"]


async def test_at_ai_gets_an_answer_in_the_channel(ai_world: World, llm: ScriptedLLM, ai_app):
    world = ai_world
    await add_chat(world)
    channel = world.ids["CH"]
    await post(world, "admin", channel, "The release is on Friday.")
    llm.script(Reply("Friday, as admin said."))

    asked = await post(world, "member", channel, "@ai when is the release?")

    assert asked["author_kind"] == "user"
    [answer] = await wait_for(lambda: ai_messages(world, channel))
    assert answer["content"] == "Friday, as admin said."
    assert answer["author"] is None and answer["parent_id"] is None
    [request] = llm.requests
    text = user_text(request)
    assert text.endswith("member: @ai when is the release?")
    assert "admin: The release is on Friday." in text
    assert "#general" in request["messages"][0]["content"]
    created = [
        e
        for e in await events(world, "member", topic=f"channel:{channel}")
        if e["type"] == "message.created" and e["subject_id"] == answer["id"]
    ]
    assert [e["actor"] for e in created] == [
        {"kind": "agent", "on_behalf_of": world.ids["member_id"]}
    ]
    # A redelivered event posts nothing more and asks the model nothing more.
    [responder] = [f for f in ai_app.state.events.forwarders if f.name == CURSOR]
    async with ai_app.state.db.read_session() as session:
        row = await session.scalar(select(Event).where(Event.subject_id == _uuid(asked["id"])))
        assert row is not None
        await responder.bus.publish([envelope(row)])
    assert len(await ai_messages(world, channel)) == 1
    assert len(llm.requests) == 1


def _uuid(value: str):
    import uuid

    return uuid.UUID(value)


async def test_at_ai_in_a_thread_answers_in_the_thread_and_never_itself(
    ai_world: World, llm: ScriptedLLM
):
    world = ai_world
    await add_chat(world)
    channel = world.ids["CH"]
    root = await post(world, "admin", channel, "Which database do we use?")
    await post(world, "member", channel, "Unrelated chatter in the channel.")
    llm.script(Reply("PostgreSQL. Ask @ai again if you need more."))
    await post(world, "member", channel, "@AI can you tell?", parent_id=root["id"])

    [answer] = await wait_for(lambda: ai_messages(world, channel, root["id"]))
    assert answer["parent_id"] == root["id"]
    text = user_text(llm.requests[0])
    assert "Which database do we use?" in text and "Unrelated chatter" not in text
    # Its own "@ai" does not trigger another answer; "email@ai.com" is not a mention.
    await post(world, "member", channel, "write to email@ai.com")
    await world.app.state.dispatcher.flush()
    await asyncio.sleep(0.5)
    assert len(llm.requests) == 1


async def test_when_the_model_fails_the_channel_is_told(ai_world: World, llm: ScriptedLLM):
    world = ai_world
    await add_chat(world)
    llm.script(Fail(500), Fail(500))
    await post(world, "member", world.ids["CH"], "@ai status?")
    [answer] = await wait_for(lambda: ai_messages(world, world.ids["CH"]))
    assert answer["content"].startswith("Sorry, I could not answer: ")
