"""MIS square-off for the paper exchange: at the cut-off (15:20 IST by default) every open
MIS order of an instrument is cancelled and every MIS position in it flattened at the first
tick at/after the cut-off; a fill processed later but dated before that tick is flattened too.
That first tick may come on a later day (the run was stopped over the cut-off, or a tick
file has none between it and the close): an intraday position never carries into the next
session's trading, it is flattened at its instrument's first tick there.
``PaperExchange`` inherits this; the state it reads is the exchange's own.
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING

from alpha_panda.domain.events import MarketTick, Payload, derive_id
from alpha_panda.domain.values import OrderType, Product, Side, Validity
from alpha_panda.execution.market import Session, SessionClock
from alpha_panda.execution.orders import Order

if TYPE_CHECKING:
    from alpha_panda.domain.events import OrderSubmitted
    from alpha_panda.execution.config import ExecutionConfig
    from alpha_panda.execution.costs import Segment


class MisSquareOff:
    """The square-off part of ``PaperExchange`` (a mixin: it uses the exchange's state)."""

    if TYPE_CHECKING:
        config: ExecutionConfig
        _clock: SessionClock
        _open: dict[int, list[Order]]
        _mis: dict[tuple[str, int], int]
        _squared: dict[tuple[int, object], tuple[int, int]]
        _squareoffs: dict[tuple[str, int, object], int]
        _mis_day: dict[int, date]
        _quiet_lo: int
        _quiet_hi: int

        def _match(self, order: Order, tick: MarketTick, out: list[Payload]) -> None: ...
        def _register(self, order: Order) -> None: ...
        def _segment(self, token: int, product: Product) -> Segment: ...
        def _submitted(self, order: Order, ts: int) -> OrderSubmitted: ...
        def _fill(self, order: Order, qty: int, price: int, ts: int, out: list[Payload]) -> None: ...

    def _session(self, ts: int) -> Session:
        return self._clock.session(ts)

    def _cutoff_ns(self, ts: int) -> int:
        cutoff = self._session(ts).cutoff
        assert cutoff is not None
        return cutoff

    def _squareoff(self, tick: MarketTick, out: list[Payload]) -> None:
        """At the first tick at/after the cut-off, flatten every MIS position of its instrument."""
        token, ts = tick.instrument_token, tick.ts
        sess = self._session(ts)
        if sess.cutoff is None or ts < sess.cutoff:
            self._quiet_lo, self._quiet_hi = sess.lo, sess.hi if sess.cutoff is None else sess.cutoff
            return
        day = sess.day
        if (token, day) in self._squared:
            return
        self._squared[(token, day)] = (ts, tick.last_price)
        for order in list(self._open.get(token, ())):
            if order.product is Product.MIS and order.status.is_open:
                self._match(order, tick, out)  # past the cut-off: this cancels it
        for (strategy_id, tok), qty in sorted(self._mis.items()):
            if tok == token and qty:
                self._flatten(strategy_id, token, day, qty, tick.last_price, ts, out)

    def _mis_changed(self, token: int, ts: int) -> None:
        """After an MIS fill at ``ts``: the day of the instrument's open MIS positions."""
        if not any(q and tok == token for (_, tok), q in self._mis.items()):
            self._mis_day.pop(token, None)
        elif self.config.mis_squareoff is not None:
            self._mis_day.setdefault(token, self._session(ts).day)

    def _squareoff_overnight(self, tick: MarketTick, out: list[Payload]) -> None:
        """A tick of a later day than the instrument's open MIS positions: their cut-off
        went by with no tick of it. Flatten them at this tick (ids name their own day).
        Per instrument, so it holds whatever order instruments' ticks interleave in."""
        token = tick.instrument_token
        day = self._mis_day[token]
        if self._session(tick.ts).day <= day:
            return
        self._squared.setdefault((token, day), (tick.ts, tick.last_price))
        for (strategy_id, tok), qty in sorted(self._mis.items()):
            if tok == token and qty:
                self._flatten(strategy_id, token, day, qty, tick.last_price, tick.ts, out)

    def _late_squareoff(self, order: Order, ts: int, out: list[Payload]) -> None:
        """A fill before the cut-off processed after the square-off tick is flattened too."""
        if self.config.mis_squareoff is None or order.signal_id.startswith("squareoff|"):
            return
        day = self._session(ts).day
        done = self._squared.get((order.instrument_token, day))
        if done is None or ts >= done[0]:
            return
        qty = self._mis.get((order.strategy_id, order.instrument_token), 0)
        if qty:
            self._flatten(order.strategy_id, order.instrument_token, day, qty, done[1], done[0], out)

    def _flatten(
        self, strategy_id: str, token: int, day: object, qty: int, price: int, ts: int,
        out: list[Payload],
    ) -> None:
        key = (strategy_id, token, day)
        n = self._squareoffs.get(key, 0)
        self._squareoffs[key] = n + 1
        base = f"squareoff|{strategy_id}|{token}|{day}|{n}"
        order = Order(
            order_id=derive_id(base, "order"), signal_id=base, strategy_id=strategy_id,
            instrument_token=token, side=Side.SELL if qty > 0 else Side.BUY, quantity=abs(qty),
            order_type=OrderType.MARKET, product=Product.MIS, validity=Validity.DAY,
            segment=self._segment(token, Product.MIS), created_ns=ts, arrival_ns=ts,
        )
        self._register(order)
        out.append(self._submitted(order, ts))
        self._fill(order, order.quantity, price, ts, out)
