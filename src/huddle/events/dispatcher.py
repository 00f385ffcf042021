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
* On SQLite the numbering transaction is ``BEGIN IMMEDIATE``: writers are serialised
  by the database itself.

Each pass: (1) in one transaction, number up to ``batch`` unnumbered events in id order
and commit; (2) hand them to the bus in seq order; (3) mark them published. Events
numbered but not marked (a crash between 1 and 3) are published again on the next
pass: delivery is at least once, and consumers deduplicate by ``id``.

A pass runs when a request that recorded events commits (``wake``), and every
``HUDDLE_EVENT_POLL_INTERVAL`` seconds for events committed by other processes.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import suppress

from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from huddle.core.db import Database
from huddle.core.time import utcnow
from huddle.events.bus import EventBus
from huddle.events.models import Event
from huddle.events.service import envelope

log = logging.getLogger("huddle.events")

LEADER_LOCK = 0x48554444_4C45  # advisory lock held by the leading dispatcher's connection
NUMBERING_LOCK = LEADER_LOCK + 1  # transaction lock around each numbering batch


class Dispatcher:
    def __init__(self, db: Database, bus: EventBus, poll_interval: float, batch: int = 500) -> None:
        self._db = db
        self._bus = bus
        self._poll = poll_interval
        self._batch = batch
        self._wake = asyncio.Event()
        self._pass_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._leader_conn: AsyncConnection | None = None
        self._postgres = db.engine.dialect.name == "postgresql"

    @property
    def is_leader(self) -> bool:
        return not self._postgres or self._leader_conn is not None

    async def wake(self) -> None:
        """Ask for a pass soon (called after a commit that recorded events)."""
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="huddle-dispatcher")

    async def stop(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109 - bounded wait
        """Let the current pass finish (never cancel one mid-transaction), then stop."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout)
            except TimeoutError:
                self._task.cancel()
                with suppress(asyncio.CancelledError):
                    await self._task
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
            except Exception:
                log.exception("event dispatch failed; retrying")
                await self._release_leadership()
            if self._stopping:
                break
            with suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll)

    async def _ensure_leadership(self) -> bool:
        if not self._postgres or self._leader_conn is not None:
            return True
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

    async def _release_leadership(self) -> None:
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
            if not self.is_leader:
                return 0
            events = await self._number_batch(probe)
            if not events:
                return 0
            for event in events:
                await self._bus.publish(envelope(event))
            async with self._db.write_session() as session:
                await session.execute(
                    update(Event)
                    .where(Event.id.in_([e.id for e in events]))
                    .values(published_at=utcnow())
                )
                await session.commit()
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
            pending = list(
                await session.scalars(
                    select(Event)
                    .where(Event.published_at.is_(None))
                    .order_by(Event.id)
                    .limit(self._batch)
                )
            )
            # Numbered but never marked published (a crash in between): publish again first.
            unmarked = sorted((e for e in pending if e.seq is not None), key=lambda e: e.seq or 0)
            if unmarked:
                return unmarked
            if not pending:
                return []
            last = await session.scalar(select(func.coalesce(func.max(Event.seq), 0)))
            for offset, event in enumerate(pending, start=1):
                event.seq = int(last or 0) + offset
            await session.commit()
            return pending
