"""A DAY order counts in the risk engine as long as it can fill at the venue: placed after
the close or on a day NSE does not trade, until the next trading session's close, as the
paper exchange keeps it. The risk engine and the paper exchange are the real ones, wired as
the pipeline wires them (``test_bracket_legs.Desk``)."""

from __future__ import annotations

from datetime import date, time

from alpha_panda.domain.clock import ist_ns
from alpha_panda.domain.values import OrderType, Product, Side
from tests.unit.risk.test_bracket_legs import Desk


def test_an_order_placed_after_fridays_close_counts_until_mondays_close() -> None:
    # A delivery limit buy of 10 placed on a Friday evening (Kite streams ticks after 15:30) rests at
    # the paper exchange until Monday's close. The risk engine stopped counting it at
    # Saturday's 15:30: on Monday a second limit buy of 10 passed a max_position of 10, and
    # both filled on the dip: long 20.
    desk = Desk(max_position=10)
    desk.ts = ist_ns(date(2026, 11, 27), time(16, 0))  # a Friday, after the close
    desk.tick(100_00)
    assert desk.send(Side.BUY, 10, order_type=OrderType.LIMIT, limit_price=99_00,
                     product=Product.CNC) == "ok"
    desk.ts = ist_ns(date(2026, 11, 30), time(10, 0))  # Monday
    desk.tick(100_00)
    assert [o.quantity for o in desk.exchange.open_orders()] == [10]  # still resting
    assert desk.send(Side.BUY, 10, order_type=OrderType.LIMIT,
                     limit_price=99_00,
                     product=Product.CNC) == "MAX_POSITION"
    desk.tick(98_00)
    assert desk.position == 10 and desk.worst == 10
    # and at Monday's close it ends there, and here
    desk.ts = ist_ns(date(2026, 11, 30), time(15, 30))
    desk.tick(98_00)
    assert desk.send(Side.SELL, 10, product=Product.CNC) == "ok"


def test_an_order_placed_the_evening_before_a_holiday_counts_until_the_next_session() -> None:
    # 2026-11-24 (a Tuesday) is an NSE holiday (Guru Nanak Jayanti): an order placed on
    # Monday evening rests until Wednesday's close, not Tuesday's
    desk = Desk(max_position=10)
    desk.ts = ist_ns(date(2026, 11, 23), time(15, 45))
    desk.tick(100_00)
    assert desk.send(Side.BUY, 10, order_type=OrderType.LIMIT, limit_price=99_00,
                     product=Product.CNC) == "ok"
    desk.ts = ist_ns(date(2026, 11, 25), time(9, 30))
    desk.tick(100_00)
    assert desk.send(Side.BUY, 1, order_type=OrderType.LIMIT,
                     limit_price=99_00,
                     product=Product.CNC) == "MAX_POSITION"
