"""A scripted, offline stand-in for the OpenAI chat-completions API, over real HTTP.

``ScriptedLLM`` runs uvicorn (with a small Starlette app) on a free port of 127.0.0.1 in
the test's own event loop. It speaks enough of the OpenAI protocol for the real OpenAI SDK
client and the OpenAI Agents SDK (``OpenAIChatCompletionsModel``) to run against it
unchanged: ``POST /v1/chat/completions``, streaming (server-sent events) or not, and
``GET /v1/models``.

Each chat completion consumes the next step of a FIFO script::

    async with ScriptedLLM() as llm:
        llm.script(
            Calls([Call("add", {"a": 2, "b": 3})]),  # the model asks for a tool call
            Fail(429),  # then a rate limit the SDK retries
            Reply("5"),  # then the final answer
        )
        client = AsyncOpenAI(base_url=llm.base_url, api_key="test-key")
        ...
        assert llm.requests[-1]["messages"][-1]["role"] == "tool"

Steps: ``Reply`` (assistant text), ``Call``/``Calls`` (tool calls), ``Fail`` (an HTTP error
with an OpenAI-style error body) and ``Respond`` (a function of the request body that
returns one of the others). A request that finds the script empty gets HTTP 400 ("script
exhausted", which the SDK does not retry) and is noted in ``llm.errors``.

Every request body is kept in ``llm.requests`` and its headers in ``llm.headers``. Token
counts in ``usage`` are deterministic: characters // 4 + 1, for the request's message
text and for the output.

Tests get it either with ``async with ScriptedLLM() as llm:`` or through the
``scripted_llm`` fixture (import it into the test module).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self, TypeAlias

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

TIMEOUT = 10.0
DEFAULT_MODEL = "scripted-model"
# Size of the pieces a streamed tool call's JSON arguments are cut into.
ARGUMENT_FRAGMENT_CHARS = 8

JSON: TypeAlias = dict[str, Any]


# --- The script ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """An assistant message with this text; ``finish_reason`` "stop"."""

    text: str


@dataclass(frozen=True)
class Call:
    """One function tool call. Without ``id`` the server numbers it: ``call_1``, ``call_2``…"""

    name: str
    arguments: JSON = field(default_factory=dict)
    id: str | None = None


@dataclass(frozen=True)
class Calls:
    """An assistant message asking for these tool calls (content null, "tool_calls")."""

    calls: Sequence[Call]

    def __post_init__(self) -> None:
        if not self.calls:
            raise ValueError("Calls needs at least one Call")


@dataclass(frozen=True)
class Fail:
    """Answer with this HTTP status and an OpenAI error body (``body`` replaces the default).

    ``retry_after_ms`` is sent as the ``retry-after-ms`` header, which the OpenAI SDK honours
    when it retries 408/409/429/5xx, so retry tests do not sleep; ``None`` leaves it out.
    """

    status: int
    body: JSON | None = None
    retry_after_ms: int | None = 10


@dataclass(frozen=True)
class Respond:
    """Decide the answer from the request: ``fn(body)`` returns another step."""

    fn: Callable[[JSON], Step]


Step: TypeAlias = Reply | Call | Calls | Fail | Respond


# --- The server ---------------------------------------------------------------------------


class ScriptedLLM:
    """A local OpenAI-compatible chat-completions server answering from a script.

    Use as ``async with ScriptedLLM() as llm:``; ``llm.base_url`` and ``llm.model`` go to
    the client under test, ``llm.script(...)`` queues the answers.
    """

    def __init__(self, model: str = DEFAULT_MODEL) -> None:
        self.model = model
        self.requests: list[JSON] = []
        self.headers: list[Headers] = []
        self.errors: list[str] = []
        self._steps: deque[Step] = deque()
        self._call_ids = itertools.count(1)
        self._completion_ids = itertools.count(1)
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None
        self._port: int | None = None
        self.app = Starlette(
            routes=[
                Route("/v1/chat/completions", self._chat_completions, methods=["POST"]),
                Route("/v1/models", self._models, methods=["GET"]),
            ]
        )

    # --- public API -----------------------------------------------------------------------

    def script(self, *steps: Step) -> None:
        """Append steps to the script; each chat completion request consumes one."""
        self._steps.extend(steps)

    @property
    def pending(self) -> int:
        """How many scripted steps have not been consumed yet."""
        return len(self._steps)

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("ScriptedLLM is not running")
        return self._port

    @property
    def base_url(self) -> str:
        """The OpenAI ``base_url``: ``http://127.0.0.1:<port>/v1``."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def last_messages(self) -> list[JSON]:
        """The ``messages`` of the last chat completion request."""
        if not self.requests:
            raise AssertionError("no chat completion request was received")
        messages: list[JSON] = self.requests[-1]["messages"]
        return messages

    async def start(self) -> None:
        if self._task is not None:
            raise RuntimeError("ScriptedLLM is already running")
        config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=0,  # the OS picks a free port; read back from the listening socket below
            log_level="warning",
            lifespan="off",
            ws="none",
            timeout_graceful_shutdown=2,
        )
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve())
        self._server, self._task = server, task
        try:
            async with asyncio.timeout(TIMEOUT):
                while not server.started:
                    if task.done():
                        task.result()  # raises why uvicorn could not start
                        raise RuntimeError("uvicorn stopped before it started")
                    await asyncio.sleep(0.01)
        except BaseException:
            self._server = self._task = None
            server.should_exit = True
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
            raise
        sockets = server.servers[0].sockets
        self._port = int(sockets[0].getsockname()[1])

    async def stop(self) -> None:
        server, task = self._server, self._task
        self._server = self._task = None
        self._port = None
        if server is None or task is None:
            return
        server.should_exit = True
        try:
            await asyncio.wait_for(task, TIMEOUT)
        except BaseException:
            task.cancel()
            raise

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # --- endpoints ------------------------------------------------------------------------

    async def _models(self, request: Request) -> Response:
        return JSONResponse(
            {
                "object": "list",
                "data": [
                    {"id": self.model, "object": "model", "created": 0, "owned_by": "scripted"}
                ],
            }
        )

    async def _chat_completions(self, request: Request) -> Response:
        try:
            body = json.loads(await request.body())
        except ValueError as exc:
            return self._refuse(f"request body is not JSON: {exc}")
        if not isinstance(body, dict):
            return self._refuse("request body is not a JSON object")
        self.requests.append(body)
        self.headers.append(request.headers)

        if not self._steps:
            return self._refuse(
                f"script exhausted: request #{len(self.requests)} has no scripted step",
                code="script_exhausted",
            )
        step = self._steps.popleft()
        try:
            while isinstance(step, Respond):
                step = step.fn(body)
        except Exception as exc:
            return self._refuse(f"Respond function raised {exc!r}", code="respond_failed")
        if not isinstance(step, Reply | Call | Calls | Fail):
            return self._refuse(f"not a script step: {step!r}", code="invalid_step")

        if isinstance(step, Fail):
            return self._fail(step)
        if isinstance(step, Call):
            step = Calls([step])
        completion = _Completion(
            id=f"chatcmpl-scripted-{next(self._completion_ids)}",
            model=str(body.get("model") or self.model),
            text=step.text if isinstance(step, Reply) else None,
            tool_calls=[] if isinstance(step, Reply) else self._tool_calls(step),
            prompt_tokens=_message_chars(body.get("messages")) // 4 + 1,
        )
        if body.get("stream"):
            stream_options = body.get("stream_options") or {}
            return StreamingResponse(
                _sse(completion.chunks(include_usage=bool(stream_options.get("include_usage")))),
                media_type="text/event-stream",
                headers={"cache-control": "no-cache"},
            )
        return JSONResponse(completion.as_json())

    # --- helpers --------------------------------------------------------------------------

    def _tool_calls(self, step: Calls) -> list[JSON]:
        return [
            {
                "id": call.id or f"call_{next(self._call_ids)}",
                "type": "function",
                "function": {"name": call.name, "arguments": json.dumps(call.arguments)},
            }
            for call in step.calls
        ]

    def _refuse(self, message: str, code: str = "invalid_request") -> Response:
        """A 400 the SDK does not retry, for anything that is the test's mistake."""
        self.errors.append(message)
        return JSONResponse(
            _error_body(message, "invalid_request_error", code),
            status_code=400,
            headers={"x-should-retry": "false"},
        )

    @staticmethod
    def _fail(step: Fail) -> Response:
        if step.body is not None:
            body = step.body
        else:
            if step.status == 429:
                kind, code = "requests", "rate_limit_exceeded"
            elif step.status >= 500:
                kind, code = "server_error", "server_error"
            else:
                kind, code = "invalid_request_error", "scripted_failure"
            body = _error_body(f"scripted failure (HTTP {step.status})", kind, code)
        headers = {}
        if step.retry_after_ms is not None:
            headers["retry-after-ms"] = str(step.retry_after_ms)
        return JSONResponse(body, status_code=step.status, headers=headers)


