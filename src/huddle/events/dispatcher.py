"""The dispatcher: gives committed events their ``seq`` and publishes them, in order.

Why ``seq`` and not the row id: ids come from a sequence at INSERT time, but
transactions commit in any order, so a reader resuming "after id 41" could miss an
event 40 that committed later. The dispatcher only ever sees committed rows; it numbers
them 1, 2, 3… in the order it publishes them, so a reader resuming "after seq N" misses
nothing.

One dispatcher works at a time:

* On PostgreSQL the leader holds a session-level advisory lock on a dedicated
  connection; the others retry every poll interval and take over when the leader's
  connection goes away. Each numbering transaction also takes a transaction-level
  advisory lock, so even two overlapping leaders could never hand out a seq twice.
* On SQLite (several processes on one machine: ``--workers``, ``huddle worker``) the
  leader holds an exclusive ``flock`` on ``<database file>.dispatcher.lock``, which the
  kernel releases when the process dies; the numbering transaction is also
  ``BEGIN IMMEDIATE``, serialised by the database itself.

Each pass: (1) in one transaction, number up to ``batch`` unnumbered events in id order
and commit; (2) hand them to the bus in seq order; (3) mark them published, and in the
same transaction let the ``on_published`` hooks write what follows from publication
(webhook deliveries), so an event is never marked without them. Events numbered but
not marked (a crash between 1 and 3, or a bus that refused the batch) are published
again: delivery is at least once, and consumers deduplicate by ``id``.

While the bus refuses (:class:`BusUnavailable`) the leader keeps its leadership and
retries the same batch with exponential backoff up to ``HUDDLE_EVENT_RETRY_MAX``
seconds; changes go on committing meanwhile and are published, in order, once the bus
is back. Any other failure (the database) gives leadership up and starts over.

A pass runs when a request that recorded events commits (``wake``), and every
``HUDDLE_EVENT_POLL_INTERVAL`` seconds for events committed by other processes.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from contextlib import suppress

from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from huddle.core.background import stop_task
from huddle.core.db import Database, commit
from huddle.core.observability import DISPATCH_LAG, EVENTS_DISPATCHED
from huddle.core.time import utcnow
from huddle.events.bus import BusUnavailable, EventBus
from huddle.events.models import Event
from huddle.events.service import envelope

log = logging.getLogger("huddle.events")

LEADER_LOCK = 0x48554444_4C45  # advisory lock held by the leading dispatcher's connection
NUMBERING_LOCK = LEADER_LOCK + 1  # transaction lock around each numbering batch


def _sqlite_lock_path(db: Database) -> str | None:
    """The leader's lock file beside a SQLite database file (None: in memory)."""
    database = db.engine.url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return database + ".dispatcher.lock"


PublishedHook = Callable[[AsyncSession, Sequence[Event]], Awaitable[None]]


