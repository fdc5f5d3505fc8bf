"""The SQLite log's file: its layout constants and schema, the connection's set-up (WAL,
page size, busy timeout), the write lock (``_lock``), the layout as read from the file
(``_Layout``, ``_read_layout``) and the migration of older files (``_migrate``).

Apart from the storage (``storage``), which reads and writes records through it: this is
what the file is and how it is opened, not what is done with it.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from typing import Final

import structlog

from alpha_panda.adapters.sqlite_log.checkpoint import SAFETY_NET_BYTES
from alpha_panda.adapters.sqlite_log.segments import _decode_headers, _Entry, _SegmentCodec

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


@dataclass(frozen=True, slots=True)
class _Layout:
    """Topics and where every partition ends, as read from the file."""

    topics: dict[str, tuple[int, int, int]]  # name -> (id, partitions, retention_ms)
    ends: dict[int, int]  # tp_code -> next offset


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
