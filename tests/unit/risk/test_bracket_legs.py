"""``max_position`` holds with a bracket's legs resting: the paper exchange gives each fill
of a bracket entry a stop-loss and a target the risk manager never sees placed, and an order
validated beside them may fill after one of them. The risk engine and the paper exchange
here are the real ones, wired as the pipeline wires them (validated signals to the
exchange, its fills and cancels back to the engine)."""

from __future__ import annotations

import random
from datetime import date, time
from typing import Any

from alpha_panda.domain.clock import ist_ns
from alpha_panda.domain.events import (
    MarketTick,
    OrderCancelled,
    OrderFilled,
    OrderRejected,
    Payload,
    Signal,
    SignalRejected,
    SignalValidated,
)
from alpha_panda.domain.values import OrderType, Product, Side
from alpha_panda.execution.paper import ExecutionConfig, PaperExchange
from alpha_panda.risk import RiskConfig, RiskEngine, RiskLimits

TOKEN = 738561
T0 = ist_ns(date(2026, 12, 3), time(10))
S = 10**9


class Desk:
    """A strategy's signals through the risk engine to the paper exchange, the exchange's
    order events back to the engine; the filled position kept from the fills."""

    def __init__(self, max_position: int) -> None:
        self.risk = RiskEngine(RiskConfig(global_limits=RiskLimits(max_position=max_position)))
        self.exchange = PaperExchange(ExecutionConfig(costs=False), seed=7)
        self.position = 0
        self.worst = 0  # the position furthest from flat
        self.n = 0
        self.ts = T0
        self.last = 0  # the last tick's price: the signals' price hint
        self.record: list[tuple[Any, int]] = []  # decisions and order events, with their time

    def _apply(self, events: list[Payload]) -> None:
        for e in events:
            self.record.append((e, self.ts))
            if isinstance(e, OrderFilled):
                self.risk.on_fill(e)
                self.position += e.quantity if e.side is Side.BUY else -e.quantity
                self.worst = max(self.worst, abs(self.position))
            elif isinstance(e, OrderCancelled):
                self.risk.on_order_cancelled(e)
            elif isinstance(e, OrderRejected):
                self.risk.on_order_rejected(e)

    def tick(self, price: int) -> None:
        self.ts += S
        self.last = price
        tick = MarketTick(instrument_token=TOKEN, last_price=price, ts=self.ts)
        self.risk.on_tick(tick)
        self._apply(self.exchange.on_tick(tick))

    def send(self, side: Side, qty: int, **kw: Any) -> str:
        """The decision's reason code, or "ok"; a validated signal goes to the exchange."""
        self.n += 1
        signal_id = f"sig{self.n}"
        kw.setdefault("product", Product.MIS)
        s = Signal(strategy_id="s1", instrument_token=TOKEN, side=side, quantity=qty,
                   price_hint=self.last, **kw)
        decision = self.risk.check(signal_id, s, self.ts)
        self.record.append((decision, self.ts))
        if not isinstance(decision, SignalValidated):
            self.reason = decision.message
            return decision.reason_code
        self._apply(self.exchange.submit(signal_id, decision.signal, self.ts))
        return "ok"


def bracketed_long(max_position: int) -> Desk:
    desk = Desk(max_position)
    desk.tick(100_00)
    assert desk.send(Side.BUY, 10, take_profit=105_00, stop_loss=98_00) == "ok"
    desk.tick(100_00)
    assert desk.position == 10
    assert sorted((o.origin, o.side, o.quantity) for o in desk.exchange.open_orders()) == [
        ("bracket", Side.SELL, 10), ("bracket", Side.SELL, 10)]
    return desk


def test_a_reversal_resting_beside_the_legs_is_refused_where_the_stop_could_fill_first() -> None:
    # Long 10, its stop and target resting. A limit sell of 20 at ₹101 looked like a
    # worst case of short 10. Before, it passed: the stop sold the 10 at ₹97 and the sell
    # then filled at ₹101, short 20 against a limit of 10.
    desk = bracketed_long(max_position=10)
    assert desk.send(Side.SELL, 20, order_type=OrderType.LIMIT,
                     limit_price=101_00) == "MAX_POSITION"
    assert "position could reach -20" in desk.reason and "stop-loss or target" in desk.reason
    for price in (97_00, 101_00):
        desk.tick(price)
    assert desk.worst == 10 and desk.position == 0


def test_a_restart_rebuilds_the_legs_from_the_log() -> None:
    # as the risk manager rebuilds: its decisions, then the fills in time order, then the
    # ends of orders
    desk = bracketed_long(max_position=10)
    again = RiskEngine(RiskConfig(global_limits=RiskLimits(max_position=10)))
    for e, ts in desk.record:
        if isinstance(e, SignalValidated | SignalRejected):
            again.replay_decision(e, ts)
    for e, _ in sorted(((e, ts) for e, ts in desk.record if isinstance(e, OrderFilled)),
                       key=lambda x: x[0].ts):
        again.on_fill(e)
    for e, _ in desk.record:
        if isinstance(e, OrderCancelled):
            again.on_order_cancelled(e)
    reversal = Signal(strategy_id="s1", instrument_token=TOKEN, side=Side.SELL, quantity=20,
                      product=Product.MIS, price_hint=100_00, order_type=OrderType.LIMIT,
                      limit_price=101_00)
    assert isinstance(again.check("late", reversal, desk.ts), SignalRejected)
    assert isinstance(desk.risk.check("late", reversal, desk.ts), SignalRejected)


