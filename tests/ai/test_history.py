"""The rule that trims a long conversation to the model's context."""

from __future__ import annotations

from typing import Any

from huddle.ai.agent import TOOL_OUTPUT_CHARS, estimate_tokens, to_input_items, trim_history


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def answer(text: str) -> dict[str, Any]:
    return {"role": "assistant", "content": text, "tool_calls": None}


def call(call_id: str) -> dict[str, Any]:
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": call_id, "name": "list_projects", "arguments": "{}"}],
    }


def result(call_id: str, text: str = "{}") -> dict[str, Any]:
    return {"role": "tool", "content": text, "tool_call_id": call_id, "tool_name": "list_projects"}


def test_everything_is_kept_when_it_fits():
    history = [user("a"), call("c1"), result("c1"), answer("b"), user("c")]
    assert trim_history(history, 10_000) == history


def test_the_newest_messages_that_fit_starting_at_a_user_message():
    history = [
        user("x" * 400),
        call("c1"),
        result("c1", "y" * 400),
        answer("z" * 400),
        user("second question"),
        call("c2"),
        result("c2", "short"),
        answer("done"),
        user("third"),
    ]
    budget = sum(estimate_tokens(m) for m in history[3:])  # room from the old answer on
    kept = trim_history(history, budget)
    # The cut would start at an assistant message: it moves on to the next user message,
    # so no tool result is sent without the call that asked for it.
    assert kept == history[4:]
    assert sum(estimate_tokens(m) for m in kept) <= budget


def test_the_question_being_asked_is_always_sent():
    history = [user("old"), answer("old answer"), user("q" * 10_000)]
    assert trim_history(history, 10) == [history[-1]]


def test_long_tool_results_are_cut_in_what_is_sent():
    history = [user("list"), call("c1"), result("c1", "r" * (TOOL_OUTPUT_CHARS * 3)), user("and?")]
    kept = trim_history(history, 100_000)
    assert len(kept[2]["content"]) < TOOL_OUTPUT_CHARS + 20
    assert kept[2]["content"].endswith("[cut]")
    assert history[2]["content"] == "r" * (TOOL_OUTPUT_CHARS * 3)  # the stored one is intact


def test_stored_messages_become_agent_input_items():
    items = to_input_items(
        [user("hi"), call("c1"), result("c1", '{"projects": []}'), answer("none")]
    )
    assert items == [
        {"role": "user", "content": "hi"},
        {"type": "function_call", "call_id": "c1", "name": "list_projects", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": '{"projects": []}'},
        {"role": "assistant", "content": "none"},
    ]
