"""The paper exchange: order types, validity, market rules, latency and determinism."""

from __future__ import annotations

import random
from datetime import date, time
from decimal import Decimal
from typing import Any

import pytest

from alpha_panda.domain.errors import IllegalTransition
from alpha_panda.domain.events import (
    Depth,
    DepthLevel,
    MarketTick,
    OrderCancelled,
    OrderFilled,
    OrderRejected,
    OrderSubmitted,
    Payload,
    Signal,
    derive_id,
)
from alpha_panda.domain.values import OrderType, Product, Side, Validity
from alpha_panda.execution.costs import CostModel, Segment
from alpha_panda.execution.market import ist_ns
from alpha_panda.execution.orders import OrderStatus
from alpha_panda.execution.paper import ExecutionConfig, PaperExchange
from tests.unit.execution.cnc_books import cnc_books, expected_cnc_books, without_cnc_charges

TOKEN = 738561
DAY = date(2026, 11, 23)  # a Monday, a trading day
T0 = ist_ns(DAY, time(10, 0))
MS = 1_000_000


def at(hh: int, mm: int, ss: int = 0) -> int:
    return ist_ns(DAY, time(hh, mm, ss))


def tick(ts: int, price: int, qty: int = 0, **kw: Any) -> MarketTick:
    return MarketTick(instrument_token=TOKEN, last_price=price, ts=ts, last_quantity=qty, **kw)


def sig(side: Side = Side.BUY, qty: int = 10, **kw: Any) -> Signal:
    kw.setdefault("price_hint", 1000_00)
    return Signal(strategy_id="s1", instrument_token=TOKEN, side=side, quantity=qty, **kw)


def ex(**kw: Any) -> PaperExchange:
    kw.setdefault("costs", False)
    return PaperExchange(ExecutionConfig(**kw), seed=7)


def fills(events: list[Payload]) -> list[tuple[int, int, int]]:
    return [(e.quantity, e.price, e.ts) for e in events if isinstance(e, OrderFilled)]


def kinds(events: list[Payload]) -> list[str]:
    return [type(e).__name__ for e in events]


def test_market_order_without_latency_fills_at_the_signal_price() -> None:
    out = ex().submit("sig-1", sig(), T0)
    assert kinds(out) == ["OrderSubmitted", "OrderFilled"]
    fill = out[1]
    assert isinstance(fill, OrderFilled)
    assert fill.order_id == derive_id("sig-1", "order")
    assert fill.fill_id == derive_id(fill.order_id, "fill", 0)
    assert (fill.quantity, fill.price, fill.ts) == (10, 1000_00, T0)
    assert (fill.cumulative_quantity, fill.leaves_quantity, fill.average_price) == (10, 0, 1000_00)


def test_slippage_moves_the_price_against_the_trader_on_the_tick_grid() -> None:
    buy = ex(slippage_bps=5).submit("a", sig(Side.BUY), T0)
    sell = ex(slippage_bps=5).submit("b", sig(Side.SELL, product=Product.MIS), T0)
    assert fills(buy)[0][1] == 1000_50  # 1000 × 1.0005
    assert fills(sell)[0][1] == 999_50
    odd = ex(slippage_bps=1).submit("c", sig(price_hint=123_45), T0)
    assert fills(odd)[0][1] == 123_47  # 1.2345 paise of slippage: two 0.01 ticks, not none
    in_2024 = ist_ns(date(2024, 1, 2), time(10, 0))  # 0.05 for every price then
    odd = ex(slippage_bps=1).submit("d", sig(price_hint=123_45), in_2024)
    assert fills(odd)[0][1] == 123_50


def test_slippage_lands_on_the_instruments_own_tick() -> None:
    # ₹1,234.50 is in NSE's ₹1,000-5,000 band: a 0.10 tick; 5 bps is 61.7 paise
    x = ex(slippage_bps=5)
    x.on_tick(tick(T0, 1234_50, close=1234_50))
    assert fills(x.submit("a", sig(Side.BUY, price_hint=1234_50), T0))[0][1] == 1235_20
    assert fills(x.submit("b", sig(Side.SELL, price_hint=1234_50), T0))[0][1] == 1233_80


@pytest.mark.parametrize(("day", "close", "limit", "accepted"), [
    (DAY, 1500_00, 1500_05, False),  # 0.10 tick above ₹1,000 since 15 April 2025
    (DAY, 1500_00, 1500_10, True),
    (DAY, 120_00, 120_03, True),  # 0.01 tick below ₹250
    (DAY, 11_200_00, 11_200_50, False),  # ₹1 tick from ₹10,000
    (DAY, 11_200_00, 11_201_00, True),
    (date(2025, 1, 6), 1500_00, 1500_05, True),  # 0.05 everywhere above ₹250 then
    (date(2025, 1, 6), 120_00, 120_03, True),
    (date(2024, 1, 2), 120_00, 120_03, False),  # and 0.05 below ₹250 too before June 2024
])
def test_limit_prices_must_be_on_the_tick_of_the_day_and_price_band(
    day: date, close: int, limit: int, accepted: bool
) -> None:
    t0 = ist_ns(day, time(10, 0))
    x = ex(price_bands=False)
    x.on_tick(tick(t0, close, close=close))
    out = x.submit("a", sig(order_type=OrderType.LIMIT, limit_price=limit), t0)
    assert isinstance(out[0], OrderSubmitted if accepted else OrderRejected), out[0]
    if not accepted:
        assert isinstance(out[0], OrderRejected) and out[0].reason_code == "TICK_SIZE"
        assert "is not a multiple of the tick size" in out[0].message


def test_the_tick_comes_from_the_reference_price_not_the_order() -> None:
    # the previous close (₹1,001) puts the instrument in the 0.10 band all day, even when
    # it trades, and is bid for, below ₹1,000
    x = ex(price_bands=False)
    x.on_tick(tick(T0, 999_00, close=1001_00))
    out = x.submit("a", sig(order_type=OrderType.LIMIT, limit_price=999_05), T0)
    assert isinstance(out[0], OrderRejected) and out[0].reason_code == "TICK_SIZE"
    assert "₹0.10" in out[0].message


def test_costs_are_itemised_on_each_fill() -> None:
    out = PaperExchange(ExecutionConfig(costs=True)).submit("a", sig(product=Product.MIS), T0)
    fill = out[1]
    assert isinstance(fill, OrderFilled)
    assert fill.charges.brokerage == 300  # 0.03% of ₹10,000 = ₹3
    assert fill.charges.stamp_duty == 30  # 0.003% of ₹10,000
    assert fill.charges.total > 0


