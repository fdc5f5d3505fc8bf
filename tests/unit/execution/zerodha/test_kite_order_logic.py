"""Pure Kite order logic: tags, order parameters, status rows and the reconciliation diff."""

from __future__ import annotations

from datetime import UTC, date, time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alpha_panda.domain.clock import ist_date, ist_ns
from alpha_panda.domain.errors import ValidationError
from alpha_panda.domain.events import (
    OrderCancelled,
    OrderFilled,
    OrderRejected,
    OrderSubmitted,
    Signal,
)
from alpha_panda.domain.values import OrderType, Product, Side, Validity
from alpha_panda.execution.zerodha import (
    OrderBook,
    diff,
    fill_id,
    kite_order,
    kite_order_params,
    kite_trade,
    order_id_for,
    order_tag,
)
from alpha_panda.execution.zerodha.reconcile import orphans, position_mismatches


@given(st.text(min_size=1, max_size=200))
def test_tags_are_deterministic_alphanumeric_and_20_chars(signal_id: str) -> None:
    tag = order_tag(signal_id)
    assert tag == order_tag(signal_id) and len(tag) == 20 and tag.isalnum()


def test_different_signals_get_different_tags() -> None:
    tags = {order_tag(f"signal-{n}") for n in range(10_000)}
    assert len(tags) == 10_000


def _signal(**kw: object) -> Signal:
    base: dict[str, object] = {"strategy_id": "s", "instrument_token": 408065, "side": Side.BUY,
                               "quantity": 3}
    return Signal(**{**base, **kw})  # type: ignore[arg-type]


def test_market_orders_carry_market_protection_and_no_price() -> None:
    p = kite_order_params(_signal(), exchange="NSE", tradingsymbol="INFY", tag="t")
    assert p == {"variety": "regular", "exchange": "NSE", "tradingsymbol": "INFY",
                 "transaction_type": "BUY", "quantity": 3, "product": "CNC", "order_type": "MARKET",
                 "validity": "DAY", "tag": "t", "market_protection": -1}


def test_limit_and_stop_orders_send_exact_rupee_prices() -> None:
    p = kite_order_params(_signal(order_type=OrderType.SL, limit_price=1_880_05, trigger_price=1_879_95,
                                  side=Side.SELL, product=Product.MIS, validity=Validity.IOC),
                          exchange="NSE", tradingsymbol="INFY", tag="t", market_protection=5)
    assert (p["price"], p["trigger_price"]) == ("1880.05", "1879.95")
    assert (p["transaction_type"], p["product"], p["validity"]) == ("SELL", "MIS", "IOC")
    assert "market_protection" not in p
    slm = kite_order_params(_signal(order_type=OrderType.SL_M, trigger_price=100_00),
                            exchange="NSE", tradingsymbol="INFY", tag="t", market_protection=5)
    assert slm["market_protection"] == 5 and "price" not in slm


@pytest.mark.parametrize("kw", [{"order_type": OrderType.LIMIT}, {"order_type": OrderType.SL_M},
                                {"quantity": 0}])
