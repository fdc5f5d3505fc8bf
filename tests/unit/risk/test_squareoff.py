"""``max_position`` counts the MIS square-off: from the cut-off, the exchange buys back an
intraday short (sells an intraday long) at the instrument's first tick, which an order
validated before that fill is read may fill beside. The risk engine and the paper exchange
are the real ones, wired as the pipeline wires them (``test_bracket_legs.Desk``)."""

from __future__ import annotations

from datetime import date, time

import pytest

from alpha_panda.domain.clock import ist_ns
from alpha_panda.domain.values import OrderType, Product, Side
from tests.unit.risk.test_bracket_legs import Desk

DAY = date(2026, 12, 3)


@pytest.mark.parametrize("at", [ist_ns(DAY, time(15, 21)),  # after the cut-off
                                ist_ns(date(2026, 12, 4), time(9, 20))])  # the next morning
def test_a_buy_beside_an_intraday_short_due_for_square_off_counts_the_square_off(at: int) -> None:
    # Short 8 intraday, max_position 25. Past the 15:20 cut-off (or the next morning, the
    # instrument not ticked between the cut-off and the close: the run was stopped), a
    # delivery buy of 33 looked like long 25 at worst; the square-off bought the 8 back at
    # the next tick and the 33 then filled: long 33.
    desk = Desk(max_position=25)
    desk.tick(100_00)
    assert desk.send(Side.SELL, 8) == "ok"
    desk.tick(100_00)
    assert desk.position == -8
    desk.ts = at
    buy = {"order_type": OrderType.LIMIT, "limit_price": 100_00, "product": Product.CNC}
    assert desk.send(Side.BUY, 33, **buy) == "MAX_POSITION"
    assert "square-off" in desk.reason
    assert desk.send(Side.BUY, 25, **buy) == "ok"
    desk.tick(100_00)
    desk.tick(99_00)
    assert desk.position == 25 and desk.worst == 25


def test_before_the_cut_off_too() -> None:
    # The square-off comes that day whatever else is held: a delivery buy of 33 at 10:00
    # beside the short of 8 passed (long 25 at worst) and ended long 33 at 15:20.
    desk = Desk(max_position=25)
    desk.tick(100_00)
    assert desk.send(Side.SELL, 8) == "ok"
    desk.tick(100_00)
    buy = {"order_type": OrderType.LIMIT, "limit_price": 99_00, "product": Product.CNC}
    assert desk.send(Side.BUY, 33, **buy) == "MAX_POSITION"
    assert desk.send(Side.BUY, 25, **buy) == "ok"


def test_intraday_orders_that_close_the_short_take_the_square_offs_place() -> None:
    # What an MIS buy closes the square-off does not buy: the exit of the short passes with
    # the limit at its size, and so does a reversal to the limit in MIS
    desk = Desk(max_position=5)
    desk.tick(100_00)
    assert desk.send(Side.SELL, 5) == "ok"
    desk.tick(100_00)
    rest = {"order_type": OrderType.LIMIT, "limit_price": 99_00}
    assert desk.send(Side.BUY, 5, reduce_only=True, **rest) == "ok"  # -5 + 5
    assert desk.send(Side.BUY, 5, **rest) == "ok"  # -5 + 10: long 5, the square-off sells
    assert desk.send(Side.BUY, 1, **rest) == "MAX_POSITION"
    desk = Desk(max_position=5)
    desk.tick(100_00)
    assert desk.send(Side.SELL, 5) == "ok"
    desk.tick(100_00)
    assert desk.send(Side.BUY, 5, product=Product.CNC, **rest) == "ok"  # 5, once squared off
    assert desk.send(Side.BUY, 1, product=Product.CNC, **rest) == "MAX_POSITION"
