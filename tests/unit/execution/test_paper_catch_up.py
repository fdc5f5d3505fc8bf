"""The paper exchange catching up: an order processed after ticks later than its time (the
live paper engine lagging, a rebuild replaying every tick before the signals) is matched
against the kept ticks and must get exactly the fills it would have got in time, as in the
backtest, whatever else it places on the way (bracket exits, MIS square-offs)."""

from __future__ import annotations

import random
from datetime import date, time
from decimal import Decimal
from typing import Any

import pytest

from alpha_panda.domain.clock import ist_ns
from alpha_panda.domain.events import (
    MarketTick,
    OrderCancelled,
    OrderFilled,
    Payload,
    Signal,
    derive_id,
)
from alpha_panda.domain.values import OrderType, Product, Side, Validity
from alpha_panda.execution.costs import CostModel
from alpha_panda.execution.paper import ExecutionConfig, PaperExchange
from tests.unit.execution.cnc_books import cnc_books, expected_cnc_books, without_cnc_charges

TOKEN = 341249  # 10% circuit band
DAY = date(2026, 11, 23)  # a Monday, a trading day
S = 1_000_000_000
MS = 1_000_000


def ex(**kw: Any) -> PaperExchange:
    kw.setdefault("costs", False)
    return PaperExchange(ExecutionConfig(**kw), seed=7)


def ticks_from(start: int, prices: list[int], token: int = TOKEN) -> list[MarketTick]:
    """One tick a second from ``start``."""
    return [MarketTick(instrument_token=token, last_price=p, ts=start + k * S)
            for k, p in enumerate(prices)]


def bracket(qty: int = 4, *, tp: int = 1720_00, sl: int = 1690_00, **kw: Any) -> Signal:
    kw.setdefault("price_hint", 1700_00)
    return Signal(strategy_id="br", instrument_token=TOKEN, side=Side.BUY, quantity=qty,
                  take_profit=tp, stop_loss=sl, **kw)


def in_time(x: PaperExchange, ticks: list[MarketTick], signals: list[tuple[str, Signal, int]]
            ) -> list[Payload]:
    """The backtest's order: each signal is submitted right after the tick of its time."""
    out: list[Payload] = []
    for t in ticks:
        out += x.on_tick(t)
        for sid, s, ts in signals:
            if ts == t.ts:
                out += x.submit(sid, s, ts)
    return out


def lagging(x: PaperExchange, ticks: list[MarketTick], signals: list[tuple[str, Signal, int]]
            ) -> list[Payload]:
    """The paper engine far behind on signals (or rebuilding): every tick, then the signals."""
    out = [e for t in ticks for e in x.on_tick(t)]
    for sid, s, ts in signals:
        out += x.submit(sid, s, ts)
    return out


def fills(events: list[Payload]) -> list[tuple[str, Side, int, int, int]]:
    return sorted((e.order_id, e.side, e.quantity, e.price, e.ts)
                  for e in events if isinstance(e, OrderFilled))


def fill_keys(events: list[Payload]) -> list[tuple[str, Side, int, int, int]]:
    return sorted((e.fill_id, e.side, e.quantity, e.price, e.ts)
                  for e in events if isinstance(e, OrderFilled))


def cancels(events: list[Payload]) -> list[tuple[str, str, int]]:
    return sorted((e.order_id, e.reason, e.ts) for e in events if isinstance(e, OrderCancelled))


# ---------------------------------------------------------------- bracket exits

T10 = ist_ns(DAY, time(10, 0))
# The tester's file: 1700 for ticks 0-5, the stop's 1685 from tick 6, the target's 1725 late.
PRICES = [1700_00] * 6 + [1685_00] * 20 + [1725_00] * 10
ENTRY = derive_id("e", "order")
TP, SL = derive_id(ENTRY, "take_profit"), derive_id(ENTRY, "stop_loss")


@pytest.mark.parametrize("entry", [
    {},  # market, filled at once at its price hint
    # at the market's last price (no hint: the instrument's last tick is its market)
    {"order_type": OrderType.LIMIT, "limit_price": 1700_00, "price_hint": None},
], ids=["market", "limit"])
@pytest.mark.parametrize("latency_ms", [0, 10])
def test_the_bracket_leg_that_triggers_first_wins_however_late_the_order_is_processed(
        entry: dict[str, Any], latency_ms: int) -> None:
    ticks = ticks_from(T10, PRICES)
    signals = [("e", bracket(**entry), ticks[4].ts)]
    backtest = in_time(ex(latency_ms=latency_ms), ticks, signals)
    late = lagging(ex(latency_ms=latency_ms), ticks, signals)
    # a market order fills at once at its price hint, with latency at the next tick, and
    # so does the limit order at the market; the stop triggers at the first tick after
    entry_tick = 4 if not latency_ms else 5
    stop_tick = 6
    assert fills(late) == fills(backtest) == sorted([
        (ENTRY, Side.BUY, 4, 1700_00, ticks[entry_tick].ts),
        (SL, Side.SELL, 4, 1685_00, ticks[stop_tick].ts),
    ])
    assert cancels(late) == cancels(backtest) == [(TP, "oco", ticks[stop_tick].ts)]


