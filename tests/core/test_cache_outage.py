"""The Redis role cache through an outage: requests never fail, and no stale role
survives it (tests/events/private_redis.py: a Redis of the test's own)."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from huddle.core.cache import RedisScopedCache
from tests.events.private_redis import PrivateRedis


@pytest.fixture
def private_redis(tmp_path):
    server = PrivateRedis(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


async def test_a_change_during_an_outage_leaves_no_stale_role(private_redis):
    # Two processes' caches over one Redis.
    clients = [Redis.from_url(private_redis.url, socket_connect_timeout=0.5) for _ in range(2)]
    changer, reader = (RedisScopedCache(c, "t:", ttl=300) for c in clients)
    try:
        await changer.set("roles:w", "u", "admin")
        assert await reader.get("roles:w", "u") == "admin"
        private_redis.stop()
        # The demotion commits while Redis is away: its invalidation cannot be sent,
        # and reads fall back to the database (a miss), never an error.
        await changer.invalidate("roles:w")
        assert await reader.get("roles:w", "u") is None
        await reader.set("roles:w", "u", "member")  # skipped, no error
        assert await reader.invalidated_at("roles:w") is not None  # "unknown": don't cache
        private_redis.start()  # the AOF brings the old entry back
        raw = Redis.from_url(private_redis.url)
        assert await raw.hget("t:cache:roles:w", "u") == b"admin"
        # The reader saw the outage: it empties the cache before trusting it again.
        assert await reader.get("roles:w", "u") is None
        assert await raw.hget("t:cache:roles:w", "u") is None
        await raw.aclose()
    finally:
        for cache in (changer, reader):
            await cache.aclose()
        for client in clients:
            await client.aclose()


async def test_invalidations_that_failed_are_sent_when_redis_is_back(private_redis):
    client = Redis.from_url(private_redis.url, socket_connect_timeout=0.5)
    cache = RedisScopedCache(client, "t:", ttl=300)
    try:
        await cache.set("roles:w", "u", "admin")
        private_redis.stop()
        await cache.invalidate("roles:w")
        private_redis.start()
        assert await cache.get("roles:w", "u") is None
        assert await cache.invalidated_at("roles:w") is not None  # the marker went out
    finally:
        await cache.aclose()
        await client.aclose()
