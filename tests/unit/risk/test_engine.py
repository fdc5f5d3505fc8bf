"""Every risk rule rejects with its reason code; state follows fills, rejections, cancellations."""

from __future__ import annotations

from datetime import date, time
from decimal import Decimal
from typing import Any

import msgspec
import pytest

from alpha_panda.domain.errors import ConfigurationError
from alpha_panda.domain.events import (
    MarketTick,
    OrderCancelled,
    OrderFilled,
    OrderRejected,
    Signal,
    SignalRejected,
    SignalValidated,
    derive_id,
)
from alpha_panda.domain.values import OrderType, Product, Side
from alpha_panda.execution.market import ist_ns
from alpha_panda.risk import KITE_ACCOUNT_LIMITS, RiskConfig, RiskEngine, RiskLimits

TOKEN, OTHER = 738561, 341249
T0 = ist_ns(date(2026, 11, 23), time(10, 0))
S = 1_000_000_000


def sig(side: Side = Side.BUY, qty: int = 10, *, strategy: str = "s1", token: int = TOKEN, **kw: Any) -> Signal:
    kw.setdefault("price_hint", 100_00)
    return Signal(strategy_id=strategy, instrument_token=token, side=side, quantity=qty, **kw)


def engine(broker: str = "paper", **limits: Any) -> RiskEngine:
    return RiskEngine(RiskConfig(global_limits=RiskLimits(**limits)), broker=broker)


def code(result: SignalValidated | SignalRejected) -> str:
    return result.reason_code if isinstance(result, SignalRejected) else "OK"


def filled(signal_id: str, s: Signal, qty: int | None = None, price: int = 100_00, *,
           leaves: int = 0, ts: int = T0) -> OrderFilled:
    order_id = derive_id(signal_id, "order")
    q = qty if qty is not None else s.quantity
    return OrderFilled(
        order_id=order_id, fill_id=derive_id(order_id, "fill", leaves), strategy_id=s.strategy_id,
        instrument_token=s.instrument_token, side=s.side, quantity=q, price=price,
        cumulative_quantity=s.quantity - leaves, leaves_quantity=leaves, average_price=price,
        product=s.product, ts=ts,
    )


@pytest.mark.parametrize(
    ("limits", "signal", "expected"),
    [
        ({"max_order_qty": 5}, sig(qty=6), "MAX_ORDER_QTY"),
        ({"max_order_qty": 5}, sig(qty=5), "OK"),
        ({"max_order_notional": 999_99}, sig(qty=10), "MAX_ORDER_NOTIONAL"),
        ({"max_position": 9}, sig(qty=10), "MAX_POSITION"),
        ({"max_gross_exposure": 500_00}, sig(qty=6), "MAX_GROSS_EXPOSURE"),
        ({"account_max_gross_exposure": 500_00}, sig(qty=6), "MAX_GROSS_EXPOSURE"),
        ({"fat_finger_qty": 1000}, sig(qty=1001), "FAT_FINGER"),
        ({"fat_finger_notional": 1_000_00}, sig(qty=11), "FAT_FINGER"),
        ({"price_band_percent": Decimal(5)},
         sig(order_type=OrderType.LIMIT, limit_price=106_00), "PRICE_BAND"),
        ({"price_band_percent": Decimal(5)},
         sig(order_type=OrderType.LIMIT, limit_price=105_00), "OK"),
    ],
)
def test_each_rule_rejects_with_its_reason_code(limits: dict[str, Any], signal: Signal, expected: str) -> None:
    assert code(engine(**limits).check("sig-1", signal, T0)) == expected


def test_money_in_rejections_reads_in_rupees() -> None:
    def message(signal: Signal, **limits: Any) -> str:
        result = engine(**limits).check("sig-1", signal, T0)
        assert isinstance(result, SignalRejected)
        return result.message

    assert message(sig(qty=10), max_order_notional=999_99) == (
        "notional ₹1,000.00 > max order notional ₹999.99")
    assert message(sig(qty=11), fat_finger_notional=1_000_00) == (
        "notional ₹1,100.00 > fat-finger limit ₹1,000.00")
    assert message(sig(qty=6), max_gross_exposure=500_00) == (
        "gross exposure would be ₹600.00, limit ₹500.00")
    assert message(sig(order_type=OrderType.LIMIT, limit_price=106_00),
                   price_band_percent=Decimal(5)) == (
        "limit price ₹106.00 is more than 5% away from the last price ₹100.00")


def test_pending_orders_count_towards_the_position_until_closed() -> None:
    risk = engine(max_position=15)
    first = sig(qty=10)
    assert code(risk.check("a", first, T0)) == "OK"
    assert risk.position("s1", TOKEN) == 10  # pending counts at once
    assert code(risk.check("b", sig(qty=10), T0)) == "MAX_POSITION"
    risk.on_order_rejected(OrderRejected(
        order_id=derive_id("a", "order"), strategy_id="s1", instrument_token=TOKEN, side=Side.BUY,
        quantity=10, reason_code="X", message="x"))
    assert risk.position("s1", TOKEN) == 0
    assert code(risk.check("c", sig(qty=10), T0)) == "OK"
    risk.on_fill(filled("c", sig(qty=10), qty=4, leaves=6))
    assert risk.position("s1", TOKEN) == 10  # 4 filled + 6 pending
    risk.on_order_cancelled(OrderCancelled(
        order_id=derive_id("c", "order"), strategy_id="s1", instrument_token=TOKEN, side=Side.BUY,
        filled_quantity=4, leaves_quantity=6, reason="user"))
    assert risk.position("s1", TOKEN) == 4


