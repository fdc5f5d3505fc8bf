"""Handlers with ``handle_batch``: the same effects as ``handle`` called record by record."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from alpha_panda.adapters.memory_log import MemoryLog
from alpha_panda.domain.errors import AuthenticationError, DecodeError, TransientError
from alpha_panda.domain.events import CODEC, DeadLetter, Envelope, derive_id
from alpha_panda.observability.health import State
from alpha_panda.stream.emit import BatchFailure, Emitted
from alpha_panda.stream.log import Output, Record
from alpha_panda.stream.runtime import ProcessorSettings, StreamProcessor
from alpha_panda.stream.topics import dlq_topic
from tests.contract.helpers import Echo, decode_ids, read_all, run_until, spec, tick_output

FAST = ProcessorSettings(backoff_base=0.01, backoff_max=0.02, poll_timeout=0.01)


class BatchEcho(Echo):
    """``Echo`` with a ``handle_batch``; counts the batches it was given."""

    def __init__(self, out: str, fail: Callable[[Envelope[Any]], BaseException | None]
                 = lambda e: None) -> None:
        super().__init__(out, fail)
        self.batches = 0

    def handle_batch(self, events: Sequence[Envelope[Any]],
                     records: Sequence[Record]) -> list[Emitted]:
        self.batches += 1
        out: list[Emitted] = []
        for i, (event, record) in enumerate(zip(events, records, strict=True)):
            try:
                emits = self.handle(event, record)
            except Exception as exc:
                raise BatchFailure(i, out, exc) from exc
            out.append((i, emits))
        return out


async def test_a_batch_handler_sees_whole_runs_and_emits_once_each() -> None:
    log = MemoryLog()
    await log.ensure_topics([spec("in", 1), spec("out", 1)])
    await log.append([tick_output("in", i, 1) for i in range(1, 101)])
    h = BatchEcho("out")
    proc = StreamProcessor(log, name="b", group="g", topics=["in"], handler=h, settings=FAST)
    await run_until(proc, lambda: proc.stats.processed == 100)
    assert h.batches < 5  # runs, not records
    assert decode_ids(await read_all(log, "out")) == [
        derive_id(f"tick-1-{i}", "echo") for i in range(1, 101)]
    assert await log.committed_offsets("g", "in") == {0: 100}


async def test_a_poison_event_mid_batch_is_dead_lettered_alone() -> None:
    log = MemoryLog()
    await log.ensure_topics([spec("in", 1), spec("out", 1)])
    await log.append([tick_output("in", i, 1) for i in range(1, 6)])
    h = BatchEcho("out", fail=lambda e: ValueError("bad") if e.ts == 3 else None)
    proc = StreamProcessor(log, name="b", group="g", topics=["in"], handler=h, settings=FAST)
    await run_until(proc, lambda: proc.stats.processed == 4 and proc.stats.dead_lettered == 1)
    assert h.seen == ["tick-1-1", "tick-1-2", "tick-1-4", "tick-1-5"]
    assert len(await read_all(log, "out")) == 4
    letter = CODEC.decode_as((await read_all(log, dlq_topic("in")))[0].value, DeadLetter).data
    assert letter.offset == 2
    assert await log.committed_offsets("g", "in") == {0: 5}


async def test_a_poison_event_last_in_the_batch_is_committed_past() -> None:
    log = MemoryLog()
    await log.ensure_topics([spec("in", 1), spec("out", 1)])
    await log.append([tick_output("in", i, 1) for i in range(1, 4)])
    h = BatchEcho("out", fail=lambda e: ValueError("bad") if e.ts == 3 else None)
    proc = StreamProcessor(log, name="b", group="g", topics=["in"], handler=h, settings=FAST)
    await run_until(proc, lambda: proc.stats.processed == 2 and proc.stats.dead_lettered == 1)
    assert await log.committed_offsets("g", "in") == {0: 3}


async def test_a_transient_failure_mid_batch_retries_that_event_only() -> None:
    log = MemoryLog()
    await log.ensure_topics([spec("in", 1), spec("out", 1)])
    await log.append([tick_output("in", i, 1) for i in range(1, 6)])
    left = [2]

    def fail(e: Envelope[Any]) -> BaseException | None:
        if e.ts == 3 and left[0] > 0:
            left[0] -= 1
            return TransientError("timeout")
        return None

    h = BatchEcho("out", fail=fail)
    proc = StreamProcessor(log, name="b", group="g", topics=["in"], handler=h, settings=FAST)
    await run_until(proc, lambda: proc.stats.processed == 5)
    assert proc.stats.retried == 2 and proc.stats.dead_lettered == 0
    assert h.seen == [f"tick-1-{i}" for i in range(1, 6)]  # each handled exactly once
    assert decode_ids(await read_all(log, "out")) == [
        derive_id(f"tick-1-{i}", "echo") for i in range(1, 6)]


async def test_a_fatal_error_mid_batch_commits_the_events_before_it() -> None:
    log = MemoryLog()
    await log.ensure_topics([spec("in", 1), spec("out", 1)])
    await log.append([tick_output("in", i, 1) for i in range(1, 5)])
    h = BatchEcho("out", fail=lambda e: AuthenticationError("expired") if e.ts == 3 else None)
    proc = StreamProcessor(log, name="b", group="g", topics=["in"], handler=h, settings=FAST)
    await asyncio.wait_for(proc.run(asyncio.Event()), 5)
    assert proc.health().state is State.FAILED
    assert await log.committed_offsets("g", "in") == {0: 2}
    assert len(await read_all(log, "out")) == 2


async def test_undecodable_records_and_duplicates_take_the_record_by_record_path() -> None:
    log = MemoryLog()
    await log.ensure_topics([spec("in", 1), spec("out", 1)])
    dup = tick_output("in", 2, 1)
    await log.append([tick_output("in", 1, 1), Output("in", b"1", b"{oops", (("id", b"x"),)),
                      dup, dup, tick_output("in", 3, 1)])
    h = BatchEcho("out")
    proc = StreamProcessor(log, name="b", group="g", topics=["in"], handler=h, settings=FAST)
    await run_until(proc, lambda: proc.stats.processed == 3 and proc.stats.dead_lettered == 1)
    assert proc.stats.duplicates == 1
    assert h.seen == ["tick-1-1", "tick-1-2", "tick-1-3"]
    letter = CODEC.decode_as((await read_all(log, dlq_topic("in")))[0].value, DeadLetter).data
    assert letter.error_class == DecodeError.__name__
