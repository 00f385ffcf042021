"""Database engine and the per-request session.

One async engine per app, built by :func:`create_engine`. The same code runs on
``sqlite+aiosqlite`` and ``postgresql+asyncpg``:

* SQLite gets WAL, foreign keys, a busy timeout, and *immediate* write transactions:
  sessions opened for a write (any non-GET request) start with ``BEGIN IMMEDIATE`` so
  two writers queue on the busy timeout instead of failing with "database is locked"
  when a read transaction tries to upgrade.
* PostgreSQL URLs are normalised for asyncpg (``postgres://``, ``sslmode=``), and
  statement caches are turned off behind poolers such as PgBouncer or Neon's.

The request owns the transaction: :func:`get_session` is a function-scoped dependency,
so it commits after the endpoint returns and *before* the response is sent. A failing
commit therefore becomes an error response, never a 201 for lost data.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from starlette.datastructures import State

from huddle.config import Settings
from huddle.core import crypto
from huddle.core.errors import AppError, ServiceUnavailable
from huddle.core.observability import instrument_engine

_SQLITE_BEGIN = "huddle_sqlite_begin"
log = logging.getLogger("huddle.db")


def normalize_database_url(raw: str) -> tuple[URL, dict[str, Any]]:
    """Return the SQLAlchemy URL and extra ``connect_args`` for a user-given database URL."""
    url = make_url(raw)
    connect_args: dict[str, Any] = {}
    if url.get_backend_name() in ("postgres", "postgresql"):
        url = url.set(drivername="postgresql+asyncpg")
        query = dict(url.query)
        sslmode = query.pop("sslmode", None)
        if sslmode and "ssl" not in query:
            # asyncpg spells libpq's sslmode as ssl (disable/allow/prefer/require/verify-*).
            query["ssl"] = sslmode
        # libpq-only parameters asyncpg would reject.
        for key in ("channel_binding", "gssencmode", "target_session_attrs"):
            query.pop(key, None)
        query.pop("pgbouncer", None)
        url = url.set(query=query)
    return url, connect_args


def behind_pooler(raw: str) -> bool:
    """Guess whether a PostgreSQL URL points at a transaction pooler."""
    url = make_url(raw)
    host = url.host or ""
    return "-pooler" in host or str(url.query.get("pgbouncer", "")).lower() in ("1", "true")


def create_engine(settings: Settings) -> AsyncEngine:
    url, connect_args = normalize_database_url(settings.database_url)
    kwargs: dict[str, Any] = {"echo": settings.database_echo}
    if url.get_backend_name() == "sqlite":
        connect_args["timeout"] = settings.sqlite_busy_timeout_ms / 1000
        engine = create_async_engine(url, connect_args=connect_args, **kwargs)
        _configure_sqlite(
            engine, settings.sqlite_busy_timeout_ms, secure_delete=bool(settings.encryption_keys)
        )
        return engine

    statement_cache = settings.database_statement_cache
    if statement_cache is None:
        statement_cache = not behind_pooler(settings.database_url)
    if not statement_cache:
        connect_args["statement_cache_size"] = 0
        connect_args["prepared_statement_name_func"] = lambda: f"__huddle_{uuid.uuid4().hex}__"
        url = url.update_query_dict({"prepared_statement_cache_size": "0"})
    return create_async_engine(
        url,
        connect_args=connect_args,
        pool_size=settings.database_pool_size,
        max_overflow=settings.database_max_overflow,
        pool_pre_ping=True,
        **kwargs,
    )


def _configure_sqlite(engine: AsyncEngine, busy_timeout_ms: int, *, secure_delete: bool) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        if secure_delete:
            # With encryption at rest, deleted and overwritten rows (the plaintext a key
            # rotation replaced) are zeroed in the file instead of lingering in free pages.
            cursor.execute("PRAGMA secure_delete=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        mode = conn.get_execution_options().get(_SQLITE_BEGIN, "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")


def create_sessionmakers(
    engine: AsyncEngine,
) -> tuple[async_sessionmaker[AsyncSession], async_sessionmaker[AsyncSession]]:
    """Return (read, write) session factories; on SQLite the write one begins IMMEDIATE."""
    read = async_sessionmaker(engine, expire_on_commit=False, autoflush=True)
    if engine.dialect.name == "sqlite":
        write_engine = engine.execution_options(**{_SQLITE_BEGIN: "IMMEDIATE"})
        write = async_sessionmaker(write_engine, expire_on_commit=False, autoflush=True)
    else:
        write = read
    return read, write


class Database:
    """The engine and session factories one app instance uses.

    Opening it also installs the process's encryption keyring from the same settings
    (:func:`huddle.core.crypto.configure`): every process that reads or writes content
    — the app, ``huddle worker``, the CLI commands — does so through a Database.
    """

    def __init__(self, settings: Settings) -> None:
        self.keyring = crypto.configure(settings.encryption_keys)
        self.engine = create_engine(settings)
        instrument_engine(self.engine, settings.slow_query_ms)
        self.read_session, self.write_session = create_sessionmakers(self.engine)

    async def dispose(self) -> None:
        await self.engine.dispose()


_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_AFTER_COMMIT = "huddle_after_commit"
#: ``session.info`` key: wall-clock time the request's session was opened (its snapshot
#: starts at the first query, so this is never later than the data it reads).
SESSION_STARTED = "huddle.started"

AfterCommit = Callable[[], Awaitable[None]]


def after_commit(session: AsyncSession, hook: AfterCommit, *, key: object = None) -> None:
    """Run ``hook`` once this session's transaction has committed (never on rollback).

    Used for work that must only follow durable changes: waking the event dispatcher,
    invalidating cached roles, sending mail. With ``key``, a hook is registered once.
    """
    hooks: dict[object, AfterCommit] = session.info.setdefault(_AFTER_COMMIT, {})
    hooks.setdefault(key if key is not None else object(), hook)


async def commit(session: AsyncSession) -> None:
    """Commit, then run the after-commit hooks (errors in hooks are logged, not raised)."""
    await session.commit()
    hooks: dict[object, AfterCommit] = session.info.pop(_AFTER_COMMIT, {})
    for hook in hooks.values():
        try:
            await hook()
        except Exception:
            log.exception("after-commit hook failed")


def discard_hooks(session: AsyncSession) -> None:
    session.info.pop(_AFTER_COMMIT, None)


@asynccontextmanager
async def unit_of_work(state: State, *, write: bool) -> AsyncIterator[AsyncSession]:
    """One transaction of service work: committed when the block ends (then the
    after-commit hooks run), rolled back on an exception. HTTP requests get theirs from
    :func:`get_session`; the WebSocket gateway and background callers use this directly.

    An :class:`AppError` with ``keep_changes`` commits the work done so far; any other
    exception rolls back.
    """
    db: Database = state.db
    gate = getattr(state, "key_gate", None)
    if gate is not None and gate.problem is not None:
        raise ServiceUnavailable(gate.problem)
    factory = db.write_session if write else db.read_session
    async with factory() as session:
        # Services record events; once this transaction commits the dispatcher is woken.
        session.info["huddle.wake_dispatcher"] = state.wake_dispatcher
        session.info[SESSION_STARTED] = time.time()
        try:
            yield session
        except AppError as exc:
            if exc.keep_changes:
                await commit(session)
            else:
                discard_hooks(session)
                await session.rollback()
            raise
        except BaseException:
            discard_hooks(session)
            await session.rollback()
            raise
        await commit(session)


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """The request's session: committed after the endpoint returns, before the response."""
    write = request.method not in _SAFE_METHODS
    async with unit_of_work(request.app.state, write=write) as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