def test_an_inverted_bracket_is_rejected_however_late_the_order_is_processed() -> None:
    # A target below the stop: a tick at 1685 would both reach the target (a sell limit at
    # 1680) and trigger the stop (1690). Exits on the wrong side of the entry (1700) are
    # refused (BRACKET), so legs of one bracket can no longer trigger on the same tick.
    ticks = ticks_from(T10, PRICES)
    signals = [("e", bracket(tp=1680_00, sl=1690_00), ticks[5].ts)]
    backtest = in_time(ex(), ticks, signals)
    late = lagging(ex(), ticks, signals)
    for out in (backtest, late):
        assert [(type(e).__name__, getattr(e, "reason_code", "")) for e in out] == [
            ("OrderRejected", "BRACKET")]


def test_the_legs_of_a_partly_filled_ioc_entry_catch_up_together() -> None:
    # The IOC entry takes 2 of 4 (volume cap) on its first tick, the rest is cancelled and
    # the legs for 2 are placed there, in the middle of the catch-up: the stop (1685, the
    # next tick) still wins over the target (1725, later).
    prices = [1700_00] * 6 + [1685_00] * 4 + [1725_00] * 4
    ticks = [MarketTick(instrument_token=TOKEN, last_price=t.last_price, ts=t.ts, last_quantity=4)
             for t in ticks_from(T10, prices)]
    signal = bracket(order_type=OrderType.LIMIT, limit_price=1700_00, price_hint=None,
                     validity=Validity.IOC)
    config: dict[str, Any] = {"latency_ms": 10, "volume_participation": Decimal("0.5")}
    signals = [("e", signal, ticks[4].ts)]
    backtest = in_time(ex(**config), ticks, signals)
    late = lagging(ex(**config), ticks, signals)
    assert fills(late) == fills(backtest) == sorted([
        (ENTRY, Side.BUY, 2, 1700_00, ticks[5].ts),
        (SL, Side.SELL, 2, 1685_00, ticks[6].ts),
    ])
    assert cancels(late) == cancels(backtest) == sorted(
        [(ENTRY, "ioc", ticks[5].ts), (TP, "oco", ticks[6].ts)])


# ---------------------------------------------------------------- MIS square-off

T1519 = ist_ns(DAY, time(15, 19, 50))
CUTOFF = ist_ns(DAY, time(15, 20))


def _mis_ticks(stop_hit: bool) -> list[MarketTick]:
    # ticks 0-5 at 1700; tick 6 hits the stop or not; 15:20:00 (tick 10) is the square-off
    prices = [1700_00] * 6 + [1685_00 if stop_hit else 1700_00] * 4 + [1725_00] * 5
    return ticks_from(T1519, prices)


def test_a_late_mis_bracket_closed_before_the_cutoff_leaves_nothing_to_square_off() -> None:
    # In time: bought, stopped out at 1685, flat at 15:20. Processed after the 15:20 tick,
    # the entry and its stop fill late: no square-off orders (no BUY 4 and SELL 4 washes).
    ticks = _mis_ticks(stop_hit=True)
    assert ticks[10].ts == CUTOFF
    signals = [("e", bracket(product=Product.MIS), ticks[5].ts)]
    backtest = in_time(ex(), ticks, signals)
    late = lagging(ex(), ticks, signals)
    assert fill_keys(late) == fill_keys(backtest)
    assert fills(late) == sorted([
        (ENTRY, Side.BUY, 4, 1700_00, ticks[5].ts),
        (SL, Side.SELL, 4, 1685_00, ticks[6].ts),
    ])


def test_a_late_mis_bracket_open_at_the_cutoff_is_squared_off_once_as_in_time() -> None:
    ticks = _mis_ticks(stop_hit=False)
    signals = [("e", bracket(product=Product.MIS), ticks[5].ts)]
    backtest = in_time(ex(), ticks, signals)
    late = lagging(ex(), ticks, signals)
    squareoff = derive_id(f"squareoff|br|{TOKEN}|{DAY}|0", "order")
    assert fill_keys(late) == fill_keys(backtest)
    assert fills(late) == sorted([
        (ENTRY, Side.BUY, 4, 1700_00, ticks[5].ts),
        (squareoff, Side.SELL, 4, 1725_00, CUTOFF),
    ])
    assert cancels(late) == cancels(backtest) == sorted(
        [(TP, "squareoff", CUTOFF), (SL, "squareoff", CUTOFF)])


