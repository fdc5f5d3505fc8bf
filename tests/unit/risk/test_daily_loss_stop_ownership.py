"""Whose a daily-loss stop is: the engine ends only its own (never the trader's halt or kill
switch), a stop or release read back late changes nothing, and a restart on the next day
stops that day as a run without one does."""

from __future__ import annotations

from datetime import date, time
from typing import Any

from alpha_panda.adapters.memory_log import MemoryLog
from alpha_panda.domain.clock import ist_ns
from alpha_panda.domain.events import (
    KillSwitchSet,
    MarketTick,
    Payload,
    Signal,
    SignalRejected,
    StrategyHalted,
)
from alpha_panda.domain.values import Product, Side
from alpha_panda.risk import RiskConfig, RiskEngine, RiskLimits
from alpha_panda.services.risk_manager import (
    RiskHandler,
)
from alpha_panda.stream.emit import Emit, to_output
from alpha_panda.stream.log import Record
from alpha_panda.stream.topics import REGISTRY, topic
from tests.unit.services.test_risk_rebuild import emit, fill, rebuild

TOKEN = 738561
DAY1 = ist_ns(date(2026, 11, 23), time(10, 0))
DAY2 = ist_ns(date(2026, 11, 24), time(10, 0))
DAY3 = ist_ns(date(2026, 11, 25), time(10, 0))
REC = Record("t", 0, 0, None, b"")
N = [0]


def mk(payload: Payload, ts: int, *, source: str = "t") -> Emit:
    N[0] += 1
    return emit(payload, N[0], ts, source=source)


def tick(price: int, ts: int) -> Emit:
    return mk(MarketTick(instrument_token=TOKEN, last_price=price, ts=ts), ts)


def sig(side: Side, qty: int = 10) -> Signal:
    return Signal(strategy_id="s1", instrument_token=TOKEN, side=side, quantity=qty,
                  product=Product.CNC, price_hint=100_00)


def engine() -> RiskEngine:
    return RiskEngine(RiskConfig(strategies={"s1": RiskLimits(
        daily_loss=50_00, daily_loss_flatten=True)}), broker="paper")


async def feed(log: MemoryLog | None, h: RiskHandler, e: Emit, seen: list[Emit]) -> None:
    """As the live service: the input, its outputs on the log, and the outputs the risk
    manager itself consumes (control, signals.raw) read back by it."""
    if log is not None:
        await log.append([to_output(e)])
    seen.append(e)
    outs = list(h.handle(e.envelope, REC))
    for o in outs:
        if o.topic in (topic("paper", "control"), topic("paper", "signals.raw")):
            await feed(log, h, o, seen)
        elif log is not None:
            await log.append([to_output(o)])
            seen.append(o)


def buy_and_fill(ts: int) -> list[Emit]:
    b = sig(Side.BUY)
    e = mk(b, ts, source="strategy-runner")
    return [e, mk(fill(e.envelope.id, b, 100_00, ts + 1), ts + 1)]


def stops(seen: list[Emit]) -> list[Any]:
    return [e.envelope.data for e in seen if isinstance(e.envelope.data, StrategyHalted | KillSwitchSet)
            and e.envelope.data.requested_by == "risk:daily_loss" and e.envelope.data.active]


async def test_after_a_restart_on_the_next_day_that_days_stop_still_fires() -> None:
    day1 = [tick(100_00, DAY1), *buy_and_fill(DAY1 + 1), tick(90_00, DAY1 + 10)]  # −₹100: stop
    # DAY2: the carried 10 keep losing: −₹100 vs the previous ₹90 close → the stop again
    day2_first = [tick(90_00, DAY2)]
    day2_rest = [tick(80_00, DAY2 + 10)]

    # live, no restart
    live = RiskHandler("paper", engine())
    seen: list[Emit] = []
    for e in day1 + day2_first + day2_rest:
        await feed(None, live, e, seen)
    assert len(stops(seen)) == 2, "live: a stop on each day"

    # the same, restarted after DAY2's first tick
    log = MemoryLog()
    await log.start()
    await log.ensure_topics(REGISTRY.all())
    first = RiskHandler("paper", engine())
    seen1: list[Emit] = []
    for e in day1 + day2_first:
        await feed(log, first, e, seen1)
    rebuilt = await rebuild(log, engine())
    seen2: list[Emit] = []
    for e in day2_rest:
        await feed(None, rebuilt, e, seen2)
    assert rebuilt.engine.day_pnl("s1") == live.engine.day_pnl("s1") == -100_00
    assert len(stops(seen2)) == 1, "a restart on DAY2 kept DAY2's stop from firing"


