"""The order state machine: exactly the edges of the table, nothing else."""

from __future__ import annotations

import pytest

from alpha_panda.domain.errors import IllegalTransition
from alpha_panda.domain.values import OrderType, Product, Side, Validity
from alpha_panda.execution.costs import Segment
from alpha_panda.execution.orders import TERMINAL, TRANSITIONS, Order, OrderStatus


def order(status: OrderStatus = OrderStatus.NEW, quantity: int = 10) -> Order:
    o = Order(
        order_id="o", signal_id="s", strategy_id="st", instrument_token=1, side=Side.BUY,
        quantity=quantity, order_type=OrderType.LIMIT, product=Product.CNC, validity=Validity.DAY,
        segment=Segment.EQUITY_DELIVERY, created_ns=0, arrival_ns=0, limit_price=100,
    )
    o.status = status
    return o


@pytest.mark.parametrize("start", list(OrderStatus))
@pytest.mark.parametrize("end", list(OrderStatus))
def test_only_the_tables_edges_are_legal(start: OrderStatus, end: OrderStatus) -> None:
    o = order(start)
    if end in TRANSITIONS[start]:
        o.transition(end)
        assert o.status is end
    else:
        with pytest.raises(IllegalTransition):
            o.transition(end)
        assert o.status is start


def test_terminal_states_have_no_way_out() -> None:
    assert all(not TRANSITIONS[s] for s in TERMINAL)
    assert {s for s in OrderStatus if s.is_open} == {OrderStatus.SUBMITTED, OrderStatus.PARTIALLY_FILLED}


def test_fills_move_the_order_and_keep_an_exact_average() -> None:
    o = order(OrderStatus.SUBMITTED, quantity=3)
    o.record_fill(1, 100_00)
    assert (o.status, o.leaves) == (OrderStatus.PARTIALLY_FILLED, 2)
    o.record_fill(2, 100_05)
    assert (o.status, o.leaves, o.turnover) == (OrderStatus.FILLED, 0, 300_10)
    assert o.average_price == 100_03  # 100.0333… rounded half up to the paisa
    with pytest.raises(IllegalTransition):
        o.record_fill(1, 100_00)  # an overfill is a bug, not a fill
