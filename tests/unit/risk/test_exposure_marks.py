"""The gross exposure limits value every position, pending orders of an instrument not yet
ticked among them, and refuse an order they cannot value (as the notional limits do)."""

from __future__ import annotations

import pytest

from alpha_panda.domain.events import MarketTick, SignalRejected
from alpha_panda.domain.values import OrderType, Side
from tests.unit.risk.test_engine import OTHER, T0, TOKEN, code, engine, sig


@pytest.mark.parametrize("limit", ["max_gross_exposure", "account_max_gross_exposure"])
def test_a_pending_order_of_an_instrument_not_ticked_yet_counts_at_its_price(limit: str) -> None:
    # On the pipeline a signal can be read before its instrument's tick (another partition):
    # a buy of 10 at ₹100 (its price hint) pending there was valued ₹0, so a buy of 10 of
    # another instrument passed a ₹1,000 limit: ₹2,000 of exposure
    risk = engine(**{limit: 1000_00})
    assert code(risk.check("a", sig(qty=10), T0)) == "OK"
    refused = risk.check("b", sig(qty=10, token=OTHER), T0)
    assert code(refused) == "MAX_GROSS_EXPOSURE"
    assert isinstance(refused, SignalRejected)
    assert refused.message == "gross exposure would be ₹2,000.00, limit ₹1,000.00"
    # a resting limit order counts at its limit price
    risk = engine(**{limit: 1000_00})
    limit_buy = sig(qty=10, order_type=OrderType.LIMIT, limit_price=90_00, price_hint=None)
    assert code(risk.check("a", limit_buy, T0)) == "OK"
    assert code(risk.check("b", sig(qty=2, token=OTHER), T0)) == "MAX_GROSS_EXPOSURE"  # 900 + 200
    assert code(risk.check("c", sig(qty=1, token=OTHER), T0)) == "OK"  # 900 + 100
    # once ticked, the tick's price is the mark
    risk.on_tick(MarketTick(instrument_token=TOKEN, last_price=50_00, ts=T0))
    assert code(risk.check("d", sig(qty=4, token=OTHER), T0)) == "OK"  # 500 + 500


def test_an_order_with_no_price_to_value_it_is_refused_by_the_exposure_limit() -> None:
    # a market buy of another instrument than the tick's (no price hint), before any tick
    # of it: valued ₹0, 1,000 shares passed a ₹1,000 limit
    risk = engine(max_gross_exposure=1000_00)
    refused = risk.check("a", sig(qty=1000, price_hint=None), T0)
    assert code(refused) == "MAX_GROSS_EXPOSURE"
    assert isinstance(refused, SignalRejected)
    assert "no price to value the order" in refused.message
    # its exit needs no price: it takes no risk
    risk = engine(max_gross_exposure=1000_00)
    assert code(risk.check("b", sig(qty=5), T0)) == "OK"
    assert code(risk.check("c", sig(Side.SELL, 5, price_hint=None), T0)) == "OK"
