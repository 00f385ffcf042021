"""The MCP server at /mcp, driven by the official SDK's own client over real HTTP against
a running server: the same tools, the same permissions, the same audit trail."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from tests.helpers import assert_error
from tests.realtime.wsclient import Live, serve, token_of
from tests.world import World, build_world, events


@pytest.fixture
async def live(app) -> AsyncIterator[Live]:
    server = await serve(app)
    yield server
    await server.stop()


@pytest.fixture
async def world(live: Live) -> World:
    return await build_world(live.http, live.app)


@asynccontextmanager
async def client(live: Live, token: str | None, path: str = "/mcp/") -> AsyncIterator[Client]:
    """The SDK's client over streamable HTTP, sending ``token`` as a Bearer token."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    url = f"{live.url}{path}"
    async with (
        create_mcp_http_client(headers=headers) as http,
        Client(streamable_http_client(url, http_client=http)) as mcp,
    ):
        yield mcp


def token(world: World, role: str) -> str:
    return token_of(world.headers[role])


def result_of(result: Any) -> dict[str, Any]:
    if result.is_error:  # "Error executing tool <name>: {"error": {...}}"
        text = result.content[0].text
        assert text.startswith("Error executing tool "), text
        return json.loads(text[text.index("{") :])
    return result.structured_content


async def test_an_agent_creates_a_task_through_mcp(live: Live, world: World):
    async with client(live, token(world, "member"), "/mcp") as mcp:
        tools = {t.name for t in (await mcp.list_tools()).tools}
        assert tools == {
            "list_projects",
            "list_tasks",
            "get_task",
            "create_task",
            "update_task",
            "move_task",
            "complete_task",
            "delete_task",
            "search",
            "summarize_channel",
            "confirm_action",
        }
        projects = result_of(await mcp.call_tool("list_projects", {}))["projects"]
        assert [p["name"] for p in projects] == ["Public"]  # Q is private, no grant
        created = await mcp.call_tool(
            "create_task",
            {"project_id": projects[0]["id"], "title": "From MCP", "assignee_id": "me"},
        )
        assert not created.is_error, created.content
        task = result_of(created)

    assert task["title"] == "From MCP" and task["assignee_id"] == world.ids["member_id"]
    listed = await world.ok("member", "GET", "/api/projects/{P}/tasks")
    assert [t["id"] for t in listed["items"] if t["title"] == "From MCP"] == [task["id"]]
    [event] = [
        e
        for e in await events(world, "member", topic="project:{P}")
        if e["type"] == "task.created" and e["subject_id"] == task["id"]
    ]
    actor = event["actor"]
    assert (actor["kind"], actor["on_behalf_of"]) == ("agent", world.ids["member_id"])
    assert actor["tool_call_id"]


