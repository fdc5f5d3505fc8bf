"""The size limits let an order pass as an exit only against what is filled: resting buys
that may never fill do not make a big sell an exit."""

from __future__ import annotations

from datetime import date, time

from alpha_panda.domain.clock import ist_ns
from alpha_panda.domain.events import MarketTick, Signal, SignalRejected, SignalValidated
from alpha_panda.domain.values import OrderType, Product, Side
from alpha_panda.risk import RiskConfig, RiskEngine, RiskLimits

TOKEN = 738561
T0 = ist_ns(date(2026, 11, 23), time(10, 0))


def test_resting_buys_do_not_make_a_big_sell_an_exit() -> None:
    risk = RiskEngine(RiskConfig(strategies={"s1": RiskLimits(fat_finger_qty=500,
                                                              max_order_qty=100)}))
    risk.on_tick(MarketTick(instrument_token=TOKEN, last_price=100_00, ts=T0))
    for n in range(10):  # a ladder of resting buys far below the market: none fills
        buy = Signal(strategy_id="s1", instrument_token=TOKEN, side=Side.BUY, quantity=100,
                     product=Product.MIS, order_type=OrderType.LIMIT, limit_price=50_00)
        assert isinstance(risk.check(f"b{n}", buy, T0 + n), SignalValidated)
    # nothing is filled: this market sell opens a fresh short of 1,000
    sell = Signal(strategy_id="s1", instrument_token=TOKEN, side=Side.SELL, quantity=1000,
                  product=Product.MIS, price_hint=100_00)
    decision = risk.check("s", sell, T0 + 100)
    assert isinstance(decision, SignalRejected), \
        "a market sell of 1000 (fat-finger 500, max order 100) passed with nothing filled"


def test_a_notional_limit_refuses_an_order_it_cannot_value() -> None:
    # A market buy of another instrument than the tick's (no price hint), before any tick
    # of it: the notional limits let 10,000 shares through unvalued, and on Zerodha it
    # would have been placed at market
    other = 341249
    buy = Signal(strategy_id="s1", instrument_token=other, side=Side.BUY, quantity=10_000,
                 product=Product.MIS)
    for limits, code in (({"max_order_notional": 10_000_00}, "MAX_ORDER_NOTIONAL"),
                         ({"fat_finger_notional": 50_000_00}, "FAT_FINGER")):
        risk = RiskEngine(RiskConfig(strategies={"s1": RiskLimits(**limits)}), broker="zerodha")
        decision = risk.check("b", buy, T0)
        assert isinstance(decision, SignalRejected) and decision.reason_code == code
        assert decision.message == (
            "no price to value the order against the notional limit: no price hint and no "
            "tick of instrument 341249 (HDFCBANK) seen yet")
        # once a tick has priced it, it is judged by its notional
        risk.on_tick(MarketTick(instrument_token=other, last_price=1_00, ts=T0 + 1))
        assert isinstance(risk.check("b2", buy, T0 + 2), SignalValidated)
    # without a notional limit nothing needs a price
    free = RiskEngine(RiskConfig(strategies={"s1": RiskLimits(max_order_qty=20_000)}))
    assert isinstance(free.check("b", buy, T0), SignalValidated)
