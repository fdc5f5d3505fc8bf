"""SQLite storage for the embedded log: one WAL-mode file, one writer per process.

Layout: ``segments`` holds the records, several per row: each append or commit writes one
row per partition it touches, holding that partition's new records (msgpack: key, value,
headers each; zstd-compressed from 64 bytes on, below 16 KiB with a dictionary that ships
with the package, see ``dictionary``). The rowid *is* the position of the segment's
first record, ``(tp_code << 40) | offset`` with ``tp_code = topic_id * 1024 + partition``,
so a partition is one rowid range and the segment holding an offset is the last one
starting at or before it. One row per partition and batch instead of one per record cuts
SQLite's work per tick by half; compression (ticks shrink 11-fold: their JSON repeats
itself) cuts what is left to a tenth, for less CPU than SQLite spent copying the raw bytes
into pages, the WAL and the file.

``offsets`` holds group positions; ``processed`` is a journal of processed ids, one row per
commit (the ids joined by newlines; zstd-compressed from 1 KiB on). Ids are mostly hashes,
so a B-tree keyed by id would cost a random page write per id; instead the journal is
append-only and each group's recent ids are mirrored in memory (``RecentIds``), loaded from
the journal on first use. Old journal rows are pruned by count, so both stay bounded.

Writes run on the event loop thread, in ``_WriteSide`` (offsets are assigned inside the
transaction); a batch's records reach the in-memory tails, and consumers, only once its
``COMMIT`` returned. (A writer thread was measured: with the GIL held by the pipeline,
each of its statements waited for a switch interval, and the pipeline ran 10-15% slower
than with these short, synchronous transactions.) WAL checkpoints do run on a thread.

Durability: ``journal_mode=WAL`` with ``synchronous=NORMAL``. A transaction is durable
against a crash of the process once ``COMMIT`` returns (it is in the WAL, which the OS
holds); a power loss may roll back the last transactions, never corrupt the file. Set
``synchronous="FULL"`` for durability against power loss at the cost of an fsync per
commit.

Other processes (``alpha-panda dlq replay``, ``kill``) may append to the same file: the
storage notices at the start of its next transaction (or when an idle consumer asks,
``refresh``) and re-reads where every partition ends.
"""

from __future__ import annotations

import sqlite3
import time
import weakref
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from alpha_panda.adapters.sqlite_log.checkpoint import Checkpointer
from alpha_panda.adapters.sqlite_log.schema import (
    _MASK,
    MAX_PARTITIONS,
    OFFSET_BITS,
    _Layout,
    _migrate,
    _read_layout,
    _setup,
)
from alpha_panda.adapters.sqlite_log.segments import _SegmentCodec
from alpha_panda.adapters.sqlite_log.tail import TailCache
from alpha_panda.adapters.sqlite_log.write_side import _WriteSide, _Written
from alpha_panda.domain.errors import ConfigurationError, ValidationError
from alpha_panda.stream.dedup import RecentIds
from alpha_panda.stream.embedded import Placed
from alpha_panda.stream.log import Output, Record, TopicPartition


