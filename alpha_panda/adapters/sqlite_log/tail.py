"""The recent records of each partition, kept in memory as they are appended.

In the embedded topology every consumer group runs in the process that appended the
records, usually just behind the end of the log; serving those reads from memory saves
a SQLite query, a ``Record`` construction and a header decode per record per group.
Only records whose transaction committed are added, and a partition's tail is always
contiguous (a gap starts it afresh), so a hit is exactly what SQLite would return.
"""

from __future__ import annotations

from alpha_panda.stream.log import Record


class TailCache:
    """Per partition (by storage code): the last ``per_partition``-ish records."""

    def __init__(self, per_partition: int = 10_000) -> None:
        self._cap = per_partition
        self._base: dict[int, int] = {}
        self._records: dict[int, list[Record]] = {}

    def add(self, code: int, records: list[Record]) -> None:
        if self._cap <= 0 or not records:
            return
        tail = self._records.get(code)
        if tail is None or self._base[code] + len(tail) != records[0].offset:
            self._records[code] = tail = list(records)
            self._base[code] = records[0].offset
        else:
            tail.extend(records)
        if len(tail) > 2 * self._cap:
            # Trim in big steps so the cost per record stays constant.
            drop = len(tail) - self._cap
            del tail[:drop]
            self._base[code] += drop

    def get(self, code: int, offset: int, limit: int) -> list[Record] | None:
        """Records from ``offset`` if the tail holds it, else None (ask the database)."""
        tail = self._records.get(code)
        if tail is None:
            return None
        i = offset - self._base[code]
        if i < 0 or i >= len(tail):
            return None
        return tail[i:i + limit]

    def drop_before(self, code: int, offset: int) -> None:
        """Forget records below ``offset`` (they expired)."""
        tail = self._records.get(code)
        if tail is not None and offset > self._base[code]:
            del tail[:offset - self._base[code]]
            self._base[code] = offset

    def clear(self) -> None:
        self._base.clear()
        self._records.clear()
