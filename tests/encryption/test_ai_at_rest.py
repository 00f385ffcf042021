"""What is said to and by the assistant is encrypted at rest too: the conversation's title
and system prompt, its messages, the tool calls and their results."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

from huddle.app import create_app
from huddle.core import crypto
from huddle.encryption.rotation import status
from tests.ai.conftest import ai_settings, llm  # noqa: F401 - fixtures
from tests.ai.scripted_llm import Call, Reply, ScriptedLLM
from tests.encryption.test_at_rest import raw_scan
from tests.world import build_world

KEY = Fernet.generate_key().decode()


@pytest.fixture(autouse=True)
def _keyring_off():
    yield
    crypto.configure([])


async def test_conversations_are_encrypted_and_read_back(ai_settings, llm: ScriptedLLM, start_app):  # noqa: F811
    app = create_app(ai_settings(encryption_keys=[KEY]))
    world = await build_world(await start_app(app), app)
    created = await world.ok(
        "member",
        "POST",
        "/api/ai/conversations",
        201,
        json={"workspace_id": world.ids["W"], "system_prompt": "Answer like Trellowick would"},
    )
    llm.script(Call("list_projects", {}, id="call_projects"), Reply("Quorvantel says hello"))
    await world.ok(
        "member",
        "POST",
        f"/api/ai/conversations/{created['id']}/messages",
        json={"content": "Brimstalk: which projects do we have?"},
    )
    detail = await world.ok("member", "GET", f"/api/ai/conversations/{created['id']}")
    assert detail["title"].startswith("Brimstalk")
    assert detail["system_prompt"] == "Answer like Trellowick would"
    contents = [m["content"] for m in detail["messages"]]
    assert contents[0] == "Brimstalk: which projects do we have?"
    assert contents[-1] == "Quorvantel says hello"
    assert any(m.get("tool_calls") for m in detail["messages"])

    assert await raw_scan(app, ["brimstalk", "quorvantel", "trellowick"]) == []
    report = await status(app.state.db, crypto.keyring(), app.state.file_store)
    assert report.clear == {} and report.older == {}
    assert report.current.get("ai_messages", 0) >= 4  # user, tool call, tool result, answer
    assert report.current.get("ai_conversations") == 2  # title and system prompt
