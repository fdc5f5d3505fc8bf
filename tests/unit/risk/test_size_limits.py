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
