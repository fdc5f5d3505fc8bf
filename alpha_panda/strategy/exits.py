"""The runner's exits: the strategy file's ``exit_at``, and exits taking resting entries.

An exit signal of a strategy whose own limit entries still rest is made up by cancelling
those entries (or placing one again smaller) rather than by selling what is not held
(``_cancel_entries``); the feedback has those cancels and replacements watched here
(``_trim_failed``, ``_drop_replacement``, ``_restore_exit_cancel``). Past ``exit_at``
(``_exiting``) only closing signals go, and what is held is closed. A mixin of
``StrategyRunner`` (its state is the runner's), separate as one concern of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import time
from typing import TYPE_CHECKING, Final

import msgspec
import structlog

from alpha_panda.domain.clock import DAY_NS, ist_date, ist_ns
from alpha_panda.domain.events import MarketTick, Signal, derive_id
from alpha_panda.domain.values import OrderType, Product, Side, reduces
from alpha_panda.execution.config import MIS_SQUAREOFF
from alpha_panda.risk.engine import ORDER_STAGES
from alpha_panda.strategy.base import CancelOrder, OpenOrder, _Book
from alpha_panda.strategy.slots import _Slot

if TYPE_CHECKING:
    from alpha_panda.strategy.config import StrategyConfig
    from alpha_panda.strategy.runner import StrategyStatus

log = structlog.get_logger("alpha_panda.strategy.runner")  # (its events' logger, as before)

_BUY: Final = Side.BUY
_RETRY_NS: Final = 60 * 1_000_000_000  # an exit close refused is sent again this much later


class _Replacement:
    """An entry an exit placed again smaller (``_cancel_entries``), for the entry it
    replaces: ``leaves``, what of that one was unfilled when cut; the signal, and its id and
    order id on the strategy's first broker once the caller named it (``replacement_sent``)."""

    __slots__ = ("leaves", "order_id", "sid", "signal", "signal_id", "token")

    def __init__(self, sid: str, token: int, leaves: int, signal: Signal) -> None:
        self.sid = sid
        self.token = token
        self.leaves = leaves
        self.signal = signal
        self.signal_id = ""
        self.order_id: str | None = None


