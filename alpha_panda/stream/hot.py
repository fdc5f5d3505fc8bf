"""Hot-partition detection: per-partition rates and the heaviest keys of each partition.

A partition whose share of a processor's records exceeds ``factor`` times its fair share
(1 / partitions of its topic assigned) over a window is reported with its top keys, found with the
space-saving algorithm (``k`` counters per partition, bounded memory whatever the keys).
``HotAlerts`` decides which reports are worth a log line: a skewed key set (25 instruments
on 6 partitions put 35% of ``make run``'s ticks on one) stays hot all day, and a warning
every window from every processor reading it would bury everything else.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

from alpha_panda.stream.log import Record, TopicPartition


class TopKeys:
    """Space-saving top-k counter: approximate heavy hitters in O(k) memory."""

    __slots__ = ("_counts", "_k")

    def __init__(self, k: int = 5) -> None:
        self._k = k
        self._counts: dict[bytes, int] = {}

    def add(self, key: bytes, n: int = 1) -> None:
        counts = self._counts
        if key in counts or len(counts) < self._k:
            counts[key] = counts.get(key, 0) + n
            return
        victim = min(counts, key=counts.__getitem__)
        counts[key] = counts.pop(victim) + n  # inherits the evicted count (over-estimate)

    def top(self) -> list[tuple[bytes, int]]:
        return sorted(self._counts.items(), key=lambda kv: -kv[1])


@dataclass(frozen=True, slots=True)
class HotPartition:
    tp: TopicPartition
    share: float
    fair_share: float
    records: int
    top_keys: list[tuple[bytes, int]]


class HotPartitionTracker:
    """Counts records per partition over a window; ``report`` lists the hot ones."""

    def __init__(self, factor: float = 2.0, min_records: int = 1000, k: int = 5,
                 sample_every: int = 16) -> None:
        self._factor = factor
        self._min = min_records
        self._k = k
        self._sample = sample_every  # key counting on 1 record in N keeps the cost negligible
        self._counts: dict[tuple[str, int], int] = {}
        self._keys: dict[tuple[str, int], TopKeys] = {}

    def observe(self, records: Sequence[Record]) -> None:
        # Keyed by (topic, partition) tuples: hashed in C, unlike ``TopicPartition``.
        counts = self._counts
        step = self._sample
        for r in records[::step]:
            tp = (r.topic, r.partition)
            counts[tp] = counts.get(tp, 0) + step
            if r.key is not None:
                keys = self._keys.get(tp)
                if keys is None:
                    keys = self._keys[tp] = TopKeys(self._k)
                keys.add(r.key, step)

    def report(self, assignment: Collection[TopicPartition]) -> list[HotPartition]:
        """Hot partitions of the window now ending; the window is reset.

        Shares are per topic: a partition is compared with the other assigned partitions
        of its own topic (ticks and orders of one processor never compete).
        """
        partitions: dict[str, int] = {}
        for tp in assignment:
            partitions[tp.topic] = partitions.get(tp.topic, 0) + 1
        totals: dict[str, int] = {}
        for (topic, _), n in self._counts.items():
            totals[topic] = totals.get(topic, 0) + n
        hot: list[HotPartition] = []
        for (topic, partition), n in sorted(self._counts.items()):
            tp = TopicPartition(topic, partition)
            total, assigned = totals[topic], partitions.get(topic, 0)
            if total < self._min or assigned < 2:
                continue
            fair = 1.0 / assigned
            share = n / total
            if share > self._factor * fair:
                keys = self._keys.get((topic, partition))
                hot.append(HotPartition(tp, share, fair, n, keys.top() if keys else []))
        self._counts = {}
        self._keys = {}
        return hot


class HotAlerts:
    """Which hot partitions to warn about, and which cooled down since the last window.

    A partition is warned about when it first turns hot, then at most once per
    ``repeat_s`` while it stays hot or flaps around the threshold; the gauge tells the
    rest. A partition hot in the last window and not in this one has cooled (its gauge
    goes back to 0).
    """

    def __init__(self, repeat_s: float = 600.0) -> None:
        self._repeat = repeat_s
        self._hot: set[TopicPartition] = set()
        self._warned: dict[TopicPartition, float] = {}  # partition -> when last warned

    def update(self, hot: Sequence[HotPartition], now: float
               ) -> tuple[list[HotPartition], list[TopicPartition]]:
        """(the reports to warn about, the partitions that cooled) for this window."""
        current = {h.tp for h in hot}
        cooled = sorted(self._hot - current)
        self._hot = current
        warn: list[HotPartition] = []
        for h in hot:
            last = self._warned.get(h.tp)
            if last is None or now - last >= self._repeat:
                self._warned[h.tp] = now
                warn.append(h)
        return warn, cooled

    def forget(self, tps: Iterable[TopicPartition]) -> list[TopicPartition]:
        """Partitions no longer assigned: the ones that were hot (their gauge goes to 0)."""
        was_hot = []
        for tp in tps:
            self._warned.pop(tp, None)
            if tp in self._hot:
                self._hot.discard(tp)
                was_hot.append(tp)
        return was_hot
