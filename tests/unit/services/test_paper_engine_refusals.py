"""The paper engine refuses what the risk manager validated after the kill switch (or the
trader's halt of its strategy), before it had read it, as the zerodha engine does: placed, a
buy at the tick after the switch filled after the switch's flatten and stayed open under it.
A rebuild, which reads the control topic before the signals, follows what the engine did."""

from __future__ import annotations

from typing import Any

from alpha_panda.adapters.memory_log import MemoryLog
from alpha_panda.domain.events import (
    KillSwitchSet,
    OrderFilled,
    OrderRejected,
    Payload,
    Signal,
    SignalValidated,
    StrategyHalted,
    new_envelope,
)
from alpha_panda.domain.values import Product, Side
from alpha_panda.execution.routing import PaperVenue
from alpha_panda.services.paper_engine import PaperEngineHandler
from alpha_panda.stream.emit import Emit, to_output
from alpha_panda.stream.log import Record
from alpha_panda.stream.topics import REGISTRY
from tests.unit.execution.test_paper import T0, TOKEN, tick

MS = 1_000_000
SWITCH = T0 + 10 * MS


def engine() -> PaperEngineHandler:
    h = PaperEngineHandler(PaperVenue({}, seed=7))
    for k in range(1, 13):  # ticks up to 12 ms
        h.handle(_env(tick(T0 + k * MS, 1000_00), T0 + k * MS), _rec("market.ticks"))
    return h


def _env(data: Any, ts: int, key: str = "k") -> Any:
    return new_envelope(data, id=f"e-{ts}-{type(data).__name__}-{key}", ts=ts, source="test",
                        key=key, broker="paper")


def _rec(topic: str) -> Record:
    return Record(topic, 0, 0, b"k", b"")


def buy(signal_id: str, ts: int, *, strategy: str = "s1", flatten: bool = False) -> Any:
    s = Signal(strategy_id=strategy, instrument_token=TOKEN, side=Side.BUY, quantity=5,
               product=Product.MIS, price_hint=1000_00)
    return _env(SignalValidated(signal=s, signal_id=signal_id, flatten=flatten), ts, signal_id)


def switch(active: bool, market_ts: int | None) -> Any:
    return _env(KillSwitchSet(active=active, flatten=active, market_ts=market_ts),
                market_ts or T0, "kill_switch")


def payloads(h: PaperEngineHandler, event: Any, topic: str) -> list[Payload]:
    return [e.envelope.data for e in h.handle(event, _rec(topic))]


def kinds(out: list[Payload]) -> list[tuple[str, str | None]]:
    return [(type(p).__name__, getattr(p, "reason_code", None)) for p in out]


def test_a_signal_validated_after_the_switch_is_refused_and_its_flatten_goes_in() -> None:
    h = engine()
    assert payloads(h, switch(True, SWITCH), "paper.control") == []
    # validated at 12 ms (the risk manager had not read the switch of 10 ms yet)
    out = payloads(h, buy("late", T0 + 12 * MS), "paper.signals.validated")
    assert kinds(out) == [("OrderRejected", "KILL_SWITCH")]
    assert isinstance(out[0], OrderRejected) and out[0].quantity == 5 and out[0].ts == T0 + 12 * MS
    # the risk manager's flatten orders, placed after the switch, go in
    assert kinds(payloads(h, buy("flat", T0 + 12 * MS, flatten=True),
                          "paper.signals.validated")) == [("OrderSubmitted", None),
                                                           ("OrderFilled", None)]
    # one from before the switch's market time is placed: the switch stops it as of then
    assert kinds(payloads(h, buy("early", T0 + 9 * MS), "paper.signals.validated"))[0] == (
        "OrderSubmitted", None)
    # released: signals go in again
    payloads(h, switch(False, T0 + 12 * MS), "paper.control")
    assert kinds(payloads(h, buy("after", T0 + 12 * MS), "paper.signals.validated")) == [
        ("OrderSubmitted", None), ("OrderFilled", None)]


