"""The simulator goes through sessions as the market does: it closes at 15:30 and opens at
the next trading day's 09:15, and a feed resumed on a later day trades that day's session."""

from __future__ import annotations

from datetime import date, time
from pathlib import Path

import pytest
from pydantic import ValidationError
from structlog.testing import capture_logs

from alpha_panda.adapters.memory_log import MemoryLog
from alpha_panda.domain.clock import ist_ns
from alpha_panda.domain.events import MarketTick
from alpha_panda.execution.market import MarketCalendar
from alpha_panda.marketdata.files import generate_random_walk, write_ticks
from alpha_panda.marketdata.simulator import MarketSimulator
from alpha_panda.services.feed import ReplayFeed, SimulatedFeed, TickPublisher
from alpha_panda.settings import SimulatorSettings
from alpha_panda.stream.topics import REGISTRY

NSE = MarketCalendar.load()
STEP = 5_000_000  # 5 ms of simulated time a tick
THURSDAY = date(2026, 12, 24)  # Friday 25 Dec is Christmas, then a weekend
CLOSE = ist_ns(THURSDAY, time(15, 30))
MONDAY_OPEN = ist_ns(date(2026, 12, 28), time(9, 15))


def test_a_session_ends_at_the_close_and_the_next_opens_on_the_next_trading_day() -> None:
    start = CLOSE - 2 * STEP
    ts = [t.ts for t in MarketSimulator(start_ns=start, step_ns=STEP, sessions=NSE)
          .next_ticks(50)]
    assert [t for t in ts if t < CLOSE] == [start + STEP]  # the last tick of Thursday
    assert ts[1] == MONDAY_OPEN  # no tick at the close, on the holiday or the weekend
    assert ts[2:] == [MONDAY_OPEN + k * STEP for k in range(1, 49)]


def test_prices_go_on_over_the_days_and_each_tick_holds_its_own_volume() -> None:
    start = CLOSE - 60 * STEP  # over two rounds of the 25 instruments on Thursday
    with_sessions = MarketSimulator(start_ns=start, step_ns=STEP, sessions=NSE).next_ticks(200)
    without = MarketSimulator(start_ns=start, step_ns=STEP).next_ticks(200)
    # the jump draws no random numbers: the same walk, only the clock differs
    assert [t.last_price for t in with_sessions] == [t.last_price for t in without]
    assert sum(t.ts >= MONDAY_OPEN for t in with_sessions) == 141
    first_monday = next(t for t in with_sessions if t.ts >= MONDAY_OPEN)
    assert any(t.instrument_token == first_monday.instrument_token and t.ts < CLOSE
               for t in with_sessions)  # it traded on Thursday
    # what traded in the tick, as every feed's ``volume`` (the day's running total was
    # read as traded in the tick where ``last_quantity`` was not)
    assert all(0 < t.volume == t.last_quantity for t in with_sessions + without)


def test_without_sessions_the_clock_runs_on() -> None:
    ts = [t.ts for t in MarketSimulator(start_ns=CLOSE - 2 * STEP, step_ns=STEP).next_ticks(5)]
    assert ts == [CLOSE + k * STEP for k in range(-1, 4)]


async def _started_at(today: date, last_tick_ts: int | None = None) -> int:
    log = MemoryLog()
    await log.ensure_topics(REGISTRY.all())
    if last_tick_ts is not None:
        await TickPublisher(log, "sim").publish(
            [MarketTick(instrument_token=408065, last_price=150_000, ts=last_tick_ts)], 0)
    sim = await SimulatedFeed(log, SimulatorSettings())._simulator(today)
    if last_tick_ts is not None:
        assert sim.state.prices[408065] == 150_000  # the last price carries over
    return sim.state.clock_ns


async def test_the_first_session_is_todays_or_the_next_trading_days() -> None:
    wednesday = date(2026, 12, 23)
    assert await _started_at(wednesday) == ist_ns(wednesday, time(9, 15))
    assert await _started_at(date(2026, 12, 26)) == MONDAY_OPEN  # a Saturday


async def test_a_feed_resumed_on_a_later_day_trades_that_days_session() -> None:
    wednesday = date(2026, 12, 23)
    tuesday_afternoon = ist_ns(date(2026, 12, 22), time(14, 0))
    assert await _started_at(wednesday, tuesday_afternoon) == ist_ns(wednesday, time(9, 15))
    # a run that went through sessions faster than the wall clock goes on from there
    assert await _started_at(wednesday, MONDAY_OPEN) == MONDAY_OPEN


def test_the_start_time_is_checked() -> None:
    with pytest.raises(ValidationError, match="HH:MM"):
        SimulatorSettings(session_start="9h15")
    assert SimulatorSettings(session_start="10:00").session_start == "10:00"


async def test_a_session_in_a_year_the_calendar_does_not_list_is_warned_of() -> None:
    with capture_logs() as logs:
        await _started_at(date(2026, 12, 23))
    assert [e for e in logs if e["event"] == "calendar.years_unknown"] == []
    with capture_logs() as logs:
        await _started_at(date(2027, 1, 4))
    [warned] = [e for e in logs if e["event"] == "calendar.years_unknown"]
    assert warned["log_level"] == "warning" and "holidays of 2027" in warned["detail"]


async def test_a_replayed_file_of_a_year_the_calendar_does_not_list_is_warned_of(
        tmp_path: Path) -> None:
    old = tmp_path / "old.csv"
    write_ticks(old, generate_random_walk(100, 3, start_ns=ist_ns(date(2023, 12, 29),
                                                                    time(15, 29, 59))))
    recent = tmp_path / "recent.csv"
    write_ticks(recent, generate_random_walk(100, 3))  # 1 January 2024
    log = MemoryLog()
    with capture_logs() as logs:
        ReplayFeed(log, recent).load()
        ReplayFeed(log, old).load()
    [warned] = [e for e in logs if e["event"] == "calendar.years_unknown"]
    assert warned["file"] == str(old) and "holidays of 2023 are not in" in warned["detail"]