class Dispatcher:
    def __init__(
        self,
        db: Database,
        bus: EventBus,
        poll_interval: float,
        batch: int = 500,
        *,
        retry_max: float = 5.0,
        on_published: Sequence[PublishedHook] = (),
    ) -> None:
        self._db = db
        self._bus = bus
        self._poll = poll_interval
        self._batch = batch
        self._retry_max = retry_max
        self._retry_delay = 0.0
        self._on_published = list(on_published)
        self.bus_error: str | None = None  # why the bus refused the last batch, if it did
        self._wake = asyncio.Event()
        self._pass_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._leader_conn: AsyncConnection | None = None
        self._postgres = db.engine.dialect.name == "postgresql"
        self._lock_path = None if self._postgres else _sqlite_lock_path(db)
        self._lock_fd: int | None = None

    @property
    def is_leader(self) -> bool:
        if self._postgres:
            return self._leader_conn is not None
        return self._lock_path is None or self._lock_fd is not None

    async def wake(self) -> None:
        """Ask for a pass soon (called after a commit that recorded events)."""
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="huddle-dispatcher")

    async def stop(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109 - bounded wait
        """Let the current pass finish (never cancel one mid-transaction), then stop."""
        self._stopping = True
        self._wake.set()
        await stop_task(self._task, timeout)
        self._task = None
        await self._release_leadership()

    async def _run(self) -> None:
        while not self._stopping:
            # Woken by a commit that recorded events: no need to look before numbering.
            woken = self._wake.is_set()
            self._wake.clear()
            try:
                if await self._ensure_leadership():
                    while (
                        await self.dispatch_pending(probe=not woken) == self._batch
                        and not self._stopping
                    ):
                        pass
            except asyncio.CancelledError:
                raise
            except BusUnavailable as exc:
                # Keep leadership; wait, then publish the same batch again.
                self._retry_delay = min(max(self._retry_delay * 2, 0.1), self._retry_max)
                if self.bus_error is None:
                    log.warning("event bus unavailable (%s); retrying", exc)
                self.bus_error = str(exc)
                await self._pause(self._retry_delay, wakeable=False)
                continue
            except Exception:
                log.exception("event dispatch failed; retrying")
                await self._release_leadership()
            if self._stopping:
                break
            await self._pause(self._poll, wakeable=True)

    async def _pause(self, seconds: float, *, wakeable: bool) -> None:
        """Sleep until the next pass; a commit's ``wake`` cuts it short unless the bus is
        down (a retry then waits its backoff whatever happens; ``stop`` still ends it)."""
        deadline = asyncio.get_running_loop().time() + seconds
        while not self._stopping:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                return
            with suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), left)
            if wakeable or self._stopping:
                return
            self._wake.clear()

    async def _ensure_leadership(self) -> bool:
        if self.is_leader:
            return True
        if not self._postgres:
            return self._lock_sqlite()
        conn = await self._db.engine.connect()
        try:
            got = (
                await conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": LEADER_LOCK})
            ).scalar()
            await conn.commit()
        except Exception:
            await conn.close()
            raise
        if got:
            self._leader_conn = conn
            log.info("this process now dispatches events")
            return True
        await conn.close()
        return False

    def _lock_sqlite(self) -> bool:
        assert self._lock_path is not None
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._lock_fd = fd
        log.info("this process now dispatches events")
        return True

    async def _release_leadership(self) -> None:
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            with suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
        conn, self._leader_conn = self._leader_conn, None
        if conn is not None:
            with suppress(Exception):
                await conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": LEADER_LOCK})
                await conn.commit()
            with suppress(Exception):
                await conn.close()

    async def flush(self) -> int:
        """Dispatch everything committed so far (tests, the CLI); returns how many."""
        total = 0
        if await self._ensure_leadership():
            while count := await self.dispatch_pending():
                total += count
        return total

    async def dispatch_pending(self, *, probe: bool = True) -> int:
        """One pass: number, publish and mark a batch. Returns how many were numbered.

        ``probe`` first checks, without a write lock, whether anything is pending (most
        timer passes find nothing). Also callable directly (tests, ``huddle worker``);
        passes in one process never overlap.
        """
        async with self._pass_lock:
            if not await self._ensure_leadership():
                return 0
            events = await self._number_batch(probe)
            if not events:
                return 0
            await self._bus.publish([envelope(event) for event in events])
            if self.bus_error is not None:
                log.info("event bus is back")
            self.bus_error, self._retry_delay = None, 0.0
            async with self._db.write_session() as session:
                await session.execute(
                    update(Event)
                    .where(Event.id.in_([e.id for e in events]))
                    .values(published_at=utcnow())
                )
                for hook in self._on_published:
                    await hook(session, events)
                await commit(session)
            EVENTS_DISPATCHED.inc(len(events))
            now = utcnow()
            for event in events:
                DISPATCH_LAG.observe(max(0.0, (now - event.created_at).total_seconds()))
            return len(events)

    async def _number_batch(self, probe: bool) -> list[Event]:
        if probe:  # a cheap read: most timer passes find nothing and take no write lock
            async with self._db.read_session() as session:
                first = select(Event.id).where(Event.published_at.is_(None)).limit(1)
                if await session.scalar(first) is None:
                    return []
        async with self._db.write_session() as session:
            if self._postgres:
                await session.execute(
                    text("SELECT pg_advisory_xact_lock(:k)"), {"k": NUMBERING_LOCK}
                )
            # Numbered but never marked published (a refused batch, a crash in between):
            # publish those again, in seq order, before numbering anything new — a later
            # seq reaching the bus first would make the bus take them for duplicates.
            unmarked = list(
                await session.scalars(
                    select(Event)
                    .where(Event.published_at.is_(None), Event.seq.is_not(None))
                    .order_by(Event.seq)
                    .limit(self._batch)
                )
            )
            if unmarked:
                return unmarked
            pending = list(
                await session.scalars(
                    select(Event)
                    .where(Event.published_at.is_(None))
                    .order_by(Event.id)
                    .limit(self._batch)
                )
            )
            if not pending:
                return []
            last = await session.scalar(select(func.coalesce(func.max(Event.seq), 0)))
            for offset, event in enumerate(pending, start=1):
                event.seq = int(last or 0) + offset
            await session.commit()
            return pending