def test_incomplete_orders_are_refused_before_kite(kw: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        kite_order_params(_signal(**kw), exchange="NSE", tradingsymbol="INFY", tag="t")


@pytest.mark.parametrize(("kw", "message"), [
    ({"limit_price": 90_00}, "MARKET orders take no limit_price"),
    ({"order_type": OrderType.SL_M, "trigger_price": 101_00, "limit_price": 102_00},
     "SL-M orders take no limit_price"),
    ({"order_type": OrderType.LIMIT, "limit_price": 99_00, "trigger_price": 98_00},
     "LIMIT orders take no trigger_price"),
])
def test_a_price_the_order_type_has_no_use_for_is_refused(kw: dict[str, object],
                                                          message: str) -> None:
    # a strategy that forgot order_type=LIMIT: its "limit" would have gone to Kite at market
    with pytest.raises(ValidationError, match=message):
        kite_order_params(_signal(**kw), exchange="NSE", tradingsymbol="INFY", tag="t")


@pytest.mark.parametrize("kw", [{"take_profit": 101_00, "stop_loss": 99_00},
                                {"stop_loss": 99_00}, {"take_profit": 101_00}])
def test_a_bracket_is_refused_not_placed_without_its_exits(kw: dict[str, object]) -> None:
    # the entry alone would reach Kite and the position would have no stop
    with pytest.raises(ValidationError, match="no bracket orders"):
        kite_order_params(_signal(price_hint=100_00, **kw), exchange="NSE",
                          tradingsymbol="INFY", tag="t")


def _row(**kw: object) -> dict[str, object]:
    row: dict[str, object] = {"order_id": "K1", "status": "OPEN", "tag": order_tag("sig"),
                              "instrument_token": 408065, "exchange": "NSE", "tradingsymbol": "INFY",
                              "transaction_type": "BUY", "quantity": 10, "filled_quantity": 0,
                              "pending_quantity": 10, "average_price": 0, "order_type": "LIMIT",
                              "product": "CNC", "validity": "DAY", "status_message": None}
    return {**row, **kw}


def _trade(tid: str, qty: int, price: float, order: str = "K1") -> dict[str, object]:
    return {"trade_id": tid, "order_id": order, "instrument_token": 408065,
            "transaction_type": "BUY", "quantity": qty, "average_price": price}


def _book(quantity: int = 10, validity: Validity = Validity.DAY) -> OrderBook:
    book = OrderBook()
    book.apply(OrderSubmitted(order_id=order_id_for("sig"), signal_id="sig", strategy_id="s",
                              instrument_token=408065, side=Side.BUY, quantity=quantity,
                              order_type=OrderType.LIMIT, limit_price=100_00, tag=order_tag("sig"),
                              broker_order_id="K1", validity=validity), "corr")
    return book


def test_kite_rows_parse_to_paise() -> None:
    o = kite_order(_row(average_price=1880.05, filled_quantity=3))
    assert (o.average_price, o.filled_quantity, o.side, o.terminal) == (188_005, 3, Side.BUY, False)
    assert kite_trade(_trade("9", 2, 99.95)).price == 99_95
    with pytest.raises(ValidationError, match="malformed"):
        kite_order({"order_id": "x"})


def test_partial_fills_then_completion_and_the_diff_is_idempotent() -> None:
    book = _book()
    orders = [kite_order(_row(status="COMPLETE", filled_quantity=10))]
    trades = [kite_trade(_trade("2", 6, 99.95)), kite_trade(_trade("1", 4, 100.0))]
    events = [e for _, e in diff(book, orders, trades)]
    assert all(isinstance(e, OrderFilled) for e in events)
    got = [(e.quantity, e.price, e.cumulative_quantity, e.leaves_quantity, e.average_price)
           for e in events if isinstance(e, OrderFilled)]
    assert got == [(4, 100_00, 4, 6, 100_00), (6, 99_95, 10, 0, 99_97)]
    assert events[0].fill_id == fill_id(order_id_for("sig"), "1")  # type: ignore[union-attr]
    assert diff(book, orders, trades) == []
    assert book.get("K1").terminal  # type: ignore[union-attr]


def test_rejections_carry_kites_reason_and_cancels_wait_for_their_fills() -> None:
    rejected = diff(_book(), [kite_order(_row(status="REJECTED", status_message="RMS:Blocked"))], [])
    [(_, r)] = rejected
    assert isinstance(r, OrderRejected) and r.message == "RMS:Blocked"
    book = _book(validity=Validity.IOC)
    cancelled = [kite_order(_row(status="CANCELLED", filled_quantity=4, cancelled_quantity=6))]
    assert diff(book, cancelled, []) == []  # the 4 filled must be recorded first
    events = [e for _, e in diff(book, cancelled, [kite_trade(_trade("1", 4, 100.0))])]
    assert isinstance(events[0], OrderFilled) and isinstance(events[1], OrderCancelled)
    assert (events[1].filled_quantity, events[1].leaves_quantity, events[1].reason) == (4, 6, "ioc")


def test_fills_seen_before_their_submission_are_kept() -> None:
    book = OrderBook()
    fill = OrderFilled(order_id=order_id_for("sig"), fill_id="f1", strategy_id="s",
                       instrument_token=408065, side=Side.BUY, quantity=4, price=100_00,
                       cumulative_quantity=4, leaves_quantity=6, average_price=100_00)
    book.apply(fill)
    book.apply(OrderSubmitted(order_id=order_id_for("sig"), signal_id="sig", strategy_id="s",
                              instrument_token=408065, side=Side.BUY, quantity=10,
                              order_type=OrderType.LIMIT, broker_order_id="K1"))
    assert book.get("K1").filled == 4  # type: ignore[union-attr]


def test_orphans_and_position_mismatches() -> None:
    book = _book()
    book.apply(OrderFilled(order_id=order_id_for("sig"), fill_id="f1", strategy_id="s",
                           instrument_token=408065, side=Side.BUY, quantity=4, price=100_00,
                           cumulative_quantity=4, leaves_quantity=6, average_price=100_00))
    kite = [kite_order(_row()), kite_order(_row(order_id="K2", tag=order_tag("other"))),
            kite_order(_row(order_id="K3", tag="manual"))]
    assert [o.order_id for o in orphans(book, kite)] == ["K2"]
    day = ist_date(0)  # (the order's event time)
    assert position_mismatches(book, [(408065, "CNC", 4)], day) == []
    [m] = position_mismatches(book, [(408065, "CNC", 5)], day)
    assert (m.ours, m.kite) == (4, 5)


def test_positions_are_compared_with_kites_of_the_day_not_every_fill_logged() -> None:
    # From the second day on, a CNC buy of an earlier day is in Kite's holdings, not in its
    # positions: compared with every fill logged, each restart warned "ours 3, kite 0".
    yesterday, today = date(2026, 12, 3), date(2026, 12, 4)
    book = OrderBook()
    for n, (day, product, qty) in enumerate(((yesterday, Product.CNC, 3), (today, Product.MIS, 2))):
        sid = f"sig{n}"
        ts = ist_ns(day, time(10, 0))
        book.apply(OrderSubmitted(order_id=order_id_for(sid), signal_id=sid, strategy_id="s",
                                  instrument_token=408065, side=Side.BUY, quantity=qty,
                                  order_type=OrderType.MARKET, product=product,
                                  tag=order_tag(sid), broker_order_id=f"K{n}", ts=ts))
        book.apply(OrderFilled(order_id=order_id_for(sid), fill_id=f"f{n}", strategy_id="s",
                               instrument_token=408065, side=Side.BUY, quantity=qty,
                               price=100_00, cumulative_quantity=qty, leaves_quantity=0,
                               average_price=100_00, product=product, ts=ts))
    assert position_mismatches(book, [(408065, "MIS", 2)], today) == []
    [m] = position_mismatches(book, [(408065, "MIS", 1)], today)
    assert (m.product, m.ours, m.kite) == ("MIS", 2, 1)
    assert position_mismatches(book, [(408065, "CNC", 3)], yesterday) == []


def test_kite_rest_times_are_ist_wall_clock() -> None:
    from datetime import datetime

    from alpha_panda.execution.zerodha.orders import ist_wall_ns

    utc = int(datetime(2026, 11, 24, 3, 45, 7, tzinfo=UTC).timestamp()) * 10**9
    assert ist_wall_ns("2026-11-24 09:15:07") == utc
    assert ist_wall_ns(datetime(2026, 11, 24, 9, 15, 7)) == utc  # kiteconnect's naive datetime
    assert ist_wall_ns(None) == 0
    trade = kite_trade({**_trade("1", 1, 100.0), "fill_timestamp": "2026-11-24 09:15:07"})
    [(_, fill)] = diff(_book(), [kite_order(_row())], [trade])
    assert fill.ts == utc


def test_open_orders_missing_from_todays_book_expired_at_the_close() -> None:
    from alpha_panda.execution.zerodha.reconcile import expire_missing

    book = _book()
    [(_, end)] = expire_missing(book, [kite_order(_row(order_id="K9"))])
    assert isinstance(end, OrderCancelled) and end.reason == "expired" and end.leaves_quantity == 10
    assert expire_missing(book, []) == []  # applied: not expired twice
    assert expire_missing(_book(), [kite_order(_row())]) == []
