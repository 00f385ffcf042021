"""The scripted LLM server against the real OpenAI SDK client and the OpenAI Agents SDK."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai
import pytest
from agents import (
    Agent,
    OpenAIChatCompletionsModel,
    Runner,
    function_tool,
    set_tracing_disabled,
)
from openai import AsyncOpenAI
from openai.types.chat import ChatCompletionMessageParam

from tests.ai.scripted_llm import (
    Call,
    Calls,
    Fail,
    Reply,
    Respond,
    ScriptedLLM,
)
from tests.ai.scripted_llm import (
    scripted_llm as scripted_llm_fixture,  # noqa: F401 (registers the fixture)
)

API_KEY = "test-key"
HELLO: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Say hello"}]


@pytest.fixture
async def client(scripted_llm: ScriptedLLM) -> AsyncIterator[AsyncOpenAI]:
    async with AsyncOpenAI(base_url=scripted_llm.base_url, api_key=API_KEY) as client:
        yield client


async def test_a_text_reply(scripted_llm: ScriptedLLM, client: AsyncOpenAI) -> None:
    scripted_llm.script(Reply("Hello there, team!"))

    completion = await client.chat.completions.create(model=scripted_llm.model, messages=HELLO)

    assert completion.object == "chat.completion"
    assert completion.model == scripted_llm.model
    assert completion.id
    choice = completion.choices[0]
    assert choice.finish_reason == "stop"
    assert choice.message.role == "assistant"
    assert choice.message.content == "Hello there, team!"
    assert choice.message.tool_calls is None
    assert completion.usage is not None
    # "Say hello": 9 chars // 4 + 1; "Hello there, team!": 18 chars // 4 + 1.
    assert completion.usage.prompt_tokens == 3
    assert completion.usage.completion_tokens == 5
    assert completion.usage.total_tokens == 8

    assert len(scripted_llm.requests) == 1
    assert scripted_llm.requests[0]["model"] == scripted_llm.model
    assert scripted_llm.last_messages == HELLO
    assert scripted_llm.headers[0]["Authorization"] == f"Bearer {API_KEY}"
    assert scripted_llm.pending == 0
    assert scripted_llm.errors == []


async def test_tool_calls(scripted_llm: ScriptedLLM, client: AsyncOpenAI) -> None:
    scripted_llm.script(
        Calls([Call("add", {"a": 2, "b": 3}), Call("lookup", {"q": "x"}, id="call_custom")]),
        Call("add", {"a": 1, "b": 1}),  # a bare Call is a one-call Calls
    )

    first = await client.chat.completions.create(model=scripted_llm.model, messages=HELLO)
    second = await client.chat.completions.create(model=scripted_llm.model, messages=HELLO)

    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    calls = choice.message.tool_calls or []
    assert [call.id for call in calls] == ["call_1", "call_custom"]
    assert [call.type for call in calls] == ["function", "function"]
    functions = [call.function for call in calls if call.type == "function"]
    assert [f.name for f in functions] == ["add", "lookup"]
    assert [json.loads(f.arguments) for f in functions] == [{"a": 2, "b": 3}, {"q": "x"}]
    assert [call.id for call in second.choices[0].message.tool_calls or []] == ["call_2"]


async def test_streamed_text_arrives_in_several_deltas(
    scripted_llm: ScriptedLLM, client: AsyncOpenAI
) -> None:
    text = "The quick brown fox jumps over the lazy dog."
    scripted_llm.script(Reply(text), Reply(text))

    stream = await client.chat.completions.create(
        model=scripted_llm.model,
        messages=HELLO,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]

    assert {chunk.object for chunk in chunks} == {"chat.completion.chunk"}
    assert len({chunk.id for chunk in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    deltas = [d for c in chunks if c.choices and (d := c.choices[0].delta.content)]
    assert len(deltas) > 1
    assert "".join(deltas) == text
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop"
    assert finishes[:-1] == [None] * (len(finishes) - 1)
    # The usage chunk comes last, with no choices.
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == len(text) // 4 + 1
    assert scripted_llm.requests[0]["stream"] is True

    # Without include_usage there is no usage chunk.
    stream = await client.chat.completions.create(
        model=scripted_llm.model, messages=HELLO, stream=True
    )
    chunks = [chunk async for chunk in stream]
    assert all(chunk.choices and chunk.usage is None for chunk in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"


async def test_a_streamed_tool_call_reassembles(
    scripted_llm: ScriptedLLM, client: AsyncOpenAI
) -> None:
    arguments = {"title": "Write the release notes", "due": "2025-01-31", "tags": ["docs"]}
    scripted_llm.script(Calls([Call("create_task", arguments), Call("noop", {})]))

    stream = await client.chat.completions.create(
        model=scripted_llm.model, messages=HELLO, stream=True
    )
    calls: dict[int, dict[str, Any]] = {}
    fragments = 0
    finish_reason = None
    async for chunk in stream:
        if not chunk.choices:
            continue
        choice = chunk.choices[0]
        finish_reason = choice.finish_reason or finish_reason
        assert choice.delta.content is None
        for delta in choice.delta.tool_calls or []:
            call = calls.setdefault(delta.index, {"id": None, "name": "", "arguments": ""})
            if delta.id:
                call["id"] = delta.id
            if delta.function and delta.function.name:
                call["name"] += delta.function.name
            if delta.function and delta.function.arguments:
                call["arguments"] += delta.function.arguments
                fragments += 1

    assert finish_reason == "tool_calls"
    assert fragments > 2
    assert [(c["id"], c["name"]) for c in calls.values()] == [
        ("call_1", "create_task"),
        ("call_2", "noop"),
    ]
    assert json.loads(calls[0]["arguments"]) == arguments
    assert json.loads(calls[1]["arguments"]) == {}


async def test_the_sdk_retries_rate_limits_as_told_by_retry_after_ms(
    scripted_llm: ScriptedLLM,
) -> None:
    scripted_llm.script(Fail(429), Fail(429), Reply("finally"))

    async with AsyncOpenAI(
        base_url=scripted_llm.base_url, api_key=API_KEY, max_retries=2
    ) as client:
        started = time.monotonic()
        completion = await client.chat.completions.create(model=scripted_llm.model, messages=HELLO)
        elapsed = time.monotonic() - started

    assert completion.choices[0].message.content == "finally"
    assert len(scripted_llm.requests) == 3
    assert scripted_llm.requests[0] == scripted_llm.requests[2]
    # The SDK's own backoff would wait over a second for two retries; retry-after-ms is 10.
    assert elapsed < 1.0


async def test_a_failure_carries_an_openai_error_body(
    scripted_llm: ScriptedLLM, client: AsyncOpenAI
) -> None:
    scripted_llm.script(
        Fail(503, retry_after_ms=None),
        Fail(401, body={"error": {"message": "bad key", "type": "x", "code": "invalid_api_key"}}),
    )

    no_retries = client.with_options(max_retries=0)
    with pytest.raises(openai.InternalServerError) as server_error:
        await no_retries.chat.completions.create(model=scripted_llm.model, messages=HELLO)
    assert server_error.value.status_code == 503
    assert server_error.value.code == "server_error"
    assert "retry-after-ms" not in server_error.value.response.headers

    with pytest.raises(openai.AuthenticationError) as auth_error:
        await no_retries.chat.completions.create(model=scripted_llm.model, messages=HELLO)
    assert auth_error.value.code == "invalid_api_key"
    assert auth_error.value.message.endswith("bad key")


async def test_an_exhausted_script_is_a_bad_request(
    scripted_llm: ScriptedLLM, client: AsyncOpenAI
) -> None:
    with pytest.raises(openai.BadRequestError) as error:
        await client.chat.completions.create(model=scripted_llm.model, messages=HELLO)

    assert "script exhausted" in error.value.message
    assert len(scripted_llm.requests) == 1  # not retried
    assert len(scripted_llm.errors) == 1
    assert "script exhausted" in scripted_llm.errors[0]


async def test_respond_answers_from_the_request(
    scripted_llm: ScriptedLLM, client: AsyncOpenAI
) -> None:
    def echo(body: dict[str, Any]) -> Reply:
        return Reply(body["messages"][-1]["content"].upper())

    scripted_llm.script(Respond(echo), Respond(lambda body: Fail(404)))

    completion = await client.chat.completions.create(model=scripted_llm.model, messages=HELLO)
    assert completion.choices[0].message.content == "SAY HELLO"
    with pytest.raises(openai.NotFoundError):
        await client.chat.completions.create(model=scripted_llm.model, messages=HELLO)


async def test_models_are_listed(scripted_llm: ScriptedLLM, client: AsyncOpenAI) -> None:
    models = [model async for model in client.models.list()]

    assert [(m.id, m.object, m.owned_by) for m in models] == [
        (scripted_llm.model, "model", "scripted")
    ]


async def test_the_context_manager_starts_and_stops_a_real_server() -> None:
    async with ScriptedLLM(model="other-model") as llm:
        assert llm.base_url.startswith("http://127.0.0.1:")
        assert llm.base_url.endswith("/v1")
        async with httpx.AsyncClient() as http:
            answer = await http.get(f"{llm.base_url}/models")
        assert answer.json()["data"][0]["id"] == "other-model"
        url = llm.base_url

    with pytest.raises(RuntimeError):
        _ = llm.base_url
    async with httpx.AsyncClient() as http:
        with pytest.raises(httpx.ConnectError):
            await http.get(f"{url}/models")


# --- The OpenAI Agents SDK ----------------------------------------------------------------


def _adding_agent(llm: ScriptedLLM, client: AsyncOpenAI, calls: list[tuple[int, int]]) -> Agent:
    @function_tool
    def add(a: int, b: int) -> int:
        """Add two integers."""
        calls.append((a, b))
        return a + b

    return Agent(
        name="adder",
        instructions="Use the add tool for arithmetic.",
        tools=[add],
        model=OpenAIChatCompletionsModel(model=llm.model, openai_client=client),
    )


def _tool_messages(llm: ScriptedLLM) -> list[dict[str, Any]]:
    return [m for m in llm.requests[1]["messages"] if m["role"] == "tool"]


@pytest.fixture(autouse=True)
def _no_tracing() -> None:
    set_tracing_disabled(True)


async def test_an_agent_calls_a_tool_and_answers(
    scripted_llm: ScriptedLLM, client: AsyncOpenAI
) -> None:
    calls: list[tuple[int, int]] = []
    agent = _adding_agent(scripted_llm, client, calls)
    scripted_llm.script(Calls([Call("add", {"a": 2, "b": 3})]), Reply("5"))

    result = await Runner.run(agent, "add 2 and 3")

    assert calls == [(2, 3)]
    assert result.final_output == "5"
    assert len(scripted_llm.requests) == 2
    first = scripted_llm.requests[0]
    assert not first.get("stream")
    assert [tool["function"]["name"] for tool in first["tools"]] == ["add"]
    assert first["messages"][-1] == {"role": "user", "content": "add 2 and 3"}
    assert _tool_messages(scripted_llm) == [
        {"role": "tool", "tool_call_id": "call_1", "content": "5"}
    ]
    assert scripted_llm.errors == []


async def test_a_streamed_agent_run(scripted_llm: ScriptedLLM, client: AsyncOpenAI) -> None:
    calls: list[tuple[int, int]] = []
    agent = _adding_agent(scripted_llm, client, calls)
    scripted_llm.script(Calls([Call("add", {"a": 2, "b": 3})]), Reply("The sum is 5"))

    result = Runner.run_streamed(agent, "add 2 and 3")
    text_deltas: list[str] = []
    items: list[str] = []
    async for event in result.stream_events():
        if event.type == "raw_response_event" and event.data.type == "response.output_text.delta":
            text_deltas.append(event.data.delta)
        elif event.type == "run_item_stream_event":
            items.append(event.name)

    assert calls == [(2, 3)]
    assert result.final_output == "The sum is 5"
    assert len(text_deltas) > 1
    assert "".join(text_deltas) == "The sum is 5"
    assert items == ["tool_called", "tool_output", "message_output_created"]
    assert all(request["stream"] is True for request in scripted_llm.requests)
    assert len(scripted_llm.requests) == 2
    assert [m["content"] for m in _tool_messages(scripted_llm)] == ["5"]
