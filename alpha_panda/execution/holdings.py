"""Delivery (CNC) holdings at the paper exchange: a CNC sell must be covered by them.

Zerodha's RMS lets an account sell in CNC only what it holds: a CNC sell larger than the
holdings, less what its other open CNC sells already reserve, is rejected (``CNC_SHORT``).
Here holdings are kept per (strategy, instrument), as everything else in the simulation:
the net quantity of the strategy's *filled* CNC orders (a resting buy does not count: it
may never fill), plus its CNC market buys placed by the sell's time and not yet filled
(a market buy fills on the first tick it can, before a sell placed after it can: counting
it does not depend on whether this engine has processed that tick yet). Reserved is the
unfilled part of its open CNC sells, a bracket's two exits (one cancels the other) once.

Both are taken at the sell's event time ``now``, not at the moment it is processed: a
lagging engine has matched later ticks already, so fills and cancellations dated after
``now`` are left out, and the decision does not depend on how ticks and signals interleave
(the exchange's determinism contract). One case remains: when this engine has not yet
seen the ticks up to ``now`` (ticks behind signals), a resting buy that fills on one of
them is not held yet. An order placed by ``now`` commits its quantity, or what it had
filled when cancelled if that was by ``now``: with ``B`` the resting buys' fills by
``now`` plus the market buys' commitments and ``C`` the sells' commitments,
free = B - C, held = B - sold, reserved = C - sold.

Whatever is settled by a check's ``now`` is folded into totals then (later checks come
later in event time); a book no sell ever checks is folded a day behind its latest event.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from alpha_panda.domain.values import OrderType, Product, Side
from alpha_panda.execution.orders import Order

_FOLD_BEHIND_NS = 86_400 * 1_000_000_000
_FOLD_AT = 4096


@dataclass(slots=True)
class _Unit:
    """A CNC sell order or market buy, or a bracket's pair of exits (keyed by the entry)."""

    created: int
    quantity: int
    filled: int = 0
    done: bool = False  # filled in full: its quantity is committed for good
    cancelled: int | None = None  # event time its unfilled part was freed
    bracket: bool = False  # a bracket's pair of exits: a strategy's exit may sell past it


@dataclass(slots=True)
class _Book:
    held: int = 0  # settled: net CNC quantity filled
    sold: int = 0  # settled: CNC quantity sold
    bought: int = 0  # settled: CNC quantity bought by resting (non-market) buys
    committed: int = 0  # settled: sells' commitments (C)
    credited: int = 0  # settled: market buys' commitments
    # (ts, signed qty, by a market order), not settled yet
    fills: list[tuple[int, int, bool]] = field(default_factory=list)
    sells: dict[str, _Unit] = field(default_factory=dict)  # not settled yet
    buys: dict[str, _Unit] = field(default_factory=dict)  # market buys, not settled yet
    latest: int = 0
    fold_at: int = _FOLD_AT  # entries that trigger the next fold


def _unit(units: dict[str, _Unit], order: Order) -> _Unit:
    # a bracket's legs are a pair (one cancels the other): one unit, keyed by either leg's
    # id (an entry filled in parts has a pair per fill, and a pair cut down is placed anew)
    key = order.pair_id if order.parent_order_id is not None else order.order_id
    unit = units.get(key)
    if unit is None:
        unit = units[key] = _Unit(order.created_ns, order.quantity,
                                  bracket=order.parent_order_id is not None)
    return unit


def _fold(units: dict[str, _Unit], now: int) -> tuple[int, int, int]:
    """(what settles by ``now``, removed from ``units``; the open units' commitment; of
    which the brackets' exits')."""
    settled = pending = brackets = 0
    for key, unit in list(units.items()):
        if unit.created > now:
            continue
        if unit.cancelled is not None and unit.cancelled <= now:
            settled += unit.filled
            del units[key]
        elif unit.done:
            settled += unit.quantity
            del units[key]
        else:
            pending += unit.quantity
            if unit.bracket:
                brackets += unit.quantity
    return settled, pending, brackets


def _is_market_buy(order: Order) -> bool:
    return order.side is Side.BUY and order.order_type is OrderType.MARKET


