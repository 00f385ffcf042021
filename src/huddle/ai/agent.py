"""The tool-using agent: the OpenAI Agents SDK on the configured chat-completions model.

:func:`run_agent` turns a conversation's (trimmed) history into the SDK's input items,
runs the agent with the tools of :mod:`huddle.ai.tools` bound to a :class:`ToolScope`,
and gives back the turn's new messages in the stored form
(``{role, content, tool_calls?, tool_call_id?, tool_name?}``), whether the run ended
normally or failed half-way (tool calls that already ran are never dropped).

History rule (:func:`trim_history`): the newest messages whose estimated size
(characters / 4, tool results cut to :data:`TOOL_OUTPUT_CHARS`) fits in
``HUDDLE_AI_CONTEXT_TOKENS`` minus the instructions, starting at a user message, so a
tool call is never separated from its result; the newest user message is always sent.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import openai
from agents import (
    Agent,
    FunctionTool,
    MaxTurnsExceeded,
    ModelSettings,
    OpenAIChatCompletionsModel,
    RunConfig,
    RunContextWrapper,
    Runner,
    set_tracing_disabled,
)
from agents.exceptions import AgentsException
from agents.items import MessageOutputItem, ToolCallItem, ToolCallOutputItem
from agents.run_config import ToolErrorFormatterArgs
from agents.tool_context import ToolContext

from huddle.ai.llm import LLM, ProviderError, Usage, provider_error
from huddle.ai.tools import TOOLS, ToolScope, run_tool

log = logging.getLogger("huddle.ai.agent")

# Offline by design: the SDK would otherwise try to upload traces to OpenAI.
set_tracing_disabled(True)

TOOL_OUTPUT_CHARS = 4000
#: The most of one tool result the model is sent in the turn that called it.
TOOL_RESULT_CHARS = 16_000
BASE_INSTRUCTIONS = """\
You are the assistant of Huddle, a team's collaboration workspace. You act for {user} \
in the workspace "{workspace}". Today is {today}.
Use the tools to read and change projects and tasks; never invent ids: look them up \
with list_projects, list_tasks or get_task. You can only do what {user} may do; when a \
tool answers with an error, tell the user plainly what was refused and why. Deleting \
a task only creates a pending action: say that nothing is deleted until the user \
confirms it. Answer briefly."""

StreamSink = Callable[[str, dict[str, Any]], Awaitable[None]]


def estimate_tokens(message: dict[str, Any]) -> int:
    size = len(message.get("content") or "")
    if message.get("tool_calls"):
        size += len(json.dumps(message["tool_calls"]))
    return size // 4 + 4


def _clip(text: str | None, limit: int) -> str:
    text = text or ""
    return text if len(text) <= limit else text[:limit] + " …[cut]"


def trim_history(messages: list[dict[str, Any]], budget: int) -> list[dict[str, Any]]:
    """The newest messages that fit ``budget`` tokens, starting at a user message."""
    clipped = [
        {**m, "content": _clip(m.get("content"), TOOL_OUTPUT_CHARS)} if m["role"] == "tool" else m
        for m in messages
    ]
    start = len(clipped)
    used = 0
    for index in range(len(clipped) - 1, -1, -1):
        used += estimate_tokens(clipped[index])
        if used > budget and start < len(clipped):
            break
        start = index
    while start < len(clipped) and clipped[start]["role"] != "user":
        start += 1
    if start == len(clipped):  # never drop the question being asked
        last_user = max(i for i, m in enumerate(clipped) if m["role"] == "user")
        start = last_user
    return clipped[start:]


def to_input_items(messages: list[dict[str, Any]]) -> list[Any]:
    """Stored messages as the Agents SDK's (Responses-style) input items."""
    items: list[Any] = []
    for message in messages:
        role = message["role"]
        if role == "user":
            items.append({"role": "user", "content": message["content"] or ""})
        elif role == "assistant":
            if message.get("content"):
                items.append({"role": "assistant", "content": message["content"]})
            for call in message.get("tool_calls") or []:
                items.append(
                    {
                        "type": "function_call",
                        "call_id": call["id"],
                        "name": call["name"],
                        "arguments": call["arguments"],
                    }
                )
        elif role == "tool":
            items.append(
                {
                    "type": "function_call_output",
                    "call_id": message["tool_call_id"],
                    "output": message["content"] or "",
                }
            )
    return items


