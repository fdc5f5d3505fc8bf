"""Where a Kafka consumer group remembers the event ids it has processed.

Kafka transactions make "outputs + offsets" atomic, but they cannot stop the same event
from appearing twice on an input topic (a producer retried by hand, a replayed dead
letter, a broker that exposes an aborted batch). Ids are deterministic, so a group that
remembers what it processed can skip the second copy. ``RedisDedupStore``
(``alpha_panda.adapters.redis.dedup``) is shared by a group's members and survives
restarts; ``MemoryDedupStore`` is per process: without Redis, redelivery across a restart
is covered by the transactions alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from alpha_panda.stream.dedup import RecentIds


class DedupStore(Protocol):
    """Processed ids of one consumer group."""

    async def seen(self, ids: Sequence[str]) -> set[str]:
        """The subset of ``ids`` already marked."""
        ...

    async def mark(self, ids: Sequence[str]) -> None:
        """Remember ``ids`` as processed (called after their transaction committed)."""
        ...

    async def close(self) -> None: ...


class MemoryDedupStore:
    """A bounded in-process window of recently processed ids (at least ``capacity``)."""

    def __init__(self, capacity: int = 1_000_000) -> None:
        self._ids = RecentIds(capacity)

    async def seen(self, ids: Sequence[str]) -> set[str]:
        return self._ids.seen(ids)

    async def mark(self, ids: Sequence[str]) -> None:
        self._ids.update(ids)

    async def close(self) -> None:
        """Nothing to release."""
