"""SQLite storage for the embedded log: one WAL-mode file, one writer (this process).

Layout: ``records`` is a rowid table whose rowid *is* the position, ``(tp_code << 40) |
offset`` with ``tp_code = topic_id * 1024 + partition``: no secondary index, appends go to
the end of each partition's range and a fetch is one rowid range scan. ``offsets`` holds
group positions; ``processed`` is a journal of processed ids, one row per commit (the ids
joined by newlines). Ids are random hashes, so a B-tree keyed by id would cost a random page
write per id; instead the journal is append-only and each group's recent ids are mirrored in
memory (``RecentIds``), loaded from the journal on first use. Old journal rows are pruned by
count, so both stay bounded.

Durability: ``journal_mode=WAL`` with ``synchronous=NORMAL``. A transaction is durable
against a crash of the process once ``COMMIT`` returns (it is in the WAL, which the OS
holds); a power loss may roll back the last transactions, never corrupt the file. Set
``synchronous="FULL"`` for durability against power loss at the cost of an fsync per
commit.
"""

from __future__ import annotations

import sqlite3
import weakref
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Final

import msgspec

from alpha_panda.adapters.sqlite_log.checkpoint import SAFETY_NET_PAGES, Checkpointer
from alpha_panda.adapters.sqlite_log.tail import TailCache
from alpha_panda.domain.errors import ConfigurationError, ValidationError
from alpha_panda.stream.dedup import RecentIds
from alpha_panda.stream.embedded import Placed
from alpha_panda.stream.log import Headers, Record, TopicPartition
from alpha_panda.stream.records import make_record

