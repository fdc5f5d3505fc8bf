"""Turning domain payloads into envelopes on the right broker topic, with deterministic ids."""

from __future__ import annotations

from typing import Any

from alpha_panda.domain.events import (
    Envelope,
    OrderCancelled,
    OrderFilled,
    OrderRejected,
    OrderSubmitted,
    Payload,
    derive_id,
    new_envelope,
)
from alpha_panda.stream.emit import Emit
from alpha_panda.stream.topics import strategy_instrument_key, topic

_ORDER_TOPICS: dict[type[Payload], str] = {
    OrderSubmitted: "orders.submitted",
    OrderFilled: "orders.filled",
    OrderRejected: "orders.rejected",
    OrderCancelled: "orders.cancelled",
}

OrderEvent = OrderSubmitted | OrderFilled | OrderRejected | OrderCancelled


def order_event_id(payload: OrderEvent) -> str:
    """Fills are identified by their fill id; other order events by order id and type."""
    if isinstance(payload, OrderFilled):
        return payload.fill_id
    return derive_id(payload.order_id, payload.EVENT_TYPE)


def order_emit(
    broker: str,
    payload: OrderEvent,
    *,
    cause: Envelope[Any],
    source: str,
    ts: int,
    correlation_id: str | None = None,
) -> Emit:
    """The Emit of an order event on ``{broker}.orders.*``, caused by ``cause``."""
    env = new_envelope(
        payload,
        id=order_event_id(payload),
        ts=payload.ts or ts,
        source=source,
        key=strategy_instrument_key(payload.strategy_id, payload.instrument_token),
        broker=broker,
        parent=cause,
    )
    if correlation_id is not None and correlation_id != env.correlation_id:
        env = _with_correlation(env, correlation_id)
    return Emit(topic(broker, _ORDER_TOPICS[type(payload)]), env)


def _with_correlation(env: Envelope[Any], correlation_id: str) -> Envelope[Any]:
    import msgspec

    return msgspec.structs.replace(env, correlation_id=correlation_id)
