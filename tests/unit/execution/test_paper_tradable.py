"""Orders on an instrument that cannot be traded (an index) are rejected, as Kite's are."""

from __future__ import annotations

from datetime import date, time

import pytest

from alpha_panda.domain.events import MarketTick, OrderRejected, Signal
from alpha_panda.domain.values import OrderType, Product, Side
from alpha_panda.execution.market import ist_ns
from alpha_panda.execution.paper import ExecutionConfig, PaperExchange

NIFTY = 256265  # NIFTY 50: Kite streams it (``tradable: false``) and refuses orders on it
T0 = ist_ns(date(2024, 3, 5), time(10, 0))


def _index_tick(ts: int = T0) -> MarketTick:
    return MarketTick(instrument_token=NIFTY, last_price=22_356_30, ts=ts, tradable=False)


@pytest.mark.parametrize("kw", [
    {},  # a plain market order, filled at once (the fast path)
    {"product": Product.MIS},
    {"order_type": OrderType.LIMIT, "limit_price": 22_400_00},
    {"order_type": OrderType.SL_M, "trigger_price": 22_300_00, "side": Side.SELL,
     "product": Product.MIS},
], ids=["market", "mis", "limit", "stop"])
def test_an_order_on_an_index_is_rejected_not_filled(kw: dict[str, object]) -> None:
    # NIFTY 50 bought 10 "at" ₹22,356.30 and its position marked to the index: the live
    # engine's order was refused by Kite, the paper one filled
    x = PaperExchange(ExecutionConfig(costs=False), seed=7)
    x.on_tick(_index_tick())
    kw.setdefault("side", Side.BUY)
    signal = Signal(strategy_id="s1", instrument_token=NIFTY, quantity=10,
                    price_hint=22_356_30, **kw)  # type: ignore[arg-type]
    out = x.submit("sig-1", signal, T0 + 1)
    out += x.on_tick(_index_tick(T0 + 2))
    assert [type(e).__name__ for e in out] == ["OrderRejected"]
    rejected = out[0]
    assert isinstance(rejected, OrderRejected) and rejected.reason_code == "NOT_TRADABLE"
    assert "256265" in rejected.message and "cannot be traded" in rejected.message
    assert x.open_orders() == []


def test_an_instrument_whose_ticks_are_tradable_still_fills() -> None:
    x = PaperExchange(ExecutionConfig(costs=False), seed=7)
    x.on_tick(MarketTick(instrument_token=408065, last_price=1500_00, ts=T0))
    out = x.submit("sig-1", Signal(strategy_id="s1", instrument_token=408065, side=Side.BUY,
                                   quantity=10, price_hint=1500_00), T0 + 1)
    assert [type(e).__name__ for e in out] == ["OrderSubmitted", "OrderFilled"]