@dataclass
class TurnRecord:
    """What the turn produced, in order, as stored messages."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    usage: list[Usage] = field(default_factory=list)
    # Tool calls seen through the tool adapters: kept even if the run fails later.
    _calls: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add_call(self, call_id: str, name: str, arguments: str) -> None:
        if call_id in self._calls:
            return
        call = {"id": call_id, "name": name, "arguments": arguments}
        self._calls[call_id] = call
        last = self.messages[-1] if self.messages else None
        if last and last["role"] == "assistant" and last.get("tool_calls") and not last["content"]:
            last["tool_calls"].append(call)
        else:
            self.messages.append({"role": "assistant", "content": None, "tool_calls": [call]})

    def add_output(self, call_id: str, name: str, output: str) -> None:
        if any(m["role"] == "tool" and m["tool_call_id"] == call_id for m in self.messages):
            return
        self.messages.append(
            {"role": "tool", "content": output, "tool_call_id": call_id, "tool_name": name}
        )

    def add_text(self, text: str) -> None:
        self.messages.append({"role": "assistant", "content": text, "tool_calls": None})

    def close_dangling(self, why: str) -> None:
        """Give every call without a result one, so the stored history stays valid for
        the next turn (providers refuse a tool call that has no result)."""
        answered = {m["tool_call_id"] for m in self.messages if m["role"] == "tool"}
        for call_id, call in list(self._calls.items()):
            if call_id not in answered:
                output = json.dumps({"error": {"code": "interrupted", "message": why}})
                self.add_output(call_id, call["name"], output)

    def finish(self) -> None:
        """A turn that ended normally ends with the assistant's words."""
        last = self.messages[-1] if self.messages else None
        if last is None or last["role"] != "assistant" or not last.get("content"):
            self.add_text("(The model gave no answer.)")

    def absorb(self, items: list[Any]) -> None:
        """The SDK's run items, in order (tool calls already seen are not repeated)."""
        for item in items:
            if isinstance(item, ToolCallItem):
                raw = item.raw_item
                call_id = _get(raw, "call_id") or _get(raw, "id") or ""
                self.add_call(call_id, _get(raw, "name") or "", _get(raw, "arguments") or "{}")
            elif isinstance(item, ToolCallOutputItem):
                call_id = _get(item.raw_item, "call_id") or ""
                name = self._calls.get(call_id, {}).get("name", "")
                self.add_output(call_id, name, _output_text(item.output))
            elif isinstance(item, MessageOutputItem):
                text = "".join(
                    getattr(part, "text", "") for part in item.raw_item.content or []
                ).strip()
                if text:
                    self.add_text(text)

    def absorb_usage(self, wrapper: RunContextWrapper[Any]) -> None:
        entries = wrapper.usage.request_usage_entries
        if entries:
            self.usage = [Usage(e.input_tokens, e.output_tokens) for e in entries]
        elif wrapper.usage.requests:
            self.usage = [Usage(wrapper.usage.input_tokens, wrapper.usage.output_tokens)]


def _get(raw: Any, name: str) -> Any:
    return raw.get(name) if isinstance(raw, dict) else getattr(raw, name, None)


def _output_text(output: Any) -> str:
    return output if isinstance(output, str) else json.dumps(output, default=str)


def _tools(record: TurnRecord) -> list[FunctionTool]:
    tools = []
    for spec in TOOLS.values():

        async def invoke(ctx: ToolContext[ToolScope], raw: str, name: str = spec.name) -> str:
            record.add_call(ctx.tool_call_id, name, raw)
            result = await run_tool(ctx.context, name, raw, ctx.tool_call_id)
            output = _clip(json.dumps(result, default=str), TOOL_RESULT_CHARS)
            record.add_output(ctx.tool_call_id, name, output)
            return output

        tools.append(
            FunctionTool(
                name=spec.name,
                description=spec.description,
                params_json_schema=spec.schema(),
                on_invoke_tool=invoke,
                strict_json_schema=False,
            )
        )
    return tools


