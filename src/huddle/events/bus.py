"""Where published events go. ``memory`` (the default) delivers to in-process subscribers."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from huddle.events.schemas import Envelope

log = logging.getLogger("huddle.events")

Subscriber = Callable[[Envelope], Awaitable[None]]


class EventBus(Protocol):
    async def publish(self, event: Envelope) -> None:
        """Deliver one event; return only once it has been accepted."""


class MemoryBus:
    """In-process fan-out to subscribers (the WebSocket hub, tests), in publish order."""

    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        self._subscribers.append(subscriber)
        return lambda: self._subscribers.remove(subscriber)

    async def publish(self, event: Envelope) -> None:
        for subscriber in list(self._subscribers):
            try:
                await subscriber(event)
            except Exception:
                # One broken subscriber must not stop delivery to the others.
                log.exception("event subscriber failed on event %s", event.id)
