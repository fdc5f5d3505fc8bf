"""Keeps ``zerodha.orders.*`` level with Kite: start-up reconciliation, postbacks, polling.

On start the book of our orders is rebuilt from our own events on the log, then
compared with Kite's order book, trade book and positions; missing fills, rejections and
cancellations are appended as events (corrections). Afterwards every order postback
(websocket text message) and every poll does the same diff. Event ids are deterministic
(``fill_id`` from the Kite trade id), so an event written twice (a crash between
appending and remembering) is the same event, dropped by consumers' deduplication.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec
import structlog

from alpha_panda.domain.clock import ist_date
from alpha_panda.domain.errors import AuthenticationError, RetryableError
from alpha_panda.domain.events import CODEC, OrderFilled, derive_id, new_envelope
from alpha_panda.domain.values import Broker
from alpha_panda.execution.zerodha.orders import KiteOrder, kite_order, kite_trade
from alpha_panda.execution.zerodha.reconcile import (
    ChargesFn,
    OrderBook,
    OrderEvent,
    PositionMismatch,
    TrackedOrder,
    diff,
    expire_missing,
    orphans,
    position_mismatches,
)
from alpha_panda.observability.health import ComponentStatus, State
from alpha_panda.stream.emit import Emit, to_output
from alpha_panda.stream.log import Log, TopicPartition
from alpha_panda.stream.topics import strategy_instrument_key, topic

log_ = structlog.get_logger(__name__)
BROKER = Broker.ZERODHA.value
SOURCE = "zerodha-trading-engine"
ORDER_TOPICS = ("orders.submitted", "orders.filled", "orders.rejected", "orders.cancelled")
_TOPIC_OF = {"order_submitted": "orders.submitted", "order_filled": "orders.filled",
             "order_rejected": "orders.rejected", "order_cancelled": "orders.cancelled"}


class KiteBooks(Protocol):
    """What the sync needs from Kite (``KiteRestClient`` provides it)."""

    async def orders(self) -> list[dict[str, Any]]: ...

    async def trades(self) -> list[dict[str, Any]]: ...

    async def positions(self) -> dict[str, list[dict[str, Any]]]: ...


@dataclass
class ReconcileReport:
    """What the start-up reconciliation found."""

    known_orders: int = 0
    corrections: int = 0
    orphans: list[KiteOrder] = field(default_factory=list)
    position_mismatches: list[PositionMismatch] = field(default_factory=list)


class ZerodhaOrderSync:
    """Owns the book of our Zerodha orders and appends the events Kite's books imply."""

    def __init__(self, log: Log, kite: KiteBooks, book: OrderBook | None = None, *,
                 charges: ChargesFn | None = None, poll_interval_s: float = 2.0,
                 clock: Callable[[], int] = time.time_ns) -> None:
        self._log = log
        self._clock = clock  # (the IST day whose positions are compared with Kite's)
        self._kite = kite
        self.book = book if book is not None else OrderBook()  # the engine's, shared
        self._charges = charges
        self._poll = poll_interval_s
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._state = State.STARTING
        self._detail = ""
        self.emitted = 0
        self.errors = 0

    @property
    def name(self) -> str:
        return "zerodha.order-sync"

    def health(self) -> ComponentStatus:
        return ComponentStatus(name=self.name, state=self._state,
                               ready=self._state is State.RUNNING, detail=self._detail,
                               processed=self.emitted, errors=self.errors)

    async def rebuild(self) -> int:
        """Fold every event on our order topics into the book; returns events read."""
        n = 0
        for suffix in ORDER_TOPICS:  # submissions first, so fills find their order
            name = topic(BROKER, suffix)
            for partition, end in (await self._log.end_offsets(name)).items():
                offset = 0
                while offset < end:
                    records = await self._log.read(TopicPartition(name, partition), offset)
                    if not records:
                        break
                    for r in records:
                        env = CODEC.decode(r.value)
                        self.book.apply(env.data, env.correlation_id)
                        if self._charges is not None and isinstance(env.data, OrderFilled):
                            self._charges.recorded(env.data)
                        n += 1
                    offset = records[-1].offset + 1
        return n

    async def reconcile(self) -> ReconcileReport:
        """Start-up: rebuild from the log, then bring it level with Kite's books."""
        await self.rebuild()
        report = ReconcileReport(known_orders=len(self.book.orders))
        orders = [kite_order(o) for o in await self._kite.orders()]
        report.corrections = await self._apply(orders)
        expired = expire_missing(self.book, orders)
        if expired:
            await self._append(expired)
            report.corrections += len(expired)
        report.orphans = orphans(self.book, orders)
        positions = await self._kite.positions()
        day = [(int(p["instrument_token"]), str(p["product"]), int(p["quantity"]))
               for p in positions.get("day", [])]
        report.position_mismatches = position_mismatches(self.book, day,
                                                         ist_date(self._clock()))
        for m in report.position_mismatches:
            log_.warning("zerodha.position_mismatch", instrument_token=m.instrument_token,
                         product=m.product, ours=m.ours, kite=m.kite)
        for o in report.orphans:
            log_.warning("zerodha.order_without_event", broker_order_id=o.order_id, tag=o.tag,
                         status=o.status)
        log_.info("zerodha.reconciled", known_orders=report.known_orders,
                  corrections=report.corrections, orphans=len(report.orphans),
                  position_mismatches=len(report.position_mismatches))
        self._state = State.RUNNING
        return report

    async def sync(self) -> int:
        """One round trip to Kite's order and trade books; returns events appended."""
        return await self._apply([kite_order(o) for o in await self._kite.orders()])

    async def _apply(self, orders: Sequence[KiteOrder]) -> int:
        async with self._lock:
            tracked = [self.book.get(o.order_id) for o in orders]
            if not any(t is not None and not t.terminal for t in tracked):
                return 0  # nothing of ours is open: skip the trade-book call
            trades = [kite_trade(t) for t in await self._kite.trades()]
            events = diff(self.book, orders, trades, self._charges)
            await self._append(events)
            return len(events)

    async def _append(self, events: Sequence[tuple[TrackedOrder, OrderEvent]]) -> None:
        if events:
            now = time.time_ns()
            await self._log.append([to_output(self._emit(o, e, now)) for o, e in events])
            self.emitted += len(events)

    @staticmethod
    def _emit(order: TrackedOrder, event: OrderEvent, ts: int) -> Emit:
        if not event.ts:  # fills carry Kite's exchange time; the rest are stamped now
            event = msgspec.structs.replace(event, ts=ts)
        eid = (event.fill_id if isinstance(event, OrderFilled)
               else derive_id(event.order_id, event.EVENT_TYPE))
        env = new_envelope(event, id=eid, ts=event.ts, source=SOURCE, broker=BROKER,
                           key=strategy_instrument_key(order.strategy_id, order.instrument_token),
                           correlation_id=order.correlation_id or order.order_id)
        return Emit(topic(BROKER, _TOPIC_OF[event.EVENT_TYPE]), env)

    def on_order_update(self, data: dict[str, Any]) -> None:
        """A postback (websocket ``order`` message): sync now rather than at the next poll."""
        if data.get("order_id") and self.book.get(str(data["order_id"])) is not None:
            self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Poll (and sync on postbacks) until ``stop``; a token error stops it loudly."""
        self._state = State.RUNNING
        try:
            while not stop.is_set():
                self._wake.clear()  # before the sync: a postback arriving during it counts
                try:
                    await self.sync()
                    self._detail = ""
                except RetryableError as exc:
                    self.errors += 1
                    self._detail = str(exc)
                    log_.warning("zerodha.sync_retry", error=str(exc))
                waits = [asyncio.ensure_future(self._wake.wait()),
                         asyncio.ensure_future(stop.wait())]
                _, pending = await asyncio.wait(waits, timeout=self._poll,
                                                return_when=asyncio.FIRST_COMPLETED)
                for p in pending:
                    p.cancel()
        except AuthenticationError as exc:
            self._state, self._detail = State.FAILED, str(exc)
            log_.error("zerodha.session_lost", alert=True, error=str(exc))
            raise
        self._state = State.STOPPED

