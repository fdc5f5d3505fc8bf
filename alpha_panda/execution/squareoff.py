"""MIS square-off for the paper exchange: at the cut-off (15:20 IST by default) every open
MIS order of an instrument is cancelled and every MIS position in it flattened at the first
tick at/after the cut-off; a fill processed later but dated before that tick is flattened too
(at that tick, net of the other late fills of the same call: a late bracket entry and the
exit that closed it before the cut-off leave nothing to square off).
That first tick may come on a later day (the run was stopped over the cut-off, or a tick
file has none between it and the close): an intraday position never carries into the next
session's trading, it is flattened at its instrument's first tick there. MIS positions are
kept per day they were taken on, so that tick takes down the earlier days' only, whatever
came first on the new day, the instrument's tick or an order filled at its price hint.
Either way the square-off tick of an (instrument, day) is recorded, so a rebuild, which
replays every tick before the signals, flattens each fill at the same tick, price and id
as the live run did.
``PaperExchange`` inherits this; the state it reads is the exchange's own.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import TYPE_CHECKING

from alpha_panda.domain.events import MarketTick, Payload, derive_id
from alpha_panda.domain.values import OrderType, Product, Side, Validity
from alpha_panda.execution.market import Session, SessionClock
from alpha_panda.execution.orders import Order

if TYPE_CHECKING:
    from alpha_panda.domain.events import OrderSubmitted
    from alpha_panda.execution.config import ExecutionConfig
    from alpha_panda.execution.costs import Segment


_ONE_DAY = timedelta(days=1)


class MisSquareOff:
    """The square-off part of ``PaperExchange`` (a mixin: it uses the exchange's state)."""

    if TYPE_CHECKING:
        config: ExecutionConfig
        _clock: SessionClock
        _open: dict[int, list[Order]]
        _mis: dict[tuple[str, int, date], int]
        _squaring: dict[str, date]
        _squared: dict[tuple[int, object], tuple[int, int]]
        _squareoffs: dict[tuple[str, int, object], int]
        _late: dict[tuple[str, int, date], None]
        _tick_day: dict[int, date]
        _day_end: dict[int, int]
        _quiet_lo: int
        _quiet_hi: int
        _no_slip: bool

        def _match(self, order: Order, tick: MarketTick, out: list[Payload]) -> None: ...
        def _market_price(self, order: Order, price: int, now_ns: int) -> int: ...
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
        self._flatten_days(token, day, tick, out)

    def _flatten_days(self, token: int, upto: date, tick: MarketTick, out: list[Payload],
                      *, before: bool = False) -> None:
        """Flatten the instrument's MIS positions of each day up to ``upto`` (``before``:
        only days before it) at ``tick``, each under its own day's ids."""
        for (strategy_id, tok, day), qty in sorted(self._mis.items()):
            if tok == token and qty and (day < upto or (day == upto and not before)):
                self._flatten(strategy_id, token, day, qty, tick.last_price, tick.ts, out)

    def _new_day(self, tick: MarketTick, out: list[Payload]) -> None:
        """An instrument's first tick of an IST day: the first tick after the cut-off of
        each day since its previous tick that had none after it (that day, and the days
        between, which had no tick of it at all). Their square-offs happen here, and are
        recorded, so fills of those days processed later (a rebuild replays every tick
        before the signals) are flattened at this tick too."""
        token, ts = tick.instrument_token, tick.ts
        sess = self._session(ts)
        last = self._tick_day.get(token)
        self._tick_day[token] = sess.day
        self._day_end[token] = sess.hi
        if last is None or sess.cutoff is None:
            return
        day = last
        while day < sess.day:
            self._squared.setdefault((token, day), (ts, tick.last_price))
            day += _ONE_DAY
        self._flatten_days(token, sess.day, tick, out, before=True)

    def _late_squareoff(self, order: Order, ts: int, day: date) -> None:
        """A fill (at ``ts``, of the MIS position of ``day``) before the cut-off processed
        after the square-off tick is flattened too: noted here, flattened by
        ``_squareoff_late`` when the call that made it is done, so that the fills of one
        catch-up (a bracket entry and its exit, orders matched against the same ticks) are
        netted into one square-off order, as at the square-off tick of an in-time run."""
        if self.config.mis_squareoff is None or order.signal_id.startswith("squareoff|"):
            return
        done = self._squared.get((order.instrument_token, day))
        if done is None or ts >= done[0]:
            return
        self._late[(order.strategy_id, order.instrument_token, day)] = None

    def _squareoff_late(self, out: list[Payload]) -> None:
        """Flatten the net MIS positions late fills changed, at their day's square-off tick."""
        late, self._late = self._late, {}
        for key in sorted(late):
            qty = self._mis.get(key, 0)
            if qty:
                strategy_id, token, day = key
                ts, price = self._squared[(token, day)]
                self._flatten(strategy_id, token, day, qty, price, ts, out)

    def _flatten(
        self, strategy_id: str, token: int, day: date, qty: int, price: int, ts: int,
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
            origin="squareoff",
        )
        self._register(order)
        self._squaring[order.order_id] = day  # its fill takes that day's position down
        out.append(self._submitted(order, ts))
        if not self._no_slip:  # a market order: it pays the slippage any other one does
            price = self._market_price(order, price, ts)
        self._fill(order, order.quantity, price, ts, out)
