"""PaperVenue: one exchange per execution setting; the default one only when it may be used."""

from __future__ import annotations

import pytest

from alpha_panda.domain.errors import ConfigurationError
from alpha_panda.domain.events import MarketTick, OrderFilled, Signal
from alpha_panda.domain.values import Side
from alpha_panda.execution.config import ExecutionConfig
from alpha_panda.execution.routing import PaperVenue

T0 = 1_704_080_700_000_000_000


def _sig(strategy: str) -> Signal:
    return Signal(strategy_id=strategy, instrument_token=5, side=Side.BUY, quantity=1, price_hint=100_00)


def test_an_unknown_strategy_uses_the_default_exchange() -> None:
    venue = PaperVenue({"a": ExecutionConfig(costs=False)})
    venue.on_tick(MarketTick(instrument_token=5, last_price=100_00, ts=T0))
    out = venue.submit("sig-1", _sig("other"), T0)
    fill = next(e for e in out if isinstance(e, OrderFilled))
    assert fill.charges.total > 0  # the default settings: costs on


def test_without_unknown_strategies_the_default_exchange_is_not_fed() -> None:
    venue = PaperVenue({"a": ExecutionConfig(costs=False)}, serve_unknown=False)
    assert len(venue._exchanges) == 1
    with pytest.raises(ConfigurationError):
        venue.exchange_for("other")
    out = venue.submit("sig-1", _sig("a"), T0)
    assert [type(e).__name__ for e in out] == ["OrderSubmitted", "OrderFilled"]


def test_a_strategy_on_default_settings_still_gets_ticks() -> None:
    venue = PaperVenue({"a": ExecutionConfig()}, serve_unknown=False)
    assert venue.exchange_for("a") is venue._exchanges[0]
