"""While a kill switch or halt with flatten stands, what an order leaves open is flattened in
turn: a market order in flight when the switch was set cannot be cancelled, and fills."""

from __future__ import annotations

from typing import Any

from alpha_panda.domain.events import (
    Envelope,
    KillSwitchSet,
    OrderFilled,
    OrderRejected,
    Payload,
    Signal,
    StrategyHalted,
    derive_id,
    new_envelope,
)
from alpha_panda.domain.values import OrderType, Side
from alpha_panda.execution.orders import order_id_for
from alpha_panda.risk import RiskConfig, RiskEngine
from alpha_panda.services.risk_manager import SOURCE, RiskHandler
from alpha_panda.stream.emit import Emit
from alpha_panda.stream.log import Record

REC = Record("t", 0, 0, None, b"")


def env(data: Payload, id: str, ts: int, source: str = "t") -> Envelope[Any]:
    return new_envelope(data, id=id, ts=ts, source=source, key="k", broker="paper")


def fill(order_id: str, side: Side, qty: int, ts: int, strategy: str = "a") -> Envelope[Any]:
    data = OrderFilled(order_id=order_id, fill_id=f"{order_id}:f", strategy_id=strategy,
                       instrument_token=7, side=side, quantity=qty, price=100_00,
                       cumulative_quantity=qty, leaves_quantity=0, average_price=100_00, ts=ts)
    return env(data, f"fill:{order_id}", ts)


def decide(risk: RiskHandler, raw: Emit) -> str:
    """The risk manager's decision on one of its own flatten orders (read back from
    ``signals.raw``): the topic it went to."""
    (out,) = risk.handle(raw.envelope, REC)
    return out.topic


def orders(emits: Any) -> list[tuple[str, Side, int, str]]:
    return [(e.topic, e.envelope.data.side, e.envelope.data.quantity, e.envelope.data.reason)
            for e in emits]


def test_a_market_order_in_flight_at_the_kill_is_flattened_after_it_fills() -> None:
    # Long 1; the strategy's market sell of it is on its way (placed: it cannot be
    # cancelled) when the trader sets the kill switch with flatten, whose sell takes the
    # filled 1. Both fill: short 1, which was left so (seen on the fake Kite: INFY -1).
    risk = RiskHandler("paper", RiskEngine(RiskConfig(), broker="paper"))
    risk.handle(fill("o0", Side.BUY, 1, 1), REC)
    exit_ = Signal(strategy_id="a", instrument_token=7, side=Side.SELL, quantity=1,
                   price_hint=100_00)
    (validated,) = risk.handle(env(exit_, "s1", 2, "strategy-runner"), REC)
    assert validated.topic == "paper.signals.validated"
    kill = env(KillSwitchSet(active=True, flatten=True), "kill", 3, "api")
    (flatten,) = risk.handle(kill, REC)
    assert orders([flatten]) == [("paper.signals.raw", Side.SELL, 1, "flatten:kill_switch")]
    assert decide(risk, flatten) == "paper.signals.validated"
    # the strategy's sell fills: flat, the flatten's sell still on its way: nothing more
    assert list(risk.handle(fill(order_id_for("s1"), Side.SELL, 1, 4), REC)) == []
    # the flatten's sell fills too: short 1, bought back
    follow = risk.handle(fill(order_id_for(flatten.envelope.id), Side.SELL, 1, 5), REC)
    assert orders(follow) == [("paper.signals.raw", Side.BUY, 1, "flatten:kill_switch")]
    (back,) = follow
    assert back.envelope.source == SOURCE
    assert back.envelope.id == derive_id("fill:" + order_id_for(flatten.envelope.id),
                                         "flatten", 0)
    assert decide(risk, back) == "paper.signals.validated"
    assert list(risk.handle(fill(order_id_for(back.envelope.id), Side.BUY, 1, 6), REC)) == []
    assert risk.engine.position("a", 7) == 0
    # the switch off (or on without flatten): a fill is the strategy's business again
    risk.handle(env(KillSwitchSet(active=False), "off", 7, "api"), REC)
    risk.handle(env(KillSwitchSet(active=True), "on", 8, "api"), REC)
    assert list(risk.handle(fill("o9", Side.BUY, 2, 9), REC)) == []