OFFSET_BITS: Final = 40
MAX_PARTITIONS: Final = 1024
_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS topics(name TEXT PRIMARY KEY, id INTEGER NOT NULL UNIQUE,
                                  partitions INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS records(pos INTEGER PRIMARY KEY, ts INTEGER NOT NULL, key BLOB,
                                   value BLOB NOT NULL, headers BLOB);
CREATE TABLE IF NOT EXISTS offsets(grp TEXT NOT NULL, tp INTEGER NOT NULL, off INTEGER NOT NULL,
                                   PRIMARY KEY(grp, tp)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS processed(seq INTEGER PRIMARY KEY, grp TEXT NOT NULL,
                                     n INTEGER NOT NULL, ids TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS processed_by_group ON processed(grp, seq);
"""
_INSERT: Final = "INSERT INTO records(pos, ts, key, value, headers) VALUES (?, ?, ?, ?, ?)"
_READ: Final = "SELECT pos, ts, key, value, headers FROM records WHERE pos >= ? AND pos < ? " \
               "ORDER BY pos LIMIT ?"

_encode_headers = msgspec.msgpack.Encoder().encode
_decode_headers = msgspec.msgpack.Decoder(tuple[tuple[str, bytes], ...]).decode
_Row = tuple[int, int, bytes | None, bytes, bytes | None]


class SqliteStorage:
    """The ``Storage`` of ``SqliteLog``. Not thread-safe: owned by the event loop thread."""

    def __init__(self, path: Path, *, processed_capacity: int = 100_000,
                 synchronous: str = "NORMAL", tail_records: int = 10_000) -> None:
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False,
                                   cached_statements=64)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={synchronous}")
        self._db.execute("PRAGMA temp_store=MEMORY")
        self._db.execute("PRAGMA cache_size=-65536")  # 64 MiB page cache
        # Checkpoints run on their own thread; the writer's own one is only a safety net.
        self._db.execute(f"PRAGMA wal_autocheckpoint={SAFETY_NET_PAGES}")
        self._db.executescript(_SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(topics)")}
        if "retention_ms" not in columns:
            self._db.execute("ALTER TABLE topics ADD COLUMN retention_ms INTEGER NOT NULL DEFAULT 0")
        self._capacity = processed_capacity
        self._topics: dict[str, tuple[int, int]] = {}
        self._names: dict[int, str] = {}
        self._retention: dict[str, int] = {}
        self._ends: dict[int, int] = {}  # tp_code -> next offset
        self._data_version = -1
        self._tail = TailCache(tail_records)
        self._load()
        self._recent: dict[str, RecentIds] = {}
        # Per group, the journal rows this process wrote, oldest first, as (seq, ids), and
        # how many ids they hold: pruning then needs no scan of the journal.
        self._journal: dict[str, deque[tuple[int, int]]] = {}
        self._journal_ids: dict[str, int] = {}
        self._prune_below: dict[str, int] = {}  # group -> delete its rows under this seq
        self._dropped: dict[str, int] = {}  # group -> ids past the window not yet deleted
        self._checkpointer = Checkpointer(path)
        weakref.finalize(self, self._checkpointer.close)  # a log nobody closed: stop it too

    def _load(self) -> None:
        """(Re)read topics and end offsets: at open, and when another process wrote."""
        self._tail.clear()  # another writer may have filled offsets the tails lack
        self._data_version = int(self._db.execute("PRAGMA data_version").fetchone()[0])
        for name, tid, parts, retention in self._db.execute(
                "SELECT name, id, partitions, retention_ms FROM topics"):
            self._topics[name] = (tid, parts)
            self._names[tid] = name
            self._retention[name] = retention
        for tid, parts in self._topics.values():
            for p in range(parts):
                self._ends[tid * MAX_PARTITIONS + p] = self._max_offset(tid * MAX_PARTITIONS + p)

    def refresh(self) -> bool:
        """Pick up what another process (``alpha-panda dlq replay``) appended; True if any."""
        version = int(self._db.execute("PRAGMA data_version").fetchone()[0])
        if version == self._data_version:
            return False
        self._load()
        return True

    def _max_offset(self, code: int) -> int:
        lo = code << OFFSET_BITS
        row = self._db.execute("SELECT max(pos) FROM records WHERE pos >= ? AND pos < ?",
                               (lo, lo + (1 << OFFSET_BITS))).fetchone()
        return 0 if row[0] is None else int(row[0]) - lo + 1

    def _code(self, tp: TopicPartition) -> int | None:
        entry = self._topics.get(tp.topic)
        if entry is None or not 0 <= tp.partition < entry[1]:
            return None
        return entry[0] * MAX_PARTITIONS + tp.partition

    def topics(self) -> dict[str, int]:
        return {name: parts for name, (_, parts) in self._topics.items()}

    def create_topic(self, name: str, partitions: int, retention_ms: int = 0) -> None:
        if partitions > MAX_PARTITIONS:
            raise ConfigurationError(f"topic {name!r}: at most {MAX_PARTITIONS} partitions")
        with self._transaction():
            if name in self._topics:  # another process created it meanwhile
                return
            tid = max(self._names, default=0) + 1
            self._db.execute(
                "INSERT INTO topics(name, id, partitions, retention_ms) VALUES (?, ?, ?, ?)",
                (name, tid, partitions, retention_ms))
        self._topics[name] = (tid, partitions)
        self._names[tid] = name
        self._retention[name] = retention_ms
        for p in range(partitions):
            self._ends[tid * MAX_PARTITIONS + p] = 0

    def expire(self, now_ms: int, max_rows: int = 50_000) -> int:
        """Delete records older than their topic's retention (at most ``max_rows``)."""
        deleted = 0
        for name, retention in self._retention.items():
            if retention <= 0 or deleted >= max_rows:
                continue
            tid, parts = self._topics[name]
            for p in range(parts):
                deleted += self._expire_partition(tid * MAX_PARTITIONS + p, now_ms - retention,
                                                  max_rows - deleted)
        return deleted

    def _expire_partition(self, code: int, cutoff_ms: int, budget: int) -> int:
        lo = code << OFFSET_BITS
        first = self._db.execute("SELECT min(pos) FROM records WHERE pos >= ? AND pos < ?",
                                 (lo, lo + (1 << OFFSET_BITS))).fetchone()[0]
        if first is None or budget <= 0:
            return 0
        # Offsets are dense and append times grow with them: binary-search the first
        # record young enough to keep.
        left, right = first, min(lo | self._ends[code], first + budget)
        while left < right:
            mid = (left + right) // 2
            row = self._db.execute("SELECT ts FROM records WHERE pos = ?", (mid,)).fetchone()
            if row is not None and row[0] < cutoff_ms:
                left = mid + 1
            else:
                right = mid
        if left == first:
            return 0
        with self._transaction():
            self._db.execute("DELETE FROM records WHERE pos >= ? AND pos < ?", (first, left))
        self._tail.drop_before(code, left - lo)
        return int(left - first)

    def _rows(self, records: Sequence[Placed], ts_ms: int) -> tuple[list[_Row],
                                                                     dict[int, list[Record]]]:
        """Database rows for ``records`` (offsets assigned) and the same as ``Record``s."""
        ends = self._ends
        topics = self._topics
        rows: list[_Row] = []
        by_code: dict[int, list[Record]] = {}
        for topic, partition, out in records:
            code = topics[topic][0] * MAX_PARTITIONS + partition
            off = ends[code]
            ends[code] = off + 1
            rows.append(((code << OFFSET_BITS) | off, ts_ms, out.key, out.value,
                         _encode_headers(out.headers) if out.headers else None))
            recs = by_code.get(code)
            if recs is None:
                recs = by_code[code] = []
            recs.append(make_record(topic, partition, off, out.key, out.value, out.headers,
                                    ts_ms))
        return rows, by_code

    def _cache(self, by_code: dict[int, list[Record]]) -> None:
        for code, recs in by_code.items():
            self._tail.add(code, recs)

    def _transaction(self) -> _Transaction:
        return _Transaction(self)

    def append(self, records: Sequence[Placed], ts_ms: int) -> None:
        with self._transaction():
            rows, by_code = self._rows(records, ts_ms)
            self._db.executemany(_INSERT, rows)
        self._cache(by_code)

    def commit(self, group: str, records: Sequence[Placed], ts_ms: int,
               offsets: Mapping[TopicPartition, int], ids: Sequence[str]) -> None:
        by_code: dict[int, list[Record]] = {}
        with self._transaction():
            if records:
                rows, by_code = self._rows(records, ts_ms)
                self._db.executemany(_INSERT, rows)
            if offsets:
                self._db.executemany(
                    "INSERT OR REPLACE INTO offsets(grp, tp, off) VALUES (?, ?, ?)",
                    [(group, self._checked_code(tp), off) for tp, off in offsets.items()])
            if ids:
                joined = "\n".join(ids)
                if joined.count("\n") != len(ids) - 1:
                    raise ValidationError("event ids must not contain newlines")
                seq = self._db.execute("INSERT INTO processed(grp, n, ids) VALUES (?, ?, ?)",
                                       (group, len(ids), joined)).lastrowid
                below = self._prune_below.pop(group, None)
                if below is not None:
                    self._db.execute("DELETE FROM processed WHERE grp = ? AND seq < ?",
                                     (group, below))
        # Only once the transaction is durable:
        self._cache(by_code)
        if ids:
            self._ids(group).update(ids)
            self._journaled(group, int(seq or 0), len(ids))

    def _checked_code(self, tp: TopicPartition) -> int:
        code = self._code(tp)
        if code is None:
            raise ConfigurationError(f"unknown partition {tp}")
        return code

    def _ids(self, group: str) -> RecentIds:
        recent = self._recent.get(group)
        if recent is None:
            recent = self._recent[group] = RecentIds(self._capacity)
            batches: list[str] = []
            count = 0
            for n, ids in self._db.execute(
                    "SELECT n, ids FROM processed WHERE grp = ? ORDER BY seq DESC", (group,)):
                batches.append(ids)
                count += n
                if count >= 2 * self._capacity:
                    break
            for ids in reversed(batches):
                recent.update(ids.split("\n"))
        return recent

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

    def read(self, tp: TopicPartition, offset: int, limit: int) -> list[Record]:
        code = self._code(tp)
        if code is None or offset >= self._ends[code]:
            return []
        cached = self._tail.get(code, offset, limit)
        if cached is not None:
            return cached
        lo = code << OFFSET_BITS
        rows = self._db.execute(_READ, (lo | offset, lo + (1 << OFFSET_BITS), limit)).fetchall()
        topic, partition = tp.topic, tp.partition
        mask = (1 << OFFSET_BITS) - 1
        empty: Headers = ()
        return [make_record(topic, partition, pos & mask, key, value,
                       _decode_headers(h) if h is not None else empty, ts)
                for pos, ts, key, value, h in rows]

    def end_offset(self, tp: TopicPartition) -> int:
        # ``_code`` inline: every poll asks this of each partition its consumer owns.
        entry = self._topics.get(tp.topic)
        partition = tp.partition
        if entry is None or not 0 <= partition < entry[1]:
            return 0
        return self._ends[entry[0] * MAX_PARTITIONS + partition]

    def committed(self, group: str, tps: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        out: dict[TopicPartition, int] = {}
        for tp in tps:
            code = self._code(tp)
            if code is None:
                continue
            row = self._db.execute("SELECT off FROM offsets WHERE grp = ? AND tp = ?",
                                   (group, code)).fetchone()
            if row is not None:
                out[tp] = int(row[0])
        return out

    def seen(self, group: str, ids: Sequence[str]) -> set[str]:
        return self._ids(group).seen(ids)

    def close(self) -> None:
        self._checkpointer.close()
        self._db.close()


class _Transaction:
    """``BEGIN IMMEDIATE`` … ``COMMIT``, rolled back (and the end offsets reloaded) on error."""

    def __init__(self, storage: SqliteStorage) -> None:
        self._s = storage
        self._ends: dict[int, int] = {}

    def __enter__(self) -> None:
        self._s._db.execute("BEGIN IMMEDIATE")
        # Holding the write lock now: if another process wrote, re-read where logs end.
        if int(self._s._db.execute("PRAGMA data_version").fetchone()[0]) != self._s._data_version:
            self._s._load()
        self._ends = dict(self._s._ends)

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            try:
                self._s._db.execute("COMMIT")
                return
            except sqlite3.Error:
                self._undo()
                raise
        self._undo()

    def _undo(self) -> None:
        if self._s._db.in_transaction:
            self._s._db.execute("ROLLBACK")
        self._s._ends = self._ends
