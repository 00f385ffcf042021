"""The assistant end to end against a scripted OpenAI-compatible server (real HTTP).

The app's real OpenAI client and the Agents SDK talk to :class:`ScriptedLLM`, which
answers with the tool calls a model would make; the tools then run through the services
as the conversation's user. What is checked is what Huddle does with those calls:
rows written, events and their actor, messages stored, refusals reported back.
"""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select, update

from huddle.ai.models import AIPendingAction, AIUsage
from huddle.core.time import utcnow
from tests.ai.scripted_llm import Call, Calls, Fail, Reply, Respond, ScriptedLLM, Step
from tests.helpers import assert_error
from tests.world import World, events


def tool_results(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The tool outputs the model was sent, parsed, oldest first."""
    return [json.loads(m["content"]) for m in body["messages"] if m["role"] == "tool"]


async def conversation(world: World, role: str = "member", **body: Any) -> str:
    created = await world.ok(
        role, "POST", "/api/ai/conversations", 201, json={"workspace_id": world.ids["W"], **body}
    )
    return str(created["id"])


async def ask(world: World, role: str, cid: str, content: str, expect: int = 200) -> Any:
    return await world.ok(
        role, "POST", f"/api/ai/conversations/{cid}/messages", expect, json={"content": content}
    )


async def launch(world: World) -> str:
    project = await world.ok(
        "admin", "POST", "/api/workspaces/{W}/projects", 201, json={"name": "Launch"}
    )
    return str(project["id"])


def create_in_launch() -> list[Step]:
    """What a model does with "create a task 'Write release notes' in Launch and assign
    it to me": look the project up, create the task, say what happened."""

    def create(body: dict[str, Any]) -> Step:
        projects = tool_results(body)[-1]["projects"]
        launch_id = next(p["id"] for p in projects if p["name"] == "Launch")
        return Call(
            "create_task",
            {"project_id": launch_id, "title": "Write release notes", "assignee_id": "me"},
            id="call_create",
        )

    def answer(body: dict[str, Any]) -> Step:
        result = tool_results(body)[-1]
        if "error" in result:
            return Reply(f"I could not create it: {result['error']['message']}")
        return Reply(f"Created '{result['title']}' in Launch and assigned it to you.")

    return [Call("list_projects", {}, id="call_projects"), Respond(create), Respond(answer)]


async def test_create_task_in_launch_assigned_to_me(ai_world: World, llm: ScriptedLLM, ai_app):
    world = ai_world
    launch_id = await launch(world)
    cid = await conversation(world)
    llm.script(*create_in_launch())

    reply = await ask(
        world, "member", cid, "create a task 'Write release notes' in Launch and assign it to me"
    )

    assert reply["message"]["role"] == "assistant"
    assert reply["message"]["content"] == (
        "Created 'Write release notes' in Launch and assigned it to you."
    )
    assert reply["pending_actions"] == []
    # Exactly that task: one, in Launch, assigned to and created by the member.
    tasks = (await world.ok("member", "GET", f"/api/projects/{launch_id}/tasks"))["items"]
    assert [(t["title"], t["assignee_id"], t["creator_id"]) for t in tasks] == [
        ("Write release notes", world.ids["member_id"], world.ids["member_id"])
    ]
    # Its event records the agent, acting for the member, with the model's call id.
    created = [
        e
        for e in await events(world, "member", topic=f"project:{launch_id}")
        if e["type"] == "task.created"
    ]
    assert len(created) == 1
    assert created[0]["subject_id"] == tasks[0]["id"]
    assert created[0]["actor"] == {
        "kind": "agent",
        "on_behalf_of": world.ids["member_id"],
        "tool_call_id": "call_create",
    }
    # The conversation holds the question, both tool calls with their results, the answer.
    stored = await world.ok("member", "GET", f"/api/ai/conversations/{cid}")
    shape = [
        (m["role"], m["tool_call_id"], [c["name"] for c in m["tool_calls"] or []])
        for m in stored["messages"]
    ]
    assert shape == [
        ("user", None, []),
        ("assistant", None, ["list_projects"]),
        ("tool", "call_projects", []),
        ("assistant", None, ["create_task"]),
        ("tool", "call_create", []),
        ("assistant", None, []),
    ]
    assert json.loads(stored["messages"][4]["content"])["id"] == tasks[0]["id"]
    assert stored["messages"][4]["tool_name"] == "create_task"
    assert [m["id"] for m in reply["messages"]] == [m["id"] for m in stored["messages"]]
    assert stored["title"].startswith("create a task")
    # The model was offered the tools and got the system prompt; the key was sent.
    first = llm.requests[0]
    offered = {t["function"]["name"] for t in first["tools"]}
    assert {"list_projects", "create_task", "delete_task", "search"} <= offered
    assert first["messages"][0]["role"] == "system"
    assert "Acme" in first["messages"][0]["content"]
    assert llm.headers[0]["authorization"] == "Bearer test-key"
    # Every answer is bounded (a small model can otherwise ramble until its context ends).
    assert all(r["max_tokens"] == 1024 for r in llm.requests)
    # One usage row per model call.
    async with ai_app.state.db.read_session() as session:
        rows = (
            await session.scalars(select(AIUsage).where(AIUsage.conversation_id == uuid.UUID(cid)))
        ).all()
    assert len(rows) == 3
    assert all(r.input_tokens > 0 and r.output_tokens > 0 and r.purpose == "chat" for r in rows)
    assert llm.errors == []


async def test_a_viewer_is_refused_by_the_tool_and_told_so(ai_world: World, llm: ScriptedLLM):
    world = ai_world
    launch_id = await launch(world)
    cid = await conversation(world, "viewer")
    llm.script(*create_in_launch())

    reply = await ask(
        world, "viewer", cid, "create a task 'Write release notes' in Launch and assign it to me"
    )

    assert (await world.ok("admin", "GET", f"/api/projects/{launch_id}/tasks"))["items"] == []
    assert not [
        e
        for e in await events(world, "admin", topic=f"project:{launch_id}")
        if e["type"] == "task.created"
    ]
    refusal = tool_results(llm.requests[-1])[-1]
    assert refusal["error"]["code"] == "forbidden"
    assert reply["message"]["content"].startswith("I could not create it: ")
    assert "member" in reply["message"]["content"]
    stored = await world.ok("viewer", "GET", f"/api/ai/conversations/{cid}")
    assert json.loads(stored["messages"][4]["content"])["error"]["code"] == "forbidden"


async def test_delete_waits_for_confirmation(ai_world: World, llm: ScriptedLLM, ai_app):
    world = ai_world
    task = await world.ok(
        "member", "POST", "/api/projects/{P}/tasks", 201, json={"title": "Obsolete"}
    )
    cid = await conversation(world)
    llm.script(
        Call("delete_task", {"task_id": task["id"]}, id="call_delete"),
        Reply("I asked to delete it: confirm to go ahead."),
    )

    reply = await ask(world, "member", cid, "delete the task Obsolete")

    [action] = reply["pending_actions"]
    assert action["tool"] == "delete_task"
    assert action["args"] == {"task_id": task["id"]}
    assert tool_results(llm.requests[-1])[-1]["status"] == "awaiting_confirmation"
    # Nothing is deleted yet.
    await world.ok("member", "GET", f"/api/tasks/{task['id']}")
    assert not [
        e for e in await events(world, "member", topic="project:{P}") if e["type"] == "task.deleted"
    ]
    detail = await world.ok("member", "GET", f"/api/ai/conversations/{cid}")
    assert [a["id"] for a in detail["pending_actions"]] == [action["id"]]

    # Someone else cannot confirm it (nor learn it exists); the user can, once.
    for role in ("admin", "viewer", "outsider"):
        response = await world.call(role, "POST", f"/api/ai/actions/{action['id']}/confirm")
        assert_error(response, 404, "not_found")
    await world.ok("member", "GET", f"/api/tasks/{task['id']}")
    done = await world.ok("member", "POST", f"/api/ai/actions/{action['id']}/confirm")
    assert done == {
        "id": action["id"],
        "tool": "delete_task",
        "status": "confirmed",
        "result": {"deleted": True, "task": {"id": task["id"], "title": "Obsolete"}},
    }
    response = await world.call("member", "GET", f"/api/tasks/{task['id']}")
    assert_error(response, 404, "not_found")
    deleted = [
        e for e in await events(world, "member", topic="project:{P}") if e["type"] == "task.deleted"
    ]
    assert [e["actor"] for e in deleted] == [
        {"kind": "agent", "on_behalf_of": world.ids["member_id"], "tool_call_id": "call_delete"}
    ]
    again = await world.call("member", "POST", f"/api/ai/actions/{action['id']}/confirm")
    assert_error(again, 409, "conflict")
    detail = await world.ok("member", "GET", f"/api/ai/conversations/{cid}")
    assert detail["pending_actions"] == []
    assert "confirmed delete_task" in detail["messages"][-1]["content"]


async def test_an_expired_action_is_gone_and_deletes_nothing(
    ai_world: World, llm: ScriptedLLM, ai_app
):
    world = ai_world
    task = await world.ok("member", "POST", "/api/projects/{P}/tasks", 201, json={"title": "Keep"})
    cid = await conversation(world)
    llm.script(Call("delete_task", {"task_id": task["id"]}), Reply("Confirm to delete."))
    [action] = (await ask(world, "member", cid, "delete Keep"))["pending_actions"]
    async with ai_app.state.db.write_session() as session:
        await session.execute(
            update(AIPendingAction).values(expires_at=utcnow() - timedelta(seconds=1))
        )
        await session.commit()

    response = await world.call("member", "POST", f"/api/ai/actions/{action['id']}/confirm")

    assert_error(response, 410, "gone")
    await world.ok("member", "GET", f"/api/tasks/{task['id']}")
    assert (await world.ok("member", "GET", f"/api/ai/conversations/{cid}"))[
        "pending_actions"
    ] == []


async def test_a_viewer_cannot_even_propose_a_delete(ai_world: World, llm: ScriptedLLM):
    world = ai_world
    cid = await conversation(world, "viewer")
    llm.script(Call("delete_task", {"task_id": world.ids["TK"]}), Reply("I can't."))

    reply = await ask(world, "viewer", cid, "delete Ship it")

    assert reply["pending_actions"] == []
    assert tool_results(llm.requests[-1])[-1]["error"]["code"] == "forbidden"
    await world.ok("viewer", "GET", "/api/tasks/{TK}")


async def test_the_model_cannot_reach_outside_the_conversations_workspace(
    ai_world: World, llm: ScriptedLLM
):
    """Ids from another workspace (even one the user belongs to) are not found, and a
    private project without a grant is as invisible as through REST."""
    world = ai_world
    # The outsider is admin of W2; their conversation is in W2, P is in W.
    cid = await conversation(world, "outsider", workspace_id=world.ids["W2"])
    llm.script(
        Calls(
            [
                Call("create_task", {"project_id": world.ids["P"], "title": "Sneaky"}),
                Call("get_task", {"task_id": world.ids["TK"]}),
                Call("list_tasks", {"project_id": "Public"}),
            ]
        ),
        Reply("No."),
    )
    await ask(world, "outsider", cid, "add Sneaky to Public")
    codes = [r["error"]["code"] for r in tool_results(llm.requests[-1])]
    assert codes == ["not_found", "not_found", "not_found"]
    # A member of W is in W, but Q is private without a grant.
    cid = await conversation(world, "member")
    llm.script(
        Calls(
            [
                Call("create_task", {"project_id": world.ids["Q"], "title": "Sneaky"}),
                Call("get_task", {"task_id": world.ids["QT"]}),
            ]
        ),
        Reply("No."),
    )
    await ask(world, "member", cid, "add Sneaky to Secret")
    codes = [r["error"]["code"] for r in tool_results(llm.requests[-1])]
    assert codes == ["not_found", "not_found"]
    titles = [
        t["title"] for t in (await world.ok("admin", "GET", "/api/projects/{Q}/tasks"))["items"]
    ]
    assert titles == ["Hidden"]


async def test_update_move_complete_and_list_through_tools(ai_world: World, llm: ScriptedLLM):
    world = ai_world
    cid = await conversation(world, "admin")
    llm.script(
        Call(
            "update_task", {"task_id": world.ids["TK"], "priority": "high", "assignee_id": "member"}
        ),
        Call("move_task", {"task_id": world.ids["TK"], "status": "in_progress"}),
        Call(
            "list_tasks", {"project_id": "Public", "status": "in_progress", "assignee_id": "member"}
        ),
        Call("complete_task", {"task_id": world.ids["TK"]}),
        Reply("Done."),
    )
    await ask(world, "admin", cid, "make Ship it high priority for member, start it, finish it")

    results = tool_results(llm.requests[-1])
    assert results[0]["priority"] == "high"
    assert results[0]["assignee_id"] == world.ids["member_id"]
    assert results[1]["status"] == "in_progress"
    assert [t["id"] for t in results[2]["tasks"]] == [world.ids["TK"]]
    assert results[3]["status"] == "done" and results[3]["completed_at"] is not None
    task = await world.ok("admin", "GET", "/api/tasks/{TK}")
    assert (task["status"], task["priority"]) == ("done", "high")
    kinds = [
        (e["type"], e["actor"]["kind"])
        for e in await events(world, "admin", topic="project:{P}")
        if e["subject_id"] == world.ids["TK"] and e["type"] != "task.created"
    ]
    assert kinds == [("task.updated", "agent"), ("task.moved", "agent"), ("task.moved", "agent")]


async def test_bad_tool_arguments_are_told_to_the_model(ai_world: World, llm: ScriptedLLM):
    world = ai_world
    cid = await conversation(world)
    llm.script(
        Calls(
            [
                Call("create_task", {"project_id": "Public"}),  # no title
                Call("get_task", {"task_id": "not-a-uuid"}),
                Call("create_task", {"project_id": "Public", "title": "x", "colour": "red"}),
                Call("no_such_tool", {}),
                Call("move_task", {"task_id": world.ids["TK"], "status": "nowhere"}),
            ]
        ),
        Reply("Sorry."),
    )
    reply = await ask(world, "member", cid, "do odd things")
    assert reply["message"]["content"] == "Sorry."
    by_call = {
        m["tool_call_id"]: json.loads(m["content"])["error"]
        for m in llm.requests[-1]["messages"]
        if m["role"] == "tool"
    }
    errors = [by_call[f"call_{n}"] for n in range(1, 6)]  # in the order they were called
    assert [e["code"] for e in errors] == ["tool_error"] * 5
    assert "title" in errors[0]["message"]
    assert "task_id" in errors[1]["message"]
    assert "colour" in errors[2]["message"]
    assert errors[3]["message"] == "No tool named 'no_such_tool'"
    assert "in_progress" in errors[4]["message"]
    tasks = (await world.ok("member", "GET", "/api/projects/{P}/tasks"))["items"]
    assert [t["title"] for t in tasks] == ["Ship it"]


async def test_streamed_reply(ai_world: World, llm: ScriptedLLM):
    world = ai_world
    cid = await conversation(world)
    llm.script(
        Call("list_projects", {}, id="call_1x"), Reply("You can see Public and nothing else.")
    )

    async with world.client.stream(
        "POST",
        f"/api/ai/conversations/{cid}/messages",
        json={"content": "which projects?"},
        headers={**world.headers["member"], "Accept": "text/event-stream"},
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        raw = "".join([chunk async for chunk in response.aiter_text()])

    frames = []
    for block in raw.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.split("\n"))
        frames.append((lines["event"], json.loads(lines["data"])))
    names = [name for name, _ in frames]
    assert names[0] == "tool_call.start"
    assert frames[0][1] == {"id": "call_1x", "name": "list_projects", "arguments": "{}"}
    assert names[1] == "tool_call.end"
    assert json.loads(frames[1][1]["output"])["projects"][0]["name"] == "Public"
    deltas = [data["text"] for name, data in frames if name == "delta"]
    assert len(deltas) > 1 and "".join(deltas) == "You can see Public and nothing else."
    assert names[-2:] == ["message", "done"]
    message = frames[-2][1]
    assert message["message"]["content"] == "You can see Public and nothing else."
    assert all(r["stream"] is True for r in llm.requests)
    stored = await world.ok("member", "GET", f"/api/ai/conversations/{cid}")
    assert [m["role"] for m in stored["messages"]] == ["user", "assistant", "tool", "assistant"]


async def test_provider_failure_is_a_clear_502_and_the_question_is_kept(
    ai_world: World, llm: ScriptedLLM
):
    world = ai_world
    cid = await conversation(world)
    llm.script(Fail(500), Fail(500))  # the first try and the one retry

    response = await world.call(
        "member", "POST", f"/api/ai/conversations/{cid}/messages", json={"content": "hello?"}
    )

    assert_error(response, 502, "ai_provider_error")
    assert len(llm.requests) == 2
    stored = await world.ok("member", "GET", f"/api/ai/conversations/{cid}")
    assert [(m["role"], m["content"]) for m in stored["messages"]] == [("user", "hello?")]


async def test_a_throttled_provider_is_retried(ai_world: World, llm: ScriptedLLM):
    world = ai_world
    cid = await conversation(world)
    llm.script(Fail(429), Reply("Here."))
    reply = await ask(world, "member", cid, "hello?")
    assert reply["message"]["content"] == "Here."
    assert len(llm.requests) == 2


async def test_tool_calls_made_before_a_failure_stay_on_record(ai_world: World, llm: ScriptedLLM):
    world = ai_world
    cid = await conversation(world)
    llm.script(
        Call("create_task", {"project_id": "Public", "title": "Half way"}, id="call_half"),
        Fail(500),
        Fail(500),
    )
    response = await world.call(
        "member", "POST", f"/api/ai/conversations/{cid}/messages", json={"content": "go"}
    )
    assert_error(response, 502, "ai_provider_error")
    stored = await world.ok("member", "GET", f"/api/ai/conversations/{cid}")
    assert [m["role"] for m in stored["messages"]] == ["user", "assistant", "tool"]
    assert stored["messages"][2]["tool_call_id"] == "call_half"
    titles = [
        t["title"] for t in (await world.ok("member", "GET", "/api/projects/{P}/tasks"))["items"]
    ]
    assert "Half way" in titles


async def test_history_is_sent_back_and_the_conversation_continues(
    ai_world: World, llm: ScriptedLLM
):
    world = ai_world
    cid = await conversation(world, system_prompt="Answer in French.")
    llm.script(Call("list_projects", {}), Reply("Public."), Reply("Oui."))
    await ask(world, "member", cid, "which projects?")
    await ask(world, "member", cid, "sure?")
    sent = llm.requests[-1]["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "tool", "assistant", "user"]
    assert sent[0]["content"].endswith("Answer in French.")
    assert sent[-1]["content"] == "sure?"
    assert sent[2]["tool_calls"][0]["function"]["name"] == "list_projects"


async def test_rate_limited_per_user(ai_settings, start_app, llm: ScriptedLLM):
    from huddle.app import create_app
    from tests.world import build_world

    app = create_app(ai_settings(rate_ai="2/1m"))
    world = await build_world(await start_app(app), app)
    cid = await conversation(world)
    llm.script(Reply("1"), Reply("2"))
    await ask(world, "member", cid, "one")
    await ask(world, "member", cid, "two")
    response = await world.call(
        "member", "POST", f"/api/ai/conversations/{cid}/messages", json={"content": "three"}
    )
    assert_error(response, 429, "rate_limited")
    assert int(response.headers["Retry-After"]) >= 1
    assert len(llm.requests) == 2
    # Someone else is not throttled by it.
    other = await conversation(world, "admin")
    llm.script(Reply("ok"))
    await ask(world, "admin", other, "one")


async def test_health_reports_provider_model_and_reachability(ai_world: World, llm: ScriptedLLM):
    health = await ai_world.ok("member", "GET", "/api/ai/health")
    assert health == {
        "status": "ok",
        "provider": "openai-compatible",
        "model": llm.model,
        "reachable": True,
        "detail": None,
    }


async def test_unreachable_provider(ai_settings, start_app, unused_tcp_port: int):
    from huddle.app import create_app
    from tests.world import build_world

    app = create_app(
        ai_settings(llm_base_url=f"http://127.0.0.1:{unused_tcp_port}/v1", llm_max_retries=0)
    )
    world = await build_world(await start_app(app), app)
    health = await world.ok("member", "GET", "/api/ai/health")
    assert (health["status"], health["reachable"]) == ("unreachable", False)
    assert "could not be reached" in health["detail"]
    cid = await conversation(world)
    response = await world.call(
        "member", "POST", f"/api/ai/conversations/{cid}/messages", json={"content": "hi"}
    )
    assert_error(response, 502, "ai_provider_error")


async def test_without_a_model_generation_is_503_saying_what_to_set(client, app):
    from tests.world import build_world

    world = await build_world(client, app)
    health = await world.ok("member", "GET", "/api/ai/health")
    assert (health["status"], health["reachable"]) == ("unconfigured", False)
    cid = await conversation(world)
    response = await world.call(
        "member", "POST", f"/api/ai/conversations/{cid}/messages", json={"content": "hi"}
    )
    body = assert_error(response, 503, "ai_unavailable")
    assert "HUDDLE_LLM_MODEL" in body["error"] and "HUDDLE_LLM_BASE_URL" in body["error"]
    stored = await world.ok("member", "GET", f"/api/ai/conversations/{cid}")
    assert stored["messages"] == []


async def test_conversations_are_private_to_their_owner(ai_world: World):
    world = ai_world
    cid = await conversation(world, title="Mine")
    listed = await world.ok("member", "GET", "/api/ai/conversations")
    assert [c["id"] for c in listed["items"]] == [cid]
    assert (await world.ok("admin", "GET", "/api/ai/conversations"))["items"] == []
    for role in ("admin", "viewer", "superuser"):
        for method, path in (
            ("GET", f"/api/ai/conversations/{cid}"),
            ("DELETE", f"/api/ai/conversations/{cid}"),
        ):
            assert_error(await world.call(role, method, path), 404, "not_found")
        response = await world.call(
            role, "POST", f"/api/ai/conversations/{cid}/messages", json={"content": "hi"}
        )
        assert_error(response, 404, "not_found")
    await world.ok("member", "DELETE", f"/api/ai/conversations/{cid}", 204)
    assert_error(
        await world.call("member", "GET", f"/api/ai/conversations/{cid}"), 404, "not_found"
    )


async def test_conversation_workspace_must_be_the_users(ai_world: World):
    world = ai_world
    response = await world.call(
        "member", "POST", "/api/ai/conversations", json={"workspace_id": world.ids["W2"]}
    )
    assert_error(response, 404, "not_found")
    # Without workspace_id: the user's only workspace; several -> none chosen.
    only = await world.ok("member", "POST", "/api/ai/conversations", 201, json={})
    assert only["workspace_id"] == world.ids["W"]
    await world.ok("member", "POST", "/api/workspaces", 201, json={"name": "Second"})
    many = await world.ok("member", "POST", "/api/ai/conversations", 201, json={})
    assert many["workspace_id"] is None


async def test_bad_input_is_422(ai_world: World):
    world = ai_world
    cid = await conversation(world)
    for body in ({}, {"content": ""}, {"content": "x" * 20_001}, {"content": "a", "extra": 1}):
        response = await world.call(
            "member", "POST", f"/api/ai/conversations/{cid}/messages", json=body
        )
        assert_error(response, 422, "validation_error")
    response = await world.call(
        "member", "POST", "/api/ai/conversations", json={"title": "x" * 201}
    )
    assert_error(response, 422, "validation_error")


async def test_usage_is_counted_per_call(ai_world: World, llm: ScriptedLLM, ai_app):
    world = ai_world
    cid = await conversation(world)
    llm.script(Reply("Hi."))
    await ask(world, "member", cid, "hi")
    async with ai_app.state.db.read_session() as session:
        count = await session.scalar(select(func.count()).select_from(AIUsage))
    assert count == 1
