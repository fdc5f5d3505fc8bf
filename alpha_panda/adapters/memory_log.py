"""``MemoryLog``: the in-process log for tests and backtests. Nothing survives the process."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from alpha_panda.stream.dedup import RecentIds
from alpha_panda.stream.embedded import EmbeddedLog, Placed
from alpha_panda.stream.log import Record, TopicPartition


class MemoryStorage:
    """Python lists per partition; a commit is atomic because it never awaits."""

    def __init__(self, processed_capacity: int = 100_000) -> None:
        self._topics: dict[str, int] = {}
        self._records: dict[TopicPartition, list[Record]] = {}
        self._offsets: dict[tuple[str, TopicPartition], int] = {}
        self._processed: dict[str, RecentIds] = {}
        self._capacity = processed_capacity

    def topics(self) -> dict[str, int]:
        return dict(self._topics)

    def refresh(self) -> bool:
        return False  # nothing outside this process writes here

    def expire(self, now_ms: int, max_rows: int) -> int:
        return 0  # tests and backtests: everything is kept for the life of the process

    def create_topic(self, name: str, partitions: int, retention_ms: int = 0) -> None:
        self._topics[name] = partitions
        for p in range(partitions):
            self._records.setdefault(TopicPartition(name, p), [])

    def append(self, records: Sequence[Placed], ts_ms: int) -> None:
        for topic, partition, out in records:
            log = self._records[TopicPartition(topic, partition)]
            log.append(Record(topic, partition, len(log), out.key, out.value, out.headers, ts_ms))

    def commit(self, group: str, records: Sequence[Placed], ts_ms: int,
               offsets: Mapping[TopicPartition, int], ids: Sequence[str]) -> None:
        self.append(records, ts_ms)
        for tp, off in offsets.items():
            self._offsets[(group, tp)] = off
        if ids:
            window = self._processed.get(group)
            if window is None:
                window = self._processed[group] = RecentIds(self._capacity)
            window.update(ids)

    def read(self, tp: TopicPartition, offset: int, limit: int) -> list[Record]:
        return self._records.get(tp, [])[offset:offset + limit]

    def end_offset(self, tp: TopicPartition) -> int:
        return len(self._records.get(tp, ()))

    def committed(self, group: str, tps: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self._offsets[(group, tp)] for tp in tps if (group, tp) in self._offsets}

    def seen(self, group: str, ids: Sequence[str]) -> set[str]:
        window = self._processed.get(group)
        return window.seen(ids) if window is not None else set()

    def close(self) -> None:
        """Memory is released with the object."""


class MemoryLog(EmbeddedLog):
    """An in-process ``Log``: fast, exact, gone with the process."""

    def __init__(self) -> None:
        super().__init__(MemoryStorage())
