"""How events and ephemeral frames reach the hub of every server process.

* :class:`LocalFanout` (no Redis): the dispatcher's in-process bus feeds this process's
  hub directly; ephemeral frames go straight to it.
* :class:`RedisFanout` (``HUDDLE_REDIS_URL``): the dispatcher (one at a time, in any
  process, ``huddle worker`` included) appends each envelope to the Redis event stream
  (:mod:`huddle.events.redis_bus`), and every process's hub reads that stream — so each
  hub sees every event once, in ``seq`` order, whichever process published it. The same
  stream is the ``redis`` event bus other services read. Ephemeral frames (typing,
  presence, call signaling) travel over a Redis pub/sub channel to every process.

Each event is serialised once where it is published; hubs forward the same JSON text.
"""

from __future__ import annotations

import asyncio
import json
import logging
from contextlib import suppress
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Protocol

from redis.asyncio import Redis

from huddle.events.bus import MemoryBus
from huddle.events.redis_bus import stream_name
from huddle.events.schemas import Envelope

if TYPE_CHECKING:
    from huddle.realtime.hub import Hub

log = logging.getLogger("huddle.realtime")


@dataclass(frozen=True)
class Route:
    """Who an ephemeral frame is for: subscribers of ``topic`` (minus ``exclude_user``),
    or the sockets of ``user_id`` that are in the call of ``call_channel``."""

    topic: str | None = None
    exclude_user: str | None = None
    user_id: str | None = None
    call_channel: str | None = None


class Fanout(Protocol):
    async def start(self, hub: Hub) -> None: ...

    async def stop(self) -> None: ...

    async def ephemeral(self, route: Route, frame: str) -> None: ...


class LocalFanout:
    def __init__(self, bus: MemoryBus) -> None:
        self._bus = bus
        self._hub: Hub | None = None
        self._unsubscribe: Any = None

    async def start(self, hub: Hub) -> None:
        self._hub = hub

        async def deliver(event: Envelope) -> None:
            await hub.deliver_event(
                event.id, event.topic, event.type, event.model_dump_json(), event
            )

        self._unsubscribe = self._bus.subscribe(deliver)

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()

    async def ephemeral(self, route: Route, frame: str) -> None:
        if self._hub is not None:
            self._hub.deliver_ephemeral(route, frame)


class RedisFanout:
    def __init__(self, url: str, prefix: str) -> None:
        # Its own client: blocking reads must not share the request path's socket timeout.
        self._redis = Redis.from_url(url, decode_responses=True, socket_connect_timeout=3)
        self._stream = stream_name(prefix)
        self._channel = f"{prefix}ws:ephemeral"
        self._tasks: list[asyncio.Task[None]] = []
        self._ready = asyncio.Event()

    async def start(self, hub: Hub) -> None:
        try:
            start_id: str | None = await self._stream_end()
        except Exception:  # Redis is down: start anyway (/ready says so), catch up later
            log.warning("Redis unreachable at startup; WebSocket fan-out will retry")
            start_id = None
        self._tasks = [
            asyncio.create_task(self._read_events(hub, start_id), name="ws-redis-events"),
            asyncio.create_task(self._read_ephemeral(hub), name="ws-redis-ephemeral"),
        ]
        if start_id is not None:
            # Serve only once ephemeral frames can arrive (typing, presence, signals).
            with suppress(TimeoutError):
                await asyncio.wait_for(self._ready.wait(), 5)

    async def _stream_end(self) -> str:
        """The id of the stream's last entry: reading starts after it (older events are
        the resume path's job, from the events table)."""
        last: Any = await self._redis.xrevrange(self._stream, count=1)
        return str(last[0][0]) if last else "0-0"

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with suppress(asyncio.CancelledError, Exception):
                await task
        await self._redis.aclose()

    async def ephemeral(self, route: Route, frame: str) -> None:
        payload = json.dumps({"route": asdict(route), "frame": frame})
        await self._redis.publish(self._channel, payload)

    async def _read_events(self, hub: Hub, last_id: str | None) -> None:
        while True:
            try:
                if last_id is None:
                    last_id = await self._stream_end()
                batches: Any = await self._redis.xread(
                    {self._stream: last_id}, block=5000, count=500
                )
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("reading the event stream failed; retrying")
                await asyncio.sleep(1)
                continue
            for _stream, entries in batches or []:
                for entry_id, fields in entries:
                    last_id = entry_id
                    try:
                        await hub.deliver_event(
                            int(fields["seq"]), fields["topic"], fields["type"], fields["event"]
                        )
                    except Exception:
                        log.exception("delivering event %s failed", fields.get("seq"))

    async def _read_ephemeral(self, hub: Hub) -> None:
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self._channel)
                self._ready.set()
                message: Any
                async for message in pubsub.listen():
                    data = json.loads(message["data"])
                    hub.deliver_ephemeral(Route(**data["route"]), data["frame"])
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("ephemeral channel failed; resubscribing")
                await asyncio.sleep(1)
            finally:
                with suppress(Exception):
                    await pubsub.aclose()
