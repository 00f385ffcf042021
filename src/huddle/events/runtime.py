"""The event machinery of one process: buses, the dispatcher and the webhook sender.

Built the same way by the API's lifespan and by ``huddle worker``:

* the **relay** is the Redis stream when ``HUDDLE_REDIS_URL`` is set (every process's
  WebSocket hub reads it, and with ``HUDDLE_EVENT_BUS=redis`` it is also the bus other
  services read), else the in-process :class:`MemoryBus`;
* with ``HUDDLE_EVENT_BUS=dapr`` a :class:`Forwarder` feeds the Dapr sidecar from the
  published events with its own cursor, so a sidecar that is down holds back neither
  WebSocket clients nor webhooks;
* the dispatcher and the webhook sender run when ``HUDDLE_EMBEDDED_WORKER`` is true (the
  default) or in ``huddle worker``. Several may run: one dispatcher leads at a time, and
  senders claim deliveries without overlapping.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass, field

from redis.asyncio import Redis
from redis.exceptions import RedisError
from starlette.datastructures import State

from huddle.config import Settings
from huddle.core.db import Database
from huddle.events.bus import EventBus, MemoryBus
from huddle.events.dispatcher import Dispatcher, PublishedHook
from huddle.events.forwarder import Forwarder
from huddle.events.redis_bus import RedisStreamBus
from huddle.events.webhooks import WebhookSender
from huddle.search.embeddings import Embedder, build_embedder
from huddle.search.vectors import VectorIndex


def embedder_for(settings: Settings) -> Embedder:
    return build_embedder(
        settings.embedding_model, settings.llm_base_url, settings.llm_api_key, settings.llm_timeout
    )


def wake_channel(prefix: str) -> str:
    """Redis pub/sub channel on which API processes wake ``huddle worker``s after a
    commit that recorded events (without it a worker would wait for its next poll)."""
    return f"{prefix}events:wake"


@dataclass
class EventRuntime:
    memory_bus: MemoryBus
    relay: EventBus
    dispatcher: Dispatcher
    sender: WebhookSender
    forwarders: list[Forwarder]
    run_workers: bool
    redis_url: str | None = None
    prefix: str = ""
    _started: bool = field(default=False, init=False)
    _listener: asyncio.Task[None] | None = field(default=None, init=False)

    def start(self) -> None:
        if self.run_workers:
            self.dispatcher.start()
            self.sender.start()
            for forwarder in self.forwarders:
                forwarder.start()
            if self.redis_url:
                self._listener = asyncio.create_task(self._listen_for_wakes(self.redis_url))
            self._started = True

    async def _listen_for_wakes(self, url: str) -> None:
        redis = Redis.from_url(url, socket_connect_timeout=3)
        try:
            while True:
                pubsub = redis.pubsub(ignore_subscribe_messages=True)
                try:
                    await pubsub.subscribe(wake_channel(self.prefix))
                    async for _message in pubsub.listen():
                        await self.dispatcher.wake()
                except (RedisError, OSError):
                    await asyncio.sleep(1)  # Redis away: polling still runs meanwhile
                finally:
                    with suppress(Exception):
                        await pubsub.aclose()
        finally:
            await redis.aclose()

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with suppress(asyncio.CancelledError):
                await self._listener
        if self._started:
            await self.dispatcher.stop()
            for forwarder in self.forwarders:
                await forwarder.stop()
        await self.sender.stop()
        await self.relay.aclose()
        for forwarder in self.forwarders:
            await forwarder.bus.aclose()


def build_event_runtime(
    settings: Settings, db: Database, *, run_workers: bool, vectors: VectorIndex | None = None
) -> EventRuntime:
    memory_bus = MemoryBus()
    relay: EventBus = (
        RedisStreamBus(settings.redis_url, settings.redis_key_prefix, settings.redis_stream_maxlen)
        if settings.redis_url
        else memory_bus
    )
    sender = WebhookSender(db, settings)
    hooks: list[PublishedHook] = [sender.enqueue]
    dispatcher = Dispatcher(
        db,
        relay,
        settings.event_poll_interval,
        settings.event_batch,
        retry_max=settings.event_retry_max,
        on_published=hooks,
    )
    forwarders: list[Forwarder] = []

    def consume(name: str, bus: EventBus, *, replay_history: bool = False) -> None:
        """Feed ``bus`` the published events after commit, in seq order, from its own
        cursor (see :mod:`huddle.events.forwarder`)."""
        forwarder = Forwarder(
            name,
            db,
            bus,
            dispatcher,
            poll_interval=settings.event_poll_interval,
            batch=settings.event_batch,
            retry_max=settings.event_retry_max,
            replay_history=replay_history,
        )
        hooks.append(forwarder.on_published)
        forwarders.append(forwarder)

    if settings.effective_event_bus == "dapr":
        from huddle.events.dapr import DaprBus

        consume("dapr", DaprBus(settings))
    if settings.semantic_index:
        # The search index is fed like an integration bus (see huddle.search.indexer).
        from huddle.search.indexer import SemanticIndexer, cursor_name

        embedder = embedder_for(settings)
        indexer = SemanticIndexer(db, embedder, vectors or VectorIndex())
        consume(cursor_name(embedder.name), indexer, replay_history=True)
    # Consumers that change things do it in units of work of their own.
    state = State()
    state.db = db
    state.wake_dispatcher = dispatcher.wake
    # Automation rules run the same way (see huddle.automation.engine).
    from huddle.automation.engine import CURSOR as AUTOMATIONS
    from huddle.automation.engine import AutomationEngine

    consume(AUTOMATIONS, AutomationEngine(state))
    if settings.llm_configured:
        # @ai in chat is answered the same way (see huddle.ai.mentions).
        from huddle.ai.llm import LLM
        from huddle.ai.mentions import CURSOR, MentionResponder

        consume(CURSOR, MentionResponder(state, LLM(settings, state), settings.ai_context_tokens))
    return EventRuntime(
        memory_bus,
        relay,
        dispatcher,
        sender,
        forwarders,
        run_workers,
        settings.redis_url,
        settings.redis_key_prefix,
    )


def remote_wake(redis: Redis, prefix: str) -> Callable[[], Awaitable[None]]:
    """For API processes that leave dispatching to ``huddle worker``: announce commits."""
    channel = wake_channel(prefix)

    async def wake() -> None:
        with suppress(RedisError, OSError):  # the worker still polls
            await redis.publish(channel, "1")

    return wake
