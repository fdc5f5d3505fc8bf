"""The loop watch names a strategy call that holds the event loop, and only such a call."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from structlog.testing import capture_logs

from alpha_panda.observability.stalls import STALLS, LoopWatch


def slow_on_tick(seconds: float) -> None:
    """A strategy's code: one call that computes for ``seconds``."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def plumbing(seconds: float) -> None:
    """Code of no strategy."""
    time.sleep(seconds)


async def _watched(watch: LoopWatch, work: Any) -> list[dict[str, Any]]:
    with capture_logs() as logs:
        task = asyncio.create_task(watch.run())
        await asyncio.sleep(0.2)  # the watch's thread is up
        work()
        await asyncio.sleep(0.4)  # it sees the loop move on
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await asyncio.sleep(0.1)  # its thread ends
    return [e for e in logs if e["event"].startswith("loop.")]


def _count(strategy: str) -> float:
    return STALLS.labels(strategy=strategy)._value.get()  # type: ignore[no-any-return]


def test_one_long_strategy_call_is_named_while_it_holds_the_loop() -> None:
    watch = LoopWatch(0.3, interval_s=0.05, owners={slow_on_tick.__code__: "sma_banks"})
    before = _count("sma_banks")
    events = asyncio.run(_watched(watch, lambda: slow_on_tick(0.8)))
    assert [e["event"] for e in events] == ["loop.stalled", "loop.resumed"]
    stalled, resumed = events
    assert stalled["strategy"] == "sma_banks"
    assert stalled["at"].startswith("test_stalls.py:") and stalled["at"].endswith(" in slow_on_tick")
    assert 0.25 <= stalled["blocked_s"] <= 0.5  # reported while it held the loop, not after
    assert "sma_banks" in stalled["detail"] and "every service" in stalled["detail"]
    assert resumed["strategy"] == "sma_banks"
    assert 0.6 <= resumed["blocked_s"] <= 1.0
    assert _count("sma_banks") == before + 1


def test_many_short_strategy_calls_are_no_stall() -> None:
    # One callback of 40 calls of 25 ms: the loop is held for a second, as a replay's batch
    # of ticks holds it, but no call of the strategy lasts.
    watch = LoopWatch(0.3, interval_s=0.05, repeat_s=5.0,
                      owners={slow_on_tick.__code__: "sma_banks"})
    before = _count("sma_banks")

    def batch() -> None:
        for _ in range(40):
            slow_on_tick(0.025)

    assert asyncio.run(_watched(watch, batch)) == []
    assert _count("sma_banks") == before


def test_other_code_is_reported_once_it_holds_the_loop_past_the_repeat_interval() -> None:
    watch = LoopWatch(0.3, interval_s=0.05, repeat_s=0.6,
                      owners={slow_on_tick.__code__: "sma_banks"})
    before = _count("")
    events = asyncio.run(_watched(watch, lambda: plumbing(1.0)))
    assert [e["event"] for e in events] == ["loop.stalled", "loop.resumed"]
    assert events[0]["strategy"] is None and events[0]["at"].endswith(" in plumbing")
    assert events[0]["blocked_s"] >= 0.6
    assert 0.8 <= events[1]["blocked_s"] <= 1.2
    assert _count("") == before + 1


def test_a_threshold_shorter_than_two_beats_is_refused() -> None:
    with pytest.raises(ValueError, match="two heartbeat intervals"):
        LoopWatch(0.4, interval_s=0.25)
