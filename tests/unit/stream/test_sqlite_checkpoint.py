"""The SQLite log's WAL is checkpointed off the event loop, and the thread stops with it."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from structlog.testing import capture_logs

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


def test_a_failing_checkpoint_is_logged_once_then_at_most_once_a_minute(tmp_path: Path) -> None:
    # A full disk failed the checkpoint every 0.5 s, each a warning: 15 in 8 s on stderr,
    # burying the run's other messages. (Here: a file that is no database.)
    path = tmp_path / "log.db"
    path.write_bytes(b"not a database" * 512)
    with capture_logs() as logs:
        checkpointer = Checkpointer(path, interval=0.005)
        deadline = time.monotonic() + 10
        while checkpointer.failures < 20 and time.monotonic() < deadline:
            time.sleep(0.01)
        checkpointer.close()
    assert checkpointer.failures >= 20 and checkpointer.checkpoints == 0
    failed = [e for e in logs if e["event"] == "sqlite_log.checkpoint_failed"]
    assert len(failed) == 1
    assert failed[0]["failures"] == 1 and failed[0]["next_warning_after_s"] == 60.0
    assert "not a database" in failed[0]["error"]
