"""Per-entity event stores for online features: in process by default, Redis in production.

A store keeps, per entity value, the recent events that windows may still reach: each
event's time (whole microseconds), its id and the values the features read. Stores know
nothing of windows; :mod:`keel.features.online` asks them for the events in a time range.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

import orjson

from keel.errors import FeatureStoreError, SpecError

Event = tuple[int, str, list[Any]]


class EventStore(Protocol):
    """What online features need of a store."""

    def events(self, entity: str, key: Any, start_us: int, end_us: int) -> list[Event]:
        """Events of one entity value with ``start_us < time <= end_us``, oldest first."""

    def add(
        self, entity: str, key: Any, event: Event, *, forget_until_us: int, idle_ms: int = 0
    ) -> None:
        """Keep ``event`` (replacing a kept one with its id), and forget older events.

        Events at or before ``forget_until_us`` are forgotten.
        ``idle_ms``: a store may drop an entity value not written for that long (0: never).
        """

    def update(self, entity: str, key: Any, event_id: str, changes: dict[int, Any]) -> bool:
        """Set some values of a kept event (a label that arrived), by position.

        False when it is not kept.
        """


class MemoryStore:
    """Events in this process's memory: for one process, tests and replays.

    Safe across its threads.
    """

    def __init__(self) -> None:
        self._events: dict[tuple[str, Any], list[Event]] = {}
        self._lock = threading.Lock()

    def events(self, entity: str, key: Any, start_us: int, end_us: int) -> list[Event]:
        """Events of one entity value with ``start_us < time <= end_us``, oldest first."""
        with self._lock:
            kept = self._events.get((entity, key), [])
            lo = bisect.bisect_right(kept, start_us, key=lambda e: e[0])
            hi = bisect.bisect_right(kept, end_us, key=lambda e: e[0])
            return kept[lo:hi]

    def add(
        self, entity: str, key: Any, event: Event, *, forget_until_us: int, idle_ms: int = 0
    ) -> None:
        """Keep ``event`` in time order (once per id) and forget events no window reaches any more.

        ``idle_ms`` is not used: a process's memory ends with it.
        """
        with self._lock:
            kept = self._events.setdefault((entity, key), [])
            kept[:] = [
                e for e in kept if e[1] != event[1]
            ]  # a retried request records its event once
            bisect.insort_right(kept, event, key=lambda e: e[0])
            expired = bisect.bisect_right(kept, forget_until_us, key=lambda e: e[0])
            if expired:
                del kept[:expired]

    def update(self, entity: str, key: Any, event_id: str, changes: dict[int, Any]) -> bool:
        """Set some values of a kept event, by position; False when it is not kept."""
        with self._lock:
            for _time, kept_id, values in self._events.get((entity, key), []):
                if kept_id == event_id:
                    for position, value in changes.items():
                        values[position] = value
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
if tonumber(ARGV[5]) > 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
  redis.call('PEXPIRE', KEYS[2], ARGV[5])
end
return #old
"""
_REPLACE = """
if redis.call('HGET', KEYS[2], ARGV[1]) == ARGV[2] then
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
  return 1
end
return 0
"""
_RETRIES = 10


class RedisStore:
    """Events in Redis: per entity value, a sorted set of event ids by time and a hash of values.

    Reads and adds are one atomic server-side script each, and an update is a compare-and-set
    of the event's values, so several scoring processes can share a store. Times are scores;
    whole microseconds stay exact in Redis's doubles until 2255. An event id is a set member,
    so a retried request keeps its event once. A lost connection is a :class:`FeatureStoreError`.
    """

    def __init__(self, url: str, *, prefix: str = "keel", timeout: float = 2.0) -> None:
        import redis

        self._redis = redis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        self._url = url
        self._prefix = prefix
        self._read = self._redis.register_script(_READ)
        self._add = self._redis.register_script(_ADD)
        self._replace = self._redis.register_script(_REPLACE)

    def _keys(self, entity: str, key: Any) -> list[str]:
        """The sorted set and the hash of one entity value.

        JSON keeps every (entity, value) pair apart.
        """
        name = orjson.dumps([entity, key]).decode()
        return [f"{self._prefix}:times:{name}", f"{self._prefix}:values:{name}"]

    @contextmanager
    def _reachable(self) -> Iterator[None]:
        import redis

        try:
            yield
        except (redis.ConnectionError, redis.TimeoutError) as error:
            raise FeatureStoreError(
                f"the feature store at {self._url} is unreachable: {error}"
            ) from error
        except redis.RedisError as error:
            raise FeatureStoreError(
                f"the feature store at {self._url} refused a command: {error}"
            ) from error

    def events(self, entity: str, key: Any, start_us: int, end_us: int) -> list[Event]:
        """Events of one entity value with ``start_us < time <= end_us``, oldest first."""
        with self._reachable():
            answer = self._read(keys=self._keys(entity, key), args=[f"({start_us}", end_us])
        if not answer:
            return []
        pairs, values = answer
        return [
            (int(float(pairs[i + 1])), pairs[i].decode(), orjson.loads(v))
            for i, v in zip(range(0, len(pairs), 2), values, strict=True)
        ]

    def add(
        self, entity: str, key: Any, event: Event, *, forget_until_us: int, idle_ms: int = 0
    ) -> None:
        """Keep ``event`` and forget events no window reaches any more, atomically.

        With ``idle_ms``, an entity value not written for that long is dropped by Redis (a card
        that stopped transacting), so the store does not grow without bound.
        """
        time, event_id, values = event
        with self._reachable():
            self._add(
                keys=self._keys(entity, key),
                args=[time, event_id, orjson.dumps(values), forget_until_us, idle_ms],
            )

    def update(self, entity: str, key: Any, event_id: str, changes: dict[int, Any]) -> bool:
        """Set some values of a kept event, by position (compare-and-set).

        False when it is not kept.
        """
        keys = self._keys(entity, key)
        with self._reachable():
            for _ in range(_RETRIES):
                old = self._redis.hget(keys[1], event_id)
                if old is None:
                    return False
                values = orjson.loads(old)
                for position, value in changes.items():
                    values[position] = value
                if self._replace(keys=keys, args=[event_id, old, orjson.dumps(values)]):
                    return True
        raise FeatureStoreError(
            f"event {event_id} of {entity} {key} changed {_RETRIES} times during one update"
        )

    def close(self) -> None:
        """Close the connection pool."""
        self._redis.close()


def open_store(url: str | None, *, prefix: str = "keel") -> EventStore:
    """The store a URL names.

    None or ``memory://``: in process; ``redis://host:port/db``: Redis.
    """
    if url in (None, "", "memory://"):
        return MemoryStore()
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisStore(url, prefix=prefix)
    raise SpecError(
        f"feature store '{url}' is not supported; use memory:// or redis://host:port/db"
    )


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
