"""Our view of our Zerodha orders, and the diff against Kite's books (pure).

``OrderBook`` is rebuilt from our own ``zerodha.orders.*`` events; ``diff`` compares it
with Kite's order book and trade book and returns the events that are missing: fills
not yet recorded, rejections, cancellations. Applying them to the book makes ``diff``
idempotent, so postbacks, polling and the start-up reconciliation can all call it.

A cancellation's reason is ``ioc`` for an IOC order's remainder, else the
``cancel_reason`` the trading engine set on the order before asking Kite to cancel it
(``user``, ``kill_switch``, ``strategy_halted``), else ``broker``: Kite, the exchange or
the trader at Kite cancelled it, or this process asked before a restart (the reason lives
in memory only).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Protocol

from alpha_panda.domain.clock import ist_date
from alpha_panda.domain.events import (
    NO_CHARGES,
    Charges,
    OrderCancelled,
    OrderFilled,
    OrderRejected,
    OrderSubmitted,
    Origin,
    derive_id,
)
from alpha_panda.domain.values import Product, Side, Validity
from alpha_panda.execution.zerodha.orders import KiteOrder, KiteTrade, is_our_tag

OrderEvent = OrderSubmitted | OrderFilled | OrderRejected | OrderCancelled


class ChargesFn(Protocol):
    """Zerodha's charges of our fills, which may depend on the day's earlier ones (a CNC
    sell nets against the day's CNC buys)."""

    def __call__(self, order: TrackedOrder, quantity: int, price: int, ts: int,
                 cumulative: int, before: int, after: int) -> Charges:
        """Charges of a fill of ``quantity`` at ``price`` (paise) at ``ts``, taking the
        order's filled quantity to ``cumulative`` and its turnover from ``before`` to
        ``after``."""
        ...

    def recorded(self, fill: OrderFilled) -> None:
        """A fill recorded before a restart (its charges stand): later fills count it."""
        ...


def fill_id(order_id: str, trade_id: str) -> str:
    """Deterministic id of the fill a Kite trade gives our order."""
    return derive_id(order_id, f"zerodha.fill:{trade_id}")


@dataclass
class TrackedOrder:
    order_id: str
    broker_order_id: str
    strategy_id: str
    instrument_token: int
    side: Side
    quantity: int
    product: Product
    validity: Validity
    tag: str
    correlation_id: str = ""
    filled: int = 0
    turnover: int = 0
    fill_ids: set[str] = field(default_factory=set)
    terminal: bool = False
    # why this process asked Kite to cancel it (None: it did not); read by ``diff``
    cancel_reason: str | None = None
    origin: Origin = "signal"  # whose order: a strategy's signal, or the kill switch's flatten
    ts: int = 0  # its submission's event time

    @property
    def leaves(self) -> int:
        return self.quantity - self.filled


@dataclass(frozen=True)
class PositionMismatch:
    instrument_token: int
    product: str
    ours: int
    kite: int


class OrderBook:
    """Our Zerodha orders, by Kite order id, with fills seen so far."""

    def __init__(self) -> None:
        self.orders: dict[str, TrackedOrder] = {}
        self._by_order_id: dict[str, TrackedOrder] = {}
        # events of orders whose OrderSubmitted is not (yet) known: a fill can reach the
        # log before the submission it belongs to is committed
        self._pending: dict[str, list[OrderEvent]] = {}

    def open_orders(self) -> list[TrackedOrder]:
        return [o for o in self.orders.values() if not o.terminal]

    def get(self, broker_order_id: str) -> TrackedOrder | None:
        return self.orders.get(broker_order_id)

    def by_order_id(self, order_id: str) -> TrackedOrder | None:
        """The order with our ``order_id`` (None: no submission of ours records it)."""
        return self._by_order_id.get(order_id)

    def apply(self, event: OrderEvent, correlation_id: str = "") -> None:
        """Fold one of our own events into the book (idempotent)."""
        if isinstance(event, OrderSubmitted):
            if event.broker_order_id and event.broker_order_id not in self.orders:
                new = TrackedOrder(event.order_id, event.broker_order_id, event.strategy_id,
                                   event.instrument_token, event.side, event.quantity,
                                   event.product,
                                   event.validity, event.tag, correlation_id,
                                   origin=event.origin, ts=event.ts)
                self.orders[event.broker_order_id] = new
                self._by_order_id[event.order_id] = new
                for later in self._pending.pop(event.order_id, []):
                    self.apply(later)
            return
        o = self._by_order_id.get(event.order_id)
        if o is None:
            self._pending.setdefault(event.order_id, []).append(event)
            return
        if isinstance(event, OrderFilled):
            if event.fill_id not in o.fill_ids:
                o.fill_ids.add(event.fill_id)
                o.filled = max(o.filled, event.cumulative_quantity)
                o.turnover += event.price * event.quantity
                o.terminal = o.terminal or event.leaves_quantity == 0
        else:
            o.terminal = True

    def mis_position(self, strategy_id: str, instrument_token: int, day: date) -> int:
        """The strategy's MIS position in the instrument from its orders submitted on ``day``
        (IST), by the fills recorded so far: what its MIS orders of that day may still exit."""
        return sum(o.side.sign * o.filled for o in self.orders.values()
                   if o.product is Product.MIS and o.strategy_id == strategy_id
                   and o.instrument_token == instrument_token and ist_date(o.ts) == day)

    def net_positions(self, day: date | None = None) -> dict[tuple[int, str], int]:
        """What our fills add up to per (instrument, product): of the orders submitted on
        ``day`` (IST) only, or of every order."""
        net: dict[tuple[int, str], int] = {}
        for o in self.orders.values():
            if day is not None and ist_date(o.ts) != day:
                continue
            key = (o.instrument_token, o.product.value)
            net[key] = net.get(key, 0) + o.side.sign * o.filled
        return net


def diff(book: OrderBook, kite_orders: Iterable[KiteOrder], trades: Iterable[KiteTrade],
         charges: ChargesFn | None = None) -> list[tuple[TrackedOrder, OrderEvent]]:
    """Events that bring ``book`` level with Kite, each already applied to ``book``."""
    by_order: dict[str, list[KiteTrade]] = {}
    for t in trades:
        by_order.setdefault(t.order_id, []).append(t)
    out: list[tuple[TrackedOrder, OrderEvent]] = []
    for ko in kite_orders:
        o = book.get(ko.order_id)
        if o is None or o.terminal:
            continue
        for t in sorted(by_order.get(ko.order_id, ()), key=_trade_order):
            fid = fill_id(o.order_id, t.trade_id)
            if fid in o.fill_ids or t.quantity <= 0 or t.quantity > o.leaves:
                continue
            before = o.turnover
            cum = o.filled + t.quantity
            after = before + t.price * t.quantity
            fill = OrderFilled(
                order_id=o.order_id, fill_id=fid, strategy_id=o.strategy_id,
                instrument_token=o.instrument_token, side=o.side, quantity=t.quantity, price=t.price,
                cumulative_quantity=cum, leaves_quantity=o.quantity - cum,
                average_price=_div_round(after, cum), product=o.product,
                charges=(charges(o, t.quantity, t.price, t.fill_ns, cum, before, after)
                         if charges else NO_CHARGES),
                broker_order_id=o.broker_order_id, ts=t.fill_ns, origin=o.origin)
            book.apply(fill)
            out.append((o, fill))
        if o.terminal or ko.status not in ("REJECTED", "CANCELLED"):
            continue
        if ko.status == "REJECTED":
            end: OrderEvent = OrderRejected(
                order_id=o.order_id, strategy_id=o.strategy_id, instrument_token=o.instrument_token,
                side=o.side, quantity=o.quantity, reason_code="BROKER_REJECTED",
                message=ko.status_message or "rejected by Kite", broker_order_id=o.broker_order_id,
                origin=o.origin)
        else:
            if ko.filled_quantity > o.filled:
                continue  # wait until the trade book shows the fills made before the cancel
            end = OrderCancelled(
                order_id=o.order_id, strategy_id=o.strategy_id, instrument_token=o.instrument_token,
                side=o.side, filled_quantity=o.filled, leaves_quantity=o.leaves,
                reason=_cancel_reason(o),
                broker_order_id=o.broker_order_id, origin=o.origin)
        book.apply(end)
        out.append((o, end))
    return out


def expire_missing(book: OrderBook, kite_orders: Iterable[KiteOrder]
                   ) -> list[tuple[TrackedOrder, OrderEvent]]:
    """Our open orders absent from Kite's order book: Kite's book holds only today's
    orders, so these are earlier days' orders that expired at the close. Start-up only."""
    present = {k.order_id for k in kite_orders}
    out: list[tuple[TrackedOrder, OrderEvent]] = []
    for o in book.open_orders():
        if o.broker_order_id not in present:
            end = OrderCancelled(
                order_id=o.order_id, strategy_id=o.strategy_id, instrument_token=o.instrument_token,
                side=o.side, filled_quantity=o.filled, leaves_quantity=o.leaves, reason="expired",
                broker_order_id=o.broker_order_id, origin=o.origin)
            book.apply(end)
            out.append((o, end))
    return out


def orphans(book: OrderBook, kite_orders: Iterable[KiteOrder]) -> list[KiteOrder]:
    """Kite orders carrying our tag that no event of ours records (a crash between placing
    and committing; the redelivered signal adopts them)."""
    return [k for k in kite_orders if is_our_tag(k.tag) and book.get(k.order_id) is None]


def position_mismatches(book: OrderBook, kite_day: Sequence[tuple[int, str, int]],
                        day: date) -> list[PositionMismatch]:
    """(token, product) where Kite's quantity of ``day`` (its ``positions()["day"]``: that
    day's buys less its sells) differs from what our fills of that day's orders add up to.
    Not the ``net`` positions against every fill logged: from the second day on, a CNC
    position bought earlier is in Kite's holdings, not its positions, and every restart
    warned of a mismatch that was none."""
    ours = book.net_positions(day)
    theirs = {(tok, prod): qty for tok, prod, qty in kite_day}
    return [PositionMismatch(tok, prod, ours.get((tok, prod), 0), theirs.get((tok, prod), 0))
            for tok, prod in sorted(set(ours) | set(theirs))
            if ours.get((tok, prod), 0) != theirs.get((tok, prod), 0)]


def _cancel_reason(o: TrackedOrder) -> str:
    # an IOC remainder is cancelled by the exchange at once, whoever asked as well
    if o.validity is Validity.IOC:
        return "ioc"
    return o.cancel_reason or "broker"


def _trade_order(t: KiteTrade) -> tuple[int, str]:
    return (int(t.trade_id) if t.trade_id.isdigit() else 0, t.trade_id)


def _div_round(num: int, den: int) -> int:
    q, r = divmod(num, den)
    return q + (1 if 2 * r > den or (2 * r == den and q % 2) else 0)
