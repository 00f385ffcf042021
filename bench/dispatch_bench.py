"""Event dispatcher throughput: events per second from the outbox to a Redis stream.

Two workloads, on SQLite and (with --postgres) PostgreSQL, each against a fresh
database and a private key prefix on the given Redis (deleted afterwards):

* **backlog**: ``--events`` committed events (``task.updated`` with a realistic task
  body, ~700 bytes of JSON) waiting; time the dispatcher to number, XADD and mark them
  all (``HUDDLE_EVENT_BATCH``-sized passes). The same with the in-memory bus gives the
  database's share.
* **live**: ``--writers`` concurrent writers each commit one event per transaction for
  ``--seconds``; the dispatcher runs as in the server (woken by each commit). Reports
  committed and published events/s and the lag from commit to the entry appearing in
  the stream (read by a blocking XREAD), median and p99.

    .venv/bin/python bench/dispatch_bench.py [--events 20000] [--seconds 10]
        [--writers 4] [--redis redis://127.0.0.1:6379/0]
        [--postgres postgresql://postgres@127.0.0.1/test] [--write]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime

from redis.asyncio import Redis
from results import write_section
from sqlalchemy import insert
from tasks_bench import fresh_database, machine

from huddle.config import Settings
from huddle.core.db import Database
from huddle.core.time import utcnow
from huddle.events.bus import EventBus, MemoryBus
from huddle.events.dispatcher import Dispatcher
from huddle.events.models import Event
from huddle.events.redis_bus import RedisStreamBus, stream_name

TASK = {
    "id": str(uuid.uuid4()),
    "project_id": str(uuid.uuid4()),
    "column_id": str(uuid.uuid4()),
    "title": "Write the quarterly report for the board meeting",
    "description": "Gather the figures from finance, draft, review with Ana. " * 4,
    "status": "doing",
    "priority": "high",
    "assignee_id": str(uuid.uuid4()),
    "creator_id": str(uuid.uuid4()),
    "due_date": "2026-12-24",
    "position": "0|hzzzzz:",
    "completed_at": None,
    "version": 3,
    "created_at": "2026-12-01T10:00:00Z",
    "updated_at": "2026-12-01T10:00:00Z",
}
WORKSPACE = uuid.uuid4()


def _row() -> dict:
    return {
        "type": "task.updated",
        "topic": f"project:{TASK['project_id']}",
        "workspace_id": WORKSPACE,
        "subject_id": uuid.UUID(TASK["id"]),
        "actor": {"kind": "user", "id": TASK["creator_id"]},
        "data": TASK,
        "created_at": utcnow(),
    }


async def backlog(url: str, redis_url: str, count: int, memory: bool) -> float:
    settings = Settings(database_url=url, secret_key="x" * 40)
    db = Database(settings)
    prefix = f"dispatch-bench:{uuid.uuid4().hex[:8]}:"
    bus: EventBus = MemoryBus() if memory else RedisStreamBus(redis_url, prefix, count + 1000)
    try:
        async with db.write_session() as session:
            for start in range(0, count, 1000):
                await session.execute(
                    insert(Event), [_row() for _ in range(min(1000, count - start))]
                )
            await session.commit()
        dispatcher = Dispatcher(db, bus, poll_interval=60, batch=settings.event_batch)
        started = time.perf_counter()
        done = await dispatcher.flush()
        elapsed = time.perf_counter() - started
        assert done == count, (done, count)
        await dispatcher.stop()
        return count / elapsed
    finally:
        await bus.aclose()
        await _drop_prefix(redis_url, prefix)
        await db.dispose()


async def live(url: str, redis_url: str, seconds: float, writers: int) -> dict[str, float]:
    settings = Settings(database_url=url, secret_key="x" * 40)
    db = Database(settings)
    prefix = f"dispatch-bench:{uuid.uuid4().hex[:8]}:"
    bus = RedisStreamBus(redis_url, prefix, 1_000_000)
    dispatcher = Dispatcher(db, bus, poll_interval=1.0, batch=settings.event_batch)
    db_wake = dispatcher.wake
    reader = Redis.from_url(redis_url, decode_responses=True)
    lags: list[float] = []
    committed = 0
    stop = asyncio.Event()

    async def write() -> None:
        nonlocal committed
        while not stop.is_set():
            row = _row()
            async with db.write_session() as session:
                await session.execute(insert(Event), [row])
                await session.commit()
            committed += 1
            await db_wake()

    async def read() -> None:
        last = "0-0"
        stream = stream_name(prefix)
        while True:
            reply = await reader.xread({stream: last}, block=1000, count=1000)
            now = datetime.now(UTC)
            for _name, entries in reply or []:
                for entry_id, fields in entries:
                    last = entry_id
                    created = datetime.fromisoformat(json.loads(fields["event"])["created_at"])
                    lags.append((now - created).total_seconds() * 1000)

    dispatcher.start()
    reading = asyncio.create_task(read())
    started = time.perf_counter()
    tasks = [asyncio.create_task(write()) for _ in range(writers)]
    await asyncio.sleep(seconds)
    stop.set()
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - started
    deadline = time.monotonic() + 60
    while len(lags) < committed and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    drained = time.perf_counter() - started
    reading.cancel()
    await dispatcher.stop()
    await bus.aclose()
    await reader.aclose()
    await _drop_prefix(redis_url, prefix)
    await db.dispose()
    ordered = sorted(lags)
    return {
        "committed/s": committed / elapsed,
        "published/s": len(lags) / drained,
        "lag p50 ms": statistics.median(ordered),
        "lag p99 ms": ordered[int(len(ordered) * 0.99) - 1],
        "events": committed,
    }


async def _drop_prefix(redis_url: str, prefix: str) -> None:
    client = Redis.from_url(redis_url)
    try:
        keys = [key async for key in client.scan_iter(match=prefix + "*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument(
        "--redis", default=os.environ.get("HUDDLE_TEST_REDIS_URL") or "redis://127.0.0.1:6379/0"
    )
    parser.add_argument("--postgres", default=os.environ.get("HUDDLE_TEST_DATABASE_URL"))
    parser.add_argument("--write", action="store_true", help="rewrite the section in RESULTS.md")
    args = parser.parse_args()

    kinds = ["sqlite"] + (["postgresql"] if args.postgres else [])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in kinds:
            figures = {}
            for memory in (False, True):
                url, cleanup = fresh_database(kind, args.postgres, tmp)
                try:
                    print(f"{kind}: backlog (memory={memory})...", file=sys.stderr)
                    figures["memory" if memory else "redis"] = asyncio.run(
                        backlog(url, args.redis, args.events, memory)
                    )
                finally:
                    cleanup()
            url, cleanup = fresh_database(kind, args.postgres, tmp)
            try:
                print(f"{kind}: live...", file=sys.stderr)
                figures["live"] = asyncio.run(live(url, args.redis, args.seconds, args.writers))
            finally:
                cleanup()
            rows.append((kind, figures))

    header = (
        "| database | backlog to Redis (events/s) | backlog, in-memory bus (events/s) "
        "| live: committed/s | live: published/s | commit → stream lag p50 / p99 (ms) |\n"
        "|---|---|---|---|---|---|\n"
    )
    body = "".join(
        f"| {kind} | {f['redis']:,.0f} | {f['memory']:,.0f} | {f['live']['committed/s']:,.0f} "
        f"| {f['live']['published/s']:,.0f} "
        f"| {f['live']['lag p50 ms']:.1f} / {f['live']['lag p99 ms']:.1f} |\n"
        for kind, f in rows
    )
    table = header + body
    print(table)
    if not args.write:
        return
    command = "`.venv/bin/python bench/dispatch_bench.py " + " ".join(sys.argv[1:]) + "`"
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    section = (
        "## Event dispatcher (`bench/dispatch_bench.py`)\n\n"
        f"Run {when} on {machine()}.\n\nCommand: {command}\n\n"
        f"Backlog: {args.events:,} committed `task.updated` events (~700-byte bodies) "
        "numbered, added to the Redis stream and marked published in passes of 500. "
        f"Live: {args.writers} writers committing one event per transaction for "
        f"{args.seconds:g} s while the dispatcher runs as in the server; lag is from the "
        "event's commit to a blocking XREAD seeing it. Redis, the database and the "
        "benchmark share the machine's two cores.\n\n" + table + "\n"
    )
    write_section("## Event dispatcher", section)


if __name__ == "__main__":
    main()
