"""Property tests of the matching engine: invariants that hold for any ticks and orders."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import date, time
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from alpha_panda.domain.events import (
    Depth,
    DepthLevel,
    MarketTick,
    OrderCancelled,
    OrderFilled,
    OrderRejected,
    OrderSubmitted,
    Payload,
    Signal,
)
from alpha_panda.domain.values import OrderType, Product, Side, Validity
from alpha_panda.execution.costs import CostModel, Segment
from alpha_panda.execution.market import ist_ns
from alpha_panda.execution.paper import ExecutionConfig, PaperExchange
from tests.unit.execution.cnc_books import cnc_books, expected_cnc_books

TOKEN = 738561
T0 = ist_ns(date(2026, 11, 23), time(14, 50))
MS = 1_000_000
COSTS = CostModel.load()


def _events(seed: int, latency: int, participation: Decimal | None) -> tuple[list[Payload], dict[str, Signal]]:
    rng = random.Random(seed)
    x = PaperExchange(ExecutionConfig(latency_ms=latency, volume_participation=participation,
                                      slippage_bps=rng.choice((0, 3)),
                                      slippage_model=rng.choice(("fixed", "depth"))), seed=seed)
    out: list[Payload] = []
    signals: dict[str, Signal] = {}
    price = 500_00
    for i in range(400):  # 14:50 to past 15:30: square-off and expiry are crossed too
        ts = T0 + i * 7_000 * MS
        price = max(100_00, price + rng.choice((-15, -5, 0, 5, 15)))
        depth = None
        if rng.random() < 0.5:
            depth = Depth(buy=tuple(DepthLevel(price - 5 * k, rng.randint(1, 9)) for k in range(1, 4)),
                          sell=tuple(DepthLevel(price + 5 * k, rng.randint(1, 9)) for k in range(1, 4)))
        out += x.on_tick(MarketTick(instrument_token=TOKEN, last_price=price, ts=ts,
                                    last_quantity=rng.randint(0, 30), depth=depth))
        if rng.random() < 0.2:
            kind = rng.choice(list(OrderType))
            side = rng.choice(list(Side))
            off = rng.choice((5, 10, 25))
            kw: dict[str, Any] = {"order_type": kind, "price_hint": price,
                                  "product": rng.choice((Product.CNC, Product.MIS)),
                                  "validity": rng.choice((Validity.DAY, Validity.DAY, Validity.IOC))}
            if kind is OrderType.LIMIT:
                kw["limit_price"] = price - side.sign * off
            if kind in (OrderType.SL, OrderType.SL_M):
                kw["trigger_price"] = price + side.sign * off
            if kind is OrderType.SL:
                kw["limit_price"] = price + side.sign * 2 * off
            if kind is OrderType.MARKET and rng.random() < 0.3:
                kw.update(take_profit=price + side.sign * 40, stop_loss=price - side.sign * 40)
            s = Signal(strategy_id="s", instrument_token=TOKEN, side=side,
                       quantity=rng.randint(1, 40), **kw)
            signals[f"sig-{i}"] = s
            out += x.submit(f"sig-{i}", s, ts)
    return out, signals


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from((0, 5, 9_000)),
       st.sampled_from((None, Decimal("0.3"), Decimal(1))))
def test_matching_invariants(seed: int, latency: int, participation: Decimal | None) -> None:
    events, _ = _events(seed, latency, participation)
    submitted: dict[str, OrderSubmitted] = {}
    filled: dict[str, int] = defaultdict(int)
    turnover: dict[str, int] = defaultdict(int)
    charges: dict[str, int] = defaultdict(int)
    closed: dict[str, str] = {}
    for e in events:
        if isinstance(e, OrderSubmitted):
            assert e.order_id not in submitted
            submitted[e.order_id] = e
        elif isinstance(e, OrderFilled):
            o = submitted[e.order_id]
            assert e.order_id not in closed, "a fill after the order closed"
            assert e.ts >= o.ts
            assert e.price % 5 == 0 and e.price > 0, "fills are on the tick grid"
            if o.order_type in (OrderType.LIMIT, OrderType.SL):
                assert o.limit_price is not None
                assert o.side.sign * (o.limit_price - e.price) >= 0, "limit or better"
            filled[e.order_id] += e.quantity
            turnover[e.order_id] += e.quantity * e.price
            charges[e.order_id] += e.charges.total
            assert e.cumulative_quantity == filled[e.order_id]
            assert e.leaves_quantity == o.quantity - filled[e.order_id] >= 0
            assert e.average_price * e.cumulative_quantity - turnover[e.order_id] <= e.cumulative_quantity
            if e.leaves_quantity == 0:
                closed[e.order_id] = "filled"
        elif isinstance(e, OrderCancelled):
            assert e.order_id not in closed
            assert e.filled_quantity == filled[e.order_id]
            closed[e.order_id] = e.reason
        elif isinstance(e, OrderRejected):
            assert e.order_id not in closed
            closed[e.order_id] = "rejected"
    for order_id, o in submitted.items():
        if o.product is Product.MIS:
            assert order_id in closed, "no MIS order survives the square-off"
        if order_id in turnover and o.product is Product.MIS:
            segment = Segment.for_product(o.product)
            # the order's charges, and Zerodha's ₹59 on each order it squares off with
            fee = COSTS.auto_squareoff_charge(segment, o.quantity) if o.origin == "squareoff" else 0
            assert charges[order_id] == COSTS.order_charges(
                segment, o.side, turnover[order_id]).total + fee
    # CNC fills are charged per day book: an order's intraday part at intraday rates, the
    # rest at delivery rates, DP when the day sold more than it bought.
    assert cnc_books(events) == expected_cnc_books(events, COSTS)
    # MIS positions are flat after the cut-off
    net = sum(e.side.sign * e.quantity for e in events
              if isinstance(e, OrderFilled) and e.product is Product.MIS)
    assert net == 0
