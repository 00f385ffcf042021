"""A small cache of per-workspace values (roles), in memory or in Redis.

Entries are grouped by workspace so one call drops everything cached about a workspace
when its memberships, teams or grants change. In Redis each workspace is one hash
(``HGET``/``HSET``/``DEL``) with a TTL as a safety net.

While Redis is unreachable the cache steps aside instead of failing requests: reads are
misses (roles come from the database) and writes are skipped. A process that saw
Redis fail empties the whole cache before it uses Redis again (its own invalidations
may be lost, and so may another process's), so no role cached before the outage
outlives a change made during it; invalidations it could not send are retried too.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import suppress
from typing import Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger("huddle.cache")
_DOWN = (RedisError, OSError)

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

    async def aclose(self) -> None:
        """Stop background work (at shutdown)."""


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

    async def aclose(self) -> None:
        pass


class RedisScopedCache:
    def __init__(self, redis: Redis, prefix: str, ttl: int = 300) -> None:
        self._redis = redis
        self._prefix = prefix + "cache:"
        self._ttl = ttl
        self._unsent: set[str] = set()  # invalidations Redis did not take yet
        self._retry: asyncio.Task[None] | None = None
        self._warned = -1e9
        self._degraded = False  # Redis failed since the cache was last emptied

    async def _usable(self) -> bool:
        """Redis answers and the cache is trustworthy (emptied after an outage)."""
        if not self._degraded:
            return True
        try:
            inv = self._prefix + "inv:"
            stale = [k async for k in self._redis.scan_iter(match=self._prefix + "*", count=500)]
            stale = [
                k for k in stale if not (k.decode() if isinstance(k, bytes) else k).startswith(inv)
            ]
            for start in range(0, len(stale), 500):
                await self._redis.delete(*stale[start : start + 500])
            for scope in list(self._unsent):
                await self._send_invalidation(scope)
                self._unsent.discard(scope)
        except _DOWN:
            return False
        self._degraded = False
        log.info("role cache: Redis is back; emptied the cache (%d entries)", len(stale))
        return True

    async def aclose(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
            with suppress(asyncio.CancelledError):
                await self._retry

    def _down(self, what: str, exc: BaseException) -> None:
        self._degraded = True
        now = time.monotonic()
        if now - self._warned > 30:  # once per outage-ish, not per request
            self._warned = now
            log.warning("role cache: Redis unreachable on %s (%s); using the database", what, exc)

    async def get(self, scope: str, key: str) -> str | None:
        if scope in self._unsent or not await self._usable():
            return None
        try:
            raw = await self._redis.hget(self._prefix + scope, key)
        except _DOWN as exc:
            self._down("read", exc)
            return None
        return raw.decode() if isinstance(raw, bytes) else raw

    async def set(self, scope: str, key: str, value: str | None) -> None:
        if scope in self._unsent or not await self._usable():
            return
        name = self._prefix + scope
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hset(name, key, MISSING if value is None else value)
                pipe.expire(name, self._ttl, nx=True)
                await pipe.execute()
        except _DOWN as exc:
            self._down("write", exc)

    async def _send_invalidation(self, scope: str) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(self._prefix + scope)
            pipe.set(self._prefix + "inv:" + scope, repr(time.time()), ex=self._ttl)
            await pipe.execute()

    async def invalidate(self, scope: str) -> None:
        try:
            await self._send_invalidation(scope)
        except _DOWN as exc:
            self._down("invalidation", exc)
            self._unsent.add(scope)
            if self._retry is None or self._retry.done():
                self._retry = asyncio.create_task(self._retry_invalidations())

    async def _retry_invalidations(self) -> None:
        while self._unsent:
            await asyncio.sleep(1)
            for scope in list(self._unsent):
                with suppress(*_DOWN):
                    await self._send_invalidation(scope)
                    self._unsent.discard(scope)

    async def invalidated_at(self, scope: str) -> float | None:
        if scope in self._unsent:
            return time.time()
        try:
            raw = await self._redis.get(self._prefix + "inv:" + scope)
        except _DOWN as exc:
            self._down("read", exc)
            return time.time()  # unknown: treat as just invalidated (nothing gets cached)
        return float(raw) if raw is not None else None

    async def drop(self, scope: str) -> None:
        try:
            await self._redis.delete(self._prefix + scope)
        except _DOWN as exc:
            self._down("drop", exc)
            await self.invalidate(scope)
