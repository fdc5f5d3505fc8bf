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
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TypeVar

import msgspec
import structlog
import zstandard

from alpha_panda.adapters.sqlite_log import dictionary
from alpha_panda.adapters.sqlite_log.checkpoint import SAFETY_NET_BYTES, Checkpointer
from alpha_panda.adapters.sqlite_log.tail import TailCache
from alpha_panda.domain.errors import ConfigurationError, ValidationError
from alpha_panda.stream.dedup import RecentIds
from alpha_panda.stream.embedded import Placed
from alpha_panda.stream.log import Headers, Output, Record, TopicPartition

log = structlog.get_logger(__name__)

OFFSET_BITS: Final = 40
MAX_PARTITIONS: Final = 1024
LAYOUT_VERSION: Final = 2  # PRAGMA user_version: 2 = segments (1 record per row before)
_SPAN: Final = 1 << OFFSET_BITS
_MASK: Final = _SPAN - 1
_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS topics(name TEXT PRIMARY KEY, id INTEGER NOT NULL UNIQUE,
                                  partitions INTEGER NOT NULL,
                                  retention_ms INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS segments(pos INTEGER PRIMARY KEY, n INTEGER NOT NULL,
                                    ts INTEGER NOT NULL, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS offsets(grp TEXT NOT NULL, tp INTEGER NOT NULL, off INTEGER NOT NULL,
                                   PRIMARY KEY(grp, tp)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS processed(seq INTEGER PRIMARY KEY, grp TEXT NOT NULL,
                                     n INTEGER NOT NULL, ids TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS processed_by_group ON processed(grp, seq);
"""
_INSERT: Final = "INSERT INTO segments(pos, n, ts, data) VALUES (?, ?, ?, ?)"
_SEGMENT_RECORDS: Final = 1000  # at most this many records per row when migrating

_Entry = tuple[bytes | None, bytes, Headers]
_encode_segment = msgspec.msgpack.Encoder().encode
_ZSTD_MAGIC: Final = b"\x28\xb5\x2f\xfd"  # a zstd frame; msgpack arrays start 0x9_/0xdc/0xdd
_COMPRESS_FROM: Final = 1024  # bytes: shorter journal rows are stored as they are
# Segments from 64 bytes (smaller: stored as they are) to 16 KiB (a live feed's few
# ticks, an order, a fill) take the dictionary; bigger ones (a replay's batches) are
# big enough for zstd alone.
_DICT_FROM: Final = 64
_DICT_BELOW: Final = 16 * 1024
_decode_segment = msgspec.msgpack.Decoder(list[tuple[bytes | None, bytes,
                                                     tuple[tuple[str, bytes], ...]]]).decode
_decode_headers = msgspec.msgpack.Decoder(tuple[tuple[str, bytes], ...]).decode
# (code, topic, partition, first offset, outputs): one partition's share of a write
_Written = tuple[int, str, int, int, list[Output]]
# (code, topic, partition, outputs, segment bytes): the same, packed, its offset not yet known
_Packed = tuple[int, str, int, list[Output], bytes]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class _Layout:
    """Topics and where every partition ends, as read from the file."""

    topics: dict[str, tuple[int, int, int]]  # name -> (id, partitions, retention_ms)
    ends: dict[int, int]  # tp_code -> next offset


class _SegmentCodec:
    """Segment bytes: msgpack, zstd-compressed from ``_DICT_FROM`` bytes on, with the
    shipped dictionary (``dictionary``) below ``_DICT_BELOW``. Holds its own (not
    thread-safe) zstd contexts: one per storage."""

    def __init__(self) -> None:
        # Level -1, one of zstd's fast levels: a replay's ticks shrink 11-fold (15-fold at
        # level 1: 38 bytes a tick stored instead of 28), for about 3% fewer instructions
        # per tick in the whole pipeline (callgrind, 20k ticks; runs vary by 2%). Frames
        # of either level read back alike.
        self._compress = zstandard.ZstdCompressor(level=-1).compress
        self._decompress = zstandard.ZstdDecompressor().decompress
        # Small segments (a live feed's few ticks, an order, a fill): with the dictionary,
        # 5-6 fold smaller for about 3 us each. Every frame names its dictionary (0: none).
        self._by_dict: dict[int, Callable[[bytes], bytes]] = {0: self._decompress}
        for dict_id, d in dictionary.dictionaries().items():
            self._by_dict[dict_id] = zstandard.ZstdDecompressor(dict_data=d).decompress
        latest = dictionary.current()
        self._compress_small = (None if latest is None else
                                zstandard.ZstdCompressor(level=1, dict_data=latest).compress)

    def pack(self, entries: Sequence[_Entry]) -> bytes:
        data = _encode_segment(entries)
        n = len(data)
        compress_small = self._compress_small
        if compress_small is not None and _DICT_FROM <= n < _DICT_BELOW:
            small = compress_small(data)
            return small if len(small) < n else data
        return self._compress(data) if n >= _COMPRESS_FROM else data

    def unpack(self, data: bytes) -> list[_Entry]:
        if data[:4] == _ZSTD_MAGIC:
            dict_id = zstandard.get_frame_parameters(data).dict_id
            decompress = self._by_dict.get(dict_id)
            if decompress is None:
                raise ConfigurationError(
                    f"a log segment needs zstd dictionary {dict_id:08x}, which this version "
                    "of Alpha Panda does not have: was the log written by a newer one?")
            data = decompress(data)
        return _decode_segment(data)

    def pack_ids(self, joined: str) -> str | bytes:
        """A journal row's ids: as text when short, else zstd-compressed bytes (a batch of
        tick ids shrinks 40-fold: writing it raw cost a replay 3% of its speed)."""
        return self._compress(joined.encode()) if len(joined) >= _COMPRESS_FROM else joined

    def unpack_ids(self, stored: str | bytes) -> list[str]:
        if isinstance(stored, bytes):
            stored = self._decompress(stored).decode()
        return stored.split("\n")


# Every commit writes each page it changed to the WAL whole, and the pipeline commits a few
# thousand times a second with small changes: 2 KiB pages halve those bytes against 4 KiB
# (tick-to-fill p99 2.2-2.8 ms against 3.4-3.9 at 10,000 ticks/s, throughput unchanged).
# Applies to new files; an existing file keeps its page size.
PAGE_SIZE: Final = 2048
WAL_KEEP_BYTES: Final = 256 << 20
BUSY_TIMEOUT_S: Final = 10.0


def wal_mode(db: sqlite3.Connection, wait_s: float = BUSY_TIMEOUT_S) -> None:
    """``PRAGMA journal_mode=WAL``, waiting up to ``wait_s`` for another connection that
    is opening the same new file: SQLite answers "database is locked" at once there, busy
    timeout or not (two ``service`` processes started together on an empty data directory
    failed to start in 7 of 20 trials)."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY or time.monotonic() >= deadline:
                raise
        time.sleep(0.01)


def _setup(db: sqlite3.Connection, synchronous: str) -> None:
    db.execute(f"PRAGMA page_size={PAGE_SIZE}")
    wal_mode(db)
    db.execute(f"PRAGMA synchronous={synchronous}")
    db.execute("PRAGMA temp_store=MEMORY")
    db.execute("PRAGMA cache_size=-65536")  # 64 MiB page cache
    # another process's transaction: wait for it (a write transaction waits in ``_lock``)
    db.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
    # Checkpoints run on their own thread; the writer's own one is only a safety net.
    page_size = int(db.execute("PRAGMA page_size").fetchone()[0])
    db.execute(f"PRAGMA wal_autocheckpoint={SAFETY_NET_BYTES // page_size}")
    # After a burst the WAL file is cut back to this when it next starts over.
    db.execute(f"PRAGMA journal_size_limit={WAL_KEEP_BYTES}")


def _lock(db: sqlite3.Connection, wait_s: float = BUSY_TIMEOUT_S) -> None:
    """``BEGIN IMMEDIATE``, waiting up to ``wait_s`` for another process's write
    transaction to end, looking again every 50 us to 2 ms.

    SQLite's own wait (``busy_timeout``) sleeps 1, 2, 5, 10... ms between looks, and a
    split pipeline's transactions hold the lock for a fraction of a millisecond: a wait
    took 5 ms on average, its event loop standing still (55 ms of 2 s in the orders'
    process). The connection's busy timeout is off for this statement only."""
    db.execute("PRAGMA busy_timeout=0")
    try:
        deadline = 0.0
        pause = 50e-6
        while True:
            try:
                db.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY:
                    raise
                now = time.monotonic()
                if not deadline:
                    deadline = now + wait_s
                elif now >= deadline:
                    raise
            time.sleep(pause)
            pause = min(2 * pause, 0.002)
    finally:
        db.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")


def _read_layout(db: sqlite3.Connection) -> _Layout:
    topics: dict[str, tuple[int, int, int]] = {}
    ends: dict[int, int] = {}
    for name, tid, parts, retention in db.execute(
            "SELECT name, id, partitions, retention_ms FROM topics"):
        topics[name] = (tid, parts, retention)
        for p in range(parts):
            code = tid * MAX_PARTITIONS + p
            lo = code << OFFSET_BITS
            row = db.execute("SELECT pos, n FROM segments WHERE pos >= ? AND pos < ? "
                             "ORDER BY pos DESC LIMIT 1", (lo, lo + _SPAN)).fetchone()
            ends[code] = 0 if row is None else int(row[0]) - lo + int(row[1])
    return _Layout(topics, ends)


def _migrate(db: sqlite3.Connection, codec: _SegmentCodec) -> None:
    """Create the schema; rewrite a file of the one-record-per-row layout into segments."""
    db.execute("BEGIN IMMEDIATE")
    try:
        old = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'topics'"
                         ).fetchone() is not None
        if old and "retention_ms" not in {r[1] for r in db.execute("PRAGMA table_info(topics)")}:
            db.execute("ALTER TABLE topics ADD COLUMN retention_ms INTEGER NOT NULL DEFAULT 0")
        for statement in _SCHEMA.split(";"):  # (executescript would commit first)
            if statement.strip():
                db.execute(statement)
        if db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'records'"
                      ).fetchone() is not None:
            moved = _records_to_segments(db, codec)
            db.execute("DROP TABLE records")
            log.warning("sqlite_log.migrated", records=moved,
                        detail="rewrote the log from one record per row to segments")
        if db.execute("PRAGMA user_version").fetchone()[0] != LAYOUT_VERSION:
            # (only when it differs: a write tells every other process on the file that
            # it changed, and a `dlq list` opening the log is no change)
            db.execute(f"PRAGMA user_version={LAYOUT_VERSION}")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def _records_to_segments(db: sqlite3.Connection, codec: _SegmentCodec) -> int:
    moved = 0
    run: list[_Entry] = []
    first = code = ts = -1

    def flush() -> None:
        if run:
            db.execute(_INSERT, (first, len(run), ts, codec.pack(run)))
            run.clear()

    for pos, rts, key, value, headers in db.execute(
            "SELECT pos, ts, key, value, headers FROM records ORDER BY pos"):
        if (pos >> OFFSET_BITS != code or rts != ts or pos != first + len(run)
                or len(run) >= _SEGMENT_RECORDS):
            flush()
            first, code, ts = pos, pos >> OFFSET_BITS, rts
        run.append((key, value, _decode_headers(headers) if headers is not None else ()))
        moved += 1
    flush()
    return moved


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
        records; returns (layout, [(code, first offset kept)], records deleted)."""
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
                        if pos == last or ts >= now_ms - retention \
                                or deleted + gone + n > max_records:
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


class SqliteStorage:
    """The ``Storage`` of ``SqliteLog``. Not thread-safe: owned by the event loop thread."""

    def __init__(self, path: Path, *, processed_capacity: int = 100_000,
                 synchronous: str = "NORMAL", tail_records: int = 10_000) -> None:
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False,
                                   cached_statements=64)
        _setup(self._db, synchronous)
        self._codec = _SegmentCodec()
        _migrate(self._db, self._codec)
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