def test_latency_market_order_fills_at_the_first_tick_at_or_after_arrival() -> None:
    x = ex(latency_ms=100)
    assert kinds(x.submit("a", sig(), T0)) == ["OrderSubmitted"]
    assert x.on_tick(tick(T0 + 50 * MS, 1001_00)) == []
    out = x.on_tick(tick(T0 + 100 * MS, 1002_00))
    assert fills(out) == [(10, 1002_00, T0 + 100 * MS)]


def test_limit_order_fills_only_when_the_price_reaches_it_at_the_limit() -> None:
    x = ex()
    out = x.submit("a", sig(order_type=OrderType.LIMIT, limit_price=995_00), T0)
    assert kinds(out) == ["OrderSubmitted"]
    assert x.on_tick(tick(T0 + 1, 996_00)) == []
    out = x.on_tick(tick(T0 + 2, 994_00))
    assert fills(out) == [(10, 995_00, T0 + 2)]  # resting: trades at its own limit


def test_marketable_limit_fills_at_the_better_market_price() -> None:
    out = ex().submit("a", sig(order_type=OrderType.LIMIT, limit_price=1005_00), T0)
    assert fills(out) == [(10, 1000_00, T0)]
    y = ex(latency_ms=10)
    y.submit("b", sig(order_type=OrderType.LIMIT, limit_price=1005_00), T0)
    assert fills(y.on_tick(tick(T0 + 20 * MS, 1001_00))) == [(10, 1001_00, T0 + 20 * MS)]


def test_sell_limit_mirrors_the_buy() -> None:
    x = ex()
    x.submit("a", sig(Side.SELL, order_type=OrderType.LIMIT, limit_price=1010_00,
                      product=Product.MIS), T0)  # (a CNC sell needs holdings)
    assert x.on_tick(tick(T0 + 1, 1009_95)) == []
    assert fills(x.on_tick(tick(T0 + 2, 1012_00))) == [(10, 1010_00, T0 + 2)]


def test_stop_market_triggers_on_the_crossing_tick() -> None:
    x = ex()
    x.submit("a", sig(Side.SELL, order_type=OrderType.SL_M, trigger_price=990_00,
                      product=Product.MIS), T0)
    assert x.on_tick(tick(T0 + 1, 991_00)) == []
    assert fills(x.on_tick(tick(T0 + 2, 988_00))) == [(10, 988_00, T0 + 2)]


def test_stop_limit_triggers_then_waits_for_its_limit() -> None:
    x = ex()
    x.submit("a", sig(order_type=OrderType.SL, trigger_price=1010_00, limit_price=1012_00), T0)
    assert x.on_tick(tick(T0 + 1, 1015_00)) == []  # triggered, but above the limit
    order = x.order(derive_id("a", "order"))
    assert order is not None and order.triggered
    assert fills(x.on_tick(tick(T0 + 2, 1011_00))) == [(10, 1012_00, T0 + 2)]


@pytest.mark.parametrize(("kw", "code", "message"), [
    ({"limit_price": 900_00}, "PRICE_NOT_ALLOWED",
     "MARKET orders take no limit price (got ₹900.00): LIMIT and SL orders do"),
    ({"order_type": OrderType.SL_M, "trigger_price": 1005_00, "limit_price": 1006_00},
     "PRICE_NOT_ALLOWED", ("SL-M orders take no limit price (got ₹1,006.00): LIMIT and SL "
     "orders do")),
    ({"order_type": OrderType.LIMIT, "limit_price": 990_00, "trigger_price": 995_00},
     "TRIGGER_NOT_ALLOWED", ("LIMIT orders take no trigger price (got ₹995.00): SL and SL-M "
     "orders do")),
])
def test_a_price_the_order_type_has_no_use_for_is_rejected(kw: dict[str, Any], code: str,
                                                           message: str) -> None:
    # a strategy that forgot order_type=LIMIT: its "limit" 10% under the market filled at it
    out = ex().submit("a", sig(**kw), T0)
    assert [(e.reason_code, e.message) for e in out if isinstance(e, OrderRejected)] == [
        (code, message)]


def test_stop_whose_trigger_is_already_crossed_is_rejected() -> None:
    out = ex().submit("a", sig(order_type=OrderType.SL_M, trigger_price=995_00), T0)
    assert isinstance(out[0], OrderRejected) and out[0].reason_code == "TRIGGER_PRICE"
    assert (out[0].order_type, out[0].trigger_price, out[0].product) == (
        OrderType.SL_M, 995_00, Product.CNC)  # what was asked, for the order book


def test_a_stop_limit_with_its_limit_behind_its_trigger_is_rejected_as_kite_does() -> None:
    # a stop buy triggered at ₹1,010 with a limit of ₹1,005 was accepted, rested behind the
    # market once triggered and bought at ₹1,005 on the dip: a fill Kite never gives, as it
    # refuses the order ("Trigger price can't be higher than price")
    x = ex()
    x.on_tick(tick(T0, 1000_00))
    out = x.submit("a", sig(order_type=OrderType.SL, trigger_price=1010_00,
                            limit_price=1005_00), T0 + 1)
    message = "a stop-loss buy's trigger ₹1,010.00 must be at or below its limit price ₹1,005.00"
    assert [(e.reason_code, e.message) for e in out if isinstance(e, OrderRejected)] == [
        ("TRIGGER_PRICE", message)]
    sell = x.submit("b", sig(Side.SELL, order_type=OrderType.SL, trigger_price=990_00,
                             limit_price=995_00, product=Product.MIS), T0 + 1)
    assert isinstance(sell[0], OrderRejected) and sell[0].reason_code == "TRIGGER_PRICE"
    assert "must be at or above its limit price" in sell[0].message
    # trigger and limit equal, or the limit beyond the trigger: accepted
    for n, (trigger, limit) in enumerate(((1010_00, 1010_00), (1010_00, 1015_00))):
        ok = x.submit(f"c{n}", sig(order_type=OrderType.SL, trigger_price=trigger,
                                   limit_price=limit), T0 + 1)
        assert isinstance(ok[0], OrderSubmitted)


def test_ioc_cancels_what_the_first_tick_does_not_fill() -> None:
    x = ex(latency_ms=1, volume_participation=Decimal("0.5"))
    x.submit("a", sig(qty=10, validity=Validity.IOC), T0)
    out = x.on_tick(tick(T0 + MS, 1000_00, qty=8))
    assert fills(out) == [(4, 1000_00, T0 + MS)]
    cancel = out[-1]
    assert isinstance(cancel, OrderCancelled)
    assert (cancel.reason, cancel.filled_quantity, cancel.leaves_quantity) == ("ioc", 4, 6)
    unmarketable = ex().submit("b", sig(validity=Validity.IOC, order_type=OrderType.LIMIT, limit_price=990_00), T0)
    assert kinds(unmarketable) == ["OrderSubmitted", "OrderCancelled"]


