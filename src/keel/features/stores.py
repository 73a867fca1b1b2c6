"""Per-entity event stores for online features: in process by default, Redis in production.

A store keeps, per entity value, the recent events that windows may still reach: each
event's time (whole microseconds), its id and the values the features read. Stores know
nothing of windows; :mod:`keel.features.online` asks them for the events in a time range.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from typing import Any, Protocol

import orjson

Event = tuple[int, str, list[Any]]


class EventStore(Protocol):
    """What online features need of a store."""

    def events(self, entity: str, key: Any, start_us: int, end_us: int) -> list[Event]:
        """Events of one entity value with ``start_us < time <= end_us``, oldest first."""

    def add(self, entity: str, key: Any, event: Event, *, forget_until_us: int) -> None:
        """Keep ``event``, and forget this entity's events at or before ``forget_until_us``."""

    def update(self, entity: str, key: Any, event_id: str, values: list[Any]) -> bool:
        """Replace a kept event's values (a label that arrived); False when it is not kept."""


class MemoryStore:
    """Events in this process's memory: for one process, tests and replays."""

    def __init__(self) -> None:
        self._events: dict[tuple[str, Any], list[Event]] = {}

    def events(self, entity: str, key: Any, start_us: int, end_us: int) -> list[Event]:
        """Events of one entity value with ``start_us < time <= end_us``, oldest first."""
        kept = self._events.get((entity, key), [])
        lo = bisect.bisect_right(kept, start_us, key=lambda e: e[0])
        hi = bisect.bisect_right(kept, end_us, key=lambda e: e[0])
        return kept[lo:hi]

    def add(self, entity: str, key: Any, event: Event, *, forget_until_us: int) -> None:
        """Keep ``event`` in time order and forget events no window reaches any more."""
        kept = self._events.setdefault((entity, key), [])
        bisect.insort_right(kept, event, key=lambda e: e[0])
        expired = bisect.bisect_right(kept, forget_until_us, key=lambda e: e[0])
        if expired:
            del kept[:expired]

    def update(self, entity: str, key: Any, event_id: str, values: list[Any]) -> bool:
        """Replace a kept event's values; False when it is not kept."""
        kept = self._events.get((entity, key), [])
        for i, (time, kept_id, _) in enumerate(kept):
            if kept_id == event_id:
                kept[i] = (time, kept_id, values)
                return True
        return False

    def size(self) -> int:
        """Events kept, over all entities."""
        return sum(len(v) for v in self._events.values())


_READ = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[1], ARGV[2], 'WITHSCORES')
if #ids == 0 then return {} end
local names = {}
for i = 1, #ids, 2 do names[#names + 1] = ids[i] end
return {ids, redis.call('HMGET', KEYS[2], unpack(names))}
"""
_ADD = """
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
local old = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[4])
if #old > 0 then
  redis.call('ZREM', KEYS[1], unpack(old))
  redis.call('HDEL', KEYS[2], unpack(old))
end
return #old
"""
_UPDATE = """
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
  return 1
end
return 0
"""


class RedisStore:
    """Events in Redis: per entity value a sorted set of event ids by time and a hash of their values.

    Each call is one atomic server-side script, so several scoring processes can share a
    store. Times are scores; whole microseconds stay exact in Redis's doubles until 2255.
    """

    def __init__(self, url: str, *, prefix: str = "keel") -> None:
        import redis

        self._redis = redis.Redis.from_url(url)
        self._prefix = prefix
        self._read = self._redis.register_script(_READ)
        self._add = self._redis.register_script(_ADD)
        self._update = self._redis.register_script(_UPDATE)

    def _keys(self, entity: str, key: Any) -> list[str]:
        base = f"{self._prefix}:{entity}:{key}"
        return [base, base + ":values"]

    def events(self, entity: str, key: Any, start_us: int, end_us: int) -> list[Event]:
        """Events of one entity value with ``start_us < time <= end_us``, oldest first."""
        answer = self._read(keys=self._keys(entity, key), args=[f"({start_us}", end_us])
        if not answer:
            return []
        pairs, values = answer
        return [(int(float(pairs[i + 1])), pairs[i].decode(), orjson.loads(v))
                for i, v in zip(range(0, len(pairs), 2), values)]

    def add(self, entity: str, key: Any, event: Event, *, forget_until_us: int) -> None:
        """Keep ``event`` and forget events no window reaches any more, atomically."""
        time, event_id, values = event
        self._add(keys=self._keys(entity, key), args=[time, event_id, orjson.dumps(values), forget_until_us])

    def update(self, entity: str, key: Any, event_id: str, values: list[Any]) -> bool:
        """Replace a kept event's values; False when it is not kept."""
        return bool(self._update(keys=self._keys(entity, key), args=[event_id, orjson.dumps(values)]))

    def close(self) -> None:
        """Close the connection pool."""
        self._redis.close()


def open_store(url: str | None, *, prefix: str = "keel") -> EventStore:
    """The store a URL names: none or ``memory://`` in process, ``redis://host:port/db`` for Redis."""
    if url in (None, "", "memory://"):
        return MemoryStore()
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisStore(url, prefix=prefix)
    from keel.errors import SpecError

    raise SpecError(f"feature store '{url}' is not supported; use memory:// or redis://host:port/db")


def as_json_values(values: Sequence[Any]) -> list[Any]:
    """Plain JSON-able values (numpy scalars become Python ones, NaN becomes None)."""
    out = []
    for value in values:
        if hasattr(value, "item"):
            value = value.item()
        if isinstance(value, float) and value != value:
            value = None
        out.append(value)
    return out
