"""``SqliteLog``: the durable embedded log, one SQLite file in WAL mode (see ``storage``)."""

from __future__ import annotations

from pathlib import Path

from alpha_panda.adapters.sqlite_log.storage import SqliteStorage
from alpha_panda.stream.embedded import EmbeddedLog

__all__ = ["SqliteLog", "SqliteStorage"]


class SqliteLog(EmbeddedLog):
    """A durable ``Log`` in one SQLite file. One ``SqliteLog`` per file at a time."""

    def __init__(self, path: Path, *, processed_capacity: int = 100_000,
                 synchronous: str = "NORMAL", tail_records: int = 10_000) -> None:
        """``processed_capacity``: dedup ids remembered per group (at least);
        ``synchronous``: SQLite's setting (NORMAL: durable against a process crash, FULL:
        also against power loss); ``tail_records``: recent records per partition served
        from memory."""
        self.path = Path(path)
        super().__init__(SqliteStorage(self.path, processed_capacity=processed_capacity,
                                       synchronous=synchronous, tail_records=tail_records))