def test_an_ioc_stop_not_triggered_by_the_close_ends_there() -> None:
    # An IOC stop buy at ₹1,010 (market ₹1,000) the price never reached that day: it stayed
    # open with no expiry, through expire() at the end of the data, and bought 10 at
    # ₹1,015 on the next day's first tick. An IOC never outlives its day.
    x = ex()
    x.submit("a", sig(order_type=OrderType.SL_M, trigger_price=1010_00,
                      validity=Validity.IOC), T0)
    assert x.on_tick(tick(T0 + 1, 1005_00)) == []
    close = at(15, 30)
    next_day = ist_ns(date(2026, 11, 24), time(9, 15))
    out = x.on_tick(tick(next_day, 1015_00))
    assert fills(out) == []
    assert [(e.reason, e.filled_quantity, e.leaves_quantity, e.ts) for e in out
            if isinstance(e, OrderCancelled)] == [("expired", 0, 10, close)]
    assert x.open_orders() == []
    y = ex(latency_ms=10)  # one still on its way at the end of the data
    y.submit("b", sig(order_type=OrderType.SL, trigger_price=1010_00, limit_price=1012_00,
                      validity=Validity.IOC), T0)
    assert [(type(e).__name__, e.ts) for e in y.expire(next_day)] == [("OrderCancelled", close)]


def test_volume_limited_partial_fills_carry_cumulative_and_leaves() -> None:
    x = ex(latency_ms=1, volume_participation=Decimal("0.1"))
    x.submit("a", sig(qty=25), T0)
    seen = []
    for i, q in enumerate([100, 50, 200], start=1):
        seen += [e for e in x.on_tick(tick(T0 + i * MS, 1000_00 + i * 5, qty=q)) if isinstance(e, OrderFilled)]
    assert [(f.quantity, f.cumulative_quantity, f.leaves_quantity) for f in seen] == [
        (10, 10, 15), (5, 15, 10), (10, 25, 0)
    ]
    # volume-weighted: (10×1000.05 + 5×1000.10 + 10×1000.15) / 25 = 1000.10
    assert seen[-1].average_price == 1000_10


def test_volume_share_below_one_share_a_tick_adds_up_across_ticks() -> None:
    # 10% of trades of 4 shares: 0.4 a tick, a share on the 3rd, 5th, 8th and 10th ticks
    # (rounded down on each tick alone, the order never filled)
    x = ex(latency_ms=1, volume_participation=Decimal("0.1"))
    x.submit("a", sig(qty=3), T0)
    got = []
    for i in range(1, 13):
        got += [(i, f.quantity) for f in fills_of(x.on_tick(tick(T0 + i * MS, 1000_00, qty=4)))]
    assert got == [(3, 1), (5, 1), (8, 1)]
    # a limit order away from the market gathers no share: it fills by the ticks it trades on
    x.submit("b", sig(qty=2, order_type=OrderType.LIMIT, limit_price=999_00), T0 + 20 * MS)
    for i in range(21, 31):  # ten ticks above its limit
        assert fills_of(x.on_tick(tick(T0 + i * MS, 1000_00, qty=4))) == []
    got = [(i, f.quantity) for i in range(31, 37)
           for f in fills_of(x.on_tick(tick(T0 + i * MS, 999_00, qty=4)))]
    assert got == [(33, 1), (35, 1)]


def fills_of(events: list[Payload]) -> list[OrderFilled]:
    return [e for e in events if isinstance(e, OrderFilled)]


def test_day_orders_expire_at_the_close() -> None:
    x = ex()
    x.submit("a", sig(order_type=OrderType.LIMIT, limit_price=900_00), T0)
    out = x.on_tick(tick(at(15, 30, 5), 899_00))
    assert kinds(out) == ["OrderCancelled"]
    assert isinstance(out[0], OrderCancelled) and out[0].reason == "expired"
    assert out[0].ts == at(15, 30)
    assert x.order(derive_id("a", "order")).status is OrderStatus.EXPIRED  # type: ignore[union-attr]
    y = ex()
    y.submit("b", sig(order_type=OrderType.LIMIT, limit_price=900_00), T0)
    assert kinds(y.expire(at(16, 0))) == ["OrderCancelled"]


def test_bracket_exits_one_cancels_the_other() -> None:
    x = ex()
    out = x.submit("a", sig(take_profit=1020_00, stop_loss=990_00), T0)
    assert kinds(out) == ["OrderSubmitted", "OrderFilled", "OrderSubmitted", "OrderSubmitted"]
    legs = [e for e in out[2:] if isinstance(e, OrderSubmitted)]
    assert {(leg.order_type, leg.side, leg.quantity) for leg in legs} == {
        (OrderType.LIMIT, Side.SELL, 10), (OrderType.SL_M, Side.SELL, 10)
    }
    assert all(leg.parent_order_id == derive_id("a", "order") for leg in legs)
    assert x.on_tick(tick(T0 + 1, 1010_00)) == []
    out = x.on_tick(tick(T0 + 2, 1021_00))
    assert fills(out) == [(10, 1020_00, T0 + 2)]
    assert [e.reason for e in out if isinstance(e, OrderCancelled)] == ["oco"]
    assert x.open_orders() == []


def test_a_target_resting_behind_the_market_fills_at_its_limit_on_a_gap() -> None:
    # Long 10 at ₹1,000 with a target at ₹1,020: the next print gaps to ₹1,030. The target
    # rested on the book at ₹1,020, so the buyers took it there; it sold at ₹1,030 (₹100
    # more than NSE could give), as if it had only just reached the book.
    x = ex()
    x.submit("a", sig(take_profit=1020_00, stop_loss=990_00), T0)
    assert fills(x.on_tick(tick(T0 + 1, 1030_00))) == [(10, 1020_00, T0 + 1)]
    # a target the entry's own fill already passed (a stop entry that gapped) was marketable
    # when it reached the book: it takes the market's price
    y = ex()
    y.submit("b", sig(order_type=OrderType.SL_M, trigger_price=1010_00, take_profit=1015_00,
                      stop_loss=1000_00, product=Product.MIS), T0)
    assert fills(y.on_tick(tick(T0 + 1, 1020_00))) == [(10, 1020_00, T0 + 1)]
    assert fills(y.on_tick(tick(T0 + 2, 1018_00))) == [(10, 1018_00, T0 + 2)]


