"""The runner's feedback: fills, order events and rejections keep what a context shows.

A strategy's own signals move its intended position at once; these handlers undo what of
them never fills (a rejection, a cancel, an expiry: ``_expire``) and keep the rest a context
shows (cash, filled position, open orders), whatever order the pipeline delivers the events
of one order in (its topics are read together, so a fill may come before its submission);
after a restart they rebuild the books from the log (``replay_signal``, ``reset_books``).
A mixin of ``StrategyRunner`` (its state is the runner's), separate as one concern of it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from fractions import Fraction
from typing import TYPE_CHECKING, Final

import msgspec

from alpha_panda.domain.events import (
    NO_CHARGES,
    OrderCancelled,
    OrderFilled,
    OrderRejected,
    OrderSubmitted,
    Signal,
)
from alpha_panda.domain.values import OrderType, Side
from alpha_panda.strategy.base import OpenOrder, _Book
from alpha_panda.strategy.exits import _Exits, _Replacement
from alpha_panda.strategy.slots import _NEVER

if TYPE_CHECKING:
    from alpha_panda.strategy.runner import StrategyStatus

_BUY: Final = Side.BUY

ENDED_KEPT: Final = 10_000
"""Ids of orders that ended before their submission was read, remembered at most."""


class _Feedback(_Exits):
    """``StrategyRunner``'s feedback (see the module's docstring)."""

    # Only an order of the strategy's own signal (``origin`` "signal") moved its intended
    # position when it was signalled: its rejection or cancellation undoes what never
    # filled. An order the system placed for it (a bracket leg, the square-off, the kill
    # switch's flatten) moves the position when it fills, and its end undoes nothing.

    # the runner's state these read and keep (set in ``StrategyRunner.__init__``)
    _initial_cash: int
    _status: dict[str, StrategyStatus]
    _books: dict[str, _Book]
    ordered_feedback: bool
    _early_leaves: dict[str, int]
    _ended: OrderedDict[str, None]
    _expiring: dict[str, tuple[int, str]]
    _next_expiry: int
    _expired: dict[str, tuple[str, int, int]]

    def _expire(self, now_ns: int) -> None:
        """The orders the venue fills no more by ``now_ns`` (``_expiring``) that were open
        there (resting, or filled in part) end as the venue will cancel them: their unfilled
        rest leaves the intended position now."""
        nxt = _NEVER
        for oid, (at, sid) in list(self._expiring.items()):
            if at > now_ns:
                nxt = min(nxt, at)
                continue
            del self._expiring[oid]
            book = self._books.get(sid)
            order = None if book is None else book.orders.get(oid)
            if order is None or (order.order_type is OrderType.MARKET
                                 and order.leaves_quantity == order.quantity):
                # (a market order of which no fill was read most likely filled at once, its
                # fills not read yet: a replay at full speed. Its fill or cancel ends it.)
                continue
            leaves = order.leaves_quantity
            self.on_order_cancelled(sid, order.instrument_token, order.side, leaves, oid,
                                    order.origin)
            if order.origin == "signal" and leaves:
                self._expired[oid] = (sid, order.instrument_token, order.side.sign * leaves)
            self._ended[oid] = None  # its fills read late move no open order
            if len(self._ended) > ENDED_KEPT:
                self._ended.popitem(last=False)
        self._next_expiry = nxt
    def _move(self, sid: str, token: int, delta: int) -> None:
        book = self._books.get(sid)
        if book is not None and delta:
            book.positions[token] = book.positions.get(token, 0) + delta

    def replay_signal(self, signal: Signal, signal_id: str = "") -> None:
        """A signal the strategy made before a restart, read back from the log (with its
        id): it moves the intended position as it did when made (``replaying``). An entry
        placed again smaller for an exit (``Signal.replaces``) takes the one it replaces off
        the intent until that one's cancel lands, and watches it, as when it was made."""
        sid, token = signal.strategy_id, signal.instrument_token
        status = self._status.get(sid)
        if status is not None:
            # The strategy's count is of the signals it made, on the log: those of its
            # replay move nothing and are not counted (a strategy waiting for a fill that
            # the replay never gives it would signal on every tick).
            status.signals += 1
        self._move(sid, token, signal.side.sign * signal.quantity)
        if signal.replaces and signal_id and sid in self._books:
            taken = signal.side.sign * signal.replaced_leaves
            self._exit_cancels[signal.replaces] = (sid, token, taken)
            self._move(sid, token, -taken)
            self._replacements[signal.replaces] = _Replacement(
                sid, token, signal.replaced_leaves, signal)
            self.replacement_sent(signal, signal_id)

    def reset_books(self, strategy_ids: Iterable[str]) -> None:
        """Empty the books of ``strategy_ids`` (initial cash, no position, no order) before
        they are rebuilt from the log."""
        ids = set(strategy_ids)
        for sid in ids:
            book = self._books.get(sid)
            if book is not None:
                book.positions.clear()
                book.filled.clear()
                book.by_product.clear()
                book.orders.clear()
                book.cash = self._initial_cash
        for kept in (self._exit_cancels, self._expired):
            for oid, (sid, _, _) in list(kept.items()):
                if sid in ids:
                    del kept[oid]
        for oid, rep in list(self._replacements.items()):
            if rep.sid in ids:
                self._drop_replacement(oid)
                self._cancelled_early.discard(rep.order_id or "")
        for oid, (_, sid) in list(self._expiring.items()):
            if sid in ids:
                del self._expiring[oid]

    def on_signal_rejected(self, signal: Signal) -> None:
        """Risk refused ``signal``: undo its move of the intended position."""
        if signal.replaces and self._replacements:
            self._drop_replacement(signal.replaces)
        self._move(signal.strategy_id, signal.instrument_token, -signal.side.sign * signal.quantity)

    def on_order_submitted(self, order: OrderSubmitted) -> None:
        """An open order now, unless its end came first."""
        oid = order.order_id
        book = self._books.get(order.strategy_id)
        if book is None or oid in book.orders:  # (redelivered)
            return
        if self._ended and oid in self._ended:
            del self._ended[oid]
            self._early_leaves.pop(oid, None)
            return
        leaves = (self._early_leaves.pop(oid, order.quantity) if self._early_leaves
                  else order.quantity)
        asked = bool(self._cancelled_early) and oid in self._cancelled_early
        book.orders[oid] = OpenOrder(
            order_id=oid, signal_id=order.signal_id, instrument_token=order.instrument_token,
            side=order.side, quantity=order.quantity, leaves_quantity=leaves,
            order_type=order.order_type, limit_price=order.limit_price,
            trigger_price=order.trigger_price, parent_order_id=order.parent_order_id,
            origin=order.origin, placed_ns=order.ts, product=order.product,
            validity=order.validity, take_profit=order.take_profit, stop_loss=order.stop_loss,
            cancel_requested=asked)
        if order.expires_ns is not None and not self.ordered_feedback:
            self._expiring[oid] = (order.expires_ns, order.strategy_id)
            self._next_expiry = min(self._next_expiry, order.expires_ns)

    def _order_ended(self, strategy_id: str, order_id: str) -> None:
        """``order_id`` is filled in full, cancelled or rejected: no longer open."""
        if self._exit_cancels:
            self._restore_exit_cancel(order_id)
        if self._replacements:
            self._drop_replacement(order_id)
            if self._replaced:  # a replacement that ended: nothing of it left to cancel
                entry = self._replaced.pop(order_id, None)
                if entry is not None:
                    self._replacements.pop(entry, None)
        if self._cancelled_early:
            self._cancelled_early.discard(order_id)
        if self._expired:  # the runner ended it at its expiry: what it took goes back
            taken = self._expired.pop(order_id, None)
            if taken is not None:
                self._move(*taken)
        book = self._books.get(strategy_id)
        if book is None or book.orders.pop(order_id, None) is not None:
            return
        if self.ordered_feedback:
            return  # never submitted to the runner: nothing to wait for
        # not submitted yet (or never: a rejection): its submission, if it comes, is stale
        self._early_leaves.pop(order_id, None)
        ended = self._ended
        ended[order_id] = None
        if len(ended) > ENDED_KEPT:
            ended.popitem(last=False)

    def on_order_rejected(
        self, strategy_id: str, token: int, side: Side, quantity: int, order_id: str | None = None,
        origin: str = "signal",
    ) -> None:
        """The venue refused an order of ``quantity``: undo that part of the intent."""
        if order_id is not None:
            self._order_ended(strategy_id, order_id)
        if origin == "signal":
            self._move(strategy_id, token, -side.sign * quantity)

    def on_order_cancelled(
        self, strategy_id: str, token: int, side: Side, leaves_quantity: int,
        order_id: str | None = None, origin: str = "signal",
    ) -> None:
        """An order ended with ``leaves_quantity`` unfilled: that part never happens."""
        if order_id is not None:
            if self._replacements:
                rep = self._replacements.get(order_id)
                if rep is not None and leaves_quantity < rep.leaves:  # filled since the trim
                    self._trim_failed(order_id)
            self._order_ended(strategy_id, order_id)
        if origin == "signal":
            self._move(strategy_id, token, -side.sign * leaves_quantity)

    def on_order_rejected_event(self, event: OrderRejected) -> None:
        self.on_order_rejected(event.strategy_id, event.instrument_token, event.side,
                               event.quantity, event.order_id, event.origin)

    def on_order_cancelled_event(self, event: OrderCancelled) -> None:
        self.on_order_cancelled(event.strategy_id, event.instrument_token, event.side,
                                event.leaves_quantity, event.order_id, event.origin)

    def on_cancel_refused(self, strategy_id: str, order_id: str) -> None:
        """The venue could not cancel ``order_id`` as the strategy asked: it may ask again.
        An entry an exit cancelled in its place (``_cancel_entries``) still works: its
        leaves count in the intended position again (what of it fills or ends moves it as
        for any entry), or the strategy, shown flat, would never exit it and could enter
        again beside it."""
        if self._replacements:
            self._trim_failed(order_id)
        if self._exit_cancels:
            self._restore_exit_cancel(order_id)
        book = self._books.get(strategy_id)
        if book is None:
            return
        order = book.orders.get(order_id)
        if order is not None and order.cancel_requested:
            book.orders[order_id] = msgspec.structs.replace(order, cancel_requested=False)

    def on_fill(self, fill: OrderFilled) -> None:
        """A fill moves the strategy's cash and filled position, and its intended position
        when the system placed the order (``origin``): no signal of the strategy moved it."""
        book = self._books.get(fill.strategy_id)
        if book is None:
            return
        signed = fill.quantity if fill.side is _BUY else -fill.quantity
        charges = 0 if fill.charges is NO_CHARGES else fill.charges.total
        book.cash -= signed * fill.price + charges
        token = fill.instrument_token
        before = book.filled.get(token, 0)
        book.filled[token] = after = before + signed
        if after:
            if not before or (before > 0) != (after > 0):  # opened, or reversed
                book.average[token] = fill.price
            elif abs(after) > abs(before):  # added to: averaged in (a reduction leaves it)
                mean = (book.average.get(token, fill.price) * before
                        + fill.price * signed) / Fraction(after)
                book.average[token] = mean.numerator if mean.denominator == 1 else mean
        elif book.average:
            book.average.pop(token, None)
        held = (token, fill.product)
        book.by_product[held] = book.by_product.get(held, 0) + signed
        if fill.origin != "signal":
            book.positions[token] = book.positions.get(token, 0) + signed
        oid = fill.order_id
        if self._replacements:
            rep = self._replacements.get(oid)
            if rep is not None and fill.leaves_quantity < rep.leaves:  # filled since the trim
                self._trim_failed(oid)
        if self._expired and oid in self._expired:  # filled before its expiry, read after
            sid, _, taken = self._expired[oid]
            self._expired[oid] = (sid, token, taken - signed)
            book.positions[token] = book.positions.get(token, 0) + signed
        if fill.leaves_quantity == 0:
            self._order_ended(fill.strategy_id, oid)
            return
        order = book.orders.get(oid)
        if order is not None:
            if fill.leaves_quantity < order.leaves_quantity:
                book.orders[oid] = msgspec.structs.replace(
                    order, leaves_quantity=fill.leaves_quantity)
        elif not self.ordered_feedback and oid not in self._ended:  # before its submission
            early = self._early_leaves.get(oid)
            if early is None or fill.leaves_quantity < early:
                self._early_leaves[oid] = fill.leaves_quantity
