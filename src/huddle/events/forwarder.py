"""Feeding an integration bus (Dapr) from the event log, at its own pace.

The dispatcher publishes to the relay that WebSocket clients depend on (the Redis
stream, or in-process) and marks events published. An integration bus is fed apart,
from published events, with its own cursor in ``bus_cursors``: while the sidecar or its
broker is down, real-time delivery and webhooks go on, and the forwarder retries with
backoff, then catches up in ``seq`` order. Delivery is at least once (the cursor moves
after the bus accepted a batch); consumers deduplicate by the event id.

The forwarder works only while its process leads event dispatch (one at a time). The
first time a bus is enabled its cursor starts at the latest event published when the
process started: history is not replayed into it (``GET /api/events`` serves that) —
unless it asks for the whole history (``replay_history``, as the search indexer does).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from contextlib import suppress

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from huddle.core.background import stop_task
from huddle.core.db import Database, after_commit
from huddle.events.bus import BusUnavailable, EventBus
from huddle.events.dispatcher import Dispatcher
from huddle.events.models import BusCursor, Event
from huddle.events.service import envelope, latest_seq

log = logging.getLogger("huddle.events")


class Forwarder:
    def __init__(
        self,
        name: str,
        db: Database,
        bus: EventBus,
        dispatcher: Dispatcher,
        *,
        poll_interval: float,
        batch: int = 500,
        retry_max: float = 5.0,
        replay_history: bool = False,
    ) -> None:
        self.name = name
        self._replay_history = replay_history
        self._db = db
        self.bus = bus
        self._dispatcher = dispatcher
        self._poll = poll_interval
        self._batch = batch
        self._retry_max = retry_max
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.bus_error: str | None = None

    async def on_published(self, session: AsyncSession, events: Sequence[Event]) -> None:
        """The dispatcher's hook: look again once the batch is marked published."""

        async def wake() -> None:
            self._wake.set()

        after_commit(session, wake, key=("huddle.forwarder", self.name))

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"huddle-forward-{self.name}")

    async def stop(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109 - bounded wait
        self._stopping = True
        self._wake.set()
        await stop_task(self._task, timeout)
        self._task = None

    async def _run(self) -> None:
        try:  # where a new bus starts: at startup, not at this process's first lead
            await self._cursor()
        except Exception:
            log.exception("reading the %s bus cursor failed; retrying", self.name)
        delay = 0.0
        while not self._stopping:
            self._wake.clear()
            wait = self._poll
            try:
                if self._dispatcher.is_leader:
                    while await self.forward_pending() == self._batch and not self._stopping:
                        pass
                if self.bus_error is not None:
                    log.info("%s bus is back", self.name)
                self.bus_error, delay = None, 0.0
            except asyncio.CancelledError:
                raise
            except BusUnavailable as exc:
                if self.bus_error is None:
                    log.warning("%s bus unavailable (%s); retrying", self.name, exc)
                self.bus_error = str(exc)
                delay = min(max(delay * 2, 0.1), self._retry_max)
                wait = delay
            except Exception:
                log.exception("forwarding events to %s failed; retrying", self.name)
            if self._stopping:
                break
            with suppress(TimeoutError):
                if self.bus_error is None:
                    await asyncio.wait_for(self._wake.wait(), wait)
                else:  # a down bus waits its backoff, however many commits wake us
                    await asyncio.sleep(wait)

    async def _cursor(self) -> int:
        async with self._db.read_session() as session:
            seq = await session.scalar(select(BusCursor.seq).where(BusCursor.name == self.name))
            if seq is not None:
                return int(seq)
            start = 0 if self._replay_history else await latest_seq(session, published=True)
        try:
            async with self._db.write_session() as session:
                session.add(BusCursor(name=self.name, seq=start))
                await session.commit()
        except IntegrityError:  # another process started it first
            return await self._cursor()
        log.info("%s bus starts after event %d", self.name, start)
        return start

    async def forward_pending(self) -> int:
        """Publish the next batch of published events after the cursor; how many."""
        after = await self._cursor()
        async with self._db.read_session() as session:
            events = list(
                await session.scalars(
                    select(Event)
                    .where(Event.seq > after, Event.published_at.is_not(None))
                    .order_by(Event.seq)
                    .limit(self._batch)
                )
            )
        if not events:
            return 0
        await self.bus.publish([envelope(event) for event in events])
        last = events[-1].seq
        async with self._db.write_session() as session:
            await session.execute(
                update(BusCursor)
                .where(BusCursor.name == self.name, BusCursor.seq < last)
                .values(seq=last)
            )
            await session.commit()
        return len(events)