def test_a_limit_order_behind_the_market_when_its_latency_ends_rests_at_its_limit() -> None:
    # A buy limit at ₹995 with the market at ₹1,000 reaches the book 10 ms later, still
    # behind it: a print at ₹990 must first take the ₹995 bid. It filled at ₹990.
    x = ex(latency_ms=10)
    x.submit("a", sig(order_type=OrderType.LIMIT, limit_price=995_00), T0)
    assert x.on_tick(tick(T0 + 5 * MS, 1000_00)) == []
    assert fills(x.on_tick(tick(T0 + 20 * MS, 990_00))) == [(10, 995_00, T0 + 20 * MS)]
    # the same when the ticks were read before the order (a lagging engine)
    y = ex(latency_ms=10)
    y.on_tick(tick(T0 + 5 * MS, 1000_00))
    y.on_tick(tick(T0 + 20 * MS, 990_00))
    assert fills(y.submit("a", sig(order_type=OrderType.LIMIT, limit_price=995_00), T0)) == [
        (10, 995_00, T0 + 20 * MS)]
    # one the market passed during its latency was marketable on arrival: the tick's price
    z = ex(latency_ms=10)
    z.submit("b", sig(order_type=OrderType.LIMIT, limit_price=995_00), T0)
    assert z.on_tick(tick(T0 + 5 * MS, 994_00)) == []
    assert fills(z.on_tick(tick(T0 + 20 * MS, 990_00))) == [(10, 990_00, T0 + 20 * MS)]
    # a bracket's target placed with latency rests alike
    w = ex(latency_ms=10)
    w.submit("c", sig(take_profit=1020_00, stop_loss=990_00), T0)
    w.on_tick(tick(T0 + 10 * MS, 1000_00))  # the entry fills
    assert w.on_tick(tick(T0 + 15 * MS, 1001_00)) == []
    assert fills(w.on_tick(tick(T0 + 30 * MS, 1030_00))) == [(10, 1020_00, T0 + 30 * MS)]
    # an IOC behind the market when it reaches the book is cancelled unfilled, as at once
    v = ex(latency_ms=10)
    v.submit("d", sig(order_type=OrderType.LIMIT, limit_price=995_00, validity=Validity.IOC), T0)
    out = v.on_tick(tick(T0 + 20 * MS, 990_00))
    assert fills(out) == [] and kinds(out) == ["OrderCancelled"]


def test_mis_positions_are_squared_off_at_the_cutoff() -> None:
    x = ex()
    x.submit("a", sig(qty=10, product=Product.MIS), at(15, 0))
    x.submit("b", sig(qty=5, product=Product.MIS, order_type=OrderType.LIMIT, limit_price=900_00), at(15, 0))
    out = x.on_tick(tick(at(15, 20, 1), 1003_00))
    cancelled = [e for e in out if isinstance(e, OrderCancelled)]
    assert [(c.reason, c.leaves_quantity) for c in cancelled] == [("squareoff", 5)]
    assert [(f.side, f.quantity, f.price) for f in out if isinstance(f, OrderFilled)] == [
        (Side.SELL, 10, 1003_00)
    ]
    assert not x.needs_tick(TOKEN)
    late = x.submit("c", sig(product=Product.MIS), at(15, 25))
    assert isinstance(late[0], OrderRejected) and late[0].reason_code == "MIS_CUTOFF"


def test_a_square_off_is_a_market_order_and_pays_the_configured_slippage() -> None:
    # 50 bps of slippage: the strategy's own market sell of 10 at ₹1,003 fills at ₹997.90
    # (₹997.985 down to the ₹0.10 tick), the 15:20 square-off of the same 10 at ₹1,003.00,
    # the one market order that paid none (₹51 better than the strategy's own exit)
    x = ex(slippage_bps=50)
    x.submit("a", sig(qty=10, product=Product.MIS, price_hint=1000_00), at(15, 0))
    out = x.on_tick(tick(at(15, 20, 1), 1003_00))
    assert [(f.side, f.quantity, f.price, f.origin) for f in out if isinstance(f, OrderFilled)
            ] == [(Side.SELL, 10, 997_90, "squareoff")]
    y = ex(slippage_bps=50)
    y.submit("b", sig(qty=10, product=Product.MIS, price_hint=1000_00), at(15, 0))
    assert fills(y.submit("c", sig(Side.SELL, qty=10, product=Product.MIS,
                                   price_hint=1003_00), at(15, 1))) == [(10, 997_90, at(15, 1))]


def test_a_square_off_pays_zerodhas_call_and_trade_charge_per_order() -> None:
    # ₹50 + 18% GST on each order Zerodha squares off with (at most 30,000 shares each),
    # on top of the order's own charges; a position the strategy closes itself pays none
    card = CostModel.load(as_of=DAY)
    assert card.auto_squareoff_charge(Segment.EQUITY_INTRADAY, 10) == 59_00
    assert card.auto_squareoff_charge(Segment.EQUITY_INTRADAY, 65_000) == 3 * 59_00
    assert card.auto_squareoff_charge(Segment.EQUITY_DELIVERY, 10) == 0
    assert card.auto_squareoff_charge(Segment.FUTURES, 65_000) == 59_00  # (freeze qty unknown)
    x = ex(costs=True)
    x.submit("a", sig(qty=10, product=Product.MIS), at(15, 0))
    x.submit("b", sig(qty=4, product=Product.MIS), at(15, 1))
    closed = x.submit("c", sig(Side.SELL, qty=4, product=Product.MIS), at(15, 2))
    [own] = [f for f in closed if isinstance(f, OrderFilled)]
    [squared] = [f for f in x.on_tick(tick(at(15, 20, 1), 1003_00)) if isinstance(f, OrderFilled)]
    assert (squared.origin, squared.quantity, squared.charges.auto_squareoff) == (
        "squareoff", 10, 59_00)
    assert squared.charges.total == card.order_charges(
        Segment.EQUITY_INTRADAY, Side.SELL, 10 * 1003_00).total + 59_00
    assert own.charges.auto_squareoff == 0


def test_a_square_off_undone_by_a_late_fill_costs_no_call_and_trade_charge() -> None:
    # The strategy closed its position itself at 15:19:59, but the engine read the 15:20:01
    # tick first: squared off, then the close (dated before the cut-off) squared off back.
    # In time nothing was squared off, so nothing is due for it (one fee, then its refund).
    x = ex(costs=True)
    x.submit("open", sig(qty=10, product=Product.MIS), at(15, 0))
    out = x.on_tick(tick(at(15, 20, 1), 1003_00))
    out += x.submit("close", sig(Side.SELL, qty=10, product=Product.MIS), at(15, 19, 59))
    squares = [f for f in out if isinstance(f, OrderFilled) and f.origin == "squareoff"]
    assert [(f.side, f.charges.auto_squareoff) for f in squares] == [
        (Side.SELL, 59_00), (Side.BUY, -59_00)]


