"""Batches that emit nothing: their offsets and ids wait for the next commit (embedded log).

What must hold: nothing is committed ahead of the outputs that came before it, a held
batch is committed when a later batch emits, when the processor goes idle, is revoked or
stops; a crash only makes the log deliver held batches again; a duplicate of a held
record is still skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from alpha_panda.adapters.memory_log import MemoryLog
from alpha_panda.adapters.sqlite_log import SqliteLog
from alpha_panda.domain.errors import TransientError
from alpha_panda.domain.events import Envelope, derive_id
from alpha_panda.stream.emit import Emit
from alpha_panda.stream.log import Log, Record
from alpha_panda.stream.runtime import ProcessorSettings, StreamProcessor
from tests.contract.helpers import (
    Echo,
    crash_when,
    decode_ids,
    read_all,
    run_until,
    spec,
    tick_output,
)

QUIET = 2  # handlers below emit nothing for even instrument tokens, like this one


class Sparse(Echo):
    """Echoes ticks of odd instruments only; counts what it handled, by id."""

    def __init__(self, out: str = "out") -> None:
        super().__init__(out)
        self.handled: list[str] = []

    def handle(self, event: Envelope[Any], record: Record) -> Sequence[Emit]:
        self.handled.append(event.id)
        if event.data.instrument_token % 2 == 0:
            return []
        return super().handle(event, record)


@contextlib.asynccontextmanager
async def _running(log: Log, settings: ProcessorSettings, handler: Sparse | None = None
                   ) -> AsyncIterator[StreamProcessor]:
    """``handler`` (a ``Sparse``) running over ``in`` in group ``g``; stopped on exit."""
    proc = StreamProcessor(log, name="p", group="g", topics=["in"],
                           handler=handler or Sparse(), settings=settings)
    stop = asyncio.Event()
    task = asyncio.create_task(proc.run(stop))
    try:
        yield proc
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)


async def _wait(cond: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond() and time.monotonic() < deadline:
        await asyncio.sleep(0.005)
    assert cond()


async def test_a_batch_emitting_nothing_is_committed_with_the_next_that_emits(
        tmp_path: Path) -> None:
    log = SqliteLog(tmp_path / "l.sqlite")
    await log.ensure_topics([spec("in", 1), spec("out", 1)])
    # A long poll: the processor does not go idle (which commits) during the test.
    async with _running(log, ProcessorSettings(poll_timeout=30.0, commit_interval=30.0)) as proc:
        await log.append([tick_output("in", i, QUIET) for i in range(50)])
        await _wait(lambda: proc.stats.processed == 50)
        assert await log.committed_offsets("g", "in") == {}  # held: nothing waits for it

        await log.append([tick_output("in", 50, 1)])
        await _wait(lambda: proc.stats.processed == 51)
        # One commit: the echo of the 51st record with the offsets of all 51.
        assert await log.committed_offsets("g", "in") == {0: 51}
        assert decode_ids(await read_all(log, "out")) == [derive_id("tick-1-50", "echo")]
    await log.close()


async def test_held_batches_are_committed_when_the_processor_goes_idle(tmp_path: Path) -> None:
    log = SqliteLog(tmp_path / "l.sqlite")
    await log.ensure_topics([spec("in", 2), spec("out", 2)])
    async with _running(log, ProcessorSettings(poll_timeout=30.0, commit_interval=0.2)):
        await log.append([tick_output("in", i, token) for i in range(50) for token in (2, 4)])
        started = time.monotonic()
        ends = await log.end_offsets("in")
        assert ends == {0: 50, 1: 50}
        committed: dict[int, int] = {}
        while committed != ends and time.monotonic() - started < 5:
            await asyncio.sleep(0.01)
            committed = await log.committed_offsets("g", "in")
        # Within the commit interval, though the poll itself would wait 30 s.
        assert committed == ends and time.monotonic() - started < 2
    await log.close()


async def test_stop_commits_held_batches(tmp_path: Path) -> None:
    log = SqliteLog(tmp_path / "l.sqlite")
    await log.ensure_topics([spec("in", 1), spec("out", 1)])
    async with _running(log, ProcessorSettings(poll_timeout=30.0, commit_interval=30.0)) as proc:
        await log.append([tick_output("in", i, QUIET) for i in range(20)])
        await _wait(lambda: proc.stats.processed == 20)
        assert await log.committed_offsets("g", "in") == {}
    assert await log.committed_offsets("g", "in") == {0: 20}  # the stop committed them
    await log.close()


async def test_a_crash_loses_held_batches_and_the_log_delivers_them_again(
        tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    log = SqliteLog(path)
    await log.ensure_topics([spec("in", 1), spec("out", 1)])
    await log.append([tick_output("in", i, QUIET) for i in range(20)])
    settings = ProcessorSettings(poll_timeout=30.0, commit_interval=30.0)
    first = Sparse()
    proc = StreamProcessor(log, name="p", group="g", topics=["in"], handler=first,
                           settings=settings)
    await crash_when(proc, lambda: proc.stats.processed == 20)
    assert len(first.handled) == 20
    assert await log.committed_offsets("g", "in") == {}  # not even as the consumer closed
    again = Sparse()
    async with _running(log, settings, again) as proc:
        await _wait(lambda: proc.stats.processed == 20)
    assert again.handled == first.handled
    assert await log.committed_offsets("g", "in") == {0: 20}
    await log.close()


async def test_a_stop_cancelled_while_its_final_commit_retries_still_closes_the_consumer(
        ) -> None:
    log = MemoryLog()
    await log.ensure_topics([spec("in", 1), spec("out", 1)])
    stop = asyncio.Event()

    class StopsMidBatch(Sparse):
        def handle(self, event: Envelope[Any], record: Record) -> Sequence[Emit]:
            if record.offset == 4:
                stop.set()  # the stop comes while this batch is handled
            return super().handle(event, record)

    settings = ProcessorSettings(poll_timeout=30.0, commit_interval=30.0, backoff_base=1.0,
                                 backoff_max=1.0)
    proc = StreamProcessor(log, name="p", group="g", topics=["in"], handler=StopsMidBatch(),
                           settings=settings)
    task = asyncio.create_task(proc.run(stop))
    await _wait(lambda: proc._consumer is not None and bool(proc._consumer.assignment()))
    consumer = proc._consumer
    assert consumer is not None

    async def locked(*args: Any, **kwargs: Any) -> None:  # the storage's transient failure
        raise TransientError("database is locked")

    consumer.commit = locked  # type: ignore[method-assign]
    await log.append([tick_output("in", i, QUIET) for i in range(5)])
    await asyncio.sleep(0.2)  # the final commit of the held batch waits to retry
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert consumer.assignment() == frozenset()  # closed: it left the group
    assert not proc._runner.held


async def test_a_duplicate_of_a_held_record_is_skipped() -> None:
    log = MemoryLog()
    await log.ensure_topics([spec("in", 1), spec("out", 1)])
    handler = Sparse()
    settings = ProcessorSettings(poll_timeout=30.0, commit_interval=30.0)
    async with _running(log, settings, handler) as proc:
        await log.append([tick_output("in", 0, QUIET, id="a")])
        await _wait(lambda: proc.stats.processed == 1)
        assert await log.committed_offsets("g", "in") == {}  # "a" is held, not yet durable
        await log.append([tick_output("in", 1, QUIET, id="a")])  # the same event again
        await _wait(lambda: proc.stats.duplicates == 1)
        assert handler.handled == ["a"]
    assert await log.committed_offsets("g", "in") == {0: 2}


async def test_a_revoked_partition_is_committed_before_another_member_takes_it() -> None:
    log = MemoryLog()
    await log.ensure_topics([spec("in", 4), spec("out", 4)])
    # Never idle, never due: only the revocation can commit what ``a`` holds.
    settings = ProcessorSettings(poll_timeout=30.0, commit_interval=30.0)
    a_handler, b_handler = Sparse(), Sparse()
    a = StreamProcessor(log, name="a", group="g", topics=["in"], handler=a_handler,
                        settings=settings)
    stop_a = asyncio.Event()
    ta = asyncio.create_task(a.run(stop_a))
    quiet = [4, 2, 20, 8]  # quiet instruments on partitions 0, 1, 2 and 3
    await log.append([tick_output("in", i, quiet[i % 4]) for i in range(200)])
    await _wait(lambda: a.stats.processed == 200)
    assert await log.committed_offsets("g", "in") == {}
    b = StreamProcessor(log, name="b", group="g", topics=["in"], handler=b_handler,
                        settings=settings)
    stop_b = asyncio.Event()
    tb = asyncio.create_task(b.run(stop_b))
    await _wait(lambda: b._consumer is not None and len(b._consumer.assignment()) == 2)
    # a gave up two partitions: their offsets were committed first, b starts from there.
    assert sum((await log.committed_offsets("g", "in")).values()) == 200
    await log.append([tick_output("in", i, quiet[i % 4]) for i in range(200, 400)])
    await _wait(lambda: a.stats.processed + b.stats.processed == 400)
    stop_a.set()
    stop_b.set()
    await asyncio.wait_for(asyncio.gather(ta, tb), 5)
    handled = a_handler.handled + b_handler.handled
    assert len(handled) == 400 and len(set(handled)) == 400  # nothing handled twice
    assert len(b_handler.handled) < 200  # b had no part in the first 200


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_crashes_with_held_batches_lose_and_duplicate_nothing(
        tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    path = tmp_path / "log.sqlite"
    setup = SqliteLog(path)
    await setup.ensure_topics([spec("in", 3), spec("out", 3)])
    # Mostly quiet records: most batches emit nothing and are held.
    await setup.append([tick_output("in", i, 2 * (i % 5) + 2 + (i % 7 == 0))
                        for i in range(1, 3001)])
    settings = ProcessorSettings(batch_size=rng.choice([20, 100, 400]), commit_interval=30.0)
    for _ in range(3):
        # A process that dies after a random number of handled records, held ones among them.
        handler = Sparse()
        proc = StreamProcessor(SqliteLog(path), name="p", group="g", topics=["in"],
                               handler=handler, settings=settings)
        target = rng.randrange(50, 900)
        await crash_when(proc, lambda: len(handler.handled) >= target)  # noqa: B023 - awaited here
    final = SqliteLog(path)
    proc = StreamProcessor(final, name="p", group="g", topics=["in"], handler=Sparse(),
                           settings=settings)
    await run_until(proc, lambda: proc.stats.processed > 0 and proc.stats.lag == 0)
    ids = decode_ids(await read_all(final, "out"))
    expected = sum(1 for i in range(1, 3001) if i % 7 == 0)
    assert len(ids) == expected and len(set(ids)) == expected
    committed = await final.committed_offsets("g", "in")
    assert {p: committed.get(p, 0) for p in range(3)} == await final.end_offsets("in")
    await final.close()
    await setup.close()
