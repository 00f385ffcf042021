"""A small cache of per-workspace values (roles), in memory or in Redis.

Entries are grouped by workspace so one call drops everything cached about a workspace
when its memberships, teams or grants change. In Redis each workspace is one hash
(``HGET``/``HSET``/``DEL``) with a TTL as a safety net.
"""

from __future__ import annotations

import time
from typing import Protocol

from redis.asyncio import Redis

MISSING = "\x00missing"  # cached "no role": distinct from "not cached"


class ScopedCache(Protocol):
    async def get(self, scope: str, key: str) -> str | None:
        """The cached value, ``MISSING`` for a cached absence, or None when not cached."""

    async def set(self, scope: str, key: str, value: str | None) -> None: ...

    async def invalidate(self, scope: str) -> None:
        """Drop the scope's entries and remember when (see :meth:`invalidated_at`)."""

    async def invalidated_at(self, scope: str) -> float | None:
        """Wall-clock time of the scope's last invalidation (within the TTL), if any."""

    async def drop(self, scope: str) -> None:
        """Drop the scope's entries without recording an invalidation."""


class MemoryScopedCache:
    def __init__(self, ttl: float = 300.0, max_scopes: int = 10_000) -> None:
        self._ttl = ttl
        self._max = max_scopes
        self._data: dict[str, tuple[float, dict[str, str]]] = {}
        self._invalidated: dict[str, float] = {}

    async def get(self, scope: str, key: str) -> str | None:
        entry = self._data.get(scope)
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1].get(key)

    async def set(self, scope: str, key: str, value: str | None) -> None:
        now = time.monotonic()
        entry = self._data.get(scope)
        if entry is None or entry[0] < now:
            if len(self._data) >= self._max:
                self._data.clear()
            entry = (now + self._ttl, {})
            self._data[scope] = entry
        entry[1][key] = MISSING if value is None else value

    async def invalidate(self, scope: str) -> None:
        self._data.pop(scope, None)
        if len(self._invalidated) >= self._max:
            horizon = time.time() - self._ttl
            self._invalidated = {k: v for k, v in self._invalidated.items() if v > horizon}
        self._invalidated[scope] = time.time()

    async def invalidated_at(self, scope: str) -> float | None:
        return self._invalidated.get(scope)

    async def drop(self, scope: str) -> None:
        self._data.pop(scope, None)


class RedisScopedCache:
    def __init__(self, redis: Redis, prefix: str, ttl: int = 300) -> None:
        self._redis = redis
        self._prefix = prefix + "cache:"
        self._ttl = ttl

    async def get(self, scope: str, key: str) -> str | None:
        raw = await self._redis.hget(self._prefix + scope, key)
        return raw.decode() if isinstance(raw, bytes) else raw

    async def set(self, scope: str, key: str, value: str | None) -> None:
        name = self._prefix + scope
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(name, key, MISSING if value is None else value)
            pipe.expire(name, self._ttl, nx=True)
            await pipe.execute()

    async def invalidate(self, scope: str) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(self._prefix + scope)
            pipe.set(self._prefix + "inv:" + scope, repr(time.time()), ex=self._ttl)
            await pipe.execute()

    async def invalidated_at(self, scope: str) -> float | None:
        raw = await self._redis.get(self._prefix + "inv:" + scope)
        return float(raw) if raw is not None else None

    async def drop(self, scope: str) -> None:
        await self._redis.delete(self._prefix + scope)
