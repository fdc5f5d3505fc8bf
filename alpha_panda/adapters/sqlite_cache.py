"""``SqliteCache``: the read-model cache in a SQLite file, shared by the processes of one
data directory.

Services split between processes (``alpha-panda service NAME...``) each write the documents
of what they run: the portfolio's process its portfolios, positions, orders and signals, the
strategy runner's the strategies, the risk manager's the kill switches. With the in-process
cache, an API beside the portfolio showed no strategy (and could halt none: it did not know
them); in a file every process writes to, the API finds every document wherever it runs,
as on Redis, with nothing to install.

One row per key; a write of several documents is one transaction, and ``get_many`` reads in
one, so a reader never sees half of a flush. TTLs are deadlines on the wall clock (the
processes share no monotonic clock on every system); expired rows are deleted by the next
write. The documents are derived from the log, which is the record: the file is written
without a sync (``synchronous=OFF``) and a lost write is written again at the next flush. A
locked or failing file surfaces as ``TransientError``, as a Redis outage does: the API
answers 503, the writer logs it and tries again at its next flush.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from alpha_panda.adapters.sqlite_log.schema import wal_mode
from alpha_panda.domain.errors import TransientError, ValidationError

_SCHEMA = ("CREATE TABLE IF NOT EXISTS documents(key TEXT PRIMARY KEY, value BLOB NOT NULL, "
           "expires REAL)")
_LIVE = "(expires IS NULL OR expires > ?)"


class SqliteCache:
    """A ``readmodel.cache.Cache`` in the SQLite file ``path`` (created if missing)."""

    def __init__(self, path: Path, busy_timeout_s: float = 2.0) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        with self._errors("open"):
            self._db.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
            wal_mode(self._db, busy_timeout_s)  # (another process may be creating it too)
            self._db.execute("PRAGMA synchronous=OFF")
            self._db.execute(_SCHEMA)

    async def get(self, key: str) -> bytes | None:
        """The value of ``key``, or None when absent or expired."""
        with self._errors("get"):
            row = self._db.execute(f"SELECT value FROM documents WHERE key = ? AND {_LIVE}",
                                   (key, time.time())).fetchone()
        return None if row is None else bytes(row[0])

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """Values of ``keys`` in order; None for each absent or expired key (one read
        transaction: the documents of one flush, together)."""
        if not keys:
            return []
        now = time.time()
        found: dict[str, bytes] = {}
        with self._errors("get"), self._transaction("BEGIN"):
            unique = list(dict.fromkeys(keys))
            for i in range(0, len(unique), 500):  # (SQLite's limit on bound parameters)
                chunk = unique[i:i + 500]
                marks = ",".join("?" * len(chunk))
                found.update((k, bytes(v)) for k, v in self._db.execute(
                    f"SELECT key, value FROM documents WHERE key IN ({marks}) AND {_LIVE}",
                    (*chunk, now)))
        return [found.get(k) for k in keys]

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        """Store ``value``; with ``ttl`` (seconds, > 0) it expires after that long."""
        await self.set_many({key: value}, ttl)

    async def set_many(self, items: dict[str, bytes], ttl: float | None = None) -> None:
        """Store every item, all with the same TTL, in one transaction."""
        for key, value in items.items():
            if not isinstance(value, bytes | bytearray | memoryview):
                raise ValidationError(
                    f"cache values are bytes, got {type(value).__name__} for {key!r}")
        if ttl is not None and ttl <= 0:
            raise ValidationError(f"ttl must be positive seconds, got {ttl}")
        if not items:
            return
        now = time.time()
        expires = None if ttl is None else now + ttl
        with self._errors("set"), self._transaction("BEGIN IMMEDIATE"):
            self._db.executemany(
                "INSERT OR REPLACE INTO documents(key, value, expires) VALUES (?, ?, ?)",
                [(k, bytes(v), expires) for k, v in items.items()])
            self._db.execute("DELETE FROM documents WHERE expires <= ?", (now,))

    async def delete(self, key: str) -> None:
        """Remove ``key``; absent keys are fine."""
        with self._errors("delete"):
            self._db.execute("DELETE FROM documents WHERE key = ?", (key,))

    async def keys(self, prefix: str) -> list[str]:
        """Live keys starting with ``prefix``, sorted."""
        now = time.time()
        with self._errors("keys"):
            rows = self._db.execute(
                f"SELECT key FROM documents WHERE substr(key, 1, ?) = ? AND {_LIVE} "
                "ORDER BY key", (len(prefix), prefix, now)).fetchall()
        return [k for (k,) in rows]

    async def close(self) -> None:
        """Close the connection (the documents stay in the file for the other processes)."""
        self._db.close()

    @contextmanager
    def _transaction(self, begin: str) -> Iterator[None]:
        self._db.execute(begin)
        try:
            yield
            self._db.execute("COMMIT")
        except BaseException:
            # (a failed COMMIT too: left open, the transaction would fail every later
            # BEGIN, and hold the write lock against the other processes)
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise TransientError(f"read-model cache {self.path}: {what} failed: {exc}") from exc
