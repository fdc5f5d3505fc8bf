"""The risk engine books its P&L ledger lazily: what it reports equals booking each event at once."""

from __future__ import annotations

import random
from datetime import date, time

from alpha_panda.domain.events import MarketTick, OrderFilled, Signal, derive_id
from alpha_panda.domain.values import Side
from alpha_panda.execution.market import ist_ns
from alpha_panda.portfolio.ledger import PositionLedger
from alpha_panda.risk import RiskEngine

T0 = ist_ns(date(2026, 11, 23), time(10, 0))
TOKENS = (101, 202, 303)  # 303 never ticks: its positions are marked by fill prices only


def _assert_same(risk: RiskEngine, eager: PositionLedger, last: dict[int, int], ts: int) -> None:
    for sid in (None, "a", "b"):
        snap = eager.snapshot(sid)
        assert risk.net_pnl(sid) == snap.realized + snap.unrealized - snap.charges
    for sid in ("a", "b"):
        for tok in TOKENS:
            assert risk.position(sid, tok) == eager.position(sid, tok).quantity
    flat = sorted((s.strategy_id, s.instrument_token, s.side, s.quantity, s.price_hint)
                  for s in risk.flatten_signals(ts))
    assert flat == sorted((p.strategy_id, p.instrument_token,
                           Side.BUY if p.quantity < 0 else Side.SELL, abs(p.quantity),
                           last.get(p.instrument_token, p.mark_price))
                          for p in eager.positions(open_only=True))


def test_lazy_booking_reports_what_booking_each_event_at_once_would() -> None:
    rng = random.Random(7)
    risk = RiskEngine(broker="paper")
    eager = PositionLedger(0, keep_cash=False)  # the engine's former rule, event by event
    last: dict[int, int] = {}
    fills: list[OrderFilled] = []
    for n in range(600):
        ts = T0 + n * 1_000_000
        token = rng.choice(TOKENS)
        price = 100_00 + 5 * rng.randint(-40, 40)
        roll = rng.random()
        if roll < 0.45 and token != 303:
            risk.on_tick(MarketTick(instrument_token=token, last_price=price, ts=ts))
            last[token] = price
            eager.mark(token, price)
        else:
            if roll < 0.55 and fills:  # redelivered: not booked twice, its mark still counts
                fill = rng.choice(fills)
            else:
                sid = rng.choice(("a", "b"))
                side = rng.choice((Side.BUY, Side.SELL))
                qty = rng.randint(1, 5)
                signal_id = derive_id("t", "s", n)
                risk.check(signal_id, Signal(strategy_id=sid, instrument_token=token, side=side,
                                             quantity=qty, price_hint=price), ts)
                order_id = derive_id(signal_id, "order")
                fill = OrderFilled(
                    order_id=order_id, fill_id=derive_id(order_id, "fill", 0), strategy_id=sid,
                    instrument_token=token, side=side, quantity=qty, price=price,
                    cumulative_quantity=qty, leaves_quantity=0, average_price=price, ts=ts)
                fills.append(fill)
            risk.on_fill(fill)
            eager.apply_fill(fill)
            eager.mark(fill.instrument_token, last.get(fill.instrument_token, fill.price))
        if rng.random() < 0.15 or n == 599:  # reads now and then, and at the end
            _assert_same(risk, eager, last, ts)
