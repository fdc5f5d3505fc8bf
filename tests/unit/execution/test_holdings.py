"""The paper exchange sells in CNC only what a strategy holds (``CNC_SHORT``): its filled CNC
quantity, less what its other open CNC sells reserve, taken at the sell's event time."""

from __future__ import annotations

from datetime import date, time
from typing import Any

from alpha_panda.domain.events import MarketTick, OrderFilled, OrderRejected, Payload, Signal
from alpha_panda.domain.values import OrderType, Product, Side
from alpha_panda.execution.market import ist_ns
from alpha_panda.execution.paper import ExecutionConfig, PaperExchange

TOKEN = 738561
T0 = ist_ns(date(2026, 11, 23), time(10, 0))
S = 1_000_000_000


def ex() -> PaperExchange:
    return PaperExchange(ExecutionConfig(costs=False), seed=7)


def sig(side: Side, qty: int, **kw: Any) -> Signal:
    kw.setdefault("price_hint", 1000_00)
    kw.setdefault("product", Product.CNC)
    return Signal(strategy_id="s1", instrument_token=TOKEN, side=side, quantity=qty, **kw)


def tick(ts: int, price: int = 1000_00) -> MarketTick:
    return MarketTick(instrument_token=TOKEN, last_price=price, ts=ts)


def verdict(out: list[Payload]) -> str:
    rejected = [e for e in out if isinstance(e, OrderRejected)]
    return rejected[0].reason_code if rejected else "accepted"


def test_a_cnc_sell_against_a_buy_that_never_filled_is_rejected() -> None:
    # The walkthrough's strategy: a stop buy far above the market (never triggers), then a
    # stop sell below it. The sell must not open a delivery short.
    x = ex()
    x.on_tick(tick(T0))
    assert verdict(x.submit("b", sig(Side.BUY, 5, order_type=OrderType.SL_M,
                                     trigger_price=1010_00), T0)) == "accepted"
    x.on_tick(tick(T0 + S))
    out = x.submit("s", sig(Side.SELL, 5, order_type=OrderType.SL_M, trigger_price=999_90),
                   T0 + S)
    (rejected,) = [e for e in out if isinstance(e, OrderRejected)]
    assert (rejected.reason_code, rejected.message) == ("CNC_SHORT", (
        "CNC sell of 5 exceeds the delivery holdings of 0 less 0 reserved by open CNC sells "
        "(0 free); delivery cannot be sold short (use MIS)"))
    for k in range(2, 5):
        assert not [e for e in x.on_tick(tick(T0 + k * S, 990_00)) if isinstance(e, OrderFilled)]


def test_open_cnc_sells_reserve_holdings_until_they_fill_or_are_cancelled() -> None:
    x = ex()
    x.on_tick(tick(T0))
    assert verdict(x.submit("b", sig(Side.BUY, 10), T0)) == "accepted"  # filled at once
    stop = sig(Side.SELL, 6, order_type=OrderType.SL_M, trigger_price=990_00)
    assert verdict(x.submit("stop", stop, T0 + 1)) == "accepted"
    out = x.submit("more", sig(Side.SELL, 5), T0 + 2)
    assert [e.message for e in out if isinstance(e, OrderRejected)] == [(
        "CNC sell of 5 exceeds the delivery holdings of 10 less 6 reserved by open CNC sells "
        "(4 free); delivery cannot be sold short (use MIS)")]
    assert verdict(x.submit("four", sig(Side.SELL, 4), T0 + 3)) == "accepted"  # 6 held now
    (stop,) = x.open_orders()
    stop_id = stop.order_id
    x.cancel(stop_id, T0 + 4)
    x.on_tick(tick(T0 + 5))  # (the next tick: the stop is cancelled as of T0 + 4)
    assert verdict(x.submit("six", sig(Side.SELL, 6), T0 + 5)) == "accepted"
    assert verdict(x.submit("one", sig(Side.SELL, 1), T0 + 6)) == "CNC_SHORT"


def test_mis_sells_and_the_kill_switch_flatten_are_not_held_to_cnc_holdings() -> None:
    x = ex()
    x.on_tick(tick(T0))
    assert verdict(x.submit("m", sig(Side.SELL, 5, product=Product.MIS), T0)) == "accepted"
    flatten = sig(Side.SELL, 5, reason="flatten:kill_switch")
    assert verdict(x.submit("f", flatten, T0 + 1, flatten=True)) == "accepted"
    assert verdict(x.submit("c", sig(Side.SELL, 5), T0 + 2)) == "CNC_SHORT"
    # a strategy's signal calling itself a flatten is not the kill switch's
    assert verdict(x.submit("s", flatten, T0 + 3)) == "CNC_SHORT"


def test_the_decision_is_the_same_when_the_engine_has_seen_later_ticks() -> None:
    # Holdings at the sell's time: a lagging engine has matched the stop sell on a later
    # tick already, and has filled a later buy; neither changes what was free then.
    def run(lagging: bool) -> list[str]:
        x = ex()
        ticks = [tick(T0), tick(T0 + S, 1000_00), tick(T0 + 2 * S, 985_00)]
        signals = [("b", sig(Side.BUY, 10), T0),
                   ("stop", sig(Side.SELL, 6, order_type=OrderType.SL_M, trigger_price=990_00),
                    T0),
                   ("five", sig(Side.SELL, 5, price_hint=1000_00), T0 + S),
                   ("four", sig(Side.SELL, 4, price_hint=1000_00), T0 + S)]
        verdicts = []
        if lagging:
            for t in ticks:
                x.on_tick(t)
            for sid, s, ts in signals:
                verdicts.append(verdict(x.submit(sid, s, ts)))
        else:
            for t in ticks:
                x.on_tick(t)
                verdicts += [verdict(x.submit(sid, s, ts)) for sid, s, ts in signals
                             if ts == t.ts]
        return verdicts

    assert run(lagging=False) == run(lagging=True) == [
        "accepted", "accepted", "CNC_SHORT", "accepted"]


def test_a_market_buy_on_the_book_by_the_sells_time_is_held_before_its_tick_is_seen() -> None:
    # With latency the buy fills on the first tick after it reaches the book; the strategy
    # sells on that very tick. An engine that gets the sell before that tick (ticks behind
    # signals) decides as one that got the tick first.
    def run(ticks_first: bool) -> str:
        x = PaperExchange(ExecutionConfig(costs=False, latency_ms=5), seed=7)
        x.on_tick(tick(T0))
        x.submit("b", sig(Side.BUY, 5), T0)
        if ticks_first:
            x.on_tick(tick(T0 + S))
        verdict_ = verdict(x.submit("s", sig(Side.SELL, 5), T0 + S))
        x.on_tick(tick(T0 + S))
        return verdict_

    assert run(ticks_first=True) == run(ticks_first=False) == "accepted"