class _Exits:
    """``StrategyRunner``'s exits (see the module's docstring)."""

    # the runner's state these read and keep (set in ``StrategyRunner.__init__``)
    _configs: dict[str, StrategyConfig]
    _status: dict[str, StrategyStatus]
    _books: dict[str, _Book]
    cancels: list[tuple[str, OpenOrder]]
    replaying: bool
    _halted: set[str]
    _exit_cancels: dict[str, tuple[str, int, int]]
    _replacements: dict[str, _Replacement]
    _replaced: dict[str, str]
    _cancelled_early: set[str]

    if TYPE_CHECKING:  # (the runner's and its feedback's)
        def _accept(
            self, slot: _Slot, sigs: Sequence[Signal | CancelOrder], tick: MarketTick,
            out: list[Signal] | None,
        ) -> list[Signal] | None: ...

        def _move(self, sid: str, token: int, delta: int) -> None: ...

    def _cancel_entries(self, sid: str, book: _Book, token: int, held: int, qty: int,
                        exit_: Signal, resized: list[Signal]) -> int:
        """An exit of ``qty`` from the intended ``held``: the part of it that only resting
        entries make up (orders of the strategy's own signals adding to the position, not
        filled) is taken by cancelling them, not by selling what is not held; what is left
        to send. Without this, an exit of a limit entry that rests unfilled sells at once,
        and the account is short when the entry never fills. Whole orders the exit can take
        in full are cancelled, newest first (one larger than the excess is, and the exit
        sells less by the difference). A part no whole order fits is taken from the newest
        entry larger than it: that one is cancelled and placed again for the rest (a new
        signal in ``resized``, at its prices, its bracket's too), as a trader lowers an
        order's quantity: keeping 6 of a resting buy of 10 cancels it and buys 6 (from the
        exit time, which keeps the strategy flat, it is only cancelled). An entry the
        strategy asked to cancel already counts as whole, its cancel not asked again."""
        sign = 1 if held > 0 else -1
        entries = [o for o in book.orders.values()
                   if o.instrument_token == token and o.origin == "signal"
                   and o.side.sign == sign and o.order_type is not OrderType.MARKET
                   and o.order_id not in self._exit_cancels]  # (those left ``held`` already)
        if not entries:
            return qty
        # ``held`` counts them all, and those the strategy asked to cancel until that lands
        resting = sum(o.leaves_quantity for o in entries)
        # what the exit would sell beyond the rest; all of it where the rest is held the
        # other way (short 3 with a resting buy of 6: the short cannot be sold)
        excess = min(qty, qty - (abs(held) - resting))
        for order in reversed(entries):
            leaves = order.leaves_quantity
            if excess <= 0:
                break
            if leaves > qty:
                continue
            if not order.cancel_requested:
                self._ask_cancel(sid, book, order)
            self._exit_cancels[order.order_id] = (sid, token, sign * leaves)
            excess -= leaves
            qty -= leaves
        if excess > 0:
            part = next((o for o in reversed(entries) if o.leaves_quantity > excess
                         and not o.cancel_requested and o.order_id not in self._exit_cancels),
                        None)
            if part is not None:
                leaves = part.leaves_quantity
                self._ask_cancel(sid, book, part)
                qty -= excess
                now = book.clock.now_ns
                if book.exit_at is not None and now >= ist_ns(ist_date(now), book.exit_at):
                    # Flat from the exit time: an entry placed again then would open what
                    # the exit closes. The exit takes ``excess`` of this one, its cancel the
                    # rest when it lands (``_exiting`` cancels it whole anyway).
                    self._exit_cancels[part.order_id] = (sid, token, sign * excess)
                    return qty
                self._exit_cancels[part.order_id] = (sid, token, sign * leaves)
                # (the intent moved by the exit already: it holds this one's rest)
                again = Signal(
                    strategy_id=sid, instrument_token=token, side=part.side,
                    quantity=leaves - excess, order_type=part.order_type,
                    limit_price=part.limit_price, trigger_price=part.trigger_price,
                    validity=part.validity, product=part.product,
                    take_profit=part.take_profit, stop_loss=part.stop_loss,
                    price_hint=exit_.price_hint,
                    reason=f"{part.order_id} cut to {leaves - excess} of {leaves} by an exit",
                    replaces=part.order_id, replaced_leaves=leaves)
                self._replacements[part.order_id] = _Replacement(sid, token, leaves, again)
                resized.append(again)
        return qty

    def replacement_sent(self, signal: Signal, signal_id: str) -> None:
        """The caller gave ``signal``, an entry placed again smaller for an exit
        (``Signal.replaces``), the id ``signal_id``: its order's id on the strategy's first
        broker is known from it, to cancel it should the entry it replaces fill."""
        rep = self._replacements.get(signal.replaces)
        if rep is None or rep.signal_id:
            return
        broker = str(self._configs[signal.strategy_id].brokers[0])
        rep.signal_id = signal_id
        rep.order_id = derive_id(signal_id, ORDER_STAGES.get(broker, ("order",))[0])
        self._replaced[rep.order_id] = signal.replaces

    def _trim_failed(self, order_id: str) -> None:
        """The entry ``order_id`` an exit placed again smaller filled (in full or in part)
        instead of being cancelled, or its cancel was refused (it works on): the replacement
        must not add to it. What of the replacement is not filled is cancelled (also before
        its submission is read: the engines cancel an order asked before it comes); what
        filled stays held, and the intended position shows it, as the entry's fills."""
        rep = self._replacements.pop(order_id, None)
        if rep is None or rep.order_id is None:
            return
        del self._replaced[rep.order_id]
        book = self._books.get(rep.sid)
        if book is None:
            return
        order = book.orders.get(rep.order_id)
        if order is None:  # not submitted yet (its end, read first, would have dropped it)
            sig = rep.signal
            order = OpenOrder(
                order_id=rep.order_id, signal_id=rep.signal_id, instrument_token=rep.token,
                side=sig.side, quantity=sig.quantity, leaves_quantity=sig.quantity,
                order_type=sig.order_type, limit_price=sig.limit_price,
                trigger_price=sig.trigger_price, product=sig.product, validity=sig.validity,
                take_profit=sig.take_profit, stop_loss=sig.stop_loss)
            self._cancelled_early.add(rep.order_id)
            self.cancels.append((rep.sid, order))
        elif not order.cancel_requested:
            self._ask_cancel(rep.sid, book, order)
        log.warning("strategy_trim_lost_race", strategy_id=rep.sid, order_id=order_id,
                    replacement=rep.order_id,
                    detail="the entry an exit cut filled (or its cancel was refused) before "
                           "its cancel landed: its replacement is cancelled, and the "
                           "strategy sees what it holds")

    def _drop_replacement(self, order_id: str) -> None:
        """The entry ``order_id`` (or its replacement) ended as the trim meant, or the
        replacement was refused: nothing more to watch."""
        rep = self._replacements.pop(order_id, None)
        if rep is not None and rep.order_id is not None:
            self._replaced.pop(rep.order_id, None)

    def _ask_cancel(self, sid: str, book: _Book, order: OpenOrder) -> None:
        """Ask the venue to cancel ``order`` (``take_cancels``), marked asked in the book."""
        book.orders[order.order_id] = msgspec.structs.replace(order, cancel_requested=True)
        self.cancels.append((sid, order))

    def _restore_exit_cancel(self, order_id: str) -> None:
        """An entry an exit cancelled in its place (``_cancel_entries``) that ended, or whose
        cancel was refused: the leaves the exit took off the intended position go back
        (what the order's end does next moves it as for any order)."""
        taken = self._exit_cancels.pop(order_id, None)
        if taken is not None:
            self._move(*taken)

    def exiting(
        self, slot: _Slot, sigs: Sequence[Signal | CancelOrder] | None, tick: MarketTick,
        out: list[Signal] | None,
    ) -> list[Signal] | None:
        """After warm-up, from the slot's ``exit_ns`` on: ``accept`` with the strategy file's
        ``exit_at`` applied (``process``'s rule)."""
        return self._exiting(slot, sigs, tick, out)

    def _exiting(
        self, slot: _Slot, sigs: Sequence[Signal | CancelOrder] | None, tick: MarketTick,
        out: list[Signal] | None,
    ) -> list[Signal] | None:
        """Past the strategy file's ``exit_at`` today: its signals that would open or add
        to a position are dropped (``dropped_after_exit``), the others go as usual. Then,
        until the MIS cut-off (the exchange's square-off takes over there), its orders in
        the instrument placed before the exit time are cancelled (not what it placed
        since: the closes, a reduction of its own) and, once none of those is left and
        nothing it signalled is pending, what it holds there is closed with a market order
        per product. A close refused is sent again a minute later, not on every tick; a
        late fill is closed in turn. Its brackets' stop-loss and target keep protecting the
        position until the close fills (the venue then cuts them to what is left held)."""
        ts = tick.ts
        book = slot.ctx._book
        if ts >= slot.exit_end:  # the first tick of a day (past its exit time, or not)
            assert book.exit_at is not None
            day = ist_date(ts)
            slot.exit_ns = ist_ns(day, book.exit_at)
            slot.exit_end = ist_ns(day, time(0)) + DAY_NS
            slot.exit_stop = (ist_ns(day, MIS_SQUAREOFF) if book.product is Product.MIS
                              else slot.exit_end)
            slot.exit_tried = None
            if ts < slot.exit_ns:
                return self._accept(slot, sigs, tick, out) if sigs else out
        sid = slot.sid
        if self.replaying or (self._halted and sid in self._halted):
            return self._accept(slot, sigs, tick, out) if sigs else out
        if sigs:
            kept = sigs
            if isinstance(sigs, (list, tuple)):  # (else ``_accept`` fails the strategy)
                held = dict(book.positions)
                kept = []
                for sig in sigs:
                    if isinstance(sig, Signal):
                        delta = sig.quantity if sig.side is _BUY else -sig.quantity
                        now = held.get(sig.instrument_token, 0)
                        if not (isinstance(delta, int) and reduces(now, delta)):
                            self._status[sid].dropped_after_exit += 1
                            continue
                        held[sig.instrument_token] = now + delta
                    kept.append(sig)
            if kept:
                out = self._accept(slot, kept, tick, out)
        if ts >= slot.exit_stop or self._status[sid].state != "ACTIVE":
            return out
        token = slot.token
        exit_ns = slot.exit_ns
        stale = [o for o in book.orders.values() if o.instrument_token == token
                 and o.placed_ns < exit_ns and o.origin != "bracket"]
        asked = False
        for order in stale:
            if not order.cancel_requested:
                self._ask_cancel(sid, book, order)
                asked = True
        # what it holds there, per product (an MIS short and a CNC long may net to nothing)
        holdings = tuple((product, held) for (t, product), held in book.by_product.items()
                         if t == token and held)
        tried = slot.exit_tried
        if (stale or not holdings or book.positions.get(token, 0) != book.filled.get(token, 0)
                or (tried is not None and tried[0] == holdings and ts < tried[1] + _RETRY_NS)):
            return ([] if out is None else out) if asked else out
        slot.exit_tried = (holdings, ts)
        reason = f"exit_at {book.exit_at:%H:%M}"
        closes = [slot.ctx.signal(Side.SELL if held > 0 else _BUY, abs(held), product=product,
                                  reason=reason) for product, held in holdings]
        return self._accept(slot, closes, tick, out)
