"""The risk manager of one broker: ``{broker}.signals.raw`` in, validated or rejected out.

Its state (positions including pending orders, order counts, P&L marked to the last tick)
is fed by the broker's own order topics and ``market.ticks``, and rebuilt from the log on
restart. One instance per broker:
paper and zerodha never share a topic or a consumer group.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from alpha_panda.domain.errors import InvariantViolation
from alpha_panda.domain.events import (
    Envelope,
    MarketTick,
    OrderCancelled,
    OrderFilled,
    OrderRejected,
    Signal,
    SignalValidated,
    derive_id,
    new_envelope,
)
from alpha_panda.risk import RiskEngine
from alpha_panda.stream.emit import Emit
from alpha_panda.stream.log import Log, Record
from alpha_panda.stream.runtime import ProcessorSettings, StreamProcessor
from alpha_panda.stream.topics import MARKET_TICKS, topic

SOURCE = "risk-manager"


class RiskHandler:
    def __init__(self, broker: str, engine: RiskEngine) -> None:
        self.broker = broker
        self.engine = engine
        self.validated = 0
        self.rejected = 0

    def handle(self, event: Envelope[Any], record: Record) -> Sequence[Emit]:
        data = event.data
        if isinstance(data, MarketTick):
            self.engine.on_tick(data)
            return ()
        if event.broker != self.broker:
            raise InvariantViolation(
                f"{self.broker} risk manager got a {event.broker!r} event {event.id} on {record.topic}"
            )
        if isinstance(data, Signal):
            decision = self.engine.check(event.id, data, event.ts)
            if isinstance(decision, SignalValidated):
                self.validated += 1
                suffix = "signals.validated"
            else:
                self.rejected += 1
                suffix = "signals.rejected"
            env = new_envelope(decision, id=derive_id(event.id, "risk"), ts=event.ts, source=SOURCE,
                               key=event.key, broker=self.broker, parent=event)
            return [Emit(topic(self.broker, suffix), env)]
        if isinstance(data, OrderFilled):
            self.engine.on_fill(data)
        elif isinstance(data, OrderRejected):
            self.engine.on_order_rejected(data)
        elif isinstance(data, OrderCancelled):
            self.engine.on_order_cancelled(data)
        return ()

    def stats(self) -> dict[str, int]:
        return {"validated": self.validated, "rejected": self.rejected}


def risk_topics(broker: str) -> list[str]:
    return [MARKET_TICKS] + [topic(broker, s) for s in (
        "signals.raw", "orders.filled", "orders.rejected", "orders.cancelled")]


def build_risk_manager(
    log: Log, broker: str, engine: RiskEngine, settings: ProcessorSettings
) -> tuple[StreamProcessor, RiskHandler]:
    handler = RiskHandler(broker, engine)
    processor = StreamProcessor(
        log, name=f"{broker}.risk-manager", group=f"{broker}.risk-manager",
        topics=risk_topics(broker), handler=handler, settings=settings, rebuild=True,
    )
    return processor, handler