def test_a_cancel_read_before_its_fills_frees_only_what_never_filled() -> None:
    # orders.filled and orders.cancelled are read apart: a limit buy of 10 that filled 6
    # and was then cancelled can be read cancelled first. Its 6 filled, not read yet, still
    # count (they used to be freed with the rest: a buy of 20 passed, and long 26).
    risk = engine(max_position=20, max_open_orders=1)
    limit = sig(qty=10, order_type=OrderType.LIMIT, limit_price=100_00)
    assert code(risk.check("a", limit, T0)) == "OK"
    cancel = OrderCancelled(
        order_id=derive_id("a", "order"), strategy_id="s1", instrument_token=TOKEN,
        side=Side.BUY, filled_quantity=6, leaves_quantity=4, reason="strategy", ts=T0 + S)
    for _ in range(2):  # (delivered again: nothing more to free)
        risk.on_order_cancelled(cancel)
    assert risk.position("s1", TOKEN) == 6  # the 6 on their way
    assert risk.open_orders("s1") == 0  # the order is closed at the venue
    assert code(risk.check("b", sig(qty=20), T0 + 2 * S)) == "MAX_POSITION"  # 6 + 20
    assert code(risk.check("c", sig(qty=14), T0 + 2 * S)) == "OK"  # 6 + 14
    risk.on_fill(filled("a", limit, qty=6, leaves=4, ts=T0 + S))
    assert risk.position("s1", TOKEN) == 20  # 6 filled + 14 pending, not 6 + 6 + 14
    assert risk.open_orders("s1") == 1  # "c" only
    risk.on_fill(filled("c", sig(qty=14), ts=T0 + 3 * S))
    assert (risk.position("s1", TOKEN), risk.open_orders("s1")) == (20, 0)


def test_a_day_orders_unfilled_rest_counts_until_the_close_and_no_more() -> None:
    # The venue's expiry comes with the instrument's next tick, which a strategy may signal
    # at before this engine reads it: a DAY order open at the venue (filled in part, or
    # resting) stops counting at the close of its day. A market order of which no fill was
    # read has most likely filled at once (its fill unread): it counts on.
    risk = engine(max_position=15)
    assert code(risk.check("a", sig(qty=10), T0)) == "OK"
    assert code(risk.check("m", sig(qty=1), T0)) == "OK"
    risk.on_fill(filled("a", sig(qty=10), qty=4, leaves=6))
    close = ist_ns(date(2026, 11, 23), time(15, 30))
    assert code(risk.check("b", sig(qty=5), close - 1)) == "MAX_POSITION"  # 4 + 6 + 1 + 5
    assert code(risk.check("c", sig(qty=10), close)) == "OK"  # 4 + 1 + 10
    assert risk.position("s1", TOKEN) == 15
    risk.on_order_cancelled(OrderCancelled(  # the venue's expiry, read now: nothing more
        order_id=derive_id("a", "order"), strategy_id="s1", instrument_token=TOKEN,
        side=Side.BUY, filled_quantity=4, leaves_quantity=6, reason="expired", ts=close))
    assert risk.position("s1", TOKEN) == 15
    # placed at or after the close, an order lives until the next trading day's (the
    # 24th is an NSE holiday: the 25th's)
    next_close = close + 2 * 86_400 * S
    limit = sig(Side.SELL, qty=5, order_type=OrderType.LIMIT, limit_price=101_00)
    assert code(risk.check("d", limit, next_close - 1)) == "OK"
    assert risk.position("s1", TOKEN) == 10
    assert code(risk.check("e", sig(Side.SELL, qty=1), next_close)) == "OK"
    assert risk.position("s1", TOKEN) == 4 + 1 + 10 - 1  # the resting sell of 5 ended


def test_max_open_orders_frees_a_slot_when_an_order_fills() -> None:
    risk = engine(max_open_orders=1)
    a = sig()
    assert code(risk.check("a", a, T0)) == "OK"
    assert code(risk.check("b", sig(), T0)) == "MAX_OPEN_ORDERS"
    risk.on_fill(filled("a", a))
    assert risk.open_orders("s1") == 0
    assert code(risk.check("c", sig(), T0)) == "OK"


def test_daily_loss_stops_new_exposure_but_lets_positions_be_reduced() -> None:
    risk = engine(daily_loss=500_00)
    buy = sig(qty=100)
    assert code(risk.check("a", buy, T0)) == "OK"
    risk.on_fill(filled("a", buy))
    risk.on_tick(MarketTick(instrument_token=TOKEN, last_price=94_00, ts=T0 + S))  # −₹600
    assert risk.day_pnl("s1") == -600_00
    assert code(risk.check("b", sig(qty=1, price_hint=94_00), T0 + 2 * S)) == "DAILY_LOSS"
    assert code(risk.check("c", sig(qty=1, token=OTHER), T0 + 2 * S)) == "DAILY_LOSS"
    assert code(risk.check("d", sig(Side.SELL, 40, price_hint=94_00), T0 + 2 * S)) == "OK"
    # selling more than held would open a short: new exposure, rejected (MIS: in CNC, the
    # short itself is rejected first, as CNC_SHORT)
    assert code(risk.check("e", sig(Side.SELL, 61, price_hint=94_00, product=Product.MIS),
                           T0 + 2 * S)) == "DAILY_LOSS"
    next_day = ist_ns(date(2026, 11, 25), time(9, 15))
    risk.on_tick(MarketTick(instrument_token=TOKEN, last_price=94_00, ts=next_day))
    assert code(risk.check("f", sig(qty=1, price_hint=94_00), next_day + 1)) == "OK"


