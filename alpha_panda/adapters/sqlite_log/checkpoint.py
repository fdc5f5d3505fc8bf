"""WAL checkpoints on a thread of their own, off the event loop.

In WAL mode every commit appends to the ``-wal`` file; a checkpoint copies those pages
back into the database file and syncs it. Left to SQLite's automatic checkpoint, that
copy and sync run inside whichever ``COMMIT`` crosses the threshold: 10-20 ms (more on a
busy disk) during which the event loop, and every tick in flight, stands still. Here a
second connection checkpoints (``PASSIVE``: it never blocks the writer) every
``interval`` seconds on a daemon thread; sqlite3 releases the GIL while it works, so the
copy overlaps the pipeline's own work. SQLite's automatic checkpoint stays on, at a much
higher threshold, as a safety net should this thread fall behind.

Durability is unchanged: a transaction is in the WAL once ``COMMIT`` returns, whoever
later copies it into the database file.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)

# Bytes of WAL before a commit checkpoints by itself, stalling the event loop for the copy
# and two fsyncs. Only a safety net: every commit writes whole pages, and at 10,000 ticks/s
# the WAL grows by ~100 MB/s, so a 64 MiB net fired three times a second (a 37 ms stall
# each: the pipeline's p99), the checkpoint thread never getting its turn.
SAFETY_NET_BYTES = 1 << 30


class Checkpointer:
    """Checkpoints the WAL of ``path`` every ``interval`` seconds until ``close``."""

    def __init__(self, path: Path, interval: float = 0.5, *,
                 repeat_warning_s: float = 60.0) -> None:
        self._path = path
        self._interval = interval
        self._stop = threading.Event()
        self.checkpoints = 0
        self.failures = 0
        # A failing checkpoint (a full disk) fails every interval: the first is logged, then
        # one line per ``repeat_warning_s`` with the count since (every 0.5 s, 15 lines in
        # 8 s buried the run's other messages), and the recovery.
        self._repeat = repeat_warning_s
        self._thread = threading.Thread(target=self._run, name=f"wal-checkpoint:{path.name}",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        db = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        failing = 0  # failures since the last line logged (0: the last checkpoint went well)
        warned = 0.0
        try:
            while not self._stop.wait(self._interval):
                try:
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                    self.checkpoints += 1
                    if failing or warned:
                        log.info("sqlite_log.checkpoint_recovered", path=str(self._path))
                        failing, warned = 0, 0.0
                except sqlite3.Error as exc:
                    # The writer's safety-net checkpoint still bounds the WAL: say so, go on.
                    self.failures += 1
                    failing += 1
                    now = time.monotonic()
                    if not warned or now - warned >= self._repeat:
                        log.warning("sqlite_log.checkpoint_failed", path=str(self._path),
                                    error=str(exc), failures=failing,
                                    next_warning_after_s=self._repeat)
                        failing, warned = 0, now
        finally:
            db.close()

    def close(self, timeout: float = 5.0) -> None:
        """Stop the thread (its connection closes with it)."""
        self._stop.set()
        self._thread.join(timeout)
