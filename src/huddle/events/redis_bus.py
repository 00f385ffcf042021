"""The Redis Streams bus: one stream, ``<prefix>events``, entry id ``<seq>-0``.

Every envelope goes to the stream with an explicit entry id derived from its ``seq``,
so the stream is in ``seq`` order and a republished event (the dispatcher retries a
batch after a failure, or a new leader republishes what the old one numbered) is
refused by Redis instead of appearing twice. The stream is bounded (``MAXLEN ~``,
``HUDDLE_REDIS_STREAM_MAXLEN``): it is a relay, the ``events`` table is the log.

Who reads it:

* the WebSocket hub of every Huddle process (``XREAD`` from the last id it saw), which
  is how an event reaches sockets on every instance;
* other services, through their own consumer groups (``XREADGROUP``/``XACK``); each
  entry carries the fields ``seq``, ``topic``, ``type`` and ``event`` (the envelope as
  JSON). Delivery is at least once: deduplicate by ``seq``.

A batch is added by one Lua script, which stops at the first entry Redis refuses for
any reason other than "already there". A pipeline would go on after a failed entry,
and the retry would then take the gap for "already published" and lose it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from huddle.events.bus import BusUnavailable
from huddle.events.schemas import Envelope

# KEYS[1] the stream; ARGV[1] maxlen; then per entry: id, seq, topic, type, event.
# Returns how many entries were new; an error stops the batch where it happened.
_ADD_BATCH = """
local added = 0
for i = 2, #ARGV, 5 do
  local ok = redis.pcall('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], ARGV[i],
    'seq', ARGV[i + 1], 'topic', ARGV[i + 2], 'type', ARGV[i + 3], 'event', ARGV[i + 4])
  if type(ok) == 'table' and ok.err then
    if not string.find(ok.err, 'equal or smaller', 1, true) then
      return redis.error_reply(ok.err)
    end
  else
    added = added + 1
  end
end
return added
"""


def stream_name(prefix: str) -> str:
    return f"{prefix}events"


def entry_id(seq: int) -> str:
    return f"{seq}-0"


class RedisStreamBus:
    def __init__(self, url: str, prefix: str, maxlen: int) -> None:
        self._redis = Redis.from_url(
            url, decode_responses=True, socket_connect_timeout=3, socket_timeout=10
        )
        self.stream = stream_name(prefix)
        self._maxlen = maxlen
        self._add = self._redis.register_script(_ADD_BATCH)

    async def publish(self, events: Sequence[Envelope]) -> None:
        if not events:
            return
        args: list[Any] = [self._maxlen]
        for event in events:
            args += [entry_id(event.id), event.id, event.topic, event.type]
            args.append(event.model_dump_json())
        try:
            await self._add(keys=[self.stream], args=args)
        except (RedisError, OSError) as exc:
            raise BusUnavailable(f"Redis stream {self.stream}: {exc}") from exc

    async def aclose(self) -> None:
        await self._redis.aclose()
