"""The SQLite log's WAL is checkpointed off the event loop, and the thread stops with it."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from alpha_panda.adapters.sqlite_log import SqliteLog
from alpha_panda.adapters.sqlite_log.checkpoint import Checkpointer
from tests.contract.helpers import read_all, spec, tick_output


async def test_commits_do_not_checkpoint_a_thread_does(tmp_path: Path) -> None:
    log = SqliteLog(tmp_path / "log.db")
    await log.ensure_topics([spec("in", 1)])
    checkpointer: Checkpointer = log._storage._checkpointer  # type: ignore[attr-defined]
    await log.append([tick_output("in", i) for i in range(2000)])
    deadline = time.monotonic() + 5
    while checkpointer.checkpoints < 2 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert checkpointer.checkpoints >= 2
    await log.close()
    assert not checkpointer._thread.is_alive()
    reopened = SqliteLog(tmp_path / "log.db")  # everything is still there
    assert len(await read_all(reopened, "in")) == 2000
    await reopened.close()