def test_a_sell_against_a_resting_buy_is_new_risk_for_the_daily_loss_and_exposure() -> None:
    # A limit buy of 100 far under the market rests, placed before the day's loss, beside
    # 100 filled. A sell of 200 counted as reducing (the resting buy counted as held) and
    # passed the daily-loss gate: a new short of 100 after the limit, if the buy never fills.
    risk = engine(daily_loss=500_00)
    resting = sig(qty=100, order_type=OrderType.LIMIT, limit_price=80_00, product=Product.MIS)
    assert code(risk.check("r", resting, T0)) == "OK"
    buy = sig(qty=100, product=Product.MIS)
    risk.check("a", buy, T0)
    risk.on_fill(filled("a", buy))
    risk.on_tick(MarketTick(instrument_token=TOKEN, last_price=94_00, ts=T0 + S))  # −₹600
    short = sig(Side.SELL, 200, price_hint=94_00, product=Product.MIS)
    assert code(risk.check("b", short, T0 + 2 * S)) == "DAILY_LOSS"  # 100 held, 100 resting
    exit_ = sig(Side.SELL, 100, price_hint=94_00, product=Product.MIS)
    assert code(risk.check("c", exit_, T0 + 2 * S)) == "OK"  # what is filled: it reduces
    assert code(risk.check("d", sig(Side.SELL, 1, price_hint=94_00, product=Product.MIS),
                           T0 + 2 * S)) == "DAILY_LOSS"  # only the resting buy is left
    # a market buy counts as held before its fill is read (it fills at once at the venue;
    # on the pipeline the fill may come after the next signal): its exit passes
    risk = engine(daily_loss=500_00)
    assert code(risk.check("e", sig(qty=50, product=Product.MIS), T0)) == "OK"
    risk.check("a", buy, T0)
    risk.on_fill(filled("a", buy))
    risk.on_tick(MarketTick(instrument_token=TOKEN, last_price=94_00, ts=T0 + S))
    assert code(risk.check("f", sig(Side.SELL, 150, price_hint=94_00, product=Product.MIS),
                           T0 + 2 * S)) == "OK"  # 100 filled, 50 bought at market
    # And each position counts at its worst side for the exposure: a short of 250 with a
    # buy of 250 resting is ₹25,000 of exposure (not 0) if the buy never fills; 250 more
    # would make ₹50,000, over a ₹30,000 limit
    risk = engine(max_gross_exposure=30_000_00)
    risk.on_tick(MarketTick(instrument_token=TOKEN, last_price=100_00, ts=T0))
    rest = sig(qty=250, order_type=OrderType.LIMIT, limit_price=80_00, product=Product.MIS)
    assert code(risk.check("r", rest, T0)) == "OK"
    sell = sig(Side.SELL, 250, product=Product.MIS)
    assert code(risk.check("s1", sell, T0)) == "OK"
    risk.on_fill(filled("s1", sell))
    refused = risk.check("s2", sig(Side.SELL, 250, product=Product.MIS), T0)
    assert code(refused) == "MAX_GROSS_EXPOSURE"
    assert isinstance(refused, SignalRejected)
    assert refused.message == "gross exposure would be ₹50,000.00, limit ₹30,000.00"


@pytest.mark.parametrize("limits", [{"max_order_qty": 5}, {"max_order_notional": 500_00},
                                    {"fat_finger_qty": 5}, {"fat_finger_notional": 500_00}])
def test_size_limits_never_trap_a_position(limits: dict[str, Any]) -> None:
    # bought 2 at a time up to 8: the exit of all 8 passes; a buy of 8 does not, nor a sell
    # of 9 (it opens a short of 1)
    risk = engine(**limits)
    for n in range(4):
        buy = sig(qty=2, product=Product.MIS)
        assert code(risk.check(f"b{n}", buy, T0)) == "OK"
        risk.on_fill(filled(f"b{n}", buy))
    assert code(risk.check("x", sig(Side.SELL, 8, product=Product.MIS), T0)) == "OK"
    assert code(risk.check("y", sig(qty=8, product=Product.MIS), T0)) != "OK"
    assert code(risk.check("z", sig(Side.SELL, 9, product=Product.MIS), T0)) != "OK"


@pytest.mark.parametrize("name", ["daily_loss", "account_daily_loss", "max_order_qty",
                                  "max_order_notional", "fat_finger_qty", "fat_finger_notional"])
def test_a_limit_of_zero_is_refused_with_how_to_say_no_limit(name: str) -> None:
    with pytest.raises(ConfigurationError, match=f"{name} is 0, .* leave it out for no limit"):
        RiskLimits.from_mapping({name: 0}, "s.yaml: risk")


@pytest.mark.parametrize("name", ["max_open_orders", "orders_per_second", "orders_per_minute",
                                  "orders_per_day"])
def test_a_zero_that_would_stop_exits_too_is_refused(name: str) -> None:
    # max_open_orders: 0 rejected every order, a position's exit among them: it could never
    # be closed (max_position: 0 stays allowed: only exits pass it)
    with pytest.raises(ConfigurationError, match=f"{name} is 0, which would stop every order, "
                                                 r"exits too \(a position could never be closed"):
        RiskLimits.from_mapping({name: 0}, "s.yaml: risk")
    assert RiskLimits.from_mapping({"max_position": 0, "max_gross_exposure": 0}).max_position == 0


@pytest.mark.parametrize("value", [0, -5, "wide", True, float("nan")])
def test_a_price_band_that_is_not_a_positive_percentage_is_refused(value: object) -> None:
    # at 0 or below every limit price was outside the band: each limit order rejected
    with pytest.raises(ConfigurationError, match="price_band_percent must be a positive "
                                                 "percentage of the last price"):
        RiskLimits.from_mapping({"price_band_percent": value}, "s.yaml: risk")
    assert RiskLimits.from_mapping({"price_band_percent": 2.5}).price_band_percent == Decimal("2.5")


def test_a_gap_at_the_open_counts_in_the_days_loss() -> None:
    # 100 held overnight, closed at ₹100; the next day opens at ₹94: ₹600 down on the day
    # before anything trades (the day's start is yesterday's close, not today's open)
    risk = engine(daily_loss=500_00)
    buy = sig(qty=100)
    risk.check("a", buy, T0)
    risk.on_fill(filled("a", buy))
    next_day = ist_ns(date(2026, 11, 24), time(9, 15))
    risk.on_tick(MarketTick(instrument_token=TOKEN, last_price=94_00, ts=next_day,
                            close=100_00))
    assert risk.day_pnl("s1") == risk.day_pnl(None) == -600_00
    assert code(risk.check("b", sig(qty=1, price_hint=94_00), next_day + 1)) == "DAILY_LOSS"