def test_an_mis_position_that_missed_its_cutoff_is_squared_off_at_the_next_days_first_tick() -> None:
    other = 2885  # another instrument, whose tick comes first on the next day
    x = ex()
    x.on_tick(tick(at(14, 59), 1000_00))
    assert fills(x.submit("a", sig(qty=10, product=Product.MIS), at(15, 0))) == [
        (10, 1000_00, at(15, 0))]
    x.on_tick(tick(at(15, 10), 1002_00))  # then no tick of it until the next session
    next_open = ist_ns(date(2026, 11, 25), time(9, 15))  # 24 Nov is a holiday
    assert x.on_tick(MarketTick(instrument_token=other, last_price=500_00, ts=next_open)) == []
    assert x.needs_tick(TOKEN)  # still open: its price comes with its own tick
    out = x.on_tick(tick(next_open + 1, 1010_00))
    flat = [e for e in out if isinstance(e, OrderFilled)]
    assert [(f.side, f.quantity, f.price, f.ts) for f in flat] == [
        (Side.SELL, 10, 1010_00, next_open + 1)]
    assert flat[0].order_id == derive_id(f"squareoff|s1|{TOKEN}|{DAY}|0", "order")
    assert not x.needs_tick(TOKEN)
    assert x.on_tick(tick(next_open + 2, 1011_00)) == []  # once
    # The new day trades as usual, and its own cut-off squares off its own positions.
    x.submit("b", sig(qty=4, product=Product.MIS), next_open + 3)
    x.on_tick(tick(next_open + 4, 1012_00))
    out = x.on_tick(tick(ist_ns(date(2026, 11, 25), time(15, 20)), 1015_00))
    assert fills(out) == [(4, 1015_00, ist_ns(date(2026, 11, 25), time(15, 20)))]


def test_ticks_of_other_instruments_out_of_day_order_do_not_square_off_a_new_days_position(
) -> None:
    # Instruments' ticks interleave in no fixed order (partitions, a rebuild replaying one
    # partition after another): another instrument's late tick of the day before must not
    # make a position opened today look overnight.
    other = 2885
    x = ex()
    next_open = ist_ns(date(2026, 11, 25), time(9, 15))
    x.on_tick(tick(next_open, 1000_00))
    assert fills(x.submit("a", sig(qty=10, product=Product.MIS), next_open + 1)) == [
        (10, 1000_00, next_open + 1)]
    x.on_tick(MarketTick(instrument_token=other, last_price=500_00, ts=at(15, 29)))
    assert x.on_tick(tick(next_open + 2, 1001_00)) == []
    assert x.needs_tick(TOKEN)  # still open


def _fills(events: list[Payload]) -> list[tuple[str, Side, int, int, int]]:
    return sorted((e.fill_id, e.side, e.quantity, e.price, e.ts)
                  for e in events if isinstance(e, OrderFilled))


def _net(events: list[Payload]) -> int:
    return sum(e.quantity if e.side is Side.BUY else -e.quantity
               for e in events if isinstance(e, OrderFilled))


@pytest.mark.parametrize("day2_order", [False, True])
def test_a_rebuild_replaying_ticks_before_signals_squares_off_overnight_as_the_live_run_did(
        day2_order: bool) -> None:
    # The paper engine rebuilds its state by replaying its inputs partition by partition:
    # every tick, then the signals. The live run saw them in time order. Both must flatten
    # the same positions with the same fills (ids, prices), and agree from then on.
    next_open = ist_ns(date(2026, 11, 25), time(9, 15))
    ticks = [tick(at(14, 59), 1000_00), tick(at(15, 10), 1002_00),
             tick(next_open, 1010_00), tick(next_open + 4, 1012_00)]
    signals = [("a", sig(qty=10, product=Product.MIS), at(15, 0))]
    if day2_order:
        signals.append(("b", sig(qty=4, product=Product.MIS), next_open + 3))
    live, rebuilt = ex(), ex()
    live_out = live.on_tick(ticks[0]) + live.submit(*signals[0])
    live_out += live.on_tick(ticks[1]) + live.on_tick(ticks[2])
    if day2_order:
        live_out += live.submit(*signals[1])
    live_out += live.on_tick(ticks[3])
    rebuilt_out = [e for t in ticks for e in rebuilt.on_tick(t)]
    rebuilt_out += [e for s in signals for e in rebuilt.submit(*s)]
    assert _fills(live_out) == _fills(rebuilt_out)
    assert (Side.SELL, 10, 1010_00) in [f[1:4] for f in _fills(live_out)]
    later = tick(next_open + 10, 1020_00)
    assert live.on_tick(later) == rebuilt.on_tick(later) == []
    cutoff = tick(ist_ns(date(2026, 11, 25), time(15, 20)), 1030_00)
    # the day-2 position, if any, is squared off at day 2's own cut-off by both
    assert fills(live.on_tick(cutoff)) == fills(rebuilt.on_tick(cutoff)) == (
        [(4, 1030_00, cutoff.ts)] if day2_order else [])


def test_a_days_position_taken_before_its_instruments_first_tick_that_day_lives_to_its_cutoff(
) -> None:
    # Day 2's order fills (at its price hint) before the instrument's own first day-2 tick:
    # that tick squares off day 1's 10 only; day 2's 4 last until day 2's cut-off. A rebuild
    # (every tick, then the signals) and both orders of a tick and a signal with one time
    # agree with the live run.
    other = 2885
    d2 = ist_ns(date(2026, 11, 25), time(9, 15))
    ticks = [tick(at(14, 59), 1000_00), tick(at(15, 10), 1002_00),
             MarketTick(instrument_token=other, last_price=500_00, ts=d2), tick(d2 + 1, 1010_00)]
    signals = [("a", sig(qty=10, product=Product.MIS), at(15, 0)),
               ("b", sig(qty=4, product=Product.MIS, price_hint=1009_00), d2)]
    live, rebuilt = ex(), ex()
    live_out = live.on_tick(ticks[0]) + live.submit(*signals[0]) + live.on_tick(ticks[1])
    live_out += live.on_tick(ticks[2]) + live.submit(*signals[1]) + live.on_tick(ticks[3])
    rebuilt_out = [e for t in ticks for e in rebuilt.on_tick(t)]
    rebuilt_out += [e for sg in signals for e in rebuilt.submit(*sg)]
    assert _fills(live_out) == _fills(rebuilt_out)
    assert _net(live_out) == 4 and live.needs_tick(TOKEN)
    cutoff = tick(ist_ns(date(2026, 11, 25), time(15, 20)), 1020_00)
    assert fills(live.on_tick(cutoff)) == fills(rebuilt.on_tick(cutoff)) == [
        (4, 1020_00, cutoff.ts)]


