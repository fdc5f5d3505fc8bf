"""The strategy runner: ``market.ticks`` in, ``{broker}.signals.raw`` out for every broker a
strategy routes to.

Strategies are pure (``strategy/``); the runner core routes each tick in O(1) to the
strategies trading its instrument and isolates a strategy that raises. The same signal
(same id) goes to each of the strategy's brokers, which is paper/live shadow trading.
Feedback (rejections, cancellations, fills) comes from each broker's own topics through a
separate consumer group per broker, applied only to strategies whose primary broker it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from alpha_panda.domain.errors import ConfigurationError
from alpha_panda.domain.events import (
    CancelRequested,
    Envelope,
    MarketTick,
    OrderCancelled,
    OrderFilled,
    OrderRejected,
    OrderSubmitted,
    Signal,
    SignalRejected,
    StrategyHalted,
    derive_id,
    new_envelope,
)
from alpha_panda.risk.engine import ORDER_STAGES
from alpha_panda.strategy.runner import StrategyRunner, signal_ids
from alpha_panda.stream.emit import BatchFailure, Emit, Emitted
from alpha_panda.stream.log import Log, Record
from alpha_panda.stream.runtime import ProcessorSettings, StreamProcessor
from alpha_panda.stream.topics import MARKET_TICKS, strategy_instrument_key, topic

SOURCE = "strategy-runner"


class SignalFanout:
    """Ticks in, one ``signal_generated`` per signal per routed broker out."""

    def __init__(self, runner: StrategyRunner) -> None:
        self.runner = runner
        self.signals = 0
        self.ticks = 0

    def handle(self, event: Envelope[Any], record: Record) -> Sequence[Emit]:
        tick = event.data
        if not isinstance(tick, MarketTick):
            return ()
        self.ticks += 1
        signals = self.runner.process(tick)
        if signals is None and not self.runner.halted:
            return ()
        return self._outputs(event, signals)

    def _outputs(self, event: Envelope[Any], signals: list[Signal] | None) -> list[Emit]:
        """What one tick's strategies asked for: signals, cancels, halts."""
        emits = self._emits(event, signals) if signals else []
        if self.runner.cancels:
            emits += self._cancels(event)
        if self.runner.halted:
            emits += self._halts(event)
        return emits

    def handle_batch(self, events: Sequence[Envelope[Any]],
                     records: Sequence[Record]) -> list[Emitted]:
        """``handle`` over a run of ticks, in one tight loop (most ticks give no signal)."""
        out: list[Emitted] = []
        process = self.runner.process  # None when no signal: no empty list per tick
        i = 0
        try:
            for i, event in enumerate(events):
                tick = event.data
                if type(tick) is not MarketTick:
                    emits = self.handle(event, records[i])
                    if emits:
                        out.append((i, emits))
                    continue
                self.ticks += 1
                signals = process(tick)
                if signals is not None or self.runner.halted:
                    emits = self._outputs(event, signals)
                    if emits:
                        out.append((i, emits))
        except Exception as exc:
            raise BatchFailure(i, out, exc) from exc
        return out

    def _cancels(self, event: Envelope[Any]) -> list[Emit]:
        """A ``CancelRequested`` (reason ``strategy``) on the control topic of each broker
        of the strategy, for each order a strategy cancelled at this tick, as the market
        stood at the tick. The order is the strategy's first broker's; another broker's
        order of the same signal has that broker's id (bracket legs: the first's only)."""
        emits: list[Emit] = []
        counts: dict[str, int] = {}
        for sid, order in self.runner.take_cancels():
            n = counts.get(sid, 0)
            counts[sid] = n + 1
            eid = derive_id(event.id, f"cancel:{sid}", n)
            brokers = [str(b) for b in self.runner.config(sid).brokers]
            for k, broker in enumerate(brokers):
                if k == 0:
                    order_id = order.order_id
                elif order.parent_order_id is None:
                    order_id = derive_id(order.signal_id, ORDER_STAGES[broker][0])
                else:
                    continue
                request = CancelRequested(order_id=order_id, requested_by=f"strategy:{sid}",
                                          market_ts=event.ts, reason="strategy")
                env = new_envelope(request, id=eid, ts=event.ts, source=SOURCE, key=sid,
                                   broker=broker, parent=event)
                emits.append(Emit(topic(broker, "control"), env))
        return emits

    def _halts(self, event: Envelope[Any]) -> list[Emit]:
        """A ``StrategyHalted`` on the control topic of each broker of each strategy that
        failed at this tick: the engines cancel its open orders as of the tick's time."""
        emits: list[Emit] = []
        for sid, error in self.runner.take_halted():
            halted = StrategyHalted(strategy_id=sid, error=error[:500])
            for broker in self.runner.config(sid).brokers:
                env = new_envelope(halted, id=derive_id(event.id, f"halted:{sid}"), ts=event.ts,
                                   source=SOURCE, key=sid, broker=str(broker), parent=event)
                emits.append(Emit(topic(broker, "control"), env))
        return emits

    def _emits(self, event: Envelope[Any], signals: list[Signal]) -> list[Emit]:
        emits: list[Emit] = []
        for sig, sid in zip(signals, signal_ids(event.id, signals), strict=True):
            key = strategy_instrument_key(sig.strategy_id, sig.instrument_token)
            for broker in self.runner.config(sig.strategy_id).brokers:
                env = new_envelope(sig, id=sid, ts=event.ts, source=SOURCE, key=key,
                                   broker=str(broker), parent=event)
                emits.append(Emit(topic(broker, "signals.raw"), env))
            self.signals += 1
        return emits


class StrategyFeedback:
    """A broker's rejections, cancellations and fills, back into the strategies' context."""

    def __init__(self, broker: str, runner: StrategyRunner) -> None:
        self.broker = broker
        self.runner = runner

    def _primary(self, strategy_id: str) -> bool:
        try:
            brokers = self.runner.config(strategy_id).brokers
        except ConfigurationError:
            return False
        return bool(brokers) and str(brokers[0]) == self.broker

    def handle(self, event: Envelope[Any], record: Record) -> Sequence[Emit]:
        d = event.data
        if isinstance(d, SignalRejected):
            if self._primary(d.signal.strategy_id):
                self.runner.on_signal_rejected(d.signal)
        elif isinstance(d, OrderSubmitted | OrderRejected | OrderCancelled | OrderFilled):
            if not self._primary(d.strategy_id):
                return ()
            if isinstance(d, OrderFilled):
                self.runner.on_fill(d)
            elif isinstance(d, OrderSubmitted):
                self.runner.on_order_submitted(d)
            elif isinstance(d, OrderRejected):
                self.runner.on_order_rejected_event(d)
            else:
                self.runner.on_order_cancelled_event(d)
        return ()


def build_strategy_runner(
    log: Log, runner: StrategyRunner, brokers: Sequence[str], settings: ProcessorSettings
) -> tuple[list[StreamProcessor], SignalFanout]:
    fanout = SignalFanout(runner)
    processors = [StreamProcessor(log, name="strategy-runner", group="strategy-runner",
                                  topics=[MARKET_TICKS], handler=fanout, settings=settings,
                                  rebuild=True)]
    for broker in brokers:
        processors.append(StreamProcessor(
            log, name=f"{broker}.strategy-feedback", group=f"{broker}.strategy-feedback",
            topics=[topic(broker, s) for s in ("signals.rejected", "orders.submitted", "orders.rejected",
                                               "orders.cancelled", "orders.filled")],
            handler=StrategyFeedback(broker, runner), settings=settings.off_the_fill_path(),
            rebuild=True))
    return processors, fanout