def _error_body(message: str, kind: str, code: str) -> JSON:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def _message_chars(messages: object) -> int:
    """Characters of text in the request messages: contents, text parts, tool call arguments."""
    if not isinstance(messages, list):
        return 0
    total = 0
    for message in messages:
        if not isinstance(message, dict):
            continue
        content = message.get("content")
        if isinstance(content, str):
            total += len(content)
        elif isinstance(content, list):
            total += sum(
                len(part["text"])
                for part in content
                if isinstance(part, dict) and isinstance(part.get("text"), str)
            )
        for call in message.get("tool_calls") or []:
            total += len(str(call.get("function", {}).get("arguments", "")))
    return total


@dataclass
class _Completion:
    """One scripted answer, rendered as a ``chat.completion`` or as its chunks."""

    id: str
    model: str
    text: str | None
    tool_calls: list[JSON]
    prompt_tokens: int
    created: int = field(default_factory=lambda: int(time.time()))

    @property
    def finish_reason(self) -> str:
        return "tool_calls" if self.tool_calls else "stop"

    def usage(self) -> JSON:
        output = self.text or "".join(
            call["function"]["name"] + call["function"]["arguments"] for call in self.tool_calls
        )
        completion_tokens = len(output) // 4 + 1
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": self.prompt_tokens + completion_tokens,
        }

    def as_json(self) -> JSON:
        message: JSON = {"role": "assistant", "content": self.text, "refusal": None}
        if self.tool_calls:
            message["tool_calls"] = self.tool_calls
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": self.finish_reason,
                }
            ],
            "usage": self.usage(),
        }

    def chunks(self, include_usage: bool) -> Iterator[JSON]:
        """The ``chat.completion.chunk`` objects OpenAI would stream for this answer."""
        yield self._chunk({"role": "assistant"})
        if self.text is not None:
            for piece in _words(self.text):
                yield self._chunk({"content": piece})
        for index, call in enumerate(self.tool_calls):
            function = call["function"]
            yield self._chunk(
                {
                    "tool_calls": [
                        {
                            "index": index,
                            "id": call["id"],
                            "type": "function",
                            "function": {"name": function["name"], "arguments": ""},
                        }
                    ]
                }
            )
            arguments = function["arguments"]
            for start in range(0, len(arguments), ARGUMENT_FRAGMENT_CHARS):
                fragment = arguments[start : start + ARGUMENT_FRAGMENT_CHARS]
                yield self._chunk(
                    {"tool_calls": [{"index": index, "function": {"arguments": fragment}}]}
                )
        yield self._chunk({}, finish_reason=self.finish_reason)
        if include_usage:
            yield {**self._envelope(), "choices": [], "usage": self.usage()}

    def _chunk(self, delta: JSON, finish_reason: str | None = None) -> JSON:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return {**self._envelope(), "choices": [choice]}

    def _envelope(self) -> JSON:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
        }


def _words(text: str) -> list[str]:
    """Split after each run of whitespace, so the pieces join back to ``text`` exactly."""
    return [piece for piece in re.split(r"(?<=\s)(?=\S)", text) if piece] or [text]


async def _sse(chunks: Iterator[JSON]) -> AsyncIterator[str]:
    for chunk in chunks:
        yield f"data: {json.dumps(chunk)}\n\n"
        await asyncio.sleep(0)  # one write per event, as a real stream arrives
    yield "data: [DONE]\n\n"


# --- The fixture --------------------------------------------------------------------------


# Named explicitly, so the fixture keeps its name when a test module imports it under an
# alias (``import scripted_llm as scripted_llm_fixture``, with noqa F401): importing it as
# ``scripted_llm`` makes ruff report F811 on every test that takes a ``scripted_llm`` argument.
@pytest.fixture(name="scripted_llm")
async def scripted_llm() -> AsyncIterator[ScriptedLLM]:
    """A started ``ScriptedLLM`` with an empty script, stopped after the test."""
    async with ScriptedLLM() as llm:
        yield llm
