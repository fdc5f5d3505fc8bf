"""A bounded set of recently seen ids, for deduplication.

Two generations: ids go into the young set; when it is full, the old set is dropped and
the young one becomes old. Membership checks both, so every id is remembered for at least
``capacity`` further insertions and memory stays bounded by ``2 * capacity`` ids. Cheaper
than a true LRU (no per-hit bookkeeping) and just as good for dedup windows.
"""

from __future__ import annotations

from collections.abc import Iterable


class RecentIds:
    """Remembers at least the last ``capacity`` ids added."""

    __slots__ = ("_capacity", "_old", "_young")

    def __init__(self, capacity: int = 100_000) -> None:
        if capacity < 1:
            raise ValueError("capacity must be positive")
        self._capacity = capacity
        self._young: set[str] = set()
        self._old: set[str] = set()

    def __contains__(self, item: object) -> bool:
        return item in self._young or item in self._old

    def __len__(self) -> int:
        return len(self._young | self._old)

    def add(self, item: str) -> None:
        self._young.add(item)
        if len(self._young) >= self._capacity:
            self._old = self._young
            self._young = set()

    def update(self, items: Iterable[str]) -> None:
        items = list(items)
        if len(self._young) + len(items) < self._capacity:
            self._young.update(items)  # the common case, in C
            return
        for item in items:
            self.add(item)

    def seen(self, items: Iterable[str]) -> set[str]:
        """The subset of ``items`` already remembered."""
        if not isinstance(items, list | tuple | set | frozenset):
            items = list(items)
        # Set intersections run in C: a batch of thousands of fresh ids costs microseconds.
        return self._young.intersection(items) | self._old.intersection(items)
