"""The SQLite log's write transactions (``_WriteSide``): the writer's view of the topics and
of where every partition ends, advanced inside a transaction and put back if it fails, and
the bookkeeping of the processed-ids journal.

Apart from the storage (``storage``), which reads the file and keeps the tails: this is
everything that writes, and the state only writes change.
"""

from __future__ import annotations

import sqlite3
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

from alpha_panda.adapters.sqlite_log.schema import (
    _INSERT,
    _SPAN,
    MAX_PARTITIONS,
    OFFSET_BITS,
    _Layout,
    _lock,
    _read_layout,
)
from alpha_panda.adapters.sqlite_log.segments import _SegmentCodec
from alpha_panda.domain.errors import ConfigurationError
from alpha_panda.stream.embedded import Placed
from alpha_panda.stream.log import Output, TopicPartition

# (code, topic, partition, first offset, outputs): one partition's share of a write
_Written = tuple[int, str, int, int, list[Output]]
# (code, topic, partition, outputs, segment bytes): the same, packed, its offset not yet known
_Packed = tuple[int, str, int, list[Output], bytes]
T = TypeVar("T")


class _WriteSide:
    """The write transactions: the writer's view of topics and where partitions end
    (advanced inside a transaction, restored if it fails) and the journal bookkeeping."""

    def __init__(self, layout: _Layout, data_version: int, capacity: int,
                 codec: _SegmentCodec) -> None:
        self._codec = codec
        self.topics = dict(layout.topics)
        # tp_code -> next offset. Advanced inside a transaction, put back if it fails: once
        # a write returned, what is durable (the storage's reads share this dict).
        self.ends = dict(layout.ends)
        self.data_version = data_version
        self._capacity = capacity
        # Per group, the journal rows this process wrote, oldest first, as (seq, ids), and
        # how many ids they hold: pruning then needs no scan of the journal.
        self._journal: dict[str, deque[tuple[int, int]]] = {}
        self._journal_ids: dict[str, int] = {}
        self._prune_below: dict[str, int] = {}  # group -> delete its rows under this seq
        # partitions (codes) another process appended to, as re-reads found them: for
        # ``SqliteStorage.moved_topics``
        self.moved: set[int] = set()
        self._dropped: dict[str, int] = {}  # group -> ids past the window not yet deleted

    # -- transactions ------------------------------------------------------------------

    def _begin(self, db: sqlite3.Connection) -> _Layout | None:
        """``BEGIN IMMEDIATE``; if another process wrote since, re-read the layout (we hold
        the write lock now) and return it."""
        _lock(db)
        return self._reread_if_changed(db)

    def _reread_if_changed(self, db: sqlite3.Connection) -> _Layout | None:
        version = int(db.execute("PRAGMA data_version").fetchone()[0])
        if version == self.data_version:
            return None
        self.data_version = version
        layout = _read_layout(db)
        ends = self.ends
        self.moved.update(code for code, end in layout.ends.items() if ends.get(code) != end)
        self.topics = dict(layout.topics)
        ends.clear()
        ends.update(layout.ends)
        return layout

    def _transact(self, db: sqlite3.Connection, body: Callable[[sqlite3.Connection], T]
                  ) -> tuple[_Layout | None, T]:
        """``body`` in one write transaction (layout re-read first if another process
        wrote); on any failure, rolled back and the ends and topics put back."""
        ends = dict(self.ends)
        topics = dict(self.topics)
        version = self.data_version
        try:
            layout = self._begin(db)
            result = body(db)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            self.ends.clear()
            self.ends.update(ends)
            self.topics = topics
            # (the layout re-read with it is gone too: the next transaction reads it again;
            # kept, another process's records stayed unseen and the next append here took
            # their offsets: UNIQUE constraint failed)
            self.data_version = version
            raise
        return layout, result

    # -- jobs --------------------------------------------------------------------------

    def pack(self, records: Sequence[Placed]) -> list[_Packed]:
        """``records`` as one segment per partition, encoded and compressed before the
        write transaction: the other process (a split pipeline's) waits for the lock while
        a transaction holds it, and a replay's batch of 5,000 ticks takes about 2 ms to
        pack. (A topic's id never changes once created, so codes found here hold inside.)"""
        topics = self.topics
        by_code: dict[int, list[Output]] = {}
        where: dict[int, tuple[str, int]] = {}
        for topic, partition, out in records:
            entry = topics.get(topic)
            if entry is None:
                raise ConfigurationError(f"unknown topic {topic!r}")
            code = entry[0] * MAX_PARTITIONS + partition
            outs = by_code.get(code)
            if outs is None:
                outs = by_code[code] = []
                where[code] = (topic, partition)
            outs.append(out)
        pack = self._codec.pack
        return [(code, *where[code], outs, pack([(o.key, o.value, o.headers) for o in outs]))
                for code, outs in by_code.items()]

    def _segments(self, db: sqlite3.Connection, packed: Sequence[_Packed], ts_ms: int
                  ) -> list[_Written]:
        """Inside the transaction: offsets for the packed segments, and their rows."""
        ends = self.ends
        rows: list[tuple[int, int, int, bytes]] = []
        written: list[_Written] = []
        for code, topic, partition, outs, data in packed:
            base = ends[code]
            ends[code] = base + len(outs)
            rows.append(((code << OFFSET_BITS) | base, len(outs), ts_ms, data))
            written.append((code, topic, partition, base, outs))
        db.executemany(_INSERT, rows)
        return written

    def append(self, db: sqlite3.Connection, records: Sequence[Placed], ts_ms: int
               ) -> tuple[_Layout | None, list[_Written]]:
        packed = self.pack(records)
        return self._transact(db, lambda d: self._segments(d, packed, ts_ms))

    def commit(self, db: sqlite3.Connection, group: str, records: Sequence[Placed], ts_ms: int,
               offsets: Mapping[TopicPartition, int], ids: str | bytes, n_ids: int
               ) -> tuple[_Layout | None, list[_Written]]:
        seq = 0
        packed = self.pack(records) if records else []

        def body(d: sqlite3.Connection) -> list[_Written]:
            nonlocal seq
            written = self._segments(d, packed, ts_ms) if packed else []
            if offsets:
                d.executemany("INSERT OR REPLACE INTO offsets(grp, tp, off) VALUES (?, ?, ?)",
                              [(group, self._code(tp), off) for tp, off in offsets.items()])
            if n_ids:
                seq = int(d.execute("INSERT INTO processed(grp, n, ids) VALUES (?, ?, ?)",
                                    (group, n_ids, ids)).lastrowid or 0)
                below = self._prune_below.pop(group, None)
                if below is not None:
                    d.execute("DELETE FROM processed WHERE grp = ? AND seq < ?", (group, below))
            return written

        layout, written = self._transact(db, body)
        if n_ids:
            self._journaled(group, seq, n_ids)
        return layout, written

    def _code(self, tp: TopicPartition) -> int:
        entry = self.topics.get(tp.topic)
        if entry is None or not 0 <= tp.partition < entry[1]:
            raise ConfigurationError(f"unknown partition {tp}")
        return entry[0] * MAX_PARTITIONS + tp.partition

    def create_topic(self, db: sqlite3.Connection, name: str, partitions: int,
                     retention_ms: int) -> _Layout | None:
        def body(d: sqlite3.Connection) -> None:
            if name in self.topics:  # another process created it meanwhile
                return
            tid = max((t[0] for t in self.topics.values()), default=0) + 1
            d.execute("INSERT INTO topics(name, id, partitions, retention_ms) "
                      "VALUES (?, ?, ?, ?)", (name, tid, partitions, retention_ms))
            self.topics[name] = (tid, partitions, retention_ms)
            for p in range(partitions):
                self.ends[tid * MAX_PARTITIONS + p] = 0

        layout, _ = self._transact(db, body)
        return layout

    def expire(self, db: sqlite3.Connection, now_ms: int, max_records: int
               ) -> tuple[_Layout | None, list[tuple[int, int]], int]:
        """Delete whole segments older than their topic's retention, up to ``max_records``
        records (or one segment bigger than that, alone); returns (layout, [(code, first offset kept)], records deleted)."""
        drops: list[tuple[int, int]] = []
        deleted = 0

        def body(d: sqlite3.Connection) -> None:
            nonlocal deleted
            for tid, parts, retention in self.topics.values():
                if retention <= 0:
                    continue
                for p in range(parts):
                    if deleted >= max_records:
                        return
                    code = tid * MAX_PARTITIONS + p
                    lo = code << OFFSET_BITS
                    gone, kept_from = 0, -1
                    # A partition's last segment stays, however old (as Kafka keeps its
                    # active segment): the partition's end is read from it when the log is
                    # opened, and an end that went back to 0 would give new records offsets
                    # the consumer groups had committed past (they were skipped).
                    (last,) = d.execute("SELECT MAX(pos) FROM segments WHERE pos >= ? AND pos < ?",
                                        (lo, lo + _SPAN)).fetchone()
                    for pos, n, ts in d.execute(
                            "SELECT pos, n, ts FROM segments WHERE pos >= ? AND pos < ? "
                            "ORDER BY pos LIMIT ?", (lo, lo + _SPAN, max_records - deleted)):
                        # (a segment bigger than a whole step goes alone: kept, it stayed
                        # for good, and every later one of its partition behind it)
                        if pos == last or ts >= now_ms - retention or (
                                deleted + gone and deleted + gone + n > max_records):
                            break
                        gone += n
                        kept_from = pos + n
                    if gone:
                        d.execute("DELETE FROM segments WHERE pos >= ? AND pos < ?",
                                  (lo, kept_from))
                        drops.append((code, kept_from - lo))
                        deleted += gone

        layout, _ = self._transact(db, body)
        return layout, drops, deleted

    def probe(self, db: sqlite3.Connection) -> _Layout | None:
        """Has another process written? (The layout, re-read, if so.)"""
        if int(db.execute("PRAGMA data_version").fetchone()[0]) == self.data_version:
            return None
        db.execute("BEGIN")
        try:
            return self._reread_if_changed(db)
        finally:
            db.execute("COMMIT")

    def _journaled(self, group: str, seq: int, n: int) -> None:
        """Note a committed journal row. Rows beyond the newest ``2 * capacity`` ids are
        marked for deletion by the group's next commit, a tenth of the capacity at a time:
        a few ms of deletes at most, never a scan of the journal."""
        rows = self._journal.get(group)
        if rows is None:
            rows = self._journal[group] = deque()
        rows.append((seq, n))
        total = self._journal_ids.get(group, 0) + n
        keep = 2 * self._capacity
        dropped = self._dropped.get(group, 0)
        while len(rows) > 1 and total - rows[0][1] >= keep:
            n_old = rows.popleft()[1]
            total -= n_old
            dropped += n_old
        self._journal_ids[group] = total
        if dropped >= max(1, self._capacity // 10):
            # Rows written before this process started are older still: they go too.
            self._prune_below[group] = rows[0][0]
            dropped = 0
        self._dropped[group] = dropped
