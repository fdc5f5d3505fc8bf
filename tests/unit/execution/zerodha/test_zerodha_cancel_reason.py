"""The reason of the OrderCancelled the reconciliation diff writes for a Kite cancellation."""

from __future__ import annotations

import pytest

from alpha_panda.domain.events import OrderCancelled, OrderSubmitted
from alpha_panda.domain.values import OrderType, Side, Validity
from alpha_panda.execution.zerodha import OrderBook, diff, kite_order, order_id_for, order_tag


def _submitted(validity: Validity = Validity.DAY) -> OrderSubmitted:
    return OrderSubmitted(order_id=order_id_for("sig"), signal_id="sig", strategy_id="s",
                          instrument_token=408065, side=Side.BUY, quantity=10,
                          order_type=OrderType.LIMIT, limit_price=100_00, tag=order_tag("sig"),
                          broker_order_id="K1", validity=validity)


def _cancelled_at_kite() -> list[object]:
    return [kite_order({"order_id": "K1", "status": "CANCELLED", "tag": order_tag("sig"),
                        "instrument_token": 408065, "transaction_type": "BUY", "quantity": 10,
                        "filled_quantity": 0, "cancelled_quantity": 10, "order_type": "LIMIT"})]


def _reason(book: OrderBook) -> str:
    [(_, end)] = diff(book, _cancelled_at_kite(), [])  # type: ignore[arg-type]
    assert isinstance(end, OrderCancelled) and end.leaves_quantity == 10
    return end.reason


@pytest.mark.parametrize("asked", ["user", "kill_switch", "strategy_halted"])
def test_a_cancel_this_process_asked_for_carries_its_reason(asked: str) -> None:
    book = OrderBook()
    book.apply(_submitted(), "corr")
    order = book.by_order_id(order_id_for("sig"))
    assert order is not None and order is book.get("K1")
    order.cancel_reason = asked
    assert _reason(book) == asked


def test_a_cancel_nobody_here_asked_for_is_the_brokers() -> None:
    book = OrderBook()
    book.apply(_submitted())
    assert _reason(book) == "broker"


def test_an_ioc_remainder_is_cancelled_for_ioc_whoever_asked() -> None:
    book = OrderBook()
    book.apply(_submitted(Validity.IOC))
    book.get("K1").cancel_reason = "user"  # type: ignore[union-attr]
    assert _reason(book) == "ioc"


def test_the_reason_survives_the_rebuild_folding_the_same_submission_again() -> None:
    book = OrderBook()
    book.apply(_submitted())
    book.get("K1").cancel_reason = "user"  # type: ignore[union-attr]
    book.apply(_submitted())  # the sync's rebuild reads the engine's own event back
    assert _reason(book) == "user"
    assert book.by_order_id("no-such-order") is None