def test_zerodha_always_gets_kites_rate_limits_paper_only_when_configured() -> None:
    config = RiskConfig(global_limits=RiskLimits(orders_per_second=50))
    assert config.limits_for("zerodha", "s1").orders_per_second == 10  # cannot be loosened
    assert config.limits_for("zerodha", None).orders_per_day == 5000
    assert RiskConfig().limits_for("paper", "s1").orders_per_second is None
    live = RiskEngine(RiskConfig(), broker="zerodha")
    results = [code(live.check(f"z{i}", sig(qty=1), T0 + i * 10_000_000)) for i in range(12)]
    assert results == ["OK"] * 10 + ["RATE_LIMIT_SECOND"] * 2
    assert code(live.check("z99", sig(qty=1), T0 + S + 1)) == "OK"  # the window slid on
    paper = RiskEngine(RiskConfig(), broker="paper")
    assert all(code(paper.check(f"p{i}", sig(qty=1), T0)) == "OK" for i in range(50))
    emulated = RiskEngine(RiskConfig(brokers={"paper": KITE_ACCOUNT_LIMITS}), broker="paper")
    assert [code(emulated.check(f"e{i}", sig(qty=1), T0)) for i in range(11)][-1] == "RATE_LIMIT_SECOND"


def test_an_exit_takes_no_slot_of_the_second_or_minute_only_of_the_day() -> None:
    # Ten entries fill Kite's second: an exit in it passed nothing before (48 exits of 61
    # refused in 20 s of two fast strategies on the fake Kite), and each left the live
    # position open. It passes now, the zerodha engine pacing it to Kite's 10/s.
    live = RiskEngine(RiskConfig(), broker="zerodha")
    for i in range(10):
        s = sig(qty=1, token=TOKEN + i)
        assert code(live.check(f"e{i}", s, T0 + i)) == "OK"
        live.on_fill(filled(f"e{i}", s))
    exit_ = sig(Side.SELL, qty=1, token=TOKEN + 3, reduce_only=True, target=0)
    assert code(live.check("x", exit_, T0 + 20)) == "OK"
    assert code(live.check("y", sig(qty=1), T0 + 30)) == "RATE_LIMIT_SECOND"
    # an "exit" that would open a position is still refused, by REDUCE_ONLY
    opening = sig(Side.SELL, qty=1, token=TOKEN + 99, reduce_only=True, target=-1)
    assert code(live.check("o", opening, T0 + 40)) == "REDUCE_ONLY"
    assert live.status(T0 + 50)["rate"]["RATE_LIMIT_SECOND"] == 10
    assert live.status(T0 + 50)["rate"]["RATE_LIMIT_DAY"] == 11  # the exit counted there
    # the day's limit (Kite refuses past it) still holds for exits
    daily = engine("paper", orders_per_second=1, orders_per_day=2)
    entry = sig(qty=2)
    assert code(daily.check("a", entry, T0)) == "OK"
    daily.on_fill(filled("a", entry))
    halves = [sig(Side.SELL, qty=1, reduce_only=True, target=1),
              sig(Side.SELL, qty=1, reduce_only=True, target=0)]
    assert [code(daily.check(f"h{i}", h, T0 + 1 + i)) for i, h in enumerate(halves)] == [
        "OK", "RATE_LIMIT_DAY"]


def test_a_rebuilt_exit_takes_the_slots_it_took_live() -> None:
    live = RiskEngine(RiskConfig(), broker="zerodha")
    decisions = []
    for i in range(10):
        s = sig(qty=1, token=TOKEN + i)
        decisions.append(live.check(f"e{i}", s, T0 + i))
        live.on_fill(filled(f"e{i}", s))
    decisions.append(live.check("x", sig(Side.SELL, qty=1, token=TOKEN, reduce_only=True,
                                         target=0), T0 + 20))
    assert [code(d) for d in decisions] == ["OK"] * 11
    rebuilt = RiskEngine(RiskConfig(), broker="zerodha")
    for d in decisions:
        assert isinstance(d, SignalValidated)
        rebuilt.replay_decision(d, T0 + 20)
    assert rebuilt.status(T0 + 30)["rate"] == live.status(T0 + 30)["rate"] == {
        "RATE_LIMIT_SECOND": 10, "RATE_LIMIT_MINUTE": 10, "RATE_LIMIT_DAY": 11}


def test_minute_and_day_rate_limits() -> None:
    risk = engine(orders_per_minute=3, orders_per_day=5)
    got = [code(risk.check(f"m{i}", sig(qty=1), T0 + i * S)) for i in range(4)]
    assert got == ["OK", "OK", "OK", "RATE_LIMIT_MINUTE"]
    got = [code(risk.check(f"d{i}", sig(qty=1), T0 + (120 + i * 61) * S)) for i in range(3)]
    assert got == ["OK", "OK", "RATE_LIMIT_DAY"]


def test_a_rule_rejection_uses_no_rate_slot() -> None:
    risk = engine(orders_per_second=1, max_order_qty=5)
    assert code(risk.check("big", sig(qty=6), T0)) == "MAX_ORDER_QTY"
    assert code(risk.check("ok", sig(qty=1), T0)) == "OK"


def test_limits_merge_global_broker_strategy() -> None:
    config = RiskConfig(
        global_limits=RiskLimits(max_position=100, max_order_qty=50),
        brokers={"paper": RiskLimits(max_position=80)},
        strategies={"s1": RiskLimits(max_position=10)},
        strategy_brokers={("s1", "zerodha"): RiskLimits(max_order_qty=1)},
    )
    assert config.limits_for("paper", "s1").max_position == 10
    assert config.limits_for("paper", "s2").max_position == 80
    assert config.limits_for("zerodha", "s2").max_position == 100
    assert config.limits_for("zerodha", "s1").max_order_qty == 1
    assert config.limits_for("paper", "s1").max_order_qty == 50
    assert RiskLimits.from_mapping({"max_position": 50}).max_position == 50
    with pytest.raises(ConfigurationError):
        RiskLimits.from_mapping({"max_postion": 50})
    with pytest.raises(ConfigurationError):
        RiskLimits.from_mapping({"max_position": -1})


