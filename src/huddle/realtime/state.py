"""Shared ephemeral state of the gateway: presence and call participants.

In memory for one process; in Redis when ``HUDDLE_REDIS_URL`` is set, so every server
process agrees on who is online and who is in which call. Entries carry an expiry that
live connections refresh with each heartbeat, so a crashed process's connections fade
away instead of staying "online" forever.
"""

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from typing import Protocol

from redis.asyncio import Redis


class Presence(Protocol):
    async def connect(self, user_id: uuid.UUID, conn_id: str) -> bool:
        """Register a connection; True if the user just came online."""

    async def disconnect(self, user_id: uuid.UUID, conn_id: str) -> bool:
        """Forget a connection; True if the user just went offline."""

    async def refresh(self, user_id: uuid.UUID, conn_id: str) -> None: ...

    async def online(self, user_ids: list[uuid.UUID]) -> set[uuid.UUID]: ...


class Calls(Protocol):
    async def join(self, channel_id: uuid.UUID, user_id: uuid.UUID, conn_id: str) -> list[str]:
        """Add the user (through this connection) to the channel's call; the participants."""

    async def leave(
        self, channel_id: uuid.UUID, user_id: uuid.UUID, conn_id: str | None
    ) -> list[str] | None:
        """Remove the user (only if through ``conn_id``, when given); the participants,
        or None when they were not in the call."""

    async def participants(self, channel_id: uuid.UUID) -> dict[str, str]:
        """user id → the connection id they joined through."""

    async def refresh(self, channel_id: uuid.UUID, user_id: uuid.UUID, conn_id: str) -> None:
        """Keep this connection's place in the call alive."""


class MemoryPresence:
    def __init__(self) -> None:
        self._conns: dict[uuid.UUID, set[str]] = defaultdict(set)

    async def connect(self, user_id: uuid.UUID, conn_id: str) -> bool:
        first = not self._conns[user_id]
        self._conns[user_id].add(conn_id)
        return first

    async def disconnect(self, user_id: uuid.UUID, conn_id: str) -> bool:
        conns = self._conns.get(user_id)
        if not conns or conn_id not in conns:
            return False
        conns.discard(conn_id)
        if conns:
            return False
        del self._conns[user_id]
        return True

    async def refresh(self, user_id: uuid.UUID, conn_id: str) -> None:
        return None

    async def online(self, user_ids: list[uuid.UUID]) -> set[uuid.UUID]:
        return {u for u in user_ids if self._conns.get(u)}


class RedisPresence:
    """A sorted set per user: connection ids scored by when they expire."""

    def __init__(self, redis: Redis, prefix: str, ttl: float) -> None:
        self._redis = redis
        self._prefix = prefix
        self._ttl = ttl

    def _key(self, user_id: uuid.UUID) -> str:
        return f"{self._prefix}presence:{user_id}"

    async def connect(self, user_id: uuid.UUID, conn_id: str) -> bool:
        now = time.time()
        key = self._key(user_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zremrangebyscore(key, "-inf", now)
            pipe.zadd(key, {conn_id: now + self._ttl})
            pipe.zcard(key)
            pipe.expire(key, int(self._ttl) + 1)
            _, _, count, _ = await pipe.execute()
        return int(count) == 1

    async def disconnect(self, user_id: uuid.UUID, conn_id: str) -> bool:
        now = time.time()
        key = self._key(user_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zrem(key, conn_id)
            pipe.zremrangebyscore(key, "-inf", now)
            pipe.zcard(key)
            removed, _, count = await pipe.execute()
        return bool(removed) and int(count) == 0

    async def refresh(self, user_id: uuid.UUID, conn_id: str) -> None:
        key = self._key(user_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zadd(key, {conn_id: time.time() + self._ttl})
            pipe.expire(key, int(self._ttl) + 1)
            await pipe.execute()

    async def online(self, user_ids: list[uuid.UUID]) -> set[uuid.UUID]:
        if not user_ids:
            return set()
        now = time.time()
        async with self._redis.pipeline(transaction=False) as pipe:
            for user_id in user_ids:
                pipe.zcount(self._key(user_id), now, "+inf")
            counts = await pipe.execute()
        return {u for u, n in zip(user_ids, counts, strict=True) if int(n) > 0}


class MemoryCalls:
    def __init__(self) -> None:
        self._calls: dict[uuid.UUID, dict[str, str]] = defaultdict(dict)

    async def join(self, channel_id: uuid.UUID, user_id: uuid.UUID, conn_id: str) -> list[str]:
        self._calls[channel_id][str(user_id)] = conn_id
        return sorted(self._calls[channel_id])

    async def leave(
        self, channel_id: uuid.UUID, user_id: uuid.UUID, conn_id: str | None
    ) -> list[str] | None:
        call = self._calls.get(channel_id, {})
        joined = call.get(str(user_id))
        if joined is None or (conn_id is not None and joined != conn_id):
            return None
        del call[str(user_id)]
        if not call:
            self._calls.pop(channel_id, None)
        return sorted(call)

    async def participants(self, channel_id: uuid.UUID) -> dict[str, str]:
        return dict(self._calls.get(channel_id, {}))

    async def refresh(self, channel_id: uuid.UUID, user_id: uuid.UUID, conn_id: str) -> None:
        return None


class RedisCalls:
    """A hash per call: user id → "<connection id> <expiry>". Each participant's entry
    expires on its own unless that connection's heartbeat refreshes it, so a crashed
    process's participants drop out even while others keep the call alive."""

    def __init__(self, redis: Redis, prefix: str, ttl: float) -> None:
        self._redis = redis
        self._prefix = prefix
        self._ttl = ttl

    def _key(self, channel_id: uuid.UUID) -> str:
        return f"{self._prefix}call:{channel_id}"

    async def _set(self, channel_id: uuid.UUID, user_id: uuid.UUID, conn_id: str) -> None:
        key = self._key(channel_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, str(user_id), f"{conn_id} {time.time() + self._ttl}")
            pipe.expire(key, int(self._ttl) + 1)
            await pipe.execute()

    async def join(self, channel_id: uuid.UUID, user_id: uuid.UUID, conn_id: str) -> list[str]:
        await self._set(channel_id, user_id, conn_id)
        return sorted(await self.participants(channel_id))

    async def leave(
        self, channel_id: uuid.UUID, user_id: uuid.UUID, conn_id: str | None
    ) -> list[str] | None:
        key = self._key(channel_id)
        joined = (await self.participants(channel_id)).get(str(user_id))
        if joined is None or (conn_id is not None and joined != conn_id):
            return None
        await self._redis.hdel(key, str(user_id))
        return sorted(await self.participants(channel_id))

    async def participants(self, channel_id: uuid.UUID) -> dict[str, str]:
        key = self._key(channel_id)
        raw = await self._redis.hgetall(key)
        now, live, expired = time.time(), {}, []
        for user, value in raw.items():
            conn_id, _, expiry = _text(value).partition(" ")
            if float(expiry or 0) > now:
                live[_text(user)] = conn_id
            else:
                expired.append(_text(user))
        if expired:
            await self._redis.hdel(key, *expired)
        return live

    async def refresh(self, channel_id: uuid.UUID, user_id: uuid.UUID, conn_id: str) -> None:
        if (await self.participants(channel_id)).get(str(user_id)) == conn_id:
            await self._set(channel_id, user_id, conn_id)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
