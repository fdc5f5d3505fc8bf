"""The simulator walks on NSE's tick size for the day and price band, and its ticks carry
the previous session's close (the paper exchange's reference for both)."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, time

from alpha_panda.adapters.memory_log import MemoryLog
from alpha_panda.domain.clock import ist_ns
from alpha_panda.domain.events import MarketTick
from alpha_panda.execution.market import MarketCalendar, TickSizes
from alpha_panda.marketdata.instruments import BY_NAME, Instrument
from alpha_panda.marketdata.simulator import MarketSimulator, SimulatorState
from alpha_panda.services.feed import SimulatedFeed, TickPublisher
from alpha_panda.settings import SimulatorSettings
from alpha_panda.stream.topics import REGISTRY

NSE = MarketCalendar.load()
TICKS = TickSizes.load()
STEP = 5_000_000


def _by_token(ticks: list[MarketTick]) -> dict[int, list[MarketTick]]:
    out: dict[int, list[MarketTick]] = defaultdict(list)
    for t in ticks:
        out[t.instrument_token].append(t)
    return out


def test_each_instrument_walks_on_its_own_tick_today() -> None:
    day = date(2026, 12, 1)
    sim = MarketSimulator(start_ns=ist_ns(day, time(9, 15)), step_ns=STEP, sessions=NSE)
    by_token = _by_token(sim.next_ticks(25 * 400))
    grids = set()
    for inst in sim.instruments:
        ticks = by_token[inst.instrument_token]
        grid = TICKS.at(day, inst.start_price)
        grids.add(grid)
        assert all(t.last_price % grid == 0 for t in ticks), inst.tradingsymbol
        assert all(t.close == inst.start_price for t in ticks)  # the first session's close
        assert any(t.last_price % (grid * 2) for t in ticks)  # it uses the fine steps too
    assert grids == {1, 5, 10, 50, 100}  # ₹150 TATASTEEL .. ₹11,200 MARUTI
    tata = by_token[BY_NAME["NSE:TATASTEEL"].instrument_token]
    assert any(t.last_price % 5 for t in tata)  # paise, not the old 0.05 grid


def test_a_2024_session_walks_on_the_old_grid() -> None:
    sim = MarketSimulator(start_ns=ist_ns(date(2024, 1, 2), time(9, 15)), step_ns=STEP)
    assert all(t.last_price % 5 == 0 for t in sim.next_ticks(25 * 100))


def test_the_next_session_carries_the_last_prices_as_its_closes() -> None:
    thursday = date(2026, 12, 24)
    close = ist_ns(thursday, time(15, 30))
    sim = MarketSimulator(start_ns=close - 50 * STEP, step_ns=STEP, sessions=NSE)
    ticks = sim.next_ticks(200)
    monday = [t for t in ticks if t.ts >= ist_ns(date(2026, 12, 28), time(9, 15))]
    assert monday
    last_thursday = {t.instrument_token: t.last_price for t in ticks if t.ts < close}
    for t in monday:
        if t.instrument_token in last_thursday:
            assert t.close == last_thursday[t.instrument_token]


def test_a_price_that_crossed_into_a_coarser_band_moves_onto_its_grid() -> None:
    inst = Instrument(1, "ABC", "NSE", 990_00)
    state = SimulatorState(seq=0, clock_ns=ist_ns(date(2026, 12, 1), time(9, 15)),
                           prices={1: 1000_05}, closes={1: 1000_05})  # a ₹0.10 tick now
    sim = MarketSimulator(instruments=[inst], state=state, step_ns=STEP)
    assert sim.state.prices[1] == 1000_10
    assert all(t.last_price % 10 == 0 for t in sim.next_ticks(500))


async def test_a_resumed_feed_keeps_the_sessions_close_or_starts_a_new_one() -> None:
    token = 408065  # INFY
    monday = date(2026, 12, 28)

    async def resumed(last: MarketTick) -> MarketSimulator:
        log = MemoryLog()
        await log.ensure_topics(REGISTRY.all())
        await TickPublisher(log, "sim").publish([last], 0)
        return await SimulatedFeed(log, SimulatorSettings())._simulator(monday)

    same_day = MarketTick(instrument_token=token, last_price=1900_00, close=1880_00,
                          ts=ist_ns(monday, time(11, 0)))
    sim = await resumed(same_day)
    infy = [t for t in sim.next_ticks(25) if t.instrument_token == token]
    assert infy and infy[0].close == 1880_00  # the session goes on: its close
    friday = MarketTick(instrument_token=token, last_price=1900_00, close=1880_00,
                        ts=ist_ns(date(2026, 12, 24), time(15, 0)))
    sim = await resumed(friday)
    infy = [t for t in sim.next_ticks(25) if t.instrument_token == token]
    assert infy and infy[0].close == 1900_00  # a new session: the last price is its close