def test_the_same_reversal_within_the_limit_counting_the_legs_passes() -> None:
    desk = bracketed_long(max_position=20)
    assert desk.send(Side.SELL, 20, order_type=OrderType.LIMIT,
                     limit_price=101_00) == "ok"
    for price in (97_00, 101_00):
        desk.tick(price)
    assert desk.position == -20  # what was judged the worst case, and no more


def test_exits_beside_the_legs_are_not_counted_twice() -> None:
    # The venue cuts the legs when an exit fills and the exits when a leg fills: with the
    # position at the limit, an exit of all of it passes, and so does a sell of 1 more
    # beside a resting exit (at worst: the exit or a leg closes the 10, the 1 then sells).
    desk = bracketed_long(max_position=10)
    assert desk.send(Side.SELL, 10, order_type=OrderType.LIMIT, limit_price=103_00,
                     reduce_only=True) == "ok"
    assert desk.send(Side.SELL, 1, order_type=OrderType.LIMIT,
                     limit_price=103_00) == "ok"
    assert desk.send(Side.SELL, 10, order_type=OrderType.LIMIT,
                     limit_price=103_00) == "MAX_POSITION"  # (-1 and -10 are -11)
    for price in (97_00, 103_00):
        desk.tick(price)
    assert desk.position == -1 and desk.worst == 10


def test_without_brackets_or_once_flat_the_legs_count_no_more() -> None:
    desk = Desk(max_position=10)
    desk.tick(100_00)
    assert desk.send(Side.BUY, 10) == "ok"
    desk.tick(100_00)
    # no legs: the worst case of a sell of 20 is short 10, as before
    assert desk.send(Side.SELL, 20, order_type=OrderType.LIMIT,
                     limit_price=101_00) == "ok"
    desk = bracketed_long(max_position=10)
    desk.tick(97_00)  # the stop sells the 10, the target is cancelled
    assert desk.position == 0 and desk.exchange.open_orders() == []
    assert desk.send(Side.SELL, 10, order_type=OrderType.LIMIT,
                     limit_price=98_00) == "ok"


def test_a_short_with_its_legs_is_judged_on_the_buy_side_alike() -> None:
    desk = Desk(max_position=10)
    desk.tick(100_00)
    assert desk.send(Side.SELL, 10, take_profit=95_00, stop_loss=102_00) == "ok"
    desk.tick(100_00)
    assert desk.position == -10
    assert desk.send(Side.BUY, 20, order_type=OrderType.LIMIT,
                     limit_price=99_00) == "MAX_POSITION"
    assert desk.send(Side.BUY, 10, order_type=OrderType.LIMIT,
                     limit_price=99_00, reduce_only=True) == "ok"


def test_max_position_holds_whatever_the_order_of_fills() -> None:
    # Random bracket entries, reversals and exits, limit and market, on a random walk:
    # the filled position never goes past the limit.
    for seed in range(60):
        rng = random.Random(seed)
        desk = Desk(max_position=10)
        price = 100_00
        desk.tick(price)
        for _ in range(80):
            price = max(90_00, min(110_00, price + rng.choice((-100, -50, 0, 50, 100))))
            roll = rng.random()
            side = rng.choice((Side.BUY, Side.SELL))
            qty = rng.randint(1, 20)
            kw: dict[str, Any] = {}
            if roll < 0.3:
                kw = {"take_profit": price + side.sign * 300, "stop_loss": price - side.sign * 200}
            elif roll < 0.7:
                kw = {"order_type": OrderType.LIMIT, "limit_price": price - side.sign * 100}
            if rng.random() < 0.3 and desk.position and (desk.position > 0) != (side is Side.BUY):
                kw["reduce_only"] = True
                qty = min(qty, abs(desk.position))
            desk.send(side, qty, **kw)
            desk.tick(price)
        assert desk.worst <= 10, seed


def test_legs_cut_by_a_reversal_count_no_more_on_the_way_back() -> None:
    # Long 10 with legs; a market sell of 20 reverses (the exchange cuts the legs), a
    # market buy of 20 reverses again, with no bracket: nothing rests to sell the long.
    # A limit sell of 25 then reaches short 15, within the limit of 20 (counting legs
    # there: short 25).
    desk = bracketed_long(max_position=20)
    assert desk.send(Side.SELL, 20) == "ok"
    desk.tick(100_00)
    assert desk.position == -10 and desk.exchange.open_orders() == []
    assert desk.send(Side.BUY, 20) == "ok"
    desk.tick(100_00)
    assert desk.position == 10
    assert desk.send(Side.SELL, 25, order_type=OrderType.LIMIT, limit_price=101_00) == "ok"


def test_legs_count_per_product_when_the_instrument_nets_to_flat() -> None:
    # Delivery held long 10, and an intraday short of 10 with its stop and target: the
    # instrument nets to 0, but the short's legs may buy 10. A limit buy of 10 beside them
    # could then fill too: long 20 in all, against a limit of 10.
    desk = Desk(max_position=10)
    desk.tick(100_00)
    assert desk.send(Side.BUY, 10, product=Product.CNC) == "ok"
    desk.tick(100_00)
    assert desk.send(Side.SELL, 10, take_profit=95_00, stop_loss=102_00) == "ok"
    desk.tick(100_00)
    assert desk.position == 0
    assert desk.send(Side.BUY, 10, order_type=OrderType.LIMIT,
                     limit_price=99_00) == "MAX_POSITION"
    assert "could reach 20" in desk.reason