def test_a_tick_and_a_signal_at_the_same_time_give_the_same_fills_in_either_order() -> None:
    d2 = ist_ns(date(2026, 11, 25), time(9, 15))
    day2 = ("b", sig(qty=4, product=Product.MIS, price_hint=1010_00), d2)
    tick_first, signal_first = ex(), ex()
    for x in (tick_first, signal_first):
        x.on_tick(tick(at(14, 59), 1000_00))
        x.submit("a", sig(qty=10, product=Product.MIS), at(15, 0))
    a = tick_first.on_tick(tick(d2, 1010_00)) + tick_first.submit(*day2)
    b = signal_first.submit(*day2) + signal_first.on_tick(tick(d2, 1010_00))
    assert _fills(a) == _fills(b)
    assert _net(a) == _net(b) == -10 + 4


def test_a_position_taken_on_a_day_without_ticks_of_its_instrument_is_squared_off_after_it(
) -> None:
    # Day 1 squared off as usual; on day 2 an order fills at its price hint and the
    # instrument never ticks; day 3's first tick is the first after day 2's cut-off.
    d3 = date(2026, 11, 26)
    ticks = [tick(at(15, 0), 1000_00), tick(at(15, 25), 1000_00),
             tick(ist_ns(d3, time(9, 15)), 1010_00), tick(ist_ns(d3, time(12, 0)), 1011_00)]
    day2 = ("a", sig(qty=10, product=Product.MIS), ist_ns(date(2026, 11, 25), time(10, 0)))
    live, rebuilt = ex(), ex()
    live_out = live.on_tick(ticks[0]) + live.on_tick(ticks[1]) + live.submit(*day2)
    live_out += live.on_tick(ticks[2]) + live.on_tick(ticks[3])
    rebuilt_out = [e for t in ticks for e in rebuilt.on_tick(t)] + rebuilt.submit(*day2)
    assert _fills(live_out) == _fills(rebuilt_out)
    assert (Side.SELL, 10, 1010_00, ticks[2].ts) in [f[1:] for f in _fills(live_out)]
    assert _net(live_out) == 0 and not live.needs_tick(TOKEN) and not rebuilt.needs_tick(TOKEN)
    cutoff = tick(ist_ns(d3, time(15, 20)), 1020_00)
    assert live.on_tick(cutoff) == rebuilt.on_tick(cutoff) == []


def test_a_position_squared_off_at_its_cutoff_is_not_squared_off_again_the_next_day() -> None:
    x = ex()
    x.on_tick(tick(at(14, 59), 1000_00))
    x.submit("a", sig(qty=10, product=Product.MIS), at(15, 0))
    assert fills(x.on_tick(tick(at(15, 21), 1001_00))) == [(10, 1001_00, at(15, 21))]
    next_open = ist_ns(date(2026, 11, 25), time(9, 15))
    assert x.on_tick(tick(next_open, 1005_00)) == []


def test_market_hours_reject_or_queue() -> None:
    night = ist_ns(DAY, time(20, 0))
    out = ex(market_hours="reject").submit("a", sig(), night)
    assert isinstance(out[0], OrderRejected) and out[0].reason_code == "MARKET_CLOSED"
    holiday = ist_ns(date(2026, 11, 24), time(10, 0))  # Guru Nanak Jayanti
    assert isinstance(ex(market_hours="reject").submit("h", sig(), holiday)[0], OrderRejected)
    q = ex(market_hours="queue")
    assert kinds(q.submit("b", sig(), night)) == ["OrderSubmitted"]
    next_open = ist_ns(date(2026, 11, 25), time(9, 15))
    assert q.on_tick(tick(next_open - 1, 1001_00)) == []
    assert fills(q.on_tick(tick(next_open, 1004_00))) == [(10, 1004_00, next_open)]


def test_tick_size_and_circuit_band_are_enforced() -> None:
    x = ex()
    off_grid = x.submit("a", sig(order_type=OrderType.LIMIT, limit_price=1000_03), T0)
    assert isinstance(off_grid[0], OrderRejected) and off_grid[0].reason_code == "TICK_SIZE"
    x.on_tick(tick(T0, 1000_00, close=1000_00))  # RELIANCE: 10% band around the previous close
    wild = x.submit("b", sig(order_type=OrderType.LIMIT, limit_price=1200_00), T0 + 1)
    assert isinstance(wild[0], OrderRejected) and wild[0].reason_code == "PRICE_BAND"
    ok = x.submit("c", sig(order_type=OrderType.LIMIT, limit_price=1100_00), T0 + 1)
    assert isinstance(ok[0], OrderSubmitted)


def test_slippage_never_carries_a_market_fill_past_the_circuit_limit() -> None:
    # RELIANCE at its upper circuit (10% over the previous close, ₹1,100): a market buy
    # with 50 bps of slippage filled at ₹1,105.50, a price NSE refuses; it fills at the limit
    x = ex(slippage_bps=50)
    x.on_tick(tick(T0, 1100_00, close=1000_00))
    assert fills(x.submit("a", sig(price_hint=1100_00), T0 + 1)) == [(10, 1100_00, T0 + 1)]
    x.on_tick(tick(T0 + 2, 900_50, close=1000_00))  # a sell near the lower limit, ₹900
    assert fills(x.submit("b", sig(Side.SELL, price_hint=900_50, product=Product.MIS),
                          T0 + 3)) == [(10, 900_00, T0 + 3)]
    # a stop-loss triggered at the limit (SL-M: a market order once triggered) alike
    x.submit("c", sig(Side.SELL, order_type=OrderType.SL_M, trigger_price=901_00,
                      price_hint=902_00, product=Product.MIS), T0 + 4)
    assert fills(x.on_tick(tick(T0 + 5, 900_00, close=1000_00))) == [(10, 900_00, T0 + 5)]
    # inside the band slippage is as before, and a price beyond a stale band is not moved
    x.on_tick(tick(T0 + 6, 1000_00, close=1000_00))
    assert fills(x.submit("d", sig(price_hint=1000_00), T0 + 7)) == [(10, 1005_00, T0 + 7)]
    x.on_tick(tick(T0 + 8, 1150_00, close=1000_00))
    assert fills(x.submit("e", sig(price_hint=1150_00), T0 + 9)) == [(10, 1150_00, T0 + 9)]