class SqliteStorage:
    """The ``Storage`` of ``SqliteLog``. Not thread-safe: owned by the event loop thread."""

    def __init__(self, path: Path, *, processed_capacity: int = 100_000,
                 synchronous: str = "NORMAL", tail_records: int = 10_000) -> None:
        self.path = path
        self._codec = _SegmentCodec()
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False,
                                       cached_statements=64)
        except sqlite3.Error as exc:
            raise _cannot_open(path, exc) from exc
        try:
            _setup(self._db, synchronous)
            _migrate(self._db, self._codec)
        except sqlite3.DatabaseError as exc:
            # (a file that is not a log, a damaged one, a directory this user cannot write:
            # sqlite3's own error came out of every command as a traceback)
            self._db.close()
            raise _cannot_open(path, exc) from exc
        self._capacity = processed_capacity
        self._tail = TailCache(tail_records)
        # Where the file's changes stand, then the layout, in one read transaction: read
        # the other way round, a topic another process created between the two was taken
        # for known, and this process's next topic took its id (UNIQUE constraint failed:
        # two `service` processes started together on a new data directory). A change
        # after the version is read is read again by the next write, as any other is.
        self._db.execute("BEGIN")
        try:
            version = int(self._db.execute("PRAGMA data_version").fetchone()[0])
            layout = _read_layout(self._db)
        finally:
            self._db.execute("COMMIT")
        self._w = _WriteSide(layout, version, processed_capacity, self._codec)
        self._ends = self._w.ends  # tp_code -> next offset (durable: see ``_WriteSide``)
        self._recent: dict[str, RecentIds] = {}
        self._checkpointer = Checkpointer(path)
        weakref.finalize(self, self._checkpointer.close)  # a log nobody closed: stop it too

    # -- what a committed write changes in memory ----------------------------------------

    def _applied(self, layout: _Layout | None, written: list[_Written], ts_ms: int) -> None:
        """A write is durable: its records join the tails.

        When another process wrote first (``layout``: the write side re-read topics and
        ends) the tails are kept: what they hold is still what the file holds, and a
        partition the other process appended to has a gap after its tail, which ``add``
        sees and starts afresh. (Tails were cleared on every such write: with services
        split between two processes, each write of one made the other read everything
        from the file again, its own records included, and decode them again; the two
        processes spent twice the CPU of one.) Another process's retention deletes only
        records days old, which no tail holds: what is older than 30 s goes as another
        process's write is noticed (``_noticed``), and no older record joins a tail."""
        if layout is not None:
            self._noticed(ts_ms)
        for code, topic, partition, base, outs in written:
            self._tail.add(code, _records(topic, partition, base, outs, ts_ms))

    # -- the Storage protocol ---------------------------------------------------------

    def topics(self) -> dict[str, int]:
        return {name: parts for name, (_, parts, _) in self._w.topics.items()}

    def refresh(self) -> bool:
        """Pick up what another process (``alpha-panda dlq replay``, a service of its own)
        appended; True if any. The tails are kept (see ``_applied``)."""
        if self._w.probe(self._db) is None:
            return False
        self._noticed(int(time.time() * 1000))
        return True

    def _noticed(self, now_ms: int) -> None:
        """Another process wrote: the tails forget what has grown old (its retention may
        have deleted records they held)."""
        self._tail.sweep(now_ms)

    def moved_topics(self) -> set[str]:
        """The topics another process appended to since the last call (as this process's
        reads and writes of the file found them)."""
        moved = self._w.moved
        if not moved:
            return set()
        ids = {tid: name for name, (tid, _, _) in self._w.topics.items()}
        out = {ids[code // MAX_PARTITIONS] for code in moved if code // MAX_PARTITIONS in ids}
        moved.clear()
        return out

    def create_topic(self, name: str, partitions: int, retention_ms: int = 0) -> None:
        if partitions > MAX_PARTITIONS:
            raise ConfigurationError(f"topic {name!r}: at most {MAX_PARTITIONS} partitions")
        if self._w.create_topic(self._db, name, partitions, retention_ms) is not None:
            self._tail.clear()

    def expire(self, now_ms: int, max_rows: int = 50_000) -> int:
        """Delete records older than their topic's retention (whole segments, at most
        ``max_rows`` records); let the in-memory tails forget what has grown old."""
        self._tail.sweep(now_ms)
        layout, drops, deleted = self._w.expire(self._db, now_ms, max_rows)
        if layout is not None:
            self._tail.clear()
        for code, offset in drops:
            self._tail.drop_before(code, offset)
        return deleted

    async def append(self, records: Sequence[Placed], ts_ms: int) -> None:
        self._applied(*self._w.append(self._db, records, ts_ms), ts_ms)

    async def commit(self, group: str, records: Sequence[Placed], ts_ms: int,
                     offsets: Mapping[TopicPartition, int], ids: Sequence[str]) -> None:
        joined = "\n".join(ids)
        if ids and joined.count("\n") != len(ids) - 1:
            raise ValidationError("event ids must not contain newlines")
        offsets = dict(offsets)
        n_ids = len(ids)

        result = self._w.commit(self._db, group, records, ts_ms, offsets,
                                self._codec.pack_ids(joined), n_ids)
        # Only once the transaction is durable:
        self._applied(*result, ts_ms)
        if n_ids:
            self._ids(group).update(ids)

    def _ids(self, group: str) -> RecentIds:
        recent = self._recent.get(group)
        if recent is None:
            recent = self._recent[group] = RecentIds(self._capacity)
            batches: list[str | bytes] = []
            count = 0
            for n, ids in self._db.execute(
                    "SELECT n, ids FROM processed WHERE grp = ? ORDER BY seq DESC", (group,)):
                batches.append(ids)
                count += n
                if count >= 2 * self._capacity:
                    break
            for stored in reversed(batches):
                recent.update(self._codec.unpack_ids(stored))
        return recent

    def _code(self, tp: TopicPartition) -> int | None:
        entry = self._w.topics.get(tp.topic)
        if entry is None or not 0 <= tp.partition < entry[1]:
            return None
        return entry[0] * MAX_PARTITIONS + tp.partition

    def read(self, tp: TopicPartition, offset: int, limit: int) -> list[Record]:
        code = self._code(tp)
        if code is None:
            return []
        end = self._ends[code]
        if offset >= end or limit <= 0:
            return []
        cached = self._tail.get(code, offset, limit)
        if cached is not None:
            return cached
        start = self._tail.start(code)
        if start is not None and offset < start:
            # A reader behind the tail: from the file up to where the tail starts, then the
            # tail's own records, not new ones for the same offsets (which, kept, would
            # replace the tail's, and the groups ahead would decode them all again).
            out = self._read_file(code, tp, offset, start, limit)
            if len(out) < limit:  # (all there is before the tail: it follows)
                out += self._tail.get(code, start, limit - len(out)) or []
            return out
        out = self._read_file(code, tp, offset, end, limit, whole=True)
        # Another process's records: into the tail, so the next group of this process to
        # read them (a tick: the risk manager, then the paper engine) reads the same
        # records, decoded once. (Only those read at a partition's end were kept: a group
        # behind it from the start, as the other process appends faster, never shared,
        # and every tick was decoded twice in half the runs of a split pipeline.)
        self._tail.extend(code, out, int(time.time() * 1000))
        return out if len(out) <= limit else out[:limit]

    def _read_file(self, code: int, tp: TopicPartition, offset: int, end: int, limit: int,
                   *, whole: bool = False) -> list[Record]:
        """From ``offset``, up to ``limit`` records before ``end``; ``whole``: and the rest
        of the segment the last of them is in (decoded anyway: for the tail, where the
        reader's next read finds them instead of decoding the segment again)."""
        lo = code << OFFSET_BITS
        # The segment holding ``offset`` (or, below the oldest kept, the oldest) onwards.
        first = self._db.execute("SELECT max(pos) FROM segments WHERE pos >= ? AND pos <= ?",
                                 (lo, lo | max(offset, 0))).fetchone()[0]
        topic, partition = tp.topic, tp.partition
        out: list[Record] = []
        cursor = self._db.execute("SELECT pos, ts, data FROM segments WHERE pos >= ? AND pos < ? "
                                  "ORDER BY pos", (lo if first is None else first, lo | end))
        try:
            for pos, ts, data in cursor:
                base = (pos & _MASK)
                entries = self._codec.unpack(data)
                skip = max(0, offset - base)
                for off, (key, value, headers) in enumerate(entries[skip:], base + skip):
                    if off >= end:
                        break
                    out.append(Record(topic, partition, off, key, value, headers, ts))
                    if len(out) >= limit and not whole:
                        return out
                if len(out) >= limit:
                    return out
        finally:
            cursor.close()
        return out

    def end_offset(self, tp: TopicPartition) -> int:
        # ``_code`` inline: every poll asks this of each partition its consumer owns.
        entry = self._w.topics.get(tp.topic)
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


def _cannot_open(path: Path, exc: sqlite3.Error) -> ConfigurationError:
    return ConfigurationError(
        f"cannot open the embedded log {path}: {exc} (--data-dir, or --log sqlite:PATH, "
        "must name an Alpha Panda log, or where one can be made, in a directory this user "
        "can write)")


def _records(topic: str, partition: int, base: int, outs: list[Output], ts_ms: int
             ) -> list[Record]:
    """``outs`` as the records they became; an output's envelope (and so its id) is handed
    on, so no reader decodes what its producer had at hand."""
    recs: list[Record] = []
    append = recs.append
    for off, o in enumerate(outs, base):
        env = o.envelope
        append(Record(topic, partition, off, o.key, o.value, o.headers, ts_ms, env,
                      None if env is None else env.id))  # type: ignore[attr-defined]
    return recs