class CncHoldings:
    """CNC fills, sells and market buys per (strategy, instrument), and ``CNC_SHORT``."""

    def __init__(self) -> None:
        self._books: dict[tuple[str, int], _Book] = {}

    def _book(self, order: Order) -> _Book:
        key = (order.strategy_id, order.instrument_token)
        book = self._books.get(key)
        if book is None:
            book = self._books[key] = _Book()
        return book

    def placed(self, order: Order) -> None:
        """An accepted CNC sell: it commits its quantity from its creation."""
        _unit(self._book(order).sells, order)

    def filled(self, order: Order, qty: int, ts: int) -> None:
        """A CNC fill of ``qty`` at ``ts`` (the order has recorded it)."""
        book = self._book(order)
        market_buy = _is_market_buy(order)
        book.fills.append((ts, qty if order.side is Side.BUY else -qty, market_buy))
        if market_buy or order.side is not Side.BUY:
            unit = _unit(book.buys if market_buy else book.sells, order)
            unit.filled += qty
            unit.done = unit.done or order.leaves == 0
        self._touch(book, ts)

    def cancelled(self, order: Order, reason: str, ts: int) -> None:
        """A CNC order cancelled at ``ts``: a sell's or market buy's unfilled part is free
        from then (a bracket exit cancelled because the other filled frees nothing)."""
        if reason == "oco" or (order.side is Side.BUY and not _is_market_buy(order)):
            return
        book = self._book(order)
        unit = _unit(book.buys if order.side is Side.BUY else book.sells, order)
        if unit.cancelled is None and not unit.done:
            unit.cancelled = ts
        self._touch(book, ts)

    def _touch(self, book: _Book, ts: int) -> None:
        book.latest = max(book.latest, ts)
        if len(book.fills) + len(book.sells) + len(book.buys) > book.fold_at:
            self._settle(book, book.latest - _FOLD_BEHIND_NS)
            # what a day's trading leaves unfolded waits until it has doubled: folding at
            # every fill past a fixed size rescanned it all each time (quadratic)
            book.fold_at = max(_FOLD_AT, 2 * (len(book.fills) + len(book.sells) + len(book.buys)))

    def _settle(self, book: _Book, now: int) -> tuple[int, int, int]:
        """Fold what is settled by ``now`` into the totals; the open units' commitments
        (sells, of which bracket exits, and market buys)."""
        if book.fills:  # (not in time order: a lagging engine's catch-up fills come late)
            keep = []
            for fill in book.fills:
                ts, q, market = fill
                if ts <= now:
                    book.held += q
                    if q < 0:
                        book.sold -= q
                    elif not market:
                        book.bought += q
                else:
                    keep.append(fill)
            book.fills = keep
        settled, sells, brackets = _fold(book.sells, now)
        book.committed += settled
        settled, buys, _ = _fold(book.buys, now)
        book.credited += settled
        return sells, brackets, buys

    def short(self, order: Order, now: int, book_orders: Iterable[Order]) -> str | None:
        """Why the CNC sell ``order``, created at ``now``, would sell delivery short, or
        None when its holdings less its other open CNC sells' reservations cover it.
        ``book_orders``: the instrument's open orders (bracket exits and market buys not
        yet filled are found there). The strategy's exit (``reduce_only``) may sell what
        its brackets' stop-loss and target reserve: they are cut to what it leaves held
        when it fills (``PaperExchange._fit_legs``), as one leg cancels the other."""
        book = self._book(order)
        for other in book_orders:
            if other.strategy_id != order.strategy_id or other.product is not Product.CNC:
                continue
            if _is_market_buy(other):
                _unit(book.buys, other)
            elif other.side is not Side.BUY and other.parent_order_id is not None:
                _unit(book.sells, other)  # a bracket exit: placed by the exchange
        sells, brackets, buys = self._settle(book, now)  # (fills it leaves: after ``now``)
        committed = book.committed + sells - (brackets if order.reduce_only else 0)
        bought = book.bought + book.credited + buys
        held = bought - book.sold
        free = bought - committed
        reserved = committed - book.sold
        if order.quantity <= free:
            return None
        return (f"CNC sell of {order.quantity} exceeds the delivery holdings of {max(held, 0)} "
                f"less {reserved} reserved by open CNC sells ({max(free, 0)} free); "
                "delivery cannot be sold short (use MIS)")
