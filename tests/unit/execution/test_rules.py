"""Order acceptance rules: the circuit band's reference price (``circuit_bands.json``: the
previous close, else the session's first traded price), in time and for late orders."""

from __future__ import annotations

from datetime import date, time
from typing import Any

import pytest

from alpha_panda.domain.clock import ist_ns
from alpha_panda.domain.events import MarketTick, OrderRejected, OrderSubmitted, Payload, Signal
from alpha_panda.domain.values import OrderType, Product, Side, reduces
from alpha_panda.execution.market import MarketCalendar, SessionClock
from alpha_panda.execution.paper import ExecutionConfig, PaperExchange
from alpha_panda.execution.rules import mis_cutoff, reference_price

TOKEN = 341249  # 10% band
OTHER = 738561
DAY = date(2026, 11, 23)  # a Monday
NEXT = date(2026, 11, 25)  # 24 Nov is a holiday


def at(hh: int, mm: int, day: date = DAY) -> int:
    return ist_ns(day, time(hh, mm))


def tick(ts: int, price: int, token: int = TOKEN, **kw: Any) -> MarketTick:
    return MarketTick(instrument_token=token, last_price=price, ts=ts, **kw)


def limit_buy(price: int) -> Signal:
    return Signal(strategy_id="s", instrument_token=TOKEN, side=Side.BUY, quantity=1,
                  order_type=OrderType.LIMIT, limit_price=price)


def verdict(events: list[Payload]) -> str:
    first = events[0]
    if isinstance(first, OrderRejected):
        return first.reason_code
    assert isinstance(first, OrderSubmitted)
    return "accepted"


# The session opens at 1000 and falls to 750 by 11:00 (a file without a ``close`` column).
WALK = [tick(at(9, 15), 1000_00), tick(at(9, 16), 990_00, token=OTHER),
        tick(at(10, 0), 900_00), tick(at(11, 0), 750_00)]


def test_without_a_previous_close_the_band_is_around_the_sessions_first_price() -> None:
    x = PaperExchange(ExecutionConfig(costs=False))
    for t in WALK:
        x.on_tick(t)
    # the band is 900.00..1100.00 around the 1000 open, not 675..825 around the last 750
    assert verdict(x.submit("far", limit_buy(680_00), at(11, 0))) == "PRICE_BAND"
    assert verdict(x.submit("low", limit_buy(899_95), at(11, 0))) == "PRICE_BAND"
    assert verdict(x.submit("edge", limit_buy(900_00), at(11, 0))) == "accepted"


def test_a_late_order_gets_the_reference_of_its_own_time() -> None:
    # Processed after the next session's ticks (which open at 700): still the band of
    # its own session's open.
    later = [tick(at(15, 29), 760_00), tick(at(9, 15, NEXT), 700_00), tick(at(9, 20, NEXT), 690_00)]
    x = PaperExchange(ExecutionConfig(costs=False))
    for t in WALK + later:
        x.on_tick(t)
    assert verdict(x.submit("far", limit_buy(680_00), at(11, 0))) == "PRICE_BAND"
    assert verdict(x.submit("edge", limit_buy(900_00), at(11, 0))) == "accepted"
    # the next session's order: the band around its own open, 700 (630..770)
    assert verdict(x.submit("next", limit_buy(635_00), at(9, 30, NEXT))) == "accepted"
    assert verdict(x.submit("next-low", limit_buy(625_00), at(9, 30, NEXT))) == "PRICE_BAND"


def test_reference_price_prefers_the_previous_close_then_the_sessions_first_trade() -> None:
    history = [tick(at(15, 29), 760_00), tick(at(9, 15, NEXT), 700_00),
               tick(at(9, 20, NEXT), 690_00), tick(at(9, 25, NEXT), 680_00, close=760_00)]
    session_open = (at(9, 15, NEXT), 700_00)
    assert reference_price(history, at(9, 22, NEXT), session_open) == 700_00
    # before the session's first trade: the last session's last price
    assert reference_price(history, at(9, 0, NEXT), session_open) == 760_00
    # a tick carrying the previous close wins
    assert reference_price(history, at(9, 30, NEXT), session_open) == 760_00
    assert reference_price(history, at(9, 0), None) is None  # before any tick
    assert reference_price(history[:3], at(9, 22, NEXT), None) == 690_00


def rejection(events: list[Payload]) -> OrderRejected:
    first = events[0]
    assert isinstance(first, OrderRejected), first
    return first


def test_a_price_band_rejection_names_the_price_and_the_band_in_rupees() -> None:
    x = PaperExchange(ExecutionConfig(costs=False))
    for t in WALK:
        x.on_tick(t)
    rejected = rejection(x.submit("far", limit_buy(680_00), at(11, 0)))
    assert rejected.reason_code == "PRICE_BAND"
    assert rejected.message == "price ₹680.00 is outside the circuit band ₹900.00-₹1,100.00"


