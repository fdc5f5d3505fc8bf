"""Properties of the risk engine wired to the real paper exchange, over random sequences of
signals (two strategies, two instruments, delivery and intraday, market and limit), the
trader's cancels, ticks, and nights and weekends between them: ``max_position`` holds on
every fill, what the engine counts pending is what rests at the venue, and an engine
rebuilt from the record (as the risk manager rebuilds: its decisions and the fills in event
time, the ticks, then the ends of orders) decides every further signal as the live one."""

from __future__ import annotations

import random
from datetime import time, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from alpha_panda.domain.clock import ist_date, ist_ns
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
from tests.unit.risk.test_bracket_legs import T0

TOKENS = (738561, 341249)
STRATEGIES = ("s1", "s2")
S = 10**9
LIMITS = RiskLimits(max_position=25, max_gross_exposure=4000_00,
                    account_max_gross_exposure=6000_00, daily_loss=30_00,
                    account_daily_loss=50_00, max_open_orders=4)


class Session:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.config = RiskConfig(global_limits=LIMITS)
        self.risk = RiskEngine(self.config)
        self.exchange = PaperExchange(ExecutionConfig(costs=False), seed=seed)
        self.ts = T0
        self.last = dict.fromkeys(TOKENS, 100_00)
        self.filled: dict[tuple[str, int], int] = {}
        self.record: list[tuple[Any, int]] = []
        self.worst = 0
        self.n = 0

    def apply(self, events: list[Payload]) -> None:
        for e in events:
            self.record.append((e, self.ts))
            if isinstance(e, OrderFilled):
                self.risk.on_fill(e)
                key = (e.strategy_id, e.instrument_token)
                self.filled[key] = self.filled.get(key, 0) + e.side.sign * e.quantity
                self.worst = max(self.worst, abs(self.filled[key]))
            elif isinstance(e, OrderCancelled):
                self.risk.on_order_cancelled(e)
            elif isinstance(e, OrderRejected):
                self.risk.on_order_rejected(e)

    def tick(self, token: int) -> None:
        self.ts += S
        price = self.last[token] + self.rng.choice((-100, -50, 0, 50, 100))
        self.last[token] = max(90_00, min(110_00, price))
        tick = MarketTick(instrument_token=token, last_price=self.last[token], ts=self.ts)
        self.risk.on_tick(tick)
        self.record.append((tick, self.ts))
        self.apply(self.exchange.on_tick(tick))

    def signal(self) -> None:
        rng = self.rng
        self.n += 1
        token, side = rng.choice(TOKENS), rng.choice((Side.BUY, Side.SELL))
        kw: dict[str, Any] = {"product": rng.choice((Product.MIS, Product.CNC))}
        if rng.random() < 0.5:
            kw.update(order_type=OrderType.LIMIT,
                      limit_price=self.last[token] - side.sign * rng.choice((0, 50, 100)))
        s = Signal(strategy_id=rng.choice(STRATEGIES), instrument_token=token, side=side,
                   quantity=rng.randint(1, 15), price_hint=self.last[token], **kw)
        decision = self.risk.check(f"sig{self.n}", s, self.ts)
        self.record.append((decision, self.ts))
        if isinstance(decision, SignalValidated):
            self.apply(self.exchange.submit(f"sig{self.n}", decision.signal, self.ts))

    def step(self) -> None:
        roll = self.rng.random()
        if roll < 0.45:
            self.signal()
        elif roll < 0.55:
            orders = self.exchange.open_orders()
            if orders:
                self.apply(self.exchange.cancel(self.rng.choice(orders).order_id, self.ts))
        elif roll < 0.58:  # to the next morning, or over a weekend: the market ticks
            # through the cut-off (the square-off) and after the close (DAY orders expire)
            day = ist_date(self.ts)
            for at in (time(15, 25), time(15, 35)):
                if self.ts < ist_ns(day, at):
                    self.ts = ist_ns(day, at)
                    for token in TOKENS:
                        self.tick(token)
            self.ts = ist_ns(day + timedelta(days=self.rng.choice((1, 3))), time(10))
        else:
            self.tick(self.rng.choice(TOKENS))

    def rebuilt(self) -> RiskEngine:
        again = RiskEngine(self.config)
        for e, ts in sorted(((e, ts) for e, ts in self.record
                             if isinstance(e, SignalValidated | SignalRejected)),
                            key=lambda x: x[1]):
            again.replay_decision(e, ts)
        for e in sorted((e for e, _ in self.record if isinstance(e, OrderFilled)),
                        key=lambda f: f.ts):
            again.on_fill(e)
        for e, _ in self.record:
            if isinstance(e, MarketTick):
                again.on_tick(e)
        for e, _ in self.record:
            if isinstance(e, OrderCancelled):
                again.on_order_cancelled(e)
            elif isinstance(e, OrderRejected):
                again.on_order_rejected(e)
        return again


def reason(decision: SignalValidated | SignalRejected) -> str:
    return decision.reason_code if isinstance(decision, SignalRejected) else "OK"


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32))
def test_the_limits_hold_and_a_rebuild_decides_as_the_live_engine(seed: int) -> None:
    session = Session(seed)
    for token in TOKENS:
        session.tick(token)
    for _ in range(150):
        session.step()
    for token in TOKENS:  # (the venue ends what expired at its instrument's next tick)
        session.tick(token)
    risk = session.risk
    assert session.worst <= 25
    for sid in STRATEGIES:
        for token in TOKENS:
            resting = sum(o.side.sign * o.leaves for o in session.exchange.open_orders()
                          if o.strategy_id == sid and o.instrument_token == token)
            assert risk.position(sid, token) == session.filled.get((sid, token), 0) + resting
        assert risk.open_orders(sid) == sum(
            1 for o in session.exchange.open_orders() if o.strategy_id == sid)
    again = session.rebuilt()
    for sid in STRATEGIES:
        assert again.day_pnl(sid) == risk.day_pnl(sid)
        for token in TOKENS:
            assert again.position(sid, token) == risk.position(sid, token)
            for side in (Side.BUY, Side.SELL):
                for qty in (1, 10):
                    probe = Signal(strategy_id=sid, instrument_token=token, side=side,
                                   quantity=qty, product=Product.MIS, price_hint=100_00)
                    probe_id = f"probe-{sid}-{token}-{side.value}-{qty}"
                    at = session.ts + 1
                    assert reason(again.check(probe_id, probe, at)) == reason(
                        risk.check(probe_id, probe, at))