def test_the_traders_halt_refuses_its_strategy_only_and_a_daily_loss_stop_lapses() -> None:
    h = engine()
    halt = StrategyHalted(strategy_id="s1", requested_by="api", market_ts=SWITCH)
    payloads(h, _env(halt, SWITCH, "s1"), "paper.control")
    assert kinds(payloads(h, buy("mine", T0 + 11 * MS), "paper.signals.validated")) == [
        ("OrderRejected", "STRATEGY_HALTED")]
    assert kinds(payloads(h, buy("theirs", T0 + 11 * MS, strategy="s2"),
                          "paper.signals.validated"))[0] == ("OrderSubmitted", None)
    # a stop that lapses at 11.5 ms by itself (the next day's start, for a daily-loss stop)
    stop = StrategyHalted(strategy_id="s3", requested_by="risk:daily_loss", market_ts=SWITCH,
                          until=T0 + 11 * MS + MS // 2)
    payloads(h, _env(stop, SWITCH, "s3"), "paper.control")
    assert kinds(payloads(h, buy("in", T0 + 11 * MS, strategy="s3"),
                          "paper.signals.validated")) == [("OrderRejected", "STRATEGY_HALTED")]
    assert kinds(payloads(h, buy("out", T0 + 12 * MS, strategy="s3"),
                          "paper.signals.validated"))[0] == ("OrderSubmitted", None)
    # the runner's halt (the strategy raised) stops its signals at the runner
    raised = StrategyHalted(strategy_id="s4", error="ZeroDivisionError")
    payloads(h, _env(raised, SWITCH, "s4"), "paper.control")
    assert kinds(payloads(h, buy("s4", T0 + 11 * MS, strategy="s4"),
                          "paper.signals.validated"))[0] == ("OrderSubmitted", None)


async def test_a_rebuild_refuses_what_the_live_engine_refused_and_nothing_else() -> None:
    # Live: the switch (10 ms) is read, its release (11 ms) not yet when a signal of 12 ms
    # comes: refused, on the safe side. The rebuild reads the release before the signal;
    # by the record it refuses it too, and places the one the live engine placed.
    live = engine()
    payloads(live, switch(True, SWITCH), "paper.control")
    recorded = live.handle(buy("refused", T0 + 12 * MS), _rec("paper.signals.validated"))
    payloads(live, switch(False, T0 + 11 * MS), "paper.control")
    recorded += live.handle(buy("placed", T0 + 12 * MS), _rec("paper.signals.validated"))
    assert [(type(e.envelope.data).__name__) for e in recorded] == [
        "OrderRejected", "OrderSubmitted", "OrderFilled"]

    log = MemoryLog()
    await log.start()
    await log.ensure_topics(REGISTRY.all())
    await log.append([to_output(Emit(e.topic, e.envelope)) for e in recorded])
    rebuilt = engine()
    await rebuilt.before_rebuild(log)
    payloads(rebuilt, switch(True, SWITCH), "paper.control")
    payloads(rebuilt, switch(False, T0 + 11 * MS), "paper.control")
    replayed = payloads(rebuilt, buy("refused", T0 + 12 * MS), "paper.signals.validated")
    replayed += payloads(rebuilt, buy("placed", T0 + 12 * MS), "paper.signals.validated")
    rebuilt.after_rebuild()
    assert kinds(replayed) == [("OrderRejected", "KILL_SWITCH"), ("OrderSubmitted", None),
                               ("OrderFilled", None)]
    fills = [p for p in replayed if isinstance(p, OrderFilled)]
    assert [f.quantity for f in fills] == [5]
    # live again: the switch is off, signals go in
    assert kinds(payloads(rebuilt, buy("next", T0 + 12 * MS), "paper.signals.validated"))[0] == (
        "OrderSubmitted", None)
    await log.close()


def test_a_second_switch_or_halt_while_one_stands_refuses_from_the_first() -> None:
    # `kill` at 10 ms, then `kill --flatten` at 12 ms: a buy the risk manager validated at
    # 11 ms, before it read either, was placed (judged by the second switch's time only)
    # and filled while the switch stood since 10 ms, after the flatten was computed.
    h = engine()
    payloads(h, switch(True, SWITCH), "paper.control")
    payloads(h, switch(True, T0 + 12 * MS), "paper.control")
    assert kinds(payloads(h, buy("late", T0 + 11 * MS), "paper.signals.validated")) == [
        ("OrderRejected", "KILL_SWITCH")]
    # the trader's halt likewise; one that lapsed (a daily-loss stop's `until`) before the
    # next does not stand then
    halt = StrategyHalted(strategy_id="s1", requested_by="api", market_ts=SWITCH)
    again = StrategyHalted(strategy_id="s1", requested_by="api", market_ts=T0 + 12 * MS)
    h = engine()
    payloads(h, _env(halt, SWITCH, "h1"), "paper.control")
    payloads(h, _env(again, T0 + 12 * MS, "h2"), "paper.control")
    assert kinds(payloads(h, buy("late", T0 + 11 * MS), "paper.signals.validated")) == [
        ("OrderRejected", "STRATEGY_HALTED")]
    lapsed = StrategyHalted(strategy_id="s1", requested_by="risk", market_ts=T0 + 2 * MS,
                            until=T0 + 5 * MS)
    h = engine()
    payloads(h, _env(lapsed, T0 + 2 * MS, "h1"), "paper.control")
    payloads(h, _env(again, T0 + 12 * MS, "h2"), "paper.control")
    assert kinds(payloads(h, buy("between", T0 + 7 * MS), "paper.signals.validated"))[0] == (
        "OrderSubmitted", None)