def test_depth_model_walks_the_book() -> None:
    x = ex(latency_ms=1, slippage_model="depth")
    x.submit("a", sig(qty=30), T0)
    depth = Depth(sell=(DepthLevel(1000_05, 10), DepthLevel(1000_10, 10), DepthLevel(1000_20, 100)))
    out = x.on_tick(tick(T0 + MS, 1000_00, depth=depth))
    # one execution per level taken, like the trades of a real sweep
    assert fills(out) == [(10, 1000_05, T0 + MS), (10, 1000_10, T0 + MS), (10, 1000_20, T0 + MS)]
    last = [e for e in out if isinstance(e, OrderFilled)][-1]
    assert (last.cumulative_quantity, last.leaves_quantity, last.average_price) == (30, 0, 1000_12)
    y = ex(latency_ms=1, slippage_model="depth")
    y.submit("b", sig(Side.SELL, qty=25, product=Product.MIS), T0)
    bids = Depth(buy=(DepthLevel(999_95, 5), DepthLevel(999_90, 5)))
    assert fills(y.on_tick(tick(T0 + MS, 1000_00, depth=bids))) == [
        (5, 999_95, T0 + MS), (20, 999_90, T0 + MS)  # beyond the book: at its last level
    ]
    z = ex(latency_ms=1, slippage_model="depth", slippage_bps=10)
    z.submit("c", sig(qty=5), T0)
    assert fills(z.on_tick(tick(T0 + MS, 1000_00))) == [(5, 1001_00, T0 + MS)]  # no book: bps


def test_submit_is_idempotent_and_cancel_is_user_initiated() -> None:
    x = ex()
    out = x.submit("a", sig(order_type=OrderType.LIMIT, limit_price=900_00), T0)
    assert x.submit("a", sig(order_type=OrderType.LIMIT, limit_price=900_00), T0) == []
    order_id = out[0].order_id  # type: ignore[attr-defined]
    assert x.cancel(order_id, T0 + 5) == []  # a tick by then may still come: it waits
    cancelled = x.on_tick(tick(T0 + 6, 1000_00))
    assert isinstance(cancelled[0], OrderCancelled) and cancelled[0].reason == "user"
    assert cancelled[0].ts == T0 + 5
    assert x.cancel(order_id, T0 + 6) == []


def test_an_illegal_transition_is_an_error() -> None:
    x = ex()
    x.submit("a", sig(), T0)
    order = x.order(derive_id("a", "order"))
    assert order is not None and order.status is OrderStatus.FILLED
    with pytest.raises(IllegalTransition):
        order.transition(OrderStatus.CANCELLED)


# ---------------------------------------------------------------- determinism


def _scenario(seed: int) -> tuple[list[MarketTick], list[tuple[int, str, Signal]]]:
    rng = random.Random(seed)
    ticks, signals = [], []
    price = 1000_00
    for i in range(300):
        ts = T0 + i * 7 * MS
        price = max(5, price + rng.choice((-10, -5, 0, 5, 10)))
        ticks.append(tick(ts, price, qty=rng.randint(0, 40)))
        if rng.random() < 0.15:
            kind = rng.choice(list(OrderType))
            side = rng.choice(list(Side))
            off = side.sign * rng.choice((5, 10, 20, 40))
            kw: dict[str, Any] = {"price_hint": price, "order_type": kind}
            if kind in (OrderType.LIMIT, OrderType.SL):
                kw["limit_price"] = price - off if kind is OrderType.LIMIT else price + 2 * off
            if kind in (OrderType.SL, OrderType.SL_M):
                kw["trigger_price"] = price + off
            if kind is OrderType.MARKET and rng.random() < 0.5:
                kw.update(take_profit=price + side.sign * 30, stop_loss=price - side.sign * 30)
            kw["validity"] = Validity.IOC if rng.random() < 0.1 else Validity.DAY
            signals.append((ts, f"sig-{i}", sig(side, rng.randint(1, 30), **kw)))
    return ticks, signals


def _run(config: ExecutionConfig, ticks: list[MarketTick], signals: list[tuple[int, str, Signal]],
         delay: int, seed: int) -> list[Payload]:
    """Feed ticks and signals; each signal is processed ``delay``-ish ticks after its own,
    and after the signals before it (one strategy and instrument: one ordered stream, as
    its key keeps them on the log; a CNC sell's holdings depend on the sells before it)."""
    rng = random.Random(seed)
    x = PaperExchange(config, seed=3)
    queue: list[tuple[int, int, str, Signal]] = []
    out: list[Payload] = []
    by_ts = {}
    for ts, sid, s in signals:
        by_ts.setdefault(ts, []).append((sid, s))
    for i, t in enumerate(ticks):
        out += x.on_tick(t)
        for sid, s in by_ts.get(t.ts, []):
            queue.append((i + (rng.randint(0, delay) if delay else 0), t.ts, sid, s))
        while queue and queue[0][0] <= i:
            _, ts, sid, s = queue.pop(0)
            out += x.submit(sid, s, ts)
    for _, ts, sid, s in queue:
        out += x.submit(sid, s, ts)
    return out


def _key(e: Payload) -> tuple[Any, ...]:
    return (type(e).__name__, getattr(e, "order_id", ""), getattr(e, "fill_id", ""), e)


@pytest.mark.parametrize("latency_ms", [0, 10])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_fills_do_not_depend_on_how_ticks_and_signals_interleave(latency_ms: int, seed: int) -> None:
    ticks, signals = _scenario(seed)
    config = ExecutionConfig(
        costs=True, latency_ms=latency_ms, volume_participation=Decimal("0.5"),
        slippage_bps=2, slippage_jitter_bps=3,
    )
    backtest_order = _run(config, ticks, signals, delay=0, seed=seed)
    live_order = _run(config, ticks, signals, delay=4, seed=seed + 100)
    assert len([e for e in backtest_order if isinstance(e, OrderFilled)]) > 10
    # The same events; a CNC fill's share of its day's netted charges follows the order the
    # day's fills were processed in, the day's total does not (execution.netting).
    assert sorted(without_cnc_charges(backtest_order), key=lambda e: repr(_key(e))) == sorted(
        without_cnc_charges(live_order), key=lambda e: repr(_key(e)))
    assert cnc_books(backtest_order) == cnc_books(live_order) == expected_cnc_books(
        backtest_order, CostModel.load())
    again = _run(config, ticks, signals, delay=4, seed=seed + 100)
    assert again == live_order  # the same inputs in the same order: the same events