def test_kill_switch_blocks_new_orders_and_flattens() -> None:
    risk = engine()
    buy = sig(qty=7)
    risk.check("a", buy, T0)
    risk.on_fill(filled("a", buy))
    short = sig(Side.SELL, 3, token=OTHER, strategy="s2", product=Product.MIS)
    assert code(risk.check("b", short, T0)) == "OK"
    risk.on_fill(filled("b", short, price=50_00))
    risk.set_kill_switch(True)
    assert code(risk.check("c", sig(qty=1), T0 + 1)) == "KILL_SWITCH"
    assert code(risk.check("d", sig(Side.SELL, 7), T0 + 1)) == "KILL_SWITCH"  # not a flatten
    flat = risk.flatten_signals(T0 + 2)
    assert {(f.strategy_id, f.instrument_token, f.side, f.quantity) for f in flat} == {
        ("s1", TOKEN, Side.SELL, 7), ("s2", OTHER, Side.BUY, 3)
    }
    assert all(code(risk.check(f"f{i}", f, T0 + 3, flatten=True)) == "OK"
               for i, f in enumerate(flat))
    risk.set_kill_switch(False)
    assert code(risk.check("g", sig(qty=1), T0 + 4)) == "OK"


def test_the_flatten_closes_the_filled_position_whatever_rests_on_the_book() -> None:
    # long 10, with a resting sell of 5 counted as pending: the kill switch cancels the
    # resting sell, so the flatten's SELL 10 reduces the position (it was rejected as
    # "not reducing" against 10 - 5, and the position stayed open)
    risk = engine(max_position=20)
    buy = sig(qty=10, product=Product.MIS)
    risk.check("a", buy, T0)
    risk.on_fill(filled("a", buy))
    resting = sig(Side.SELL, 5, product=Product.MIS, order_type=OrderType.LIMIT,
                  limit_price=101_00)
    assert code(risk.check("b", resting, T0)) == "OK"
    risk.set_kill_switch(True)
    [flat] = risk.flatten_signals(T0 + 1)
    assert (flat.side, flat.quantity) == (Side.SELL, 10)
    decision = risk.check("f", flat, T0 + 1, flatten=True)
    assert code(decision) == "OK" and isinstance(decision, SignalValidated) and decision.flatten
    not_flatten = sig(Side.SELL, 10, product=Product.MIS)
    assert code(risk.check("g", not_flatten, T0 + 1)) == "KILL_SWITCH"
    # a strategy's own "flatten" (its reason is free text) is not the switch's
    spoof = sig(Side.SELL, 10, product=Product.MIS, reason="flatten:kill_switch")
    assert code(risk.check("s", spoof, T0 + 1)) == "KILL_SWITCH"
    too_much = sig(Side.SELL, 11, product=Product.MIS, reason="flatten:kill_switch")
    assert code(risk.check("h", too_much, T0 + 1, flatten=True)) == "KILL_SWITCH"  # short


def test_a_second_flatten_on_its_way_with_the_first_does_not_reverse_the_position() -> None:
    # the kill switch set with flatten twice in a row (a double click, a retried request):
    # both flattens sold the filled 3, and the live account ended short 3
    risk = engine("zerodha")
    buy = sig(qty=3, product=Product.MIS)
    risk.check("a", buy, T0)
    risk.on_fill(filled("a", buy))
    risk.set_kill_switch(True)
    [first] = risk.flatten_signals(T0 + 1)
    [second] = risk.flatten_signals(T0 + 1)  # read in the same batch: neither checked yet
    assert code(risk.check("f1", first, T0 + 1, flatten=True)) == "OK"
    refused = risk.check("f2", second, T0 + 1, flatten=True)
    assert code(refused) == "KILL_SWITCH" and "already on their way" in refused.message
    assert risk.flatten_signals(T0 + 2) == []  # read after the first: nothing left to close
    partly = OrderFilled(
        order_id=derive_id("f1", "zerodha.order"), fill_id="f1-1", strategy_id="s1",
        instrument_token=TOKEN, side=Side.SELL, quantity=1, price=100_00, cumulative_quantity=1,
        leaves_quantity=2, average_price=100_00, product=Product.MIS, ts=T0 + 3)
    risk.on_fill(partly)
    assert risk.flatten_signals(T0 + 3) == []  # the first's other 2 are still on their way
    risk.on_order_cancelled(OrderCancelled(
        order_id=partly.order_id, strategy_id="s1", instrument_token=TOKEN, side=Side.SELL,
        filled_quantity=1, leaves_quantity=2, reason="broker", ts=T0 + 4))
    [again] = risk.flatten_signals(T0 + 5)  # its rest cancelled: what is held is closed
    assert (again.side, again.quantity) == (Side.SELL, 2)
    assert code(risk.check("f3", again, T0 + 5, flatten=True)) == "OK"


def test_state_is_rebuilt_by_replaying_the_same_events() -> None:
    def play(risk: RiskEngine) -> list[str]:
        out = []
        for i in range(6):
            s = sig(qty=4)
            out.append(code(risk.check(f"r{i}", s, T0 + i)))
            if i % 2 == 0 and out[-1] == "OK":
                risk.on_fill(filled(f"r{i}", s, ts=T0 + i))
        return out

    first, second = engine(max_position=10), engine(max_position=10)
    assert play(first) == play(second)
    assert first.position("s1", TOKEN) == second.position("s1", TOKEN) == 8


