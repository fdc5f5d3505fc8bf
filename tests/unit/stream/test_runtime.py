"""The consumer runtime: retries by error class, fatal errors, crashes, rebuild, health."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from alpha_panda.adapters.memory_log import MemoryLog
from alpha_panda.adapters.sqlite_log import SqliteLog
from alpha_panda.domain.errors import (
    AuthenticationError,
    InvariantViolation,
    RateLimited,
    TransientError,
)
from alpha_panda.domain.events import CODEC, DeadLetter, Envelope, derive_id, new_envelope
from alpha_panda.observability.health import State
from alpha_panda.stream.emit import Emit
from alpha_panda.stream.log import Record
from alpha_panda.stream.runtime import ProcessorSettings, StreamProcessor
from alpha_panda.stream.topics import dlq_topic
from tests.contract.helpers import (
    Echo,
    crash_when,
    decode_ids,
    read_all,
    run_until,
    spec,
    tick_output,
)

FAST = ProcessorSettings(backoff_base=0.02, backoff_max=0.2, poll_timeout=0.01)


class Flaky:
    """Fails ``failures`` times on token 1 with ``exc``, then echoes; records the order."""

    def __init__(self, out: str, exc: Exception, failures: int) -> None:
        self.echo = Echo(out)
        self.exc = exc
        self.left = failures
        self.calls: list[tuple[str, float]] = []

    def handle(self, event: Envelope[Any], record: Record) -> Sequence[Emit]:
        self.calls.append((event.id, time.monotonic()))
        if event.data.instrument_token == 1 and self.left > 0:
            self.left -= 1
            raise self.exc
        return self.echo.handle(event, record)


async def test_transient_errors_are_retried_with_backoff_without_blocking_others() -> None:
    log = MemoryLog()
    await log.ensure_topics([spec("in", 2), spec("out", 2)])
    other = next(t for t in range(2, 50) if _partition(t) != _partition(1))
    await log.append([tick_output("in", 1, 1), tick_output("in", 1, other)])
    h = Flaky("out", TransientError("timeout"), failures=2)
    proc = StreamProcessor(log, name="flaky", group="g", topics=["in"], handler=h, settings=FAST)
    await run_until(proc, lambda: proc.stats.processed == 2)

    assert proc.stats.retried == 2 and proc.stats.dead_lettered == 0
    assert sorted(decode_ids(await read_all(log, "out"))) == sorted(
        derive_id(i, "echo") for i in ("tick-1-1", f"tick-{other}-1"))
    attempts = [at for eid, at in h.calls if eid == "tick-1-1"]
    assert len(attempts) == 3
    assert attempts[1] - attempts[0] >= 0.01 - 1e-3  # at least half the first backoff
    assert attempts[2] - attempts[1] >= 0.02 - 1e-3  # exponential: at least half of 0.04
    # The other partition was handled while token 1's partition waited for its retry.
    order = [eid for eid, _ in h.calls]
    assert order.index(f"tick-{other}-1") < 2


def _partition(token: int) -> int:
    from alpha_panda.stream.topics import partition_for

    return partition_for(str(token).encode(), 2)


async def test_rate_limited_waits_at_least_retry_after() -> None:
    log = MemoryLog()
    await log.ensure_topics([spec("in", 1), spec("out", 1)])
    await log.append([tick_output("in", 1, 1)])
    h = Flaky("out", RateLimited("slow down", retry_after=0.15), failures=1)
    proc = StreamProcessor(log, name="rl", group="g", topics=["in"], handler=h, settings=FAST)
    await run_until(proc, lambda: proc.stats.processed == 1)
    assert h.calls[1][1] - h.calls[0][1] >= 0.15


async def test_retries_are_bounded_then_dead_lettered() -> None:
    log = MemoryLog()
    await log.ensure_topics([spec("in", 1), spec("out", 1)])
    await log.append([tick_output("in", 1, 1), tick_output("in", 2, 1)])
    settings = ProcessorSettings(max_attempts=3, backoff_base=0.01, backoff_max=0.02,
                                 poll_timeout=0.01)
    h = Flaky("out", TransientError("down"), failures=3)
    proc = StreamProcessor(log, name="f", group="g", topics=["in"], handler=h, settings=settings)
    await run_until(proc, lambda: proc.stats.processed == 1 and proc.stats.dead_lettered == 1)
    letter = CODEC.decode_as((await read_all(log, dlq_topic("in")))[0].value, DeadLetter).data
    assert (letter.attempts, letter.error_class, letter.offset) == (3, "TransientError", 0)
    assert decode_ids(await read_all(log, "out")) == [derive_id("tick-1-2", "echo")]


async def test_authentication_error_stops_after_committing_earlier_work() -> None:
    log = MemoryLog()
    await log.ensure_topics([spec("in", 1), spec("out", 1)])
    await log.append([tick_output("in", i, 1) for i in range(1, 4)])

    class Auth(Echo):
        def handle(self, event: Envelope[Any], record: Record) -> Sequence[Emit]:
            if event.ts == 3:
                raise AuthenticationError("token expired")
            return super().handle(event, record)

    proc = StreamProcessor(log, name="live", group="g", topics=["in"], handler=Auth("out"))
    await asyncio.wait_for(proc.run(asyncio.Event()), 5)  # returns by itself
    status = proc.health()
    assert status.state is State.FAILED and not status.ready
    assert "token expired" in status.detail
    assert await log.committed_offsets("g", "in") == {0: 2}  # the failing one comes again
    assert len(await read_all(log, "out")) == 2
    assert await read_all(log, dlq_topic("in")) == []


async def test_invariant_violation_is_fatal_too() -> None:
    log = MemoryLog()
    await log.ensure_topics([spec("in", 1), spec("out", 1)])
    await log.append([tick_output("in", 1, 1)])
    h = Flaky("out", InvariantViolation("negative cash"), failures=1)
    proc = StreamProcessor(log, name="p", group="g", topics=["in"], handler=h)
    await asyncio.wait_for(proc.run(asyncio.Event()), 5)
    assert proc.state is State.FAILED
    assert await log.committed_offsets("g", "in") == {}


class SlowEcho(Echo):
    """An async handler (network I/O) that a crash can interrupt mid-batch."""

    async def ahandle(self, event: Envelope[Any], record: Record) -> Sequence[Emit]:
        await asyncio.sleep(0)
        return self.handle(event, record)


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_crashes_mid_batch_then_restarts_lose_and_duplicate_nothing(
        tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    path = tmp_path / "log.sqlite"
    setup = SqliteLog(path)
    await setup.ensure_topics([spec("in", 3), spec("out", 3)])
    await setup.append([tick_output("in", i, i % 5 + 1) for i in range(1, 3001)])
    settings = ProcessorSettings(batch_size=rng.choice([100, 400, 1000]))
    for _ in range(3):
        # Each round is a process that dies after a random number of handled records,
        # wherever that falls in a batch: the file is left as the crash left it.
        log = SqliteLog(path)
        handler = SlowEcho("out")
        proc = StreamProcessor(log, name="p", group="g", topics=["in"], handler=handler,
                               settings=settings)
        target = rng.randrange(50, 900)
        await crash_when(proc, lambda: len(handler.seen) >= target)  # noqa: B023 - awaited here
    final = SqliteLog(path)
    proc = StreamProcessor(final, name="p", group="g", topics=["in"], handler=SlowEcho("out"),
                           settings=settings)
    # At most 3 x 900 were handled before: the last run has work, and lag 0 means done.
    await run_until(proc, lambda: proc.stats.processed > 0 and proc.stats.lag == 0)
    ids = decode_ids(await read_all(final, "out"))
    assert len(ids) == 3000 and len(set(ids)) == 3000
    committed = await final.committed_offsets("g", "in")
    assert {p: committed.get(p, 0) for p in range(3)} == await final.end_offsets("in")
    await final.close()
    await setup.close()


class PriceSum:
    """State rebuilt from the log: the sum of prices per instrument."""

    def __init__(self) -> None:
        self.totals: dict[int, int] = {}

    def handle(self, event: Envelope[Any], record: Record) -> Sequence[Emit]:
        tok = event.data.instrument_token
        self.totals[tok] = self.totals.get(tok, 0) + event.data.last_price
        env = new_envelope(event.data, id=derive_id(event.id, "sum"), ts=event.ts,
                           source="sum", key=event.key, parent=event)
        return [Emit("out", env)]


async def test_rebuild_restores_handler_state_from_the_log() -> None:
    log = MemoryLog()
    await log.ensure_topics([spec("in", 3), spec("out", 3)])
    await log.append([tick_output("in", i, i % 4 + 1, price=100 + i) for i in range(500)])
    first = PriceSum()
    proc = StreamProcessor(log, name="s", group="g", topics=["in"], handler=first)
    await run_until(proc, lambda: proc.stats.processed == 500)

    await log.append([tick_output("in", i, i % 4 + 1, price=100 + i) for i in range(500, 600)])
    rebuilt = PriceSum()
    proc2 = StreamProcessor(log, name="s", group="g", topics=["in"], handler=rebuilt,
                            rebuild=True)
    await run_until(proc2, lambda: proc2.stats.processed == 100)
    expected: dict[int, int] = {}
    for i in range(600):
        expected[i % 4 + 1] = expected.get(i % 4 + 1, 0) + 100 + i
    assert rebuilt.totals == expected
    assert len(await read_all(log, "out")) == 600  # the rebuild emitted nothing


async def test_health_goes_from_starting_to_ready_to_stopped() -> None:
    log = MemoryLog()
    await log.ensure_topics([spec("in", 2), spec("out", 2)])
    await log.append([tick_output("in", i, 1) for i in range(10)])
    proc = StreamProcessor(log, name="h", group="g", topics=["in"], handler=Echo("out"))
    assert proc.health().state is State.STARTING and not proc.health().ready
    stop = asyncio.Event()
    task = asyncio.create_task(proc.run(stop))
    deadline = time.monotonic() + 5
    while not proc.health().ready and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    status = proc.health()
    assert status.ready and status.state is State.RUNNING and status.lag == 0
    assert status.processed == 10
    stop.set()
    await asyncio.wait_for(task, 5)
    assert proc.health().state is State.STOPPED


async def test_on_batch_end_outputs_are_committed_with_the_batch() -> None:
    log = MemoryLog()
    await log.ensure_topics([spec("in", 1), spec("out", 1), spec("snap", 1)])
    await log.append([tick_output("in", i, 1) for i in range(5)])

    class Snapshotting(Echo):
        def __init__(self) -> None:
            super().__init__("out")
            self.snapped = 0

        def on_batch_end(self) -> Sequence[Emit]:
            if not self.seen or self.snapped == len(self.seen):
                return []
            self.snapped = len(self.seen)
            env = new_envelope(self_tick(), id=f"snap-{self.snapped}", ts=0, source="s", key="1")
            return [Emit("snap", env)]

    def self_tick() -> Any:
        return CODEC.decode(tick_output("x", 0).value).data

    proc = StreamProcessor(log, name="s", group="g", topics=["in"], handler=Snapshotting())
    await run_until(proc, lambda: proc.stats.processed == 5)
    snaps = await read_all(log, "snap")
    assert snaps and decode_ids(snaps)[-1] == "snap-5"


async def test_stop_is_prompt_and_commits(tmp_path: Path) -> None:
    log = SqliteLog(tmp_path / "l.sqlite")
    await log.ensure_topics([spec("in", 1), spec("out", 1)])
    proc = StreamProcessor(log, name="p", group="g", topics=["in"], handler=Echo("out"))
    stop = asyncio.Event()
    task = asyncio.create_task(proc.run(stop))
    await log.append([tick_output("in", 1, 1)])
    while proc.stats.processed < 1:
        await asyncio.sleep(0.005)
    started = time.monotonic()
    stop.set()
    await asyncio.wait_for(task, 2)
    assert time.monotonic() - started < 0.5
    assert await log.committed_offsets("g", "in") == {0: 1}
    await log.close()


async def test_a_dedup_store_hiccup_is_retried_not_fatal() -> None:
    from alpha_panda.domain.errors import BrokerUnavailable
    from alpha_panda.stream.embedded import EmbeddedConsumer

    class FlakyDedupLog(MemoryLog):
        """The dedup store (Redis for Kafka) is unreachable once."""

        failures = 1

        def consumer(self, *args: Any, **kwargs: Any) -> EmbeddedConsumer:
            c = super().consumer(*args, **kwargs)
            real = c.seen

            async def seen(ids: Sequence[str]) -> set[str]:
                if FlakyDedupLog.failures:
                    FlakyDedupLog.failures -= 1
                    raise BrokerUnavailable("dedup store down")
                return await real(ids)

            c.seen = seen  # type: ignore[method-assign]
            return c

    log = FlakyDedupLog()
    await log.ensure_topics([spec("in", 1), spec("out", 1)])
    await log.append([tick_output("in", 1, 1)])
    proc = StreamProcessor(log, name="p", group="g", topics=["in"], handler=Echo("out"),
                           settings=FAST)
    await run_until(proc, lambda: proc.stats.processed == 1)
    assert proc.state is State.STOPPED and FlakyDedupLog.failures == 0


async def test_health_says_when_partitions_are_waiting_to_retry() -> None:
    log = MemoryLog()
    await log.ensure_topics([spec("in", 1), spec("out", 1)])
    await log.append([tick_output("in", 1, 1)])
    slow = ProcessorSettings(backoff_base=5.0, backoff_max=5.0, poll_timeout=0.01)
    h = Flaky("out", TransientError("down"), failures=1)
    proc = StreamProcessor(log, name="p", group="g", topics=["in"], handler=h, settings=slow)
    details: list[str] = []

    def waiting() -> bool:
        details.append(proc.health().detail)
        return any("retrying 1 partition" in d for d in details)

    await run_until(proc, waiting)
    assert proc.stats.processed == 0  # still waiting out the 2.5-5 s backoff


async def test_retry_works_with_a_consumer_that_cannot_pause() -> None:
    from alpha_panda.stream.embedded import EmbeddedConsumer

    class NoPause:
        """A backend consumer without pause/resume: the runtime rewinds instead."""

        def __init__(self, inner: EmbeddedConsumer) -> None:
            self._inner = inner

        def __getattr__(self, name: str) -> Any:
            if name in ("pause", "resume"):
                raise AttributeError(name)
            return getattr(self._inner, name)

    class NoPauseLog(MemoryLog):
        def consumer(self, *args: Any, **kwargs: Any) -> Any:
            return NoPause(super().consumer(*args, **kwargs))

    log = NoPauseLog()
    await log.ensure_topics([spec("in", 1), spec("out", 1)])
    await log.append([tick_output("in", i, 1) for i in range(1, 4)])
    h = Flaky("out", TransientError("down"), failures=2)
    proc = StreamProcessor(log, name="p", group="g", topics=["in"], handler=h, settings=FAST)
    await run_until(proc, lambda: proc.stats.processed == 3)
    assert decode_ids(await read_all(log, "out")) == [
        derive_id(f"tick-1-{i}", "echo") for i in range(1, 4)]  # order kept through retries


async def test_a_member_taking_over_partitions_rebuilds_their_state() -> None:
    log = MemoryLog()
    await log.ensure_topics([spec("in", 4), spec("out", 4)])
    a_state, b_state = PriceSum(), PriceSum()
    a = StreamProcessor(log, name="a", group="g", topics=["in"], handler=a_state, rebuild=True)
    b = StreamProcessor(log, name="b", group="g", topics=["in"], handler=b_state, rebuild=True)
    stop_a, stop_b = asyncio.Event(), asyncio.Event()
    ta = asyncio.create_task(a.run(stop_a))
    tb = asyncio.create_task(b.run(stop_b))
    deadline = time.monotonic() + 5
    while not (a.health().ready and b.health().ready) and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)  # both members synced with the group
    await log.append([tick_output("in", i, i % 8 + 1, price=10 + i) for i in range(400)])
    while a.stats.processed + b.stats.processed < 400 and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert a.stats.processed and b.stats.processed  # the group split the work
    stop_a.set()
    await ta
    while len(b_state.totals) < 8 and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    stop_b.set()
    await tb
    expected: dict[int, int] = {}
    for i in range(400):
        expected[i % 8 + 1] = expected.get(i % 8 + 1, 0) + 10 + i
    assert b_state.totals == expected  # a's partitions were replayed into b
    assert len(await read_all(log, "out")) == 400


async def test_metrics_count_processed_records_and_dead_letters_by_service_and_topic() -> None:
    from prometheus_client import REGISTRY

    from tests.contract.helpers import raw

    log = MemoryLog()
    await log.ensure_topics([spec("m-in", 1), spec("m-out", 1)])
    await log.append([tick_output("m-in", 1), raw("m-in", b"1", b"junk", "j1"),
                      tick_output("m-in", 2)])
    proc = StreamProcessor(log, name="metered", group="g", topics=["m-in"], handler=Echo("m-out"))
    await run_until(proc, lambda: proc.stats.processed == 2)
    labels = {"service": "metered", "topic": "m-in"}
    assert REGISTRY.get_sample_value("alpha_panda_stream_processed_total", labels) == 2
    assert REGISTRY.get_sample_value("alpha_panda_stream_dead_letters_total", labels) == 1
    assert REGISTRY.get_sample_value(
        "alpha_panda_stream_errors_total", {**labels, "error_class": "DecodeError"}) == 1
    assert REGISTRY.get_sample_value(
        "alpha_panda_stream_lag", {"service": "metered", "topic": "m-in"}) == 0


async def test_a_hot_partition_is_warned_about_once_and_its_gauge_drops_when_it_cools() -> None:
    """A skewed partition is reported every window in the gauge, but logged once (it
    was every 10 s, from every processor, all day long); the gauge goes back to 0 once the
    partition cools (it kept its last hot share for ever)."""
    from prometheus_client import REGISTRY
    from structlog.testing import capture_logs

    log = MemoryLog()
    await log.ensure_topics([spec("hot-in", 4), spec("hot-out", 4)])
    settings = ProcessorSettings(poll_timeout=0.01, hot_window=0.05, hot_min_records=100)
    proc = StreamProcessor(log, name="skewed", group="g", topics=["hot-in"],
                           handler=Echo("hot-out"), settings=settings)
    from alpha_panda.stream.topics import partition_for

    hot_p = partition_for(b"1", 4)  # token 1's partition
    labels = {"service": "skewed", "topic": "hot-in", "partition": str(hot_p)}
    shares: list[float | None] = []
    stop = asyncio.Event()
    with capture_logs() as logs:
        task = asyncio.create_task(proc.run(stop))
        sent = 0
        for _ in range(3):  # three bursts, each over a window or more, all on one partition
            await log.append([tick_output("hot-in", sent + i, 1) for i in range(400)])
            sent += 400
            seen: set[float | None] = set()  # the gauge over the burst's windows
            deadline = time.monotonic() + 10
            while proc.stats.processed < sent and time.monotonic() < deadline:
                await asyncio.sleep(0.005)
            for _ in range(30):
                await asyncio.sleep(0.005)
                seen.add(REGISTRY.get_sample_value("alpha_panda_stream_partition_share", labels))
            shares.append(max(x or 0.0 for x in seen))
        await asyncio.sleep(0.2)  # idle windows: the partition has cooled
        cooled = REGISTRY.get_sample_value("alpha_panda_stream_partition_share", labels)
        stop.set()
        await asyncio.wait_for(task, 10)
    warnings = [e for e in logs if e["event"] == "processor.hot_partition"]
    assert len(warnings) == 1, warnings
    # (info on an embedded log: its one process reads every partition alike; `make run`
    # showed a warning on its 25 instruments every time)
    assert warnings[0]["log_level"] == "info"
    assert warnings[0]["partition"] == hot_p and warnings[0]["share"] == 1.0
    assert warnings[0]["top_keys"] == [("1", 400)]
    assert shares == [1.0, 1.0, 1.0]  # hot in every burst
    assert cooled == 0


async def test_a_processor_with_a_backlog_lets_other_tasks_run() -> None:
    log = MemoryLog()
    await log.ensure_topics([spec("in", 1), spec("out", 1)])
    await log.append([tick_output("in", i, 1) for i in range(20_000)])
    proc = StreamProcessor(log, name="p", group="g", topics=["in"], handler=Echo("out"),
                           settings=ProcessorSettings(batch_size=500))
    ticks: list[int] = []

    async def heartbeat() -> None:
        while True:
            ticks.append(proc.stats.processed)
            await asyncio.sleep(0)

    beat = asyncio.create_task(heartbeat())
    await run_until(proc, lambda: proc.stats.processed == 20_000)
    beat.cancel()
    during = {t for t in ticks if 0 < t < 20_000}
    assert len(during) >= 10  # the heartbeat ran between batches, not only before/after


async def test_an_output_that_cannot_be_encoded_dead_letters_its_input_only() -> None:
    log = MemoryLog()
    await log.ensure_topics([spec("in", 1), spec("out", 1)])
    await log.append([tick_output("in", i, 1) for i in range(1, 4)])

    class Broken(Echo):
        def handle(self, event: Envelope[Any], record: Record) -> Sequence[Emit]:
            emits = super().handle(event, record)
            if event.ts == 2:
                bad = new_envelope(event.data, id=object(), ts=0, source="x",  # type: ignore[arg-type]
                                   key="1")
                return [Emit("out", bad)]
            return emits

    proc = StreamProcessor(log, name="p", group="g", topics=["in"], handler=Broken("out"))
    await run_until(proc, lambda: proc.stats.processed == 2 and proc.stats.dead_lettered == 1)
    assert len(await read_all(log, "out")) == 2


async def test_a_bug_failing_every_message_stops_the_processor_instead_of_dead_lettering_all() -> None:
    log = MemoryLog()
    await log.ensure_topics([spec("in", 1), spec("out", 1)])
    await log.append([tick_output("in", i, 1) for i in range(1, 41)])

    class Buggy(Echo):
        def handle(self, event: Envelope[Any], record: Record) -> Sequence[Emit]:
            if event.ts > 2:
                raise NameError("name 'KillSwitchSet' is not defined")
            return super().handle(event, record)

    settings = ProcessorSettings(bug_streak=5, poll_timeout=0.01)
    proc = StreamProcessor(log, name="buggy", group="g", topics=["in"], handler=Buggy("out"),
                           settings=settings)
    await asyncio.wait_for(proc.run(asyncio.Event()), 5)  # returns by itself
    assert proc.state is State.FAILED and "bug in buggy" in proc.health().detail
    letters = await read_all(log, dlq_topic("in"))
    assert len(letters) == 4  # the 5th failure in a row is the bug: it is not committed
    assert await log.committed_offsets("g", "in") == {0: 6}
    assert len(await read_all(log, "out")) == 2


async def test_isolated_poison_messages_do_not_count_as_a_bug() -> None:
    log = MemoryLog()
    await log.ensure_topics([spec("in", 1), spec("out", 1)])
    await log.append([tick_output("in", i, 1) for i in range(1, 21)])

    class Odd(Echo):
        def handle(self, event: Envelope[Any], record: Record) -> Sequence[Emit]:
            if event.ts % 2:
                raise KeyError("missing field")
            return super().handle(event, record)

    proc = StreamProcessor(log, name="odd", group="g", topics=["in"], handler=Odd("out"),
                           settings=ProcessorSettings(bug_streak=3, poll_timeout=0.01))
    await run_until(proc, lambda: proc.stats.processed == 10 and proc.stats.dead_lettered == 10)
    assert proc.state is not State.FAILED


async def test_an_outage_retried_past_a_thousand_attempts_is_still_retried() -> None:
    # The zerodha engine retries a Kite outage until Kite answers (UNTIL_KITE_ANSWERS). The
    # backoff's ceiling was base * 2**(attempt - 1): at attempt 1025 (about an hour of
    # outage at its 5 s cap) that int no longer converts to a float, OverflowError, and the
    # processor stopped with the kill switch's sweep (or the signal) undone.
    from alpha_panda.domain.errors import BrokerUnavailable

    log = MemoryLog()
    await log.ensure_topics([spec("in", 1), spec("out", 1)])
    await log.append([tick_output("in", 1, 1)])
    quick = ProcessorSettings(backoff_base=1e-9, backoff_max=1e-6, poll_timeout=0.001,
                              retry_attempts={"BrokerUnavailable": 2**62})
    h = Flaky("out", BrokerUnavailable("Kite 503"), failures=1100)
    proc = StreamProcessor(log, name="p", group="g", topics=["in"], handler=h, settings=quick)
    await run_until(proc, lambda: proc.stats.processed == 1 or proc.state is State.FAILED,
                    timeout=60)
    assert proc.state is not State.FAILED
    assert proc.stats.processed == 1 and proc.stats.retried == 1100
    assert proc.stats.dead_lettered == 0