def test_a_halted_strategys_fill_in_flight_is_flattened_and_a_refused_flatten_not_resent() -> None:
    # Long 2 and a resting buy of 3 that fills in part (1) as the strategy is halted
    # with flatten, before the engine's cancel of it lands: the halt's flatten sold the 2
    # filled, and the 1 is flattened after its fill. Another strategy's fill is its own.
    risk = RiskHandler("paper", RiskEngine(RiskConfig(), broker="paper"))
    risk.handle(fill("o0", Side.BUY, 2, 1), REC)
    entry = Signal(strategy_id="a", instrument_token=7, side=Side.BUY, quantity=3,
                   order_type=OrderType.LIMIT, limit_price=99_00)
    risk.handle(env(entry, "s1", 2, "strategy-runner"), REC)
    halt = env(StrategyHalted(strategy_id="a", error="", flatten=True, requested_by="api"),
               "halt", 3, "api")
    (flatten,) = risk.handle(halt, REC)
    assert orders([flatten]) == [("paper.signals.raw", Side.SELL, 2, "flatten:halted")]
    assert decide(risk, flatten) == "paper.signals.validated"
    assert list(risk.handle(fill("p0", Side.BUY, 2, 4, strategy="b"), REC)) == []
    part = OrderFilled(order_id=order_id_for("s1"), fill_id="s1:f", strategy_id="a",
                       instrument_token=7, side=Side.BUY, quantity=1, price=99_00,
                       cumulative_quantity=1, leaves_quantity=2, average_price=99_00, ts=5)
    follow = risk.handle(env(part, "fill:s1", 5), REC)
    assert orders(follow) == [("paper.signals.raw", Side.SELL, 1, "flatten:halted")]
    assert decide(risk, follow[0]) == "paper.signals.validated"
    # the venue refuses the halt's flatten: it is not sent again (no loop of refusals)
    refused = OrderRejected(order_id=order_id_for(flatten.envelope.id), strategy_id="a",
                            instrument_token=7, side=Side.SELL, quantity=2,
                            reason_code="RMS", message="venue refused")
    assert list(risk.handle(env(refused, "rej", 6), REC)) == []
    # put back in service: its fills are its own again
    back = env(StrategyHalted(strategy_id="a", error="", active=False, requested_by="api"),
               "unhalt", 7, "api")
    risk.handle(back, REC)
    assert list(risk.handle(fill("o9", Side.BUY, 1, 8), REC)) == []


def test_a_follow_up_flatten_is_dated_at_its_fill_when_the_ticks_have_gone_quiet() -> None:
    # The feed went quiet (Kite's ticker down) and the trader killed with flatten; a fill
    # came seven minutes later. Its flatten was dated at the last tick's time: older than
    # the zerodha engine places (STALE_SIGNAL, as the switch was asked over five minutes
    # before), and a refused flatten is not sent again, so the position stayed open.
    from alpha_panda.domain.events import MarketTick

    minute = 60 * 10**9
    risk = RiskHandler("paper", RiskEngine(RiskConfig(), broker="paper"))
    risk.handle(env(MarketTick(instrument_token=7, last_price=100_00, ts=minute), "t0", minute),
                REC)
    risk.handle(fill("o0", Side.BUY, 1, minute), REC)
    kill = env(KillSwitchSet(active=True, flatten=True, market_ts=minute), "kill", minute, "api")
    (flatten,) = risk.handle(kill, REC)
    assert decide(risk, flatten) == "paper.signals.validated"
    late = 8 * minute
    (follow,) = risk.handle(fill("o1", Side.BUY, 2, late), REC)
    assert orders([follow]) == [("paper.signals.raw", Side.SELL, 2, "flatten:kill_switch")]
    assert follow.envelope.ts == late
