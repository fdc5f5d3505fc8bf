"""The simulator goes through sessions as the market does: it closes at 15:30 and opens at
the next trading day's 09:15, and a feed resumed on a later day trades today's session."""

from __future__ import annotations

from datetime import date, time

import pytest
from pydantic import ValidationError

from alpha_panda.adapters.memory_log import MemoryLog
from alpha_panda.domain.events import MarketTick
from alpha_panda.execution.market import MarketCalendar, ist_ns
from alpha_panda.marketdata.simulator import MarketSimulator, session_start_ns, today_ist
from alpha_panda.services.feed import SimulatedFeed, TickPublisher
from alpha_panda.settings import SimulatorSettings
from alpha_panda.stream.topics import REGISTRY

NSE = MarketCalendar.load()
STEP = 5_000_000  # 5 ms of simulated time a tick


def test_a_session_ends_at_the_close_and_the_next_opens_on_the_next_trading_day() -> None:
    # Thursday 24 Dec 2026, 10 ms before the close; Friday is Christmas, then a weekend
    start = ist_ns(date(2026, 12, 24), time(15, 30)) - 2 * STEP
    sim = MarketSimulator(start_ns=start, step_ns=STEP, sessions=NSE)
    ticks = sim.next_ticks(50)
    ts = [t.ts for t in ticks]
    assert ts == sorted(ts)
    close = ist_ns(date(2026, 12, 24), time(15, 30))
    monday_open = ist_ns(date(2026, 12, 28), time(9, 15))
    assert [t for t in ts if t < close] == [start + STEP]  # the last tick of Thursday
    assert ts[1] == monday_open  # no tick at the close, on the holiday or the weekend
    assert ts[2:] == [monday_open + k * STEP for k in range(1, 49)]
    # the day's cumulative volume starts again
    assert ticks[1].volume == ticks[1].last_quantity


def test_prices_carry_over_into_the_next_session() -> None:
    close = ist_ns(date(2026, 12, 24), time(15, 30))
    sim = MarketSimulator(start_ns=close - 100 * STEP, step_ns=STEP, sessions=NSE)
    ticks = sim.next_ticks(200)
    thursday = {t.instrument_token: t.last_price for t in ticks if t.ts < close}
    monday: dict[int, int] = {}
    for t in ticks:
        if t.ts > close:
            monday.setdefault(t.instrument_token, t.last_price)
    assert len(thursday) == len(monday) == 25
    for token, last in thursday.items():  # one random step (8 bps of price) apart, no gap
        assert abs(monday[token] - last) <= last * 0.01, token


def test_without_sessions_the_clock_runs_on() -> None:
    start = ist_ns(date(2026, 12, 24), time(15, 30)) - 2 * STEP
    ts = [t.ts for t in MarketSimulator(start_ns=start, step_ns=STEP).next_ticks(5)]
    assert ts == [start + k * STEP for k in range(1, 6)]


async def _resumed_clock(last_tick_ts: int) -> int:
    log = MemoryLog()
    await log.ensure_topics(REGISTRY.all())
    await TickPublisher(log, "sim").publish(
        [MarketTick(instrument_token=408065, last_price=150_000, ts=last_tick_ts)], 0)
    sim = await SimulatedFeed(log, SimulatorSettings())._simulator()
    assert sim.state.prices[408065] == 150_000  # the last price carries over
    return sim.state.clock_ns


async def test_a_feed_resumed_on_a_later_day_trades_todays_session() -> None:
    today_open = session_start_ns(today_ist())
    yesterday = ist_ns(today_ist(), time(14, 0)) - 24 * 3600 * 10**9
    assert await _resumed_clock(yesterday) == today_open
    # a run that went through sessions faster than the wall clock goes on from there
    ahead = today_open + 3 * 24 * 3600 * 10**9
    assert await _resumed_clock(ahead) == ahead


def test_session_times_are_checked() -> None:
    with pytest.raises(ValidationError, match="HH:MM"):
        SimulatorSettings(session_start="9h15")
    with pytest.raises(ValidationError, match="after session_start"):
        SimulatorSettings(session_start="15:30", session_end="09:15")
    assert SimulatorSettings(session_end="23:59").session_end == "23:59"
