"""The recent records of each partition, kept in memory as they are appended.

In the embedded topology every consumer group runs in the process that appended the
records, usually just behind the end of the log; serving those reads from memory saves
a SQLite query, a ``Record`` construction and a header decode per record per group.
Services split between processes (``alpha-panda service NAME...``) read each other's
records from the file; those read past a tail's end join it, so the other groups of the
process share them (``extend``), none older than ``max_age_ms``. Only committed records
are added, and a partition's tail is always contiguous (a gap starts it afresh), so a hit
is exactly what SQLite would return.

A tail holds at most about ``per_partition`` records, and forgets those appended more than
``max_age_ms`` ago (a busy partition's as it grows, in steps of a few hundred; an idle one's
on ``sweep``, which the storage's periodic expiry calls every 30 s): readers in this process
are milliseconds behind, and a bound by count alone let a long run fill every partition's
tail, slow ones included (``make run`` grew by 0.65 MB a second for its first 10 minutes,
and would have gone on, slower, for hours: up to 20,000 decoded records in each of its 52
partitions). A reader further behind reads from SQLite, as after a restart.
"""

from __future__ import annotations

from bisect import bisect_left

from alpha_panda.stream.log import Record

_TRIM_STEP = 256  # expired records are dropped once more than this many (amortised O(1))


def _ts(r: Record) -> int:
    return r.timestamp_ms


class TailCache:
    """Per partition (by storage code): the last ``per_partition``-ish records, none of them
    appended more than ``max_age_ms`` ago for long."""

    def __init__(self, per_partition: int = 10_000, max_age_ms: int = 30_000) -> None:
        self._cap = per_partition
        self._max_age = max_age_ms
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
        now = records[-1].timestamp_ms
        if len(tail) > 2 * self._cap:
            # Trim in big steps so the cost per record stays constant.
            drop = len(tail) - self._cap
            del tail[:drop]
            self._base[code] += drop
        elif len(tail) > _TRIM_STEP and tail[_TRIM_STEP].timestamp_ms < now - self._max_age:
            self._expire(code, tail, now - self._max_age)

    def _expire(self, code: int, tail: list[Record], cutoff_ms: int) -> None:
        """Drop the records of ``tail`` appended before ``cutoff_ms``."""
        drop = bisect_left(tail, cutoff_ms, key=_ts)
        if drop:
            del tail[:drop]
            self._base[code] += drop
        if not tail:
            del self._records[code], self._base[code]

    def sweep(self, now_ms: int) -> None:
        """Drop what has grown too old in partitions nobody appends to any more."""
        cutoff = now_ms - self._max_age
        for code, tail in list(self._records.items()):
            if tail and tail[0].timestamp_ms < cutoff:
                self._expire(code, tail, cutoff)

    def extend(self, code: int, records: list[Record], now_ms: int) -> None:
        """Records read from the file past the tail's end (the reader furthest ahead):
        they continue the tail, or start it afresh where they do not follow it. A reader
        behind reads the file up to the tail, then the tail (``start``). None appended more
        than ``max_age_ms`` before ``now_ms`` is kept (an idle partition's last records, a
        restarted reader's old ones): the tails stay the recent records they were."""
        cutoff = now_ms - self._max_age
        if not records or records[-1].timestamp_ms < cutoff:
            return
        if records[0].timestamp_ms < cutoff:
            records = records[bisect_left(records, cutoff, key=_ts):]
        tail = self._records.get(code)
        if tail is None or self._base[code] + len(tail) <= records[0].offset:
            self.add(code, records)

    def start(self, code: int) -> int | None:
        """The offset the tail of ``code`` starts at (None: no tail)."""
        return self._base.get(code) if code in self._records else None

    def get(self, code: int, offset: int, limit: int) -> list[Record] | None:
        """Records from ``offset`` if the tail holds it, else None (ask the database)."""
        tail = self._records.get(code)
        if tail is None:
            return None
        i = offset - self._base[code]
        if i < 0 or i >= len(tail):
            return None
        return tail[i:i + limit]

    def __len__(self) -> int:
        return sum(len(t) for t in self._records.values())

    def drop_before(self, code: int, offset: int) -> None:
        """Forget records below ``offset`` (they expired)."""
        tail = self._records.get(code)
        if tail is not None and offset > self._base[code]:
            del tail[:offset - self._base[code]]
            self._base[code] = offset

    def clear(self) -> None:
        self._base.clear()
        self._records.clear()
