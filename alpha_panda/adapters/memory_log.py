"""``MemoryLog``: the in-process log for tests and backtests. Nothing survives the process.

Records are kept per partition in a list that starts at the partition's low watermark
(``base``), so retention can drop old records while offsets keep counting up. Topics keep
everything unless ``retention=True`` (then each topic's ``retention_ms`` applies) or
``max_records_per_partition`` caps them: a long ``--log memory`` run stays bounded.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from alpha_panda.stream.dedup import RecentIds
from alpha_panda.stream.embedded import EmbeddedLog, Placed
from alpha_panda.stream.log import Record, TopicPartition


class MemoryStorage:
    """Python lists per partition; a commit is atomic because it never awaits."""

    def __init__(self, processed_capacity: int = 100_000, *, retention: bool = False,
                 max_records_per_partition: int | None = None) -> None:
        self._topics: dict[str, int] = {}
        self._retention: dict[str, int] = {}
        self._records: dict[TopicPartition, list[Record]] = {}
        self._base: dict[TopicPartition, int] = {}
        self._offsets: dict[tuple[str, TopicPartition], int] = {}
        self._processed: dict[str, RecentIds] = {}
        self._capacity = processed_capacity
        self._use_retention = retention
        self._cap = max_records_per_partition

    def topics(self) -> dict[str, int]:
        return dict(self._topics)

    def refresh(self) -> bool:
        return False  # nothing outside this process writes here

    def moved_topics(self) -> set[str]:
        return set()

    def create_topic(self, name: str, partitions: int, retention_ms: int = 0) -> None:
        self._topics[name] = partitions
        self._retention[name] = retention_ms if self._use_retention else 0
        for p in range(partitions):
            tp = TopicPartition(name, p)
            self._records.setdefault(tp, [])
            self._base.setdefault(tp, 0)

    def expire(self, now_ms: int, max_rows: int) -> int:
        """Drop records past retention, or beyond ``max_records_per_partition``."""
        dropped = 0
        for tp, recs in self._records.items():
            n = 0
            if self._cap is not None and len(recs) > self._cap:
                n = len(recs) - self._cap
            retention = self._retention.get(tp.topic, 0)
            if retention > 0:
                cutoff = now_ms - retention
                while n < len(recs) and recs[n].timestamp_ms < cutoff:
                    n += 1
            n = min(n, max_rows - dropped)
            if n > 0:
                del recs[:n]
                self._base[tp] += n
                dropped += n
        return dropped

    async def append(self, records: Sequence[Placed], ts_ms: int) -> None:
        self._append(records, ts_ms)

    def _append(self, records: Sequence[Placed], ts_ms: int) -> None:
        for topic, partition, out in records:
            tp = TopicPartition(topic, partition)
            log = self._records[tp]
            log.append(Record(topic, partition, self._base[tp] + len(log), out.key,
                              out.value, out.headers, ts_ms, out.envelope))

    async def commit(self, group: str, records: Sequence[Placed], ts_ms: int,
                     offsets: Mapping[TopicPartition, int], ids: Sequence[str]) -> None:
        self._append(records, ts_ms)
        for tp, off in offsets.items():
            self._offsets[(group, tp)] = off
        if ids:
            window = self._processed.get(group)
            if window is None:
                window = self._processed[group] = RecentIds(self._capacity)
            window.update(ids)

    def read(self, tp: TopicPartition, offset: int, limit: int) -> list[Record]:
        recs = self._records.get(tp)
        if not recs:
            return []
        i = max(0, offset - self._base[tp])  # below the low watermark: from the oldest kept
        return recs[i:i + limit]

    def end_offset(self, tp: TopicPartition) -> int:
        return self._base.get(tp, 0) + len(self._records.get(tp, ()))

    def committed(self, group: str, tps: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self._offsets[(group, tp)] for tp in tps if (group, tp) in self._offsets}

    def seen(self, group: str, ids: Sequence[str]) -> set[str]:
        window = self._processed.get(group)
        return window.seen(ids) if window is not None else set()

    def close(self) -> None:
        """Memory is released with the object."""


class MemoryLog(EmbeddedLog):
    """An in-process ``Log``: fast, exact, gone with the process.

    ``retention=True`` applies each topic's ``retention_ms``; ``max_records_per_partition``
    keeps at most that many records per partition (both off by default: tests and
    backtests keep everything).
    """

    def __init__(self, *, retention: bool = False,
                 max_records_per_partition: int | None = None) -> None:
        super().__init__(MemoryStorage(retention=retention,
                                       max_records_per_partition=max_records_per_partition))
