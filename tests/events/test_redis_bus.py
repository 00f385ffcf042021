"""The Redis Streams bus: seq-derived entry ids, outages, and a leader that dies.

The drills use a redis-server of their own (tests/events/private_redis.py), never the
shared one, and read the stream the way another service would: a consumer group,
acknowledging each entry and deduplicating by ``seq``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError
from sqlalchemy import func, select

from huddle.app import create_app
from huddle.core.db import Database
from huddle.events.bus import BusUnavailable, MemoryBus
from huddle.events.dispatcher import Dispatcher
from huddle.events.models import Event
from huddle.events.redis_bus import RedisStreamBus, stream_name
from huddle.events.schemas import Actor, Envelope
from tests.e2e.server import huddle_env
from tests.events.private_redis import PrivateRedis
from tests.events.test_outbox import _record_workspace_event
from tests.world import build_world


@pytest.fixture
def private_redis(tmp_path: Path):
    server = PrivateRedis(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


class GroupConsumer:
    """Another service reading the bus: consumer group, XACK, dedupe by ``seq``."""

    def __init__(self, url: str, stream: str, group: str = "drill") -> None:
        self._redis = Redis.from_url(
            url, decode_responses=True, socket_connect_timeout=0.5, socket_timeout=2
        )
        self._stream, self._group = stream, group
        self.arrivals: list[int] = []  # every entry read, duplicates included
        self.handled: list[int] = []  # each seq once, in the order first handled
        self.envelopes: dict[int, dict[str, Any]] = {}
        self._task: asyncio.Task[None] | None = None

    async def create_group(self) -> None:
        with contextlib.suppress(ResponseError):  # BUSYGROUP: it exists
            await self._redis.xgroup_create(self._stream, self._group, id="0", mkstream=True)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._redis.aclose()

    async def _run(self) -> None:
        backlog = True  # after (re)connecting, first take what was read but not acked
        while True:
            try:
                await self.create_group()
                reply: Any = await self._redis.xreadgroup(
                    self._group, "c1", {self._stream: "0" if backlog else ">"}, count=100, block=200
                )
                entries = reply[0][1] if reply else []
                if backlog and not entries:
                    backlog = False
                for entry_id, fields in entries:
                    seq = int(fields["seq"])
                    self.arrivals.append(seq)
                    if seq not in self.envelopes:
                        self.envelopes[seq] = json.loads(fields["event"])
                        self.handled.append(seq)
                    await self._redis.xack(self._stream, self._group, entry_id)
            except (RedisError, OSError):
                backlog = True
                await asyncio.sleep(0.1)

    async def wait_for(self, seqs: set[int], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not seqs <= set(self.handled):
            if time.monotonic() > deadline:
                missing = sorted(seqs - set(self.handled))
                raise AssertionError(f"never delivered: {missing[:20]} ({len(missing)})")
            await asyncio.sleep(0.05)


async def _all_events(db: Database) -> list[Event]:
    async with db.read_session() as session:
        return list(await session.scalars(select(Event).order_by(Event.id)))


async def _wait_all_published(db: Database, timeout: float = 60) -> list[Event]:
    deadline = time.monotonic() + timeout
    while True:
        events = await _all_events(db)
        if events and all(e.published_at is not None for e in events):
            return events
        if time.monotonic() > deadline:
            left = sum(e.published_at is None for e in events)
            raise AssertionError(f"{left} events never published")
        await asyncio.sleep(0.05)


def _envelope(seq: int) -> Envelope:
    return Envelope(
        id=seq,
        type="workspace.updated",
        topic="workspace:00000000-0000-0000-0000-000000000001",
        workspace_id=None,
        subject_id=None,
        actor=Actor.system(),
        data={"n": seq},
        created_at="2026-12-01T00:00:00Z",  # type: ignore[arg-type]
    )


async def test_republishing_is_harmless_and_the_stream_is_in_seq_order(redis_settings):
    bus = RedisStreamBus(redis_settings["redis_url"], redis_settings["redis_key_prefix"], 1000)
    raw = Redis.from_url(redis_settings["redis_url"], decode_responses=True)
    try:
        await bus.publish([_envelope(n) for n in (1, 2, 3)])
        await bus.publish([_envelope(n) for n in (2, 3, 4, 5)])  # a retried, longer batch
        await bus.publish([_envelope(n) for n in (1, 2)])  # a new leader republishing
        entries = await raw.xrange(bus.stream)
        assert [entry_id for entry_id, _ in entries] == ["1-0", "2-0", "3-0", "4-0", "5-0"]
        fields = entries[3][1]
        assert fields["seq"] == "4" and fields["type"] == "workspace.updated"
        assert json.loads(fields["event"]) == _envelope(4).model_dump(mode="json")
    finally:
        await bus.aclose()
        await raw.aclose()


async def test_a_bus_that_is_down_raises_bus_unavailable(tmp_path):
    server = PrivateRedis(tmp_path / "redis")  # a port nothing listens on
    bus = RedisStreamBus(server.url, "x:", 1000)
    try:
        with pytest.raises(BusUnavailable):
            await bus.publish([_envelope(1)])
    finally:
        await bus.aclose()


class FlakyBus(MemoryBus):
    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures
        self.calls = 0

    async def publish(self, events: Sequence[Envelope]) -> None:
        self.calls += 1
        if self.failures:
            self.failures -= 1
            raise BusUnavailable("down for the test")
        await super().publish(events)


async def test_the_dispatcher_retries_a_refused_batch_and_keeps_order(settings):
    db = Database(settings)
    bus = FlakyBus(failures=3)
    got: list[int] = []

    async def collect(event: Envelope) -> None:
        got.append(event.id)

    bus.subscribe(collect)
    dispatcher = Dispatcher(db, bus, poll_interval=0.05, retry_max=0.05)
    try:
        for n in range(5):
            async with db.write_session() as session:
                await _record_workspace_event(session, f"w{n}")
                await session.commit()
        dispatcher.start()
        deadline = time.monotonic() + 10
        while len(got) < 5 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert got == [1, 2, 3, 4, 5]
        assert bus.calls >= 4  # three refusals, then the same batch accepted
        assert dispatcher.bus_error is None and dispatcher.is_leader
        assert all(e.published_at is not None for e in await _all_events(db))
    finally:
        await dispatcher.stop()
        await db.dispose()


async def test_redis_outage_while_tasks_are_created_loses_nothing(
    make_settings, start_app, private_redis
):
    settings = make_settings(
        redis_url=private_redis.url,
        redis_key_prefix="drill:",
        event_poll_interval=0.1,
        event_retry_max=0.2,
    )
    consumer = GroupConsumer(private_redis.url, stream_name("drill:"))
    await consumer.create_group()
    consumer.start()
    app = create_app(settings)
    client = await start_app(app)
    try:
        world = await build_world(client, app)

        async def create_tasks(start: int, count: int) -> None:
            for n in range(start, start + count):
                await world.ok(
                    "member", "POST", "/api/projects/{P}/tasks", 201, json={"title": f"t{n}"}
                )

        channel = await world.ok(
            "admin", "POST", "/api/workspaces/{W}/channels", 201, json={"name": "ops"}
        )
        await create_tasks(0, 15)
        private_redis.stop()
        await create_tasks(15, 15)  # the API goes on while Redis is down:
        await world.ok(  # rate-limited writes (counted in process meanwhile)
            "member", "POST", f"/api/channels/{channel['id']}/messages", 201, json={"content": "hi"}
        )
        login = await client.post(  # and sign-in
            "/api/auth/token", data={"username": "member", "password": "correct horse battery"}
        )
        assert login.status_code == 200, login.text
        await asyncio.sleep(0.5)  # the dispatcher retries meanwhile
        unpublished = [e for e in await _all_events(app.state.db) if e.published_at is None]
        assert len(unpublished) >= 15
        assert app.state.dispatcher.bus_error is not None
        private_redis.start()
        await create_tasks(30, 15)
        events = await _wait_all_published(app.state.db)
        seqs = [e.seq for e in events]
        assert sorted(seqs) == list(range(1, len(events) + 1))  # gapless
        await consumer.wait_for(set(seqs))
        # Every event reached the consumer once after deduplication, in seq order.
        assert consumer.handled == sorted(consumer.handled)
        assert set(consumer.handled) == set(seqs)
        assert sum(e.type == "task.created" for e in events) == 2 + 45
        assert sum(e.type == "message.created" for e in events) == 1
        # The same envelope as /api/events serves.
        feed = (await world.call("admin", "GET", "/api/events", params={"limit": 200})).json()
        for item in feed["items"]:
            assert consumer.envelopes[item["id"]] == item
    finally:
        await consumer.stop()


def _worker_env(tmp_path: Path, settings: Any, poll_interval: str) -> dict[str, str]:
    """A `huddle worker`'s environment: the test's database, Redis and key prefix."""
    return huddle_env(
        tmp_path,
        database_url=settings.database_url,
        redis_url=str(settings.redis_url),
        redis_key_prefix=settings.redis_key_prefix,
        event_poll_interval=poll_interval,
        secret_key=settings.signing_key,
        log_level="INFO",
    )


def _worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "huddle", "worker"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=out,
        )


def _wait_log(log: Path, text: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while text not in log.read_text(errors="replace"):
        if time.monotonic() > deadline:
            raise AssertionError(f"{log.name} never said {text!r}:\n{log.read_text()}")
        time.sleep(0.05)


async def test_killing_the_leading_worker_mid_stream_loses_nothing(
    make_settings, start_app, private_redis, tmp_path
):
    """Two `huddle worker` processes (advisory lock on PostgreSQL, file lock on SQLite);
    the leader is killed without a chance to clean up; the standby takes over."""
    prefix = "failover:"
    settings = make_settings(
        redis_url=private_redis.url, redis_key_prefix=prefix, embedded_worker=False
    )
    env = _worker_env(tmp_path, settings, poll_interval="0.2")
    logs = [tmp_path / "worker-a.log", tmp_path / "worker-b.log"]
    leader = _worker(env, logs[0])
    standby: subprocess.Popen[bytes] | None = None
    consumer = GroupConsumer(private_redis.url, stream_name(prefix))
    await consumer.create_group()
    consumer.start()
    app = create_app(settings)
    client = await start_app(app)
    try:
        _wait_log(logs[0], "now dispatches events")
        standby = _worker(env, logs[1])
        _wait_log(logs[1], "worker running")
        world = await build_world(client, app)
        for n in range(60):
            await world.ok("member", "POST", "/api/projects/{P}/tasks", 201, json={"title": f"{n}"})
            if n == 20:
                os.kill(leader.pid, signal.SIGKILL)  # no goodbye: its lock dies with it
                leader.wait(10)
        events = await _wait_all_published(app.state.db)
        _wait_log(logs[1], "now dispatches events")
        seqs = [e.seq for e in events]
        assert sorted(seqs) == list(range(1, len(events) + 1))
        await consumer.wait_for(set(seqs))
        assert consumer.handled == sorted(consumer.handled)
        async with app.state.db.read_session() as session:
            tasks = await session.scalar(
                select(func.count()).select_from(Event).where(Event.type == "task.created")
            )
        assert tasks == 2 + 60
    finally:
        await consumer.stop()
        for process in (leader, standby):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    process.kill()


def test_worker_refuses_to_run_without_redis(tmp_path):
    env = huddle_env(tmp_path, database_url=f"sqlite+aiosqlite:///{tmp_path}/w.db")
    result = subprocess.run(
        [sys.executable, "-m", "huddle", "worker"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "needs HUDDLE_REDIS_URL" in result.stderr


async def test_the_api_wakes_a_separate_worker_at_once(
    make_settings, start_app, private_redis, tmp_path
):
    """With HUDDLE_EMBEDDED_WORKER=false a commit is announced over Redis: the worker
    publishes at once instead of at its next poll (an hour away here)."""
    prefix = "wake:"
    settings = make_settings(
        redis_url=private_redis.url, redis_key_prefix=prefix, embedded_worker=False
    )
    env = _worker_env(tmp_path, settings, poll_interval="3600")
    log = tmp_path / "worker.log"
    worker = _worker(env, log)
    app = create_app(settings)
    client = await start_app(app)
    try:
        _wait_log(log, "worker running")
        await asyncio.sleep(0.5)  # its first pass (at start) is done; now it only waits
        world = await build_world(client, app)
        task = await world.ok(
            "member", "POST", "/api/projects/{P}/tasks", 201, json={"title": "Now"}
        )
        events = await _wait_all_published(app.state.db, timeout=10)
        assert any(e.subject_id is not None and str(e.subject_id) == task["id"] for e in events)
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(15)
        except subprocess.TimeoutExpired:
            worker.kill()