def test_zerodha_fills_release_pending_orders_by_their_own_order_ids() -> None:
    risk = engine("zerodha", max_open_orders=1, max_position=10)
    buy = sig(qty=10)
    assert code(risk.check("z", buy, T0)) == "OK"
    order_id = derive_id("z", "zerodha.order")  # the Kite engine's order id
    risk.on_fill(OrderFilled(
        order_id=order_id, fill_id="f", strategy_id="s1", instrument_token=TOKEN, side=Side.BUY,
        quantity=10, price=100_00, cumulative_quantity=10, leaves_quantity=0, average_price=100_00,
        ts=T0))
    assert risk.position("s1", TOKEN) == 10  # not 20: the pending part was released
    assert risk.open_orders("s1") == 0


def test_status_shows_what_an_operator_needs() -> None:
    risk = engine("zerodha")
    buy = sig(qty=3)
    risk.check("a", buy, T0)
    risk.on_fill(filled("a", buy, price=110_00))
    risk.check("b", sig(qty=2, token=OTHER), T0 + 1)
    status = risk.status(T0 + 2)
    assert status["kill_switch"] is False
    assert status["strategies"] == {
        "s1": {"day_pnl": 0, "open_orders": 1, "positions": {str(TOKEN): 3, str(OTHER): 2}}
    }
    assert status["rate"] == {"RATE_LIMIT_SECOND": 2, "RATE_LIMIT_MINUTE": 2, "RATE_LIMIT_DAY": 2}


def test_a_redelivered_signal_gets_the_same_decision_and_counts_once() -> None:
    risk = engine(max_position=10)
    first = risk.check("a", sig(qty=10), T0)
    assert risk.check("a", sig(qty=10), T0) == first
    assert code(first) == "OK" and risk.position("s1", TOKEN) == 10


def test_a_late_event_from_yesterday_does_not_reset_todays_loss() -> None:
    risk = engine(daily_loss=100_00)
    buy = sig(qty=10)
    risk.check("a", buy, T0)
    risk.on_fill(filled("a", buy))
    risk.on_tick(MarketTick(instrument_token=TOKEN, last_price=80_00, ts=T0 + S))
    risk.on_fill(filled("x", sig(Side.SELL, 1, token=OTHER), price=1, ts=T0 - 86_400 * S))
    assert code(risk.check("b", sig(qty=1), T0 + 2 * S)) == "DAILY_LOSS"


# ---------------------------------------------------------------- CNC_SHORT: delivery is not shorted

MIS = Product.MIS


def cnc_short(qty: int, free: int, detail: str = "") -> str:
    return (f"CNC sell of {qty} of instrument {TOKEN} (RELIANCE) exceeds holdings of {free}{detail}; "
            "delivery cannot be sold short (use MIS)")


def holding(risk: RiskEngine, qty: int, *, product: Product = Product.CNC, name: str = "h") -> None:
    """A buy of ``qty`` validated and filled."""
    buy = sig(qty=qty, product=product)
    assert code(risk.check(name, buy, T0)) == "OK"
    risk.on_fill(filled(name, buy))


@pytest.mark.parametrize("limits", [{}, {"max_position": 1000, "orders_per_second": 100}])
def test_a_cnc_sell_without_holdings_is_rejected_with_or_without_limits(limits: dict[str, Any]) -> None:
    result = engine(**limits).check("a", sig(Side.SELL, 50), T0)
    assert isinstance(result, SignalRejected)
    assert (result.reason_code, result.message) == ("CNC_SHORT", cnc_short(50, 0))


def test_a_cnc_sell_may_sell_what_is_held_and_no_more() -> None:
    risk = engine()
    holding(risk, 10)
    too_many = risk.check("a", sig(Side.SELL, 11), T0 + 1)
    assert isinstance(too_many, SignalRejected)
    assert (too_many.reason_code, too_many.message) == ("CNC_SHORT", cnc_short(11, 10))
    assert code(risk.check("b", sig(Side.SELL, 10), T0 + 1)) == "OK"


def test_pending_cnc_sells_use_up_holdings_until_filled_or_closed() -> None:
    risk = engine()
    holding(risk, 10)
    first = sig(Side.SELL, 10)
    assert code(risk.check("a", first, T0 + 1)) == "OK"
    second = risk.check("b", sig(Side.SELL, 10), T0 + 1)  # the first has not filled yet
    assert isinstance(second, SignalRejected)
    assert (second.reason_code, second.message) == (
        "CNC_SHORT", cnc_short(10, 0, " (10 filled, -10 in pending CNC orders)"))
    risk.on_fill(filled("a", first, qty=4, leaves=6))
    assert code(risk.check("c", sig(Side.SELL, 1), T0 + 2)) == "CNC_SHORT"  # 6 held, 6 pending
    risk.on_order_cancelled(OrderCancelled(
        order_id=derive_id("a", "order"), strategy_id="s1", instrument_token=TOKEN,
        side=Side.SELL, filled_quantity=4, leaves_quantity=6, reason="user"))
    assert code(risk.check("d", sig(Side.SELL, 7), T0 + 3)) == "CNC_SHORT"
    assert code(risk.check("e", sig(Side.SELL, 3), T0 + 3)) == "OK"
    assert code(risk.check("f", sig(Side.SELL, 3), T0 + 3)) == "OK"
    assert code(risk.check("g", sig(Side.SELL, 1), T0 + 3)) == "CNC_SHORT"
    risk.on_order_rejected(OrderRejected(
        order_id=derive_id("f", "order"), strategy_id="s1", instrument_token=TOKEN,
        side=Side.SELL, quantity=3, reason_code="X", message="x"))
    assert code(risk.check("h", sig(Side.SELL, 3), T0 + 4)) == "OK"  # the rejected 3 are free


