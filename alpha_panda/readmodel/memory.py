"""The in-process cache: the embedded default behind the read API.

TTLs run on the monotonic clock, so a wall-clock jump (NTP, a laptop waking up) never
resurrects or kills keys early. Expired keys are invisible at once and purged lazily.
The cache is bounded: past ``max_keys`` the least recently written key is evicted, so a
projector bug that writes unbounded keys costs memory, not the process.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence

from alpha_panda.domain.errors import ValidationError

DEFAULT_MAX_KEYS = 100_000


class MemoryCache:
    """A bounded key/value cache with per-key TTLs, implementing ``readmodel.cache.Cache``.

    Args:
        max_keys: keys kept at most; the least recently written one goes first.
        clock: seconds on a monotonic clock (injectable for tests).
    """

    def __init__(
        self,
        max_keys: int = DEFAULT_MAX_KEYS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_keys < 1:
            raise ValidationError(f"max_keys must be at least 1, got {max_keys}")
        self._max_keys = max_keys
        self._clock = clock
        # key -> (value, deadline or None); order = write order, for eviction
        self._items: OrderedDict[str, tuple[bytes, float | None]] = OrderedDict()

    def __len__(self) -> int:
        now = self._clock()
        return sum(1 for _, deadline in self._items.values() if not _expired(deadline, now))

    async def get(self, key: str) -> bytes | None:
        """The value of ``key``, or None when absent or expired."""
        return self._get(key, self._clock())

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """Values of ``keys`` in order; None for each absent or expired key."""
        now = self._clock()
        return [self._get(k, now) for k in keys]

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        """Store ``value``; with ``ttl`` (seconds, > 0) it expires after that long."""
        self._set(key, value, _deadline(ttl, self._clock()))

    async def set_many(self, items: dict[str, bytes], ttl: float | None = None) -> None:
        """Store every item, all with the same TTL."""
        deadline = _deadline(ttl, self._clock())
        for key, value in items.items():
            self._set(key, value, deadline)

    async def delete(self, key: str) -> None:
        """Remove ``key``; absent keys are fine."""
        self._items.pop(key, None)

    async def keys(self, prefix: str) -> list[str]:
        """Live keys starting with ``prefix``, sorted."""
        now = self._clock()
        self._purge(now)
        return sorted(k for k in self._items if k.startswith(prefix))

    async def close(self) -> None:
        """Drop everything (nothing to release)."""
        self._items.clear()

    def _get(self, key: str, now: float) -> bytes | None:
        item = self._items.get(key)
        if item is None:
            return None
        value, deadline = item
        if _expired(deadline, now):
            del self._items[key]
            return None
        return value

    def _set(self, key: str, value: bytes, deadline: float | None) -> None:
        if not isinstance(value, bytes | bytearray | memoryview):
            raise ValidationError(f"cache values are bytes, got {type(value).__name__} for {key!r}")
        self._items[key] = (bytes(value), deadline)
        self._items.move_to_end(key)
        if len(self._items) > self._max_keys:
            self._purge(self._clock())
        while len(self._items) > self._max_keys:
            self._items.popitem(last=False)

    def _purge(self, now: float) -> None:
        dead = [k for k, (_, deadline) in self._items.items() if _expired(deadline, now)]
        for k in dead:
            del self._items[k]


def _deadline(ttl: float | None, now: float) -> float | None:
    if ttl is None:
        return None
    if ttl <= 0:
        raise ValidationError(f"ttl must be positive seconds, got {ttl}")
    return now + ttl


def _expired(deadline: float | None, now: float) -> bool:
    return deadline is not None and now >= deadline