def instructions(user: str, workspace: str, system_prompt: str | None) -> str:
    text = BASE_INSTRUCTIONS.format(user=user, workspace=workspace, today=date.today().isoformat())
    if system_prompt:
        text += "\n\n" + system_prompt
    return text


async def run_agent(
    llm: LLM,
    scope: ToolScope,
    history: list[dict[str, Any]],
    system: str,
    *,
    max_turns: int,
    stream: StreamSink | None = None,
) -> TurnRecord:
    """Run one turn of the agent on ``history`` (whose last message is the user's).

    Raises :class:`ProviderError` when the model fails; ``error.record`` then holds what
    the turn did before (so the caller can store it).
    """
    record = TurnRecord()
    agent = Agent[ToolScope](
        name="Huddle assistant",
        instructions=system,
        model=OpenAIChatCompletionsModel(model=llm.model, openai_client=llm.require()),
        tools=list(_tools(record)),
        model_settings=ModelSettings(
            temperature=0, include_usage=True, max_tokens=llm.settings.ai_max_output_tokens
        ),
    )
    items = to_input_items(history)
    config = RunConfig(
        tracing_disabled=True,
        # A model that makes up a tool is told so (and may recover), not aborted.
        tool_not_found_behavior="return_error_to_model",
        tool_error_formatter=_tool_error,
    )
    try:
        if stream is None:
            result = await Runner.run(
                agent, items, context=scope, max_turns=max_turns, run_config=config
            )
            record.absorb(result.new_items)
            record.absorb_usage(result.context_wrapper)
        else:
            streamed = Runner.run_streamed(
                agent, items, context=scope, max_turns=max_turns, run_config=config
            )
            async for event in streamed.stream_events():
                await _forward(event, record, stream)
            record.absorb(streamed.new_items)
            record.absorb_usage(streamed.context_wrapper)
    except MaxTurnsExceeded as exc:
        _absorb_partial(record, exc)
        record.close_dangling("Stopped: too many steps")
        record.add_text(
            f"I stopped after {max_turns} steps without finishing; ask again more precisely."
        )
    except (AgentsException, openai.OpenAIError) as exc:
        _absorb_partial(record, exc)
        record.close_dangling("The turn failed before this call finished")
        log.warning("agent run failed: %r", exc)
        error = (
            provider_error(exc)
            if isinstance(exc, openai.OpenAIError)
            else ProviderError("The language model's answer could not be used")
        )
        error.record = record  # type: ignore[attr-defined]
        raise error from exc
    except asyncio.CancelledError as exc:  # shutdown: what the tools did is kept
        record.close_dangling("The turn was interrupted")
        exc.record = record  # type: ignore[attr-defined]
        raise
    record.finish()
    return record


def _tool_error(args: ToolErrorFormatterArgs[Any]) -> str:
    """Errors the SDK reports to the model, in the tools' own error shape."""
    if args.kind == "tool_not_found":
        message = f"No tool named {args.tool_name!r}"
    else:
        message = args.default_message
    return json.dumps({"error": {"code": "tool_error", "message": message}})


def _absorb_partial(record: TurnRecord, exc: Exception) -> None:
    data = getattr(exc, "run_data", None)
    if data is not None:
        record.absorb(data.new_items)
        record.absorb_usage(data.context_wrapper)


async def _forward(event: Any, record: TurnRecord, sink: StreamSink) -> None:
    """Stream events as the SSE events of DESIGN.md §5 (``delta``, ``tool_call.*``)."""
    if event.type == "raw_response_event":
        data = event.data
        if getattr(data, "type", "") == "response.output_text.delta" and data.delta:
            await sink("delta", {"text": data.delta})
    elif event.type == "run_item_stream_event":
        item = event.item
        if event.name == "tool_called" and isinstance(item, ToolCallItem):
            raw = item.raw_item
            await sink(
                "tool_call.start",
                {
                    "id": _get(raw, "call_id"),
                    "name": _get(raw, "name"),
                    "arguments": _get(raw, "arguments"),
                },
            )
        elif event.name == "tool_output" and isinstance(item, ToolCallOutputItem):
            call_id = _get(item.raw_item, "call_id")
            await sink(
                "tool_call.end",
                {
                    "id": call_id,
                    "name": record._calls.get(call_id, {}).get("name"),
                    "output": _output_text(item.output),
                },
            )