def test_a_pending_cnc_buy_counts_so_the_decision_does_not_depend_on_when_its_fill_arrives() -> None:
    buy = sig(qty=10)

    def play(fill_first: bool) -> list[str]:
        risk = engine()
        out = [code(risk.check("a", buy, T0))]
        if fill_first:
            risk.on_fill(filled("a", buy))
        out.append(code(risk.check("b", sig(Side.SELL, 10), T0 + 1)))
        out.append(code(risk.check("c", sig(Side.SELL, 1), T0 + 1)))
        risk.on_fill(filled("a", buy))  # a redelivery, or the late fill
        out.append(code(risk.check("d", sig(Side.SELL, 1), T0 + 2)))
        return out

    assert play(fill_first=True) == play(fill_first=False) == ["OK", "OK", "CNC_SHORT", "CNC_SHORT"]


@pytest.mark.parametrize("entry", [
    {"order_type": OrderType.SL_M, "trigger_price": 120_00},
    {"order_type": OrderType.LIMIT, "limit_price": 90_00},
])
def test_a_resting_cnc_buy_is_no_holding_until_it_fills(entry: dict[str, Any]) -> None:
    # A stop or limit buy may never fill (a stop far above the market): selling against it
    # would leave a delivery short. Its fill, when it comes, is a holding like any other.
    risk = engine()
    buy = sig(qty=5, **entry)
    assert code(risk.check("a", buy, T0)) == "OK"
    stop_sell = sig(Side.SELL, 5, order_type=OrderType.SL_M, trigger_price=98_00)
    rejected = risk.check("b", stop_sell, T0 + 1)
    assert isinstance(rejected, SignalRejected)
    assert (rejected.reason_code, rejected.message) == ("CNC_SHORT", cnc_short(5, 0))
    risk.on_fill(filled("a", buy, qty=3, leaves=2))
    assert code(risk.check("c", sig(Side.SELL, 4), T0 + 2)) == "CNC_SHORT"
    assert code(risk.check("d", sig(Side.SELL, 3), T0 + 2)) == "OK"


@pytest.mark.parametrize("product", [Product.MIS, Product.NRML])
def test_intraday_and_fno_shorts_pass(product: Product) -> None:
    assert code(engine().check("a", sig(Side.SELL, 50, product=product), T0)) == "OK"
    assert code(engine(max_position=100).check("a", sig(Side.SELL, 50, product=product), T0)) == "OK"


def test_mis_positions_are_not_cnc_holdings() -> None:
    risk = engine()
    holding(risk, 5, product=MIS, name="m")
    assert risk.position("s1", TOKEN) == 5
    assert code(risk.check("a", sig(Side.SELL, 5), T0 + 1)) == "CNC_SHORT"
    assert code(risk.check("b", sig(Side.SELL, 5, product=MIS), T0 + 1)) == "OK"
    holding(risk, 10, name="c")
    # the exchange's MIS square-off (no signal behind it) leaves the delivery holding alone
    squareoff = OrderFilled(
        order_id="squareoff", fill_id="squareoff-fill", strategy_id="s1", instrument_token=TOKEN,
        side=Side.SELL, quantity=5, price=100_00, cumulative_quantity=5, leaves_quantity=0,
        average_price=100_00, product=MIS, ts=T0 + 2)
    risk.on_fill(squareoff)
    assert code(risk.check("c2", sig(Side.SELL, 11), T0 + 3)) == "CNC_SHORT"
    assert code(risk.check("d", sig(Side.SELL, 10), T0 + 3)) == "OK"


def test_the_kill_switch_flattens_each_product_and_nothing_more() -> None:
    def mixed() -> RiskEngine:  # 5 MIS then 10 CNC: two positions, each flattened in its product
        risk = engine()
        holding(risk, 5, product=MIS, name="m")
        holding(risk, 10, name="c")
        return risk

    risk = mixed()
    risk.set_kill_switch(True)
    assert code(risk.check("a", sig(Side.SELL, 10), T0 + 1)) == "KILL_SWITCH"  # not a flatten
    flats = risk.flatten_signals(T0 + 2)
    assert [(f.side, f.quantity, f.product, f.reason) for f in flats] == [
        (Side.SELL, 5, MIS, "flatten:kill_switch"), (Side.SELL, 10, Product.CNC, "flatten:kill_switch")]
    assert [code(risk.check(f"f{i}", f, T0 + 2, flatten=True)) for i, f in enumerate(flats)] == [
        "OK", "OK"]
    # a flatten closes what its product holds and no more (15 CNC against 10) ...
    beyond = msgspec.structs.replace(flats[1], quantity=15)
    assert code(mixed_on().check("f", beyond, T0 + 2, flatten=True)) == "KILL_SWITCH"
    # ... and without the switch on, a flatten order has no exemption
    assert code(mixed().check("f", beyond, T0 + 2, flatten=True)) == "CNC_SHORT"


@pytest.mark.parametrize("mis_short", [3, 10])
def test_the_flatten_closes_a_cnc_long_and_an_mis_short_of_one_instrument(mis_short: int) -> None:
    # net +7 (or 0): each product's order, checked against the net, was blocked
    risk = engine()
    holding(risk, 10, name="c")
    short = sig(Side.SELL, mis_short, product=MIS)
    assert code(risk.check("m", short, T0)) == "OK"
    risk.on_fill(filled("m", short))
    risk.set_kill_switch(True)
    flats = risk.flatten_signals(T0 + 1)
    assert [(f.side, f.quantity, f.product) for f in flats] == [
        (Side.SELL, 10, Product.CNC), (Side.BUY, mis_short, MIS)]
    assert [code(risk.check(f"f{i}", f, T0 + 1, flatten=True)) for i, f in enumerate(flats)] == [
        "OK", "OK"]
    # ... and only what it closes: more than the product holds is no flatten
    over = msgspec.structs.replace(flats[1], quantity=mis_short + 1)
    assert code(risk.check("over", over, T0 + 1, flatten=True)) == "KILL_SWITCH"


def mixed_on() -> RiskEngine:
    risk = engine()
    holding(risk, 5, product=MIS, name="m")
    holding(risk, 10, name="c")
    risk.set_kill_switch(True)
    return risk


