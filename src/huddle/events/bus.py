"""Where the dispatcher hands published events (``HUDDLE_EVENT_BUS``).

Every bus has the same small interface: ``publish(batch)`` takes envelopes in ``seq``
order and returns only once the bus has accepted all of them, or raises
:class:`BusUnavailable` (the dispatcher then retries the same batch with backoff, so a
bus sees an event again after a failure: delivery is at least once, and every consumer
deduplicates by the envelope's ``id``).

* :class:`MemoryBus` — in-process subscribers (one process; the default without Redis);
* :class:`huddle.events.redis_bus.RedisStreamBus` — a Redis stream whose entry ids are
  derived from ``seq``, read by the WebSocket hub of every instance and by other
  services through consumer groups;
* :class:`huddle.events.dapr.DaprBus` — the Dapr sidecar's pub/sub API, for other
  services (fan-out between Huddle instances stays on Redis); fed by a
  :class:`huddle.events.forwarder.Forwarder` with its own cursor.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from huddle.events.schemas import Envelope

log = logging.getLogger("huddle.events")

Subscriber = Callable[[Envelope], Awaitable[None]]


class BusUnavailable(Exception):
    """The bus did not accept a batch (down, timing out, refusing): retry it later."""


class EventBus(Protocol):
    async def publish(self, events: Sequence[Envelope]) -> None:
        """Hand ``events`` (in seq order) to the bus; return once all are accepted."""

    async def aclose(self) -> None:
        """Release connections."""


class MemoryBus:
    """In-process fan-out to subscribers (the WebSocket hub, tests), in publish order."""

    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        self._subscribers.append(subscriber)
        return lambda: self._subscribers.remove(subscriber)

    async def publish(self, events: Sequence[Envelope]) -> None:
        for event in events:
            for subscriber in list(self._subscribers):
                try:
                    await subscriber(event)
                except Exception:
                    # One broken subscriber must not stop delivery to the others.
                    log.exception("event subscriber failed on event %s", event.id)

    async def aclose(self) -> None:
        """Nothing to release: subscribers unsubscribe themselves."""