async def test_a_stop_of_a_strategy_the_trader_halted_leaves_their_halt_in_place() -> None:
    h = RiskHandler("paper", engine())
    seen: list[Emit] = []
    for e in [tick(100_00, DAY1), *buy_and_fill(DAY1 + 1)]:
        await feed(None, h, e, seen)
    # the trader halts s1 (no flatten: keep the delivery position) until further notice
    await feed(None, h, mk(StrategyHalted(strategy_id="s1", requested_by="api", active=True,
                                          market_ts=DAY1 + 2), DAY1 + 2), seen)
    await feed(None, h, tick(90_00, DAY1 + 10), seen)  # the loss reaches the limit
    assert len(stops(seen)) == 1
    await feed(None, h, tick(90_00, DAY2), seen)
    probe = sig(Side.BUY, 1)
    out = h.engine.check("probe", probe, DAY2 + 1)
    assert isinstance(out, SignalRejected), \
        "the stop ended the trader's halt"


async def test_an_account_stop_leaves_the_traders_kill_switch_on() -> None:
    risk = RiskEngine(RiskConfig(global_limits=RiskLimits(
        account_daily_loss=50_00, account_daily_loss_flatten=True)), broker="paper")
    h = RiskHandler("paper", risk)
    seen: list[Emit] = []
    for e in [tick(100_00, DAY1), *buy_and_fill(DAY1 + 1)]:
        await feed(None, h, e, seen)
    await feed(None, h, mk(KillSwitchSet(active=True, requested_by="api", market_ts=DAY1 + 2),
                           DAY1 + 2), seen)
    await feed(None, h, tick(90_00, DAY1 + 10), seen)
    assert len(stops(seen)) == 1
    await feed(None, h, tick(90_00, DAY2), seen)
    releases = [e.envelope.data for e in seen if isinstance(e.envelope.data, KillSwitchSet)
                and not e.envelope.data.active]
    assert risk.kill_switch and not releases, \
        f"the trader's kill switch was released by the stop: {releases}"


async def test_a_stop_read_back_on_the_next_day_changes_nothing_and_that_days_stop_fires() -> None:
    """Live, no restart: a full-speed replay's risk manager reads its own control event late
    (the next day's tick is already on market.ticks)."""
    h = RiskHandler("paper", engine())
    seen: list[Emit] = []
    for e in [tick(100_00, DAY1), *buy_and_fill(DAY1 + 1)]:
        await feed(None, h, e, seen)
    (stop,) = h.handle(tick(90_00, DAY1 + 10).envelope, REC)  # the stop, not read back yet
    h.handle(tick(90_00, DAY2).envelope, REC)                 # the next day's first tick
    flatten = h.handle(stop.envelope, REC)                     # read back now
    assert not flatten  # its day is over: the positions are the next day's now
    out = list(h.handle(tick(80_00, DAY2 + 10).envelope, REC))  # −₹100 on DAY2
    assert out, "DAY1's stop read late kept DAY2's from firing"


async def test_a_release_read_back_after_a_new_stop_leaves_the_switch_on() -> None:
    risk = RiskEngine(RiskConfig(global_limits=RiskLimits(
        account_daily_loss=50_00, account_daily_loss_flatten=True)), broker="paper")
    h = RiskHandler("paper", risk)
    seen: list[Emit] = []
    for e in [tick(100_00, DAY1), *buy_and_fill(DAY1 + 1), tick(90_00, DAY1 + 10)]:
        await feed(None, h, e, seen)      # DAY1: stopped, flatten validated (not filled yet)
    # the flatten never filled (say the venue was closed); DAY2 opens with a gap down
    out = list(h.handle(tick(80_00, DAY2).envelope, REC))
    kinds = [(type(o.envelope.data).__name__, o.envelope.data.active) for o in out]
    assert kinds == [("KillSwitchSet", False), ("KillSwitchSet", True)]
    release, _ = out
    h.handle(release.envelope, REC)        # the release read back first
    assert risk.kill_switch, "kill switch off while the same tick's new stop is unread"


async def test_the_account_is_stopped_once_a_day_however_its_events_are_read_back() -> None:
    risk = RiskEngine(RiskConfig(global_limits=RiskLimits(
        account_daily_loss=50_00, account_daily_loss_flatten=True)), broker="paper")
    h = RiskHandler("paper", risk)
    seen: list[Emit] = []
    for e in [tick(100_00, DAY1), *buy_and_fill(DAY1 + 1), tick(90_00, DAY1 + 10)]:
        await feed(None, h, e, seen)
    release, stop = h.handle(tick(80_00, DAY2).envelope, REC)
    h.handle(release.envelope, REC)
    again = list(h.handle(tick(80_00, DAY2 + 1).envelope, REC))   # a tick between the two
    flat1 = list(h.handle(stop.envelope, REC))
    flat2 = [f for a in again for f in h.handle(a.envelope, REC)]
    assert not again, f"a second stop of the same day: {len(flat1)} + {len(flat2)} flatten orders"