def test_config_from_yaml_numbers_and_bad_values() -> None:
    from alpha_panda.domain.errors import ConfigurationError

    config = ExecutionConfig(slippage_bps=2.5, volume_participation=0.1)  # type: ignore[arg-type]
    assert config.slippage_bps == Decimal("2.5") and config.volume_participation == Decimal("0.1")
    for bad in ({"latency_ms": -1}, {"slippage_bps": -1}, {"market_hours": "sometimes"},
                {"volume_participation": 2}, {"slippage_bps": "x"}):
        with pytest.raises(ConfigurationError):
            ExecutionConfig(**bad)


def test_a_late_processed_mis_fill_is_squared_off_at_the_same_price() -> None:
    from alpha_panda.portfolio import PositionLedger

    def pnl(events: list[Payload]) -> tuple[int, int]:
        ledger = PositionLedger(initial_cash=0)
        for e in events:
            if isinstance(e, OrderFilled):
                ledger.apply_fill(e)
        snap = ledger.snapshot(None)
        return snap.realized, snap.open_positions

    cutoff_tick = tick(at(15, 20, 2), 1007_00)
    signal = sig(qty=10, product=Product.MIS, price_hint=1001_00)
    in_order = ex()
    a = in_order.submit("m", signal, at(15, 19)) + in_order.on_tick(cutoff_tick)
    late = ex()
    b = late.on_tick(cutoff_tick) + late.submit("m", signal, at(15, 19))
    assert pnl(a) == pnl(b) == (60_00, 0)  # bought at 1001, squared off at 1007


def test_an_order_older_than_the_kept_history_is_rejected_not_mismatched() -> None:
    x = ex(tick_history=3)
    for i in range(5):
        x.on_tick(tick(T0 + i, 1000_00))
    out = x.submit("old", sig(order_type=OrderType.LIMIT, limit_price=990_00), T0)
    assert isinstance(out[-1], OrderRejected) and out[-1].reason_code == "STALE_ORDER"


def test_a_day_order_placed_after_the_close_lives_until_the_next_close() -> None:
    x = ex()
    evening = at(18, 0)
    x.submit("a", sig(order_type=OrderType.LIMIT, limit_price=900_00), evening)
    assert x.on_tick(tick(evening + 1, 950_00)) == []  # not expired at the earlier close
    # the next session's: 24 November 2026 is a holiday (Guru Nanak Jayanti)
    next_close = ist_ns(date(2026, 11, 25), time(15, 30))
    out = x.on_tick(tick(next_close + 1, 950_00))
    assert [(type(e).__name__, e.ts) for e in out] == [("OrderCancelled", next_close)]


def test_a_day_order_placed_after_fridays_close_lives_until_mondays_close() -> None:
    # A buy limit at ₹900 placed on Friday evening expired at Saturday's "close", a day
    # NSE does not trade: Monday's first print at ₹890 cancelled it, dated Saturday, instead
    # of filling it. It lives until the next session's close (a holiday's eve likewise).
    x = ex()
    friday, monday = date(2026, 11, 27), date(2026, 11, 30)
    out = x.submit("a", sig(order_type=OrderType.LIMIT, limit_price=900_00),
                   ist_ns(friday, time(18, 0)))
    monday_close = ist_ns(monday, time(15, 30))
    assert [e.expires_ns for e in out if isinstance(e, OrderSubmitted)] == [monday_close]
    opening = ist_ns(monday, time(9, 15))
    assert fills(x.on_tick(tick(opening, 890_00))) == [(10, 900_00, opening)]
    # placed on the Saturday itself (market hours not enforced): Monday's close too
    y = ex()
    y.submit("b", sig(order_type=OrderType.LIMIT, limit_price=900_00),
             ist_ns(date(2026, 11, 28), time(10, 0)))
    assert y.expire(opening) == []  # (it was still open on Monday morning)
    out = y.expire(monday_close)
    assert [(type(e).__name__, e.ts) for e in out] == [("OrderCancelled", monday_close)]


def test_bracket_prices_must_be_on_the_tick_grid() -> None:
    out = ex().submit("a", sig(take_profit=1020_02, stop_loss=990_00), T0)
    assert isinstance(out[0], OrderRejected) and out[0].reason_code == "TICK_SIZE"


def test_closed_orders_are_pruned_but_still_recognised(monkeypatch: pytest.MonkeyPatch) -> None:
    from alpha_panda.execution import paper

    monkeypatch.setattr(paper, "CLOSED_ORDERS_KEPT", 2)
    x = ex()
    for i in range(5):
        x.submit(f"s{i}", sig(), T0 + i)
    assert x.order(derive_id("s0", "order")) is None  # dropped from memory
    assert x.order(derive_id("s4", "order")) is not None
    assert x.submit("s0", sig(), T0) == []  # a redelivery is still recognised


def test_a_fill_is_charged_by_the_rate_card_in_force_on_its_day() -> None:
    # A backtest of 2025 ticks pays 2025's charges: NSE's equity transaction fee was
    # 0.00297% before the 2026-04-01 card (0.00307% from it).
    for day, card in ((date(2025, 6, 2), "2024-10-01"), (date(2026, 6, 1), "2026-04-01")):
        x = PaperExchange(ExecutionConfig(costs=True), seed=7)
        out = x.submit("a", sig(product=Product.MIS), ist_ns(day, time(10, 0)))
        fill = next(e for e in out if isinstance(e, OrderFilled))
        expected = CostModel.load(as_of=day).order_charges(
            Segment.EQUITY_INTRADAY, Side.BUY, 10 * 1000_00)
        assert fill.charges == expected, card
        assert CostModel.load(as_of=day).version == card


def test_an_order_without_a_price_hint_meets_the_instruments_last_price() -> None:
    # A signal on an instrument other than the tick's (a pair's second leg) has no price
    # hint. A limit buy at 99 placed with the market at 100 rests at 99: on a gap to 97 it
    # buys at 99, as with the hint, not at 97; a stop buy triggered at 99, below the
    # market, is refused as with the hint, where it bought at once.
    for hint in (100_00, None):
        x = ex()
        x.on_tick(tick(T0, 100_00))
        x.submit("a", sig(order_type=OrderType.LIMIT, limit_price=99_00, price_hint=hint), T0 + 1)
        assert fills(x.on_tick(tick(T0 + 2, 97_00))) == [(10, 99_00, T0 + 2)]
        out = x.submit("b", sig(order_type=OrderType.SL_M, trigger_price=96_00,
                                price_hint=hint), T0 + 3)
        assert [e.reason_code for e in out if isinstance(e, OrderRejected)] == ["TRIGGER_PRICE"]
        # a limit at the market fills at once at its last price
        out = x.submit("c", sig(order_type=OrderType.LIMIT, limit_price=98_00,
                                price_hint=None if hint is None else 97_00), T0 + 3)
        assert fills(out) == [(10, 97_00, T0 + 3)]
