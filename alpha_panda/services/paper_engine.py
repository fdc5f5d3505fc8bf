"""The paper trading engine: validated paper signals and market ticks in, order events out.

It consumes only ``paper.signals.validated``, ``paper.control`` (the kill switch cancels
every open order, a failed strategy's halt its own, a trader's cancel request one) and the
shared ``market.ticks``, and writes only ``paper.orders.*``. The simulated exchange is pure
and works in event time, so its fills do not depend on how the input streams interleave,
and a rebuild from the log restores resting orders exactly. A control event is the one
input whose effect does depend on when it is read (fills the engine made past its market
time before reading it stand): a rebuild follows what the engine recorded
(``before_rebuild``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from alpha_panda.domain.errors import DecodeError, InvariantViolation
from alpha_panda.domain.events import (
    CODEC,
    CancelRequested,
    Envelope,
    KillSwitchSet,
    MarketTick,
    OrderCancelled,
    OrderFilled,
    OrderRejected,
    OrderSubmitted,
    Payload,
    SignalValidated,
    StrategyHalted,
)
from alpha_panda.domain.values import Broker
from alpha_panda.execution.config import ExecutionConfig
from alpha_panda.execution.routing import PaperVenue
from alpha_panda.services.emitting import order_emit
from alpha_panda.stream.emit import BatchFailure, Emit, Emitted
from alpha_panda.stream.log import Log, Record, read_topic
from alpha_panda.stream.runtime import ProcessorSettings, StreamProcessor
from alpha_panda.stream.topics import MARKET_TICKS, topic

BROKER = Broker.PAPER.value
SOURCE = "paper-trading-engine"
_TERMINAL = (OrderRejected, OrderCancelled)


class PaperEngineHandler:
    """Routes ticks and validated signals into the paper exchange and emits its events."""

    def __init__(self, exchange: PaperVenue) -> None:
        self.exchange = exchange
        self._correlation: dict[str, str] = {}
        self.orders = 0
        self.fills = 0

    def handle(self, event: Envelope[Any], record: Record) -> Sequence[Emit]:
        data = event.data
        if isinstance(data, MarketTick):
            payloads = self.exchange.on_tick(data)
            ts = data.ts
        elif isinstance(data, KillSwitchSet):
            if not data.active:
                return ()
            at = data.market_ts
            if at is None:  # set before any tick reached the log (or written before the
                return ()  # field): no tick, so no order had been placed. Never the engine's
                # own progress, which a rebuild (control after every tick) would misread.
            payloads = self.exchange.kill(at)
            ts = at
        elif isinstance(data, CancelRequested):  # the trader's or a strategy's, of one order
            if event.broker != BROKER:
                raise InvariantViolation(f"paper engine got a {event.broker!r} cancel {event.id}")
            if data.market_ts is None:  # no tick on the log yet: no order to cancel
                return ()
            payloads = self.exchange.cancel(data.order_id, data.market_ts, data.reason)
            ts = data.market_ts
        elif isinstance(data, StrategyHalted):  # it failed, or the trader halted it
            if not data.active:  # back in service: its new orders go as any other's
                return ()
            # the trader's halt stops its orders as of the market's time when asked (the
            # wall clock's is hours or days apart from a simulated market's)
            at = data.market_ts if data.by_trader else event.ts
            if at is None:  # asked before any tick reached the log: no order was placed
                return ()
            # its own orders go; a bracket's exits stay unless its positions are flattened
            payloads = self.exchange.kill(at, data.strategy_id, keep_exits=not data.flatten)
            ts = at
        elif isinstance(data, SignalValidated):
            if event.broker != BROKER:
                raise InvariantViolation(f"paper engine got a {event.broker!r} signal {event.id}")
            payloads = self.exchange.submit(data.signal_id, data.signal, event.ts,
                                            flatten=data.flatten)
            ts = event.ts
            for p in payloads:
                if isinstance(p, OrderSubmitted):
                    self._correlation[p.order_id] = event.correlation_id
        else:
            return ()
        return [self._emit(p, event, ts) for p in payloads]

    def handle_batch(self, events: Sequence[Envelope[Any]],
                     records: Sequence[Record]) -> list[Emitted]:
        """``handle`` over a run of events, ticks in a tight loop (most fill nothing)."""
        out: list[Emitted] = []
        on_tick = self.exchange.on_tick
        i = 0
        try:
            for i, event in enumerate(events):
                data = event.data
                if type(data) is MarketTick:
                    payloads = on_tick(data)
                    if payloads:
                        out.append((i, [self._emit(p, event, data.ts) for p in payloads]))
                    continue
                emits = self.handle(event, records[i])
                if emits:
                    out.append((i, emits))
        except Exception as exc:
            raise BatchFailure(i, out, exc) from exc
        return out

    async def before_rebuild(self, log: Log) -> None:
        """Give the exchange what this engine recorded before the restart: a control event
        read late (after ticks past its market time) took effect where the live engine
        applied it, which the rebuild, reading it before every signal, cannot tell."""
        events: list[Payload] = []
        for name, kind in (("orders.cancelled", OrderCancelled), ("orders.filled", OrderFilled)):
            for r in await read_topic(log, topic(BROKER, name)):
                try:
                    events.append(CODEC.decode_as(r.value, kind).data)
                except DecodeError:  # not the engine's: its consumers dead-letter it
                    continue
        self.exchange.recorded(events)

    def after_rebuild(self) -> None:
        self.exchange.recorded(())

    def _emit(self, payload: Payload, cause: Envelope[Any], ts: int) -> Emit:
        assert isinstance(payload, OrderSubmitted | OrderFilled | OrderRejected | OrderCancelled)
        corr = self._correlation.get(payload.order_id)
        if isinstance(payload, OrderSubmitted):
            self.orders += 1
        elif isinstance(payload, OrderFilled):
            self.fills += 1
            if payload.leaves_quantity == 0:
                self._correlation.pop(payload.order_id, None)
        elif isinstance(payload, _TERMINAL):
            self._correlation.pop(payload.order_id, None)
        return order_emit(BROKER, payload, cause=cause, source=SOURCE, ts=ts, correlation_id=corr)


def build_paper_engine(
    log: Log, execution: Mapping[str, ExecutionConfig], settings: ProcessorSettings,
    *, seed: int = 0,
) -> tuple[StreamProcessor, PaperEngineHandler]:
    handler = PaperEngineHandler(PaperVenue(execution, seed=seed, broker=BROKER))
    processor = StreamProcessor(
        log,
        name="paper.trading-engine",
        group="paper.trading-engine",
        # control before signals.validated: a rebuild (topic by topic, in name order)
        # knows every kill switch before it places the orders it cancels
        topics=[MARKET_TICKS, topic(BROKER, "control"), topic(BROKER, "signals.validated")],
        handler=handler,
        settings=settings,
        rebuild=True,
    )
    return processor, handler
