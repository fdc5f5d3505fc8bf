"""The embedded logs' own behaviour beyond the contract: bounded memory, auto-created topics."""

from __future__ import annotations

import asyncio

import pytest

from alpha_panda.adapters.memory_log import MemoryLog
from alpha_panda.domain.errors import InvariantViolation
from alpha_panda.stream.log import Output, TopicPartition
from alpha_panda.stream.topics import REGISTRY, KeyKind, TopicSpec
from tests.contract.helpers import drain, raw, spec


async def test_a_capped_memory_log_keeps_offsets_counting() -> None:
    log = MemoryLog(max_records_per_partition=100)
    await log.ensure_topics([spec("t", 1)])
    c = log.consumer("g", ["t"])
    await log.append([raw("t", b"k", str(i).encode()) for i in range(250)])
    assert log.expire() == 150
    assert await log.end_offsets("t") == {0: 250}
    recs = await drain(c, 100)
    assert [r.offset for r in recs] == list(range(150, 250))  # from the oldest kept
    await log.append([raw("t", b"k", b"250")])
    assert (await log.read(TopicPartition("t", 0), 250, 5))[0].value == b"250"


async def test_memory_retention_drops_old_records_when_asked() -> None:
    log = MemoryLog(retention=True)
    await log.ensure_topics([TopicSpec("short", 1, KeyKind.INSTRUMENT, 30, None),
                             spec("forever", 1)])
    await log.append([raw("short", b"k", b"old"), Output("forever", None, b"x")])
    await asyncio.sleep(0.06)
    await log.append([raw("short", b"k", b"new")])
    assert log.expire() == 1
    assert [r.value for r in await log.read(TopicPartition("short", 0), 0, 10)] == [b"new"]
    assert len(await log.read(TopicPartition("forever", 0), 0, 10)) == 1
    assert MemoryLog().expire() == 0  # by default a backtest keeps everything


async def test_appending_to_a_registry_topic_creates_it_with_its_layout() -> None:
    log = MemoryLog()
    await log.append([raw("paper.signals.raw", b"s1:1", b"x")])
    await log.append([raw("scratch", b"k", b"y")])
    topics = await log.list_topics()
    assert topics["paper.signals.raw"] == REGISTRY.partitions("paper.signals.raw")
    assert topics["scratch"] == 1


async def test_using_a_closed_log_is_a_clear_error() -> None:
    import pytest

    log = MemoryLog()
    await log.ensure_topics([spec("t", 1)])
    c = log.consumer("g", ["t"])
    await log.close()
    with pytest.raises(InvariantViolation, match="closed"):
        await log.append([raw("t", b"k", b"v")])
    with pytest.raises(InvariantViolation, match="closed"):
        await c.poll(1, 0.01)


async def test_wakeup_ends_a_long_poll_at_once() -> None:
    log = MemoryLog()
    await log.ensure_topics([spec("t", 1)])
    consumer = log.consumer("g", ["t"])
    await consumer.poll(10, 0)  # joined and assigned
    loop = asyncio.get_running_loop()
    started = loop.time()
    loop.call_later(0.05, consumer.wakeup)
    assert await consumer.poll(10, 30.0) == []
    assert loop.time() - started < 5
    await consumer.close()


async def test_a_poll_waiting_when_the_log_closes_gets_a_clear_error() -> None:
    log = MemoryLog()
    await log.ensure_topics([spec("t", 1)])
    consumer = log.consumer("g", ["t"])
    await consumer.poll(10, 0)
    waiting = asyncio.create_task(consumer.poll(10, 30.0))
    await asyncio.sleep(0.01)
    await log.close()
    with pytest.raises(InvariantViolation, match="the log is closed"):
        await asyncio.wait_for(waiting, 5)


async def test_an_expiry_that_fails_after_a_write_leaves_the_write_standing(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Expiry runs after a write has committed: its failure (a full disk) came out of
    # ``append`` and ``commit``, reported the committed write as failed, and its retry
    # wrote the outputs again.
    from structlog.testing import capture_logs

    log = MemoryLog(retention=True)
    await log.ensure_topics([spec("t", 1)])
    calls = 0

    def full_disk(now_ms: int, max_rows: int = 0) -> int:
        nonlocal calls
        calls += 1
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(log._storage, "expire", full_disk)
    log._next_expiry = 0.0  # due now (it runs every 30 s)
    with capture_logs() as logs:
        await log.append([raw("t", b"k", b"a")])
        await log.append([raw("t", b"k", b"b")])  # not tried again at once
    assert [r.value for r in await log.read(TopicPartition("t", 0), 0, 10)] == [b"a", b"b"]
    assert calls == 1
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == ["embedded_log.expiry_failed"]
