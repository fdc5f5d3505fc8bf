"""The portfolio projector's read model does not depend on which order topic is read first."""

from __future__ import annotations

from alpha_panda.domain.events import (
    Envelope,
    MarketTick,
    OrderFilled,
    OrderSubmitted,
    Payload,
    new_envelope,
)
from alpha_panda.domain.values import OrderType, Side
from alpha_panda.portfolio import PositionLedger
from alpha_panda.services.portfolio import PortfolioHandler
from alpha_panda.stream.log import Record

SUBMITTED = OrderSubmitted(order_id="o1", signal_id="s1", strategy_id="st", instrument_token=7,
                           side=Side.BUY, quantity=3, order_type=OrderType.MARKET)
FILLED = OrderFilled(order_id="o1", fill_id="f1", strategy_id="st", instrument_token=7,
                     side=Side.BUY, quantity=3, price=10_000, cumulative_quantity=3,
                     leaves_quantity=0, average_price=10_000)


def env(data: Payload, n: int, broker: str | None = "paper") -> Envelope[Payload]:
    return new_envelope(data, id=f"e{n}", ts=n, source="t", key="st:7", broker=broker)


def run(*events: Envelope[Payload]) -> PortfolioHandler:
    h = PortfolioHandler("paper", PositionLedger(1_000_000_00), snapshot_interval_ns=10**9)
    for e in events:
        h.handle(e, Record("t", 0, 0, None, b""))
    return h


def test_fill_before_submitted_still_shows_filled() -> None:
    for order in ((env(SUBMITTED, 1), env(FILLED, 2)), (env(FILLED, 2), env(SUBMITTED, 1))):
        view = run(*order).orders["o1"]
        assert (view.status, view.filled_quantity, view.average_price, view.order_type) == (
            "FILLED", 3, 10_000, "MARKET")


def test_position_opened_after_its_last_tick_is_marked_at_that_tick() -> None:
    tick = MarketTick(instrument_token=7, last_price=10_250, ts=5)
    h = run(env(tick, 5, broker=None), env(FILLED, 2))
    assert h.snapshot(None).unrealized == 3 * 250
