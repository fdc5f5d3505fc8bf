"""Bracket exits on the paper exchange, and the held position they may sell.

A bracket entry's fills each get their take-profit LIMIT and stop-loss SL-M legs (one
cancelling the other, ``oco``). The legs follow the position: when the strategy's own exit
takes it down they are cut to what is left held (``_fit_legs``), and when a leg fills the
strategy's exits still open are cut in turn (``_fit_exits``), so that nothing sells what is
no longer there. What is held is taken as of a fill's event time (``_held_at``), as fills can
be processed out of event-time order (a lagging engine, a rebuild). Kept apart from matching:
a fill adds one ``_book_held`` to it, the rest runs for brackets and exits only.
``PaperExchange`` inherits this; the state it reads is the exchange's own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from alpha_panda.domain.events import Payload, derive_id
from alpha_panda.domain.values import OrderType, Product, Side, Validity
from alpha_panda.execution.orders import Order

if TYPE_CHECKING:
    from collections.abc import Sequence

    from alpha_panda.domain.events import OrderSubmitted
    from alpha_panda.execution.config import ExecutionConfig

_RECENT_KEPT = 256  # fills kept per position for ``_held_at``, then those of the last
_RECENT_NS = 2 * 86_400 * 1_000_000_000  # two days
_BUY = Side.BUY


class BracketExits:
    """The bracket part of ``PaperExchange`` (a mixin: it uses the exchange's state)."""

    if TYPE_CHECKING:
        config: ExecutionConfig
        _open: dict[int, list[Order]]
        _held: dict[tuple[str, int, Product], int]
        _recent: dict[tuple[str, int, Product], list[tuple[int, int]]]
        _recent_ts: dict[tuple[str, int, Product], int]
        _recent_cap: dict[tuple[str, int, Product], int]

        def _register(self, order: Order) -> None: ...
        def _submitted(self, order: Order, ts: int) -> OrderSubmitted: ...
        def _rest(self, orders: Sequence[Order], out: list[Payload]) -> None: ...
        def _cancel(self, order: Order, reason: str, ts: int, out: list[Payload]) -> None: ...

    def _exits(self, order: Order, qty: int, fill: int, n: int, ts: int,
               out: list[Payload]) -> None:
        """A bracket entry's ``n``-th fill (``qty`` at ``fill``) gets its own exits at once,
        a target and a stop for that quantity (one cancelling the other): a partly filled
        entry is protected while the rest of it still rests. The target goes on the book
        behind the market (at the fill's price) unless the fill already passed it (a stop
        entry that gapped): there it trades at its limit, not at the price of a gap.
        The legs close no more than is held: of a fill that reversed the position, only
        what it opened (a buy of 20 from a short 10 gets exits for 10); of one that ended
        flat, none."""
        key = (order.strategy_id, order.instrument_token, order.product)
        held = self._held_at(key, ts) * order.side.sign  # (on the entry's side)
        qty = min(qty, held - self._legs_total(key, order.side.opposite))
        if qty <= 0:
            return
        legs: list[Order] = []
        for stage, kind, price in (
            ("take_profit", OrderType.LIMIT, order.take_profit),
            ("stop_loss", OrderType.SL_M, order.stop_loss),
        ):
            if price is None:
                continue
            legs.append(Order(
                order_id=derive_id(order.order_id, stage, n), signal_id=order.signal_id,
                strategy_id=order.strategy_id, instrument_token=order.instrument_token,
                side=order.side.opposite, quantity=qty, order_type=kind,
                product=order.product, validity=Validity.DAY, segment=order.segment,
                created_ns=ts, arrival_ns=ts + self.config.latency_ns,
                limit_price=price if kind is OrderType.LIMIT else None,
                trigger_price=price if kind is OrderType.SL_M else None,
                parent_order_id=order.order_id, origin="bracket",
                rested=kind is OrderType.LIMIT and order.side.sign * (price - fill) > 0,
            ))
        if len(legs) == 2:
            legs[0].sibling_order_id, legs[1].sibling_order_id = legs[1].order_id, legs[0].order_id
        for leg in legs:
            self._register(leg)
            out.append(self._submitted(leg, ts))
        if legs:
            self._rest(legs, out)

    def _open_pairs(self, key: tuple[str, int, Product]) -> dict[str, list[Order]]:
        """The open bracket legs of ``key`` by pair (``Order.pair_id``), newest first."""
        sid, token, product = key
        pairs: dict[str, list[Order]] = {}
        for o in reversed(self._open.get(token, ())):
            if o.origin == "bracket" and o.strategy_id == sid and o.product is product \
                    and o.status.is_open:
                pairs.setdefault(o.pair_id, []).append(o)
        return pairs

    def _legs_total(self, key: tuple[str, int, Product], side: Side) -> int:
        """What the open legs of ``key`` on ``side`` may trade: each pair's once."""
        return sum(max(leg.leaves for leg in legs)
                   for legs in self._open_pairs(key).values() if legs[0].side is side)

    def _book_held(self, key: tuple[str, int, Product], ts: int, signed: int
                   ) -> tuple[int, int]:
        """A fill of ``signed`` at ``ts`` in ``key``: what was held before it and after it,
        as of ``ts`` (``_held_at``)."""
        held = self._held
        total = held.get(key, 0) + signed
        held[key] = total
        recent = self._recent.get(key)
        if recent is None:
            recent = self._recent[key] = []
        latest = self._recent_ts.get(key, ts)
        recent.append((ts, signed))
        if ts >= latest:  # in time order (the usual case): all of it is as of ``ts``
            self._recent_ts[key] = latest = ts
            now = total
        else:
            now = self._held_at(key, ts)
        if len(recent) > self._recent_cap.get(key, _RECENT_KEPT):
            horizon = latest - _RECENT_NS  # (a fill is read late by a day at most)
            recent[:] = [f for f in recent if f[0] >= horizon]
            # what is left waits until it has doubled (not rescanned at every fill)
            self._recent_cap[key] = max(_RECENT_KEPT, 2 * len(recent))
        return now - signed, now

    def _held_at(self, key: tuple[str, int, Product], ts: int) -> int:
        """What ``key`` held as of event time ``ts``: its fills at or before it."""
        held = self._held.get(key, 0)
        if ts >= self._recent_ts.get(key, ts):
            return held  # (no fill after it)
        for t, q in self._recent.get(key, ()):
            if t > ts:
                held -= q
        return held

    def _fit_legs(self, key: tuple[str, int, Product], ts: int, out: list[Payload]) -> None:
        """A fill at ``ts`` of the strategy's own order (its exit) took the position ``key``
        down: its brackets' stop-loss and target there are cut to what is left held
        (reason ``exit``), so that neither sells what is no longer there. Newest pairs first;
        a pair cut in part is cancelled and placed again for the rest, at the same prices.
        A full exit leaves none; an exit the risk manager or the venue refused cut none."""
        pairs = self._open_pairs(key)
        if not pairs:
            return
        held = self._held_at(key, ts)
        # what the legs of each side may sell: a sell closes a long, a buy a short
        room = {Side.SELL: max(held, 0), _BUY: max(-held, 0)}
        total = {Side.SELL: 0, _BUY: 0}
        for legs in pairs.values():
            total[legs[0].side] += legs[0].leaves
        for legs in pairs.values():
            legs.reverse()  # (a pair's legs in book order: the target, then the stop)
            side = legs[0].side
            excess = total[side] - room[side]
            if excess <= 0:
                continue
            leaves = legs[0].leaves
            cut = min(leaves, excess)
            total[side] -= cut
            for leg in legs:
                self._cancel(leg, "exit", ts, out)
            if cut < leaves:
                self._place_legs(legs, leaves - cut, ts, out)
        for legs in pairs.values():  # (a rebuild: what the record cut here goes, whatever)
            for leg in legs:
                if leg.status.is_open and leg.killed_by == "exit" and leg.killed_ns is not None \
                        and leg.killed_ns <= ts:
                    self._cancel(leg, "exit", ts, out)

    def _fit_exits(self, key: tuple[str, int, Product], ts: int, out: list[Payload]) -> None:
        """A bracket's leg filled at ``ts`` and took the position ``key`` down: the
        strategy's own exits still open there (``reduce_only``: a resting limit exit, a
        market one on its way) that would now sell more than is held are cancelled, newest
        first (reason ``reduce_only``), as the legs are cut when an exit fills: else the
        stop closed the position and the exit then sold it again, short (delivery too)."""
        sid, token, product = key
        exits = [o for o in reversed(self._open.get(token, ())) if o.reduce_only
                 and o.origin == "signal" and o.strategy_id == sid and o.product is product
                 and o.status.is_open]
        if not exits:
            return
        held = self._held_at(key, ts)
        room = {Side.SELL: max(held, 0), _BUY: max(-held, 0)}
        total = {Side.SELL: 0, _BUY: 0}
        for o in exits:
            total[o.side] += o.leaves
        for o in exits:
            if total[o.side] > room[o.side]:
                total[o.side] -= o.leaves
                self._cancel(o, "reduce_only", ts, out)

    def _place_legs(self, legs: list[Order], qty: int, ts: int, out: list[Payload]) -> None:
        """A bracket's pair of exits ``legs`` (just cancelled) again, for ``qty``, from ``ts``."""
        new = [Order(
            order_id=derive_id(leg.order_id, "cut"), signal_id=leg.signal_id,
            strategy_id=leg.strategy_id, instrument_token=leg.instrument_token, side=leg.side,
            quantity=qty, order_type=leg.order_type, product=leg.product,
            validity=leg.validity, segment=leg.segment, created_ns=ts, arrival_ns=ts,
            limit_price=leg.limit_price, trigger_price=leg.trigger_price,
            parent_order_id=leg.parent_order_id, origin="bracket", rested=leg.rested,
            last_ts=leg.last_ts,
        ) for leg in legs]
        if len(new) == 2:
            new[0].sibling_order_id, new[1].sibling_order_id = new[1].order_id, new[0].order_id
        for leg, old in zip(new, legs, strict=True):
            self._register(leg)
            if old.killed_ns is not None and old.killed_by != "exit" and (
                    leg.killed_ns is None or old.killed_ns < leg.killed_ns):
                leg.killed_ns, leg.killed_by = old.killed_ns, old.killed_by
            out.append(self._submitted(leg, ts))
        self._rest(new, out)
