"""Fixed-window rate limits, in memory (one process) or in Redis (shared by all workers).

A limiter counts hits per key in a window that starts with the first hit. Callers
either count every attempt (:meth:`hit`) or only failures (:meth:`blocked_for` before
the attempt, :meth:`record` after a failure, as login does).
"""

from __future__ import annotations

import logging
import time
from typing import Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

from huddle.config import Rate

log = logging.getLogger("huddle.ratelimit")
_DOWN = (RedisError, OSError)


class RateLimiter(Protocol):
    async def blocked_for(self, key: str, rate: Rate) -> int | None:
        """Seconds until ``key`` may try again, or None when it is under the limit."""

    async def record(self, key: str, rate: Rate) -> None:
        """Count one hit against ``key``."""

    async def reset(self, key: str) -> None:
        """Forget ``key``'s hits."""

    async def hit(self, key: str, rate: Rate) -> int | None:
        """Count a hit; return seconds to wait if it went over the limit, else None."""

    async def undo(self, key: str) -> None:
        """Take back one hit (an attempt that turned out to be fine)."""


class MemoryRateLimiter:
    """Per-process counters: right for one process, refused with several workers."""

    def __init__(self) -> None:
        self._counts: dict[str, tuple[int, float]] = {}
        self._next_sweep = time.monotonic() + 60

    def _current(self, key: str) -> tuple[int, float]:
        now = time.monotonic()
        if now >= self._next_sweep:
            self._counts = {k: v for k, v in self._counts.items() if v[1] > now}
            self._next_sweep = now + 60
        count, expires = self._counts.get(key, (0, 0.0))
        if expires <= now:
            return 0, 0.0
        return count, expires

    async def blocked_for(self, key: str, rate: Rate) -> int | None:
        count, expires = self._current(key)
        if count >= rate.count:
            return max(1, int(expires - time.monotonic() + 0.999))
        return None

    async def record(self, key: str, rate: Rate) -> None:
        count, expires = self._current(key)
        if count == 0:
            expires = time.monotonic() + rate.window
        self._counts[key] = (count + 1, expires)

    async def reset(self, key: str) -> None:
        self._counts.pop(key, None)

    async def hit(self, key: str, rate: Rate) -> int | None:
        await self.record(key, rate)
        count, expires = self._current(key)
        if count > rate.count:
            return max(1, int(expires - time.monotonic() + 0.999))
        return None

    async def undo(self, key: str) -> None:
        count, expires = self._current(key)
        if count > 1:
            self._counts[key] = (count - 1, expires)
        else:
            self._counts.pop(key, None)


class RedisRateLimiter:
    """Counters in Redis (``INCR`` + ``EXPIRE NX``), shared by every worker and instance.

    While Redis is unreachable, counting falls back to this process's memory: limits
    still hold, per process, and requests neither fail nor go unlimited.
    """

    def __init__(self, redis: Redis, prefix: str) -> None:
        self._redis = redis
        self._prefix = prefix + "rl:"
        self._fallback = MemoryRateLimiter()
        self._warned = -1e9

    def _down(self, exc: BaseException) -> None:
        now = time.monotonic()
        if now - self._warned > 30:
            self._warned = now
            log.warning("rate limits: Redis unreachable (%s); counting in this process", exc)

    async def blocked_for(self, key: str, rate: Rate) -> int | None:
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.get(self._prefix + key)
                pipe.ttl(self._prefix + key)
                raw, ttl = await pipe.execute()
        except _DOWN as exc:
            self._down(exc)
            return await self._fallback.blocked_for(key, rate)
        if raw is not None and int(raw) >= rate.count:
            return max(1, int(ttl)) if ttl and ttl > 0 else rate.window
        return None

    async def _incr(self, key: str, rate: Rate) -> tuple[int, int]:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.incr(self._prefix + key)
            pipe.expire(self._prefix + key, rate.window, nx=True)
            pipe.ttl(self._prefix + key)
            count, _, ttl = await pipe.execute()
        return int(count), int(ttl)

    async def record(self, key: str, rate: Rate) -> None:
        try:
            await self._incr(key, rate)
        except _DOWN as exc:
            self._down(exc)
            await self._fallback.record(key, rate)

    async def reset(self, key: str) -> None:
        await self._fallback.reset(key)
        try:
            await self._redis.delete(self._prefix + key)
        except _DOWN as exc:
            self._down(exc)

    async def hit(self, key: str, rate: Rate) -> int | None:
        try:
            count, ttl = await self._incr(key, rate)
        except _DOWN as exc:
            self._down(exc)
            return await self._fallback.hit(key, rate)
        if count > rate.count:
            return max(1, ttl) if ttl > 0 else rate.window
        return None

    async def undo(self, key: str) -> None:
        # DECR, deleting the key at zero so no counter outlives its window.
        name = self._prefix + key
        try:
            if int(await self._redis.decr(name)) <= 0:
                await self._redis.delete(name)
        except _DOWN as exc:
            self._down(exc)
            await self._fallback.undo(key)