async def rpc(live: Live, world: World, role: str, request_id: str, tool: str, args: dict) -> Any:
    """One raw JSON-RPC tools/call (stateless transport), so the test picks the id."""
    response = await live.http.post(
        "/mcp",
        json={
            "jsonrpc": "2.0",
            "id": request_id,
            "method": "tools/call",
            "params": {"name": tool, "arguments": args},
        },
        headers={**world.headers[role], "Accept": "application/json, text/event-stream"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"] == request_id
    return body["result"]


async def test_the_actor_records_the_json_rpc_request_id(live: Live, world: World):
    result = await rpc(
        live, world, "member", "req-77", "create_task", {"project_id": "Public", "title": "Raw"}
    )
    task = result["structuredContent"]
    [event] = [
        e
        for e in await events(world, "member", topic="project:{P}")
        if e["type"] == "task.created" and e["subject_id"] == task["id"]
    ]
    assert event["actor"] == {
        "kind": "agent",
        "on_behalf_of": world.ids["member_id"],
        "tool_call_id": "req-77",
    }


async def test_a_viewer_token_cannot_create(live: Live, world: World):
    async with client(live, token(world, "viewer")) as mcp:
        refused = await mcp.call_tool("create_task", {"project_id": world.ids["P"], "title": "No"})
        assert refused.is_error
        assert result_of(refused)["error"]["code"] == "forbidden"
        # Reading is fine.
        assert not (await mcp.call_tool("get_task", {"task_id": world.ids["TK"]})).is_error
    titles = [
        t["title"] for t in (await world.ok("admin", "GET", "/api/projects/{P}/tasks"))["items"]
    ]
    assert titles == ["Ship it"]


async def test_without_a_valid_token_it_is_401(live: Live, world: World):
    for headers in ({}, {"Authorization": "Bearer nonsense"}, {"Authorization": "Basic abc"}):
        for path in ("/mcp", "/mcp/"):
            response = await live.http.post(
                path,
                json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                headers={**headers, "Accept": "application/json, text/event-stream"},
            )
            body = assert_error(response, 401, response.json()["code"])
            assert body["code"] in ("not_authenticated", "invalid_token")
            assert response.headers["WWW-Authenticate"] == "Bearer"
    with pytest.raises(Exception):  # noqa: B017 - the SDK's client cannot even connect
        async with client(live, None) as mcp:
            await mcp.list_tools()


async def test_an_api_token_works_and_the_workspace_comes_from_the_request(
    live: Live, world: World
):
    created = await world.ok(
        "outsider", "POST", "/api/auth/api-tokens", 201, json={"name": "agent"}
    )
    api_token = created["token"]
    # The outsider is in W2 only: W is not theirs to pick.
    async with client(live, api_token, f"/mcp?workspace_id={world.ids['W2']}") as mcp:
        projects = result_of(await mcp.call_tool("list_projects", {}))["projects"]
        assert [p["name"] for p in projects] == ["Theirs"]
        # Ids from another workspace are not found, whatever the model asks.
        missing = await mcp.call_tool("get_task", {"task_id": world.ids["TK"]})
        assert result_of(missing)["error"]["code"] == "not_found"
    response = await live.http.post(
        f"/mcp?workspace_id={world.ids['W']}",
        json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
        headers={"Authorization": f"Bearer {api_token}"},
    )
    assert_error(response, 404, "not_found")


async def test_delete_needs_confirmation_over_mcp_too(live: Live, world: World):
    task = await world.ok("member", "POST", "/api/projects/{P}/tasks", 201, json={"title": "Old"})
    proposed = (await rpc(live, world, "member", "del-1", "delete_task", {"task_id": task["id"]}))[
        "structuredContent"
    ]
    assert proposed["status"] == "awaiting_confirmation"
    async with client(live, token(world, "member")) as mcp:
        action = proposed["pending_action"]
        await world.ok("member", "GET", f"/api/tasks/{task['id']}")  # still there
        async with client(live, token(world, "admin")) as other:
            refused = await other.call_tool("confirm_action", {"action_id": action["id"]})
            assert result_of(refused)["error"]["code"] == "not_found"
        done = result_of(await mcp.call_tool("confirm_action", {"action_id": action["id"]}))
    assert done["status"] == "confirmed" and done["result"]["deleted"] is True
    response = await world.call("member", "GET", f"/api/tasks/{task['id']}")
    assert_error(response, 404, "not_found")
    [deleted] = [
        e for e in await events(world, "member", topic="project:{P}") if e["type"] == "task.deleted"
    ]
    assert deleted["actor"]["kind"] == "agent"
    # The deletion is recorded as the call that asked for it.
    assert deleted["actor"]["tool_call_id"] == "del-1"


async def test_resources_for_projects_and_tasks(live: Live, world: World):
    async with client(live, token(world, "viewer")) as mcp:
        templates = {
            t.uri_template for t in (await mcp.list_resource_templates()).resource_templates
        }
        assert templates == {
            "huddle://projects/{project_id}",
            "huddle://projects/{project_id}/tasks",
            "huddle://tasks/{task_id}",
        }
        read = await mcp.read_resource(f"huddle://projects/{world.ids['P']}")
        project = json.loads(read.contents[0].text)
        assert (project["name"], project["role"]) == ("Public", "viewer")
        assert [c["key"] for c in project["columns"]] == ["todo", "in_progress", "done"]
        read = await mcp.read_resource(f"huddle://tasks/{world.ids['TK']}")
        assert json.loads(read.contents[0].text)["title"] == "Ship it"
        read = await mcp.read_resource("huddle://projects/Public/tasks")
        assert [t["title"] for t in json.loads(read.contents[0].text)["tasks"]] == ["Ship it"]
        with pytest.raises(Exception):  # noqa: B017 - Q is private: not found for the viewer
            await mcp.read_resource(f"huddle://tasks/{world.ids['QT']}")
        with pytest.raises(Exception):  # noqa: B017
            await mcp.read_resource(f"huddle://projects/{world.ids['Q']}")
