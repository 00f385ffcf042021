"""One retention pass at a time, across every process that shares the database.

* PostgreSQL: a session-level advisory lock (``pg_try_advisory_lock``) taken on a
  dedicated connection for the length of the pass; the server releases it if that
  connection dies with its process.
* SQLite: an exclusive ``flock`` on ``<database file>.retention.lock`` (the kernel drops
  it when the process dies), as the event dispatcher does for its leadership; an
  in-memory database, which no other process can open, only needs the in-process guard.

Both are *try* locks: a pass that finds one held is skipped, never queued — the holder
is doing the same work.
"""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

from sqlalchemy import text

from huddle.core.db import Database

log = logging.getLogger("huddle.retention")

#: The advisory lock key ("HUDD" "RT"), next to the dispatcher's leader lock ("HUDD" "LE").
RETENTION_LOCK = 0x48554444_5254

# Passes running in this process, by database URL (a try-lock needs no asyncio.Lock:
# checking and adding happen without an await in between).
_running: set[str] = set()


def _lock_path(db: Database) -> str | None:
    database = db.engine.url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return database + ".retention.lock"


@asynccontextmanager
async def single_runner(db: Database) -> AsyncIterator[bool]:
    """Yield True while this caller is the only retention runner, False if another is."""
    key = db.engine.url.render_as_string(hide_password=True)
    if key in _running:
        yield False
        return
    _running.add(key)
    try:
        if db.engine.dialect.name == "postgresql":
            async with _advisory_lock(db) as acquired:
                yield acquired
        else:
            with _file_lock(_lock_path(db)) as acquired:
                yield acquired
    finally:
        _running.discard(key)


@asynccontextmanager
async def _advisory_lock(db: Database) -> AsyncIterator[bool]:
    conn = await db.engine.connect()
    try:
        got = bool(
            (
                await conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": RETENTION_LOCK})
            ).scalar()
        )
        await conn.commit()
        try:
            yield got
        finally:
            if got:
                try:
                    await conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": RETENTION_LOCK})
                    await conn.commit()
                except Exception:
                    # A pooled connection must never go back still holding the lock.
                    log.warning("could not release the retention lock; dropping its connection")
                    await conn.invalidate()
    finally:
        await conn.close()


@contextmanager
def _file_lock(path: str | None) -> Iterator[bool]:
    if path is None:
        yield True
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