# ---------------------------------------------------------------- randomized


def _scenario(seed: int) -> tuple[list[MarketTick], list[tuple[str, Signal, int]]]:
    """A random walk around 15:00-15:25 with random orders, half of them brackets, half MIS."""
    rng = random.Random(seed)
    start = ist_ns(DAY, time(15, 0))
    ticks: list[MarketTick] = []
    signals: list[tuple[str, Signal, int]] = []
    price = 1700_00
    for i in range(400):
        ts = start + i * 3 * S + rng.randint(0, 999) * MS
        price += rng.choice((-20, -10, -5, 0, 5, 10, 20))
        ticks.append(MarketTick(instrument_token=TOKEN, last_price=price, ts=ts,
                                last_quantity=rng.randint(0, 40)))
        if rng.random() < 0.12:
            side = rng.choice(list(Side))
            kind = rng.choice((OrderType.MARKET, OrderType.MARKET, OrderType.LIMIT))
            kw: dict[str, Any] = {"price_hint": price, "order_type": kind}
            if kind is OrderType.LIMIT:
                kw["limit_price"] = price - side.sign * rng.choice((0, 10, 20))
            if rng.random() < 0.6:
                kw["take_profit"] = price + side.sign * rng.choice((20, 40, 80))
                kw["stop_loss"] = price - side.sign * rng.choice((20, 40, 80))
            mis = rng.random() < 0.5
            kw["product"] = Product.MIS if mis else Product.CNC
            kw["validity"] = Validity.IOC if rng.random() < 0.1 else Validity.DAY
            # An MIS order gets a strategy of its own: positions of orders processed late in
            # separate calls cannot be netted at a square-off already emitted.
            strategy = f"m{i}" if mis else rng.choice(("a", "b"))
            signals.append((f"sig-{i}", Signal(strategy_id=strategy, instrument_token=TOKEN,
                                               side=side, quantity=rng.randint(1, 30), **kw), ts))
    return ticks, signals


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("latency_ms", [0, 10])
def test_each_order_processed_after_all_ticks_gets_its_in_time_fills(
        seed: int, latency_ms: int) -> None:
    ticks, signals = _scenario(seed)
    config: dict[str, Any] = {"costs": True, "latency_ms": latency_ms,
                              "volume_participation": Decimal("0.5")}
    backtest = in_time(ex(**config), ticks, signals)
    filled = [e for e in backtest if isinstance(e, OrderFilled)]
    assert len(filled) > 10
    assert len([e for e in filled if e.product is Product.MIS]) > 3
    late = ex(**config)
    out = [e for t in ticks for e in late.on_tick(t)]
    for sid, s, ts in signals:  # one at a time, each after every tick
        out += late.submit(sid, s, ts)
    # CNC fills' charges taken off: a fill's share of its day's netted charges follows the
    # order the day's fills were processed in, the day's total does not (execution.netting).
    assert sorted(map(repr, [e for e in without_cnc_charges(out) if isinstance(e, OrderFilled)])
                  ) == sorted(map(repr, [e for e in without_cnc_charges(backtest)
                                         if isinstance(e, OrderFilled)]))
    assert cnc_books(out) == cnc_books(backtest) == expected_cnc_books(backtest, CostModel.load())


@pytest.mark.parametrize("in_order", [True, False])
def test_a_late_order_catches_up_on_ticks_that_came_out_of_time_order(in_order: bool) -> None:
    # Kite stamps ticks with the exchange's whole second: one can come after a later one.
    # A late order looks at the ticks since its arrival only, unless they came out of order.
    t0 = ist_ns(DAY, time(10, 0))
    times = [0, 1, 3, 4] if in_order else [0, 3, 1, 4]
    prices = {0: 1700_00, 1: 1700_00, 3: 1694_00, 4: 1710_00}  # at 3 s a buy at 1695 fills
    ticks = [MarketTick(instrument_token=TOKEN, last_price=prices[s], ts=t0 + s * S)
             for s in times]
    buy = Signal(strategy_id="s", instrument_token=TOKEN, side=Side.BUY, quantity=1,
                 order_type=OrderType.LIMIT, limit_price=1695_00, price_hint=1700_00)

    def fills(late: bool) -> list[tuple[int, int]]:
        x = ex()
        out: list[Payload] = []
        for k, t in enumerate(ticks):
            if not late and k == 2:
                out += x.submit("a", buy, t0 + 2 * S)
            out += x.on_tick(t)
        if late:  # processed after every tick
            out += x.submit("a", buy, t0 + 2 * S)
        return [(f.price, f.ts - t0) for f in out if isinstance(f, OrderFilled)]

    assert fills(late=True) == fills(late=False) == [(1695_00, 3 * S)]