def test_cnc_holdings_are_rebuilt_by_replaying_the_same_events() -> None:
    buy, mis_buy, sell = sig(qty=10), sig(qty=5, product=MIS), sig(Side.SELL, 6)
    fills = {"b": [filled("b", buy)], "m": [filled("m", mis_buy)],
             "s": [filled("s", sell, qty=2, leaves=4)] * 2}  # the second is a redelivery

    def play(risk: RiskEngine, *, rebuild: bool = False) -> list[str]:
        out = []
        for name, s in (("b", buy), ("m", mis_buy), ("s", sell)):
            if rebuild:  # a restart replays the log's validated signals
                risk.apply_validated(name, s)
            else:
                out.append(code(risk.check(name, s, T0)))
            for fill in fills[name]:
                risk.on_fill(fill)
        return out

    live, replayed, applied = engine(), engine(), engine()
    assert play(live) == play(replayed) == ["OK", "OK", "OK"]
    play(applied, rebuild=True)
    for risk in (live, replayed, applied):  # 8 held, 4 of them in the pending sell
        result = risk.check("x", sig(Side.SELL, 5), T0 + 1)
        assert isinstance(result, SignalRejected)
        assert (result.reason_code, result.message) == (
            "CNC_SHORT", cnc_short(5, 4, " (8 filled, -4 in pending CNC orders)"))
        assert code(risk.check("y", sig(Side.SELL, 4), T0 + 1)) == "OK"


def test_a_redelivered_partial_fill_frees_its_pending_quantity_once() -> None:
    risk = engine(max_position=10)
    buy = sig(qty=10)
    assert code(risk.check("a", buy, T0)) == "OK"
    for _ in range(2):  # the same fill id twice
        risk.on_fill(filled("a", buy, qty=4, leaves=6))
    assert risk.position("s1", TOKEN) == 10  # 4 filled + 6 pending, not 4 + 2
    assert code(risk.check("b", sig(qty=1), T0 + 1)) == "MAX_POSITION"


def test_max_position_holds_on_each_side_whatever_rests_on_the_other() -> None:
    # A ladder of resting limit buys and sells nets to nothing, but its buys may all fill
    # and its sells none: each side counts on its own (the net used to let both grow).
    risk = engine(max_position=20)
    limit = {"order_type": OrderType.LIMIT, "limit_price": 99_00}
    buy = {**limit, "product": Product.MIS}  # (a delivery buy would not close the short:
    # the MIS square-off would, beside it, test_squareoff)
    for n in range(2):
        assert code(risk.check(f"b{n}", sig(Side.BUY, 10, **buy), T0)) == "OK"
        assert code(risk.check(f"s{n}", sig(Side.SELL, 10, product=Product.MIS, **limit),
                               T0)) == "OK"
    third_buy = risk.check("b2", sig(Side.BUY, 10, **buy), T0)
    assert code(third_buy) == "MAX_POSITION"
    assert isinstance(third_buy, SignalRejected)
    assert third_buy.message == "position could reach 30 if every open buy fills, limit 20"
    third_sell = risk.check("s2", sig(Side.SELL, 10, product=Product.MIS, **limit), T0)
    assert code(third_sell) == "MAX_POSITION"
    # a sell that fills makes room on the buy side; a buy's cancel frees its own room
    risk.on_fill(filled("s0", sig(Side.SELL, 10, product=Product.MIS, **limit)))
    risk.on_order_cancelled(OrderCancelled(
        order_id=derive_id("b0", "order"), strategy_id="s1", instrument_token=TOKEN,
        side=Side.BUY, filled_quantity=0, leaves_quantity=10, reason="strategy"))
    assert code(risk.check("b3", sig(Side.BUY, 10, **buy), T0)) == "OK"  # -10 + 10 + 10
    assert code(risk.check("b4", sig(Side.BUY, 10, **buy), T0)) == "OK"  # -10 + 20 + 10
    assert code(risk.check("b5", sig(Side.BUY, 10, **buy), T0)) == "MAX_POSITION"


def test_replayed_decisions_take_the_rate_slots_the_live_ones_took() -> None:
    # A restart replays the recorded decisions: a validated order took a slot of Kite's
    # windows live, the kill switch's flatten order none.
    limits = RiskConfig(brokers={"paper": RiskLimits(orders_per_second=10, orders_per_day=5000)})
    plain = SignalValidated(signal=sig(qty=1), signal_id="a")
    flatten = SignalValidated(signal=sig(Side.SELL, qty=1, product=Product.MIS), signal_id="f",
                              flatten=True)
    risk = RiskEngine(limits, broker="paper")
    for decision in (plain, flatten):
        risk.replay_decision(decision, T0)
    assert risk.status(T0)["rate"] == {"RATE_LIMIT_SECOND": 1, "RATE_LIMIT_DAY": 1}
    assert risk.check("a", sig(qty=1), T0) is plain  # a redelivered signal: the same answer


def test_a_halted_strategy_is_blocked_and_flattened_alone_until_put_back() -> None:
    risk = engine()
    holding(risk, 10, name="h")
    other = sig(qty=3, strategy="o")
    assert code(risk.check("o1", other, T0)) == "OK"
    risk.on_fill(filled("o1", other))
    risk.halt_strategy("s1")
    assert code(risk.check("a", sig(qty=1), T0 + 1)) == "STRATEGY_HALTED"
    assert code(risk.check("b", sig(qty=1, strategy="o"), T0 + 1)) == "OK"  # the others trade on
    [flat] = risk.flatten_signals(T0 + 2, "s1")  # its own positions only
    assert (flat.strategy_id, flat.side, flat.quantity) == ("s1", Side.SELL, 10)
    assert code(risk.check("f", flat, T0 + 2, flatten=True)) == "OK"
    assert code(risk.check("g", flat, T0 + 2)) == "STRATEGY_HALTED"  # a strategy's own sell
    risk.halt_strategy("s1", active=False)
    assert code(risk.check("c", sig(qty=1), T0 + 3)) == "OK"