def bracket(side: Side, tp: int, sl: int, **kw: Any) -> Signal:
    return Signal(strategy_id="s", instrument_token=TOKEN, side=side, quantity=1,
                  price_hint=1000_00, take_profit=tp, stop_loss=sl, product=Product.MIS, **kw)


def test_a_bracket_with_its_exits_on_the_wrong_side_of_the_entry_is_rejected() -> None:
    x = PaperExchange(ExecutionConfig(costs=False))
    x.on_tick(tick(at(10, 0), 1000_00))
    now = at(10, 0)
    # a buy with its target below the entry and its stop above: the target leg would sell
    # at once, for a certain loss
    inverted = rejection(x.submit("inv", bracket(Side.BUY, tp=999_00, sl=1001_00), now))
    assert inverted.reason_code == "BRACKET"
    assert inverted.message == (
        "bracket exits on the wrong side of the entry: a buy's stop-loss ₹1,001.00 must be "
        "below and take-profit ₹999.00 must be above the entry ₹1,000.00 (last price)")
    # one exit on the wrong side is enough; an exit at the entry is on the wrong side too
    assert verdict(x.submit("tp", bracket(Side.BUY, tp=1000_00, sl=990_00), now)) == "BRACKET"
    assert verdict(x.submit("sl", bracket(Side.SELL, tp=990_00, sl=999_00), now)) == "BRACKET"
    assert verdict(x.submit("ok", bracket(Side.BUY, tp=1020_00, sl=990_00), now)) == "accepted"
    assert verdict(x.submit("ok-sell", bracket(Side.SELL, tp=980_00, sl=1010_00), now)) \
        == "accepted"
    # a limit entry is measured from its limit price, a stop-market one from its trigger
    limit = bracket(Side.BUY, tp=995_00, sl=985_00, order_type=OrderType.LIMIT,
                    limit_price=990_00)
    assert verdict(x.submit("limit", limit, now)) == "accepted"
    low = bracket(Side.BUY, tp=1005_00, sl=985_00, order_type=OrderType.LIMIT,
                  limit_price=1010_00)
    assert "the entry ₹1,010.00 (limit price)" in rejection(x.submit("low", low, now)).message
    stop = bracket(Side.BUY, tp=1005_00, sl=995_00, order_type=OrderType.SL_M,
                   trigger_price=1010_00)
    assert rejection(x.submit("stop", stop, now)).reason_code == "BRACKET"


def test_the_mis_cutoff_refuses_a_fresh_mis_order_from_the_cutoff_on() -> None:
    clock = SessionClock(MarketCalendar(), time(15, 20))
    cut = at(15, 20)
    assert mis_cutoff(Product.MIS, cut - 1, clock) is None
    assert mis_cutoff(Product.MIS, cut, clock) == (
        "MIS_CUTOFF", "new MIS orders are not accepted from 15:20 IST, the intraday square-off")
    assert mis_cutoff(Product.MIS, at(15, 29), clock) is not None
    assert mis_cutoff(Product.CNC, at(15, 25), clock) is None
    assert mis_cutoff(Product.MIS, at(15, 25), clock, exit_only=True) is None
    assert mis_cutoff(Product.MIS, at(9, 15, NEXT), clock) is None  # a new day
    assert mis_cutoff(Product.MIS, at(15, 25), SessionClock(MarketCalendar(), None)) is None
    early = SessionClock(MarketCalendar(), time(15, 0))
    assert mis_cutoff(Product.MIS, at(15, 5), early) == (
        "MIS_CUTOFF", "new MIS orders are not accepted from 15:00 IST, the intraday square-off")


@pytest.mark.parametrize(("side", "quantity", "held", "exit_"), [
    (Side.SELL, 5, 5, True), (Side.SELL, 3, 5, True), (Side.BUY, 4, -4, True),
    (Side.SELL, 6, 5, False),  # past flat: a fresh short
    (Side.BUY, 1, 5, False), (Side.SELL, 1, 0, False), (Side.SELL, 1, -2, False),
])
def test_an_exit_only_takes_the_position_towards_flat(side: Side, quantity: int, held: int,
                                                      exit_: bool) -> None:
    assert reduces(held, side.sign * quantity) is exit_


def test_the_paper_exchange_rejects_a_late_mis_order_with_the_rule_s_reason() -> None:
    x = PaperExchange(ExecutionConfig(costs=False))
    late = Signal(strategy_id="s", instrument_token=TOKEN, side=Side.BUY, quantity=1,
                  product=Product.MIS)
    [rejected] = x.submit("late", late, at(15, 20))
    assert isinstance(rejected, OrderRejected)
    clock = SessionClock(MarketCalendar(), time(15, 20))
    assert (rejected.reason_code, rejected.message) == mis_cutoff(Product.MIS, at(15, 20), clock)
