"""The engine's pending orders: what each validated signal still has unfilled at the venue.

A mixin of ``RiskEngine`` (it reads and writes the engine's state): counting a validated
signal, releasing what never filled (rejected, cancelled, or a DAY order past its close),
and what flatten orders on their way do to a position. Kept apart from the rules and the
P&L, which only read these quantities; the engine's docstring says how they count
(*filled + pending*). ``on_fill``, the hot path that draws them down, stays in the engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from alpha_panda.domain.clock import DAY_NS, ist_date, ist_ns
from alpha_panda.domain.values import OrderType, Product, Side, Validity
from alpha_panda.execution.orders import order_id_for
from alpha_panda.portfolio.day import day_start_ns

if TYPE_CHECKING:
    from alpha_panda.domain.events import Signal
    from alpha_panda.execution.market import MarketCalendar
    from alpha_panda.risk.limits import RiskLimits
    from alpha_panda.risk.state import RateWindow, RiskStateStore

_BUY = Side.BUY
_CNC = Product.CNC
_MIS = Product.MIS
_MARKET = OrderType.MARKET
_DAY = Validity.DAY
_NEVER: Final = 2**63 - 1


@dataclass(slots=True)
class _Pending:
    strategy_id: str
    token: int
    sign: int
    leaves: int
    order_ids: tuple[str, ...] = ()
    cnc: bool = False  # a CNC sell or CNC market buy: counts towards the holdings (CNC_SHORT)
    resting: bool = False  # not a market order: it may never fill (``_takes_no_risk``)
    flatten: Product | None = None  # a flatten order's product: it closes that position
    expires: int | None = None  # a DAY order: the close it expires at (``_expire``)
    quantity: int = 0  # as validated (``leaves`` less: a part fill was read)
    closed: bool = False  # cancelled at the venue, fills it made before not read yet
    reduce_only: bool = False  # an exit: the venue cuts it when a bracket's leg fills first
    bracket: bool = False  # with a stop-loss or target: each fill gets its legs at the venue
    mis: bool = False  # an MIS order: what it fills the square-off does not (``_squareoff``)


class PendingOrders:
    """The pending-order part of ``RiskEngine`` (a mixin: it uses the engine's state)."""

    if TYPE_CHECKING:
        store: RiskStateStore
        account: str
        _stages: tuple[str, ...]
        _pending: dict[str, _Pending]
        _pending_qty: dict[tuple[str, int], int]
        _pending_sells: dict[tuple[str, int], int]
        _resting: dict[tuple[str, int], list[int]]
        _cnc_pending: dict[tuple[str, int], int]
        _exits: dict[tuple[str, int], list[int]]
        _mis_open: dict[tuple[str, int], list[int]]
        _open_orders: dict[str, int]
        _order_prices: dict[int, int]
        _calendar: MarketCalendar
        _close_day: tuple[int, int, int | None, int]
        _next_expiry: int

        def _account_limits(self) -> RiskLimits: ...
        def _windows(self, acct: RiskLimits, now_ns: int,
                     exit_: bool = False) -> list[RateWindow]: ...

    def apply_validated(self, signal_id: str, signal: Signal, now_ns: int | None = None, *,
                        flatten: bool = False, placed_ns: int | None = None) -> None:
        """Count a validated signal as pending (also used to rebuild state from the log);
        ``flatten``: a flatten order, which a second flatten of its position counts;
        ``placed_ns``: when it was validated (a DAY order expires at that day's close)."""
        stages = self._stages
        if len(stages) == 1:
            order_ids: tuple[str, ...] = (order_id_for(signal_id, stages[0]),)
        else:
            order_ids = tuple(order_id_for(signal_id, stage) for stage in stages)
        all_pending = self._pending
        if order_ids[0] in all_pending:
            return
        if now_ns is not None:
            limits = self._account_limits()
            self.store.acquire(self.account, signal_id, now_ns // 1000,
                               self._windows(limits, now_ns, signal.reduce_only))
        sid = signal.strategy_id
        token = signal.instrument_token
        sign = 1 if signal.side is _BUY else -1
        price = (signal.limit_price if signal.limit_price is not None
                 else signal.trigger_price if signal.trigger_price is not None
                 else signal.price_hint)
        if price is not None and price > 0:  # (a price the venue refuses values nothing)
            self._order_prices[token] = price
        cnc = signal.product is _CNC and (
            signal.side is not _BUY or signal.order_type is _MARKET)  # (see CNC_SHORT)
        resting = signal.order_type is not _MARKET
        expires = None
        if placed_ns is not None and signal.validity is _DAY:
            expires = self._expiry_of(placed_ns)
            self._next_expiry = min(self._next_expiry, expires)
        pending = _Pending(sid, token, sign, signal.quantity, order_ids, cnc, resting,
                           signal.product if flatten else None, expires, signal.quantity,
                           reduce_only=signal.reduce_only, bracket=not flatten and (
                               signal.take_profit is not None or signal.stop_loss is not None),
                           mis=signal.product is _MIS)
        for order_id in order_ids:
            all_pending[order_id] = pending
        key = (sid, token)
        if resting:
            sides = self._resting.get(key)
            if sides is None:
                sides = self._resting[key] = [0, 0]
            sides[sign < 0] += signal.quantity
        if cnc:
            self._cnc_pending[key] = self._cnc_pending.get(key, 0) + sign * signal.quantity
        if signal.product is _MIS:
            mis = self._mis_open.get(key)
            if mis is None:
                mis = self._mis_open[key] = [0, 0]
            mis[sign < 0] += signal.quantity
        if signal.reduce_only:
            exits = self._exits.get(key)
            if exits is None:
                exits = self._exits[key] = [0, 0]
            exits[sign < 0] += signal.quantity
        qty = self._pending_qty
        qty[key] = qty.get(key, 0) + sign * signal.quantity
        if sign < 0:
            sells = self._pending_sells
            sells[key] = sells.get(key, 0) + signal.quantity
        self._open_orders[sid] = self._open_orders.get(sid, 0) + 1

    def _flattening(self, strategy_id: str, token: int, product: Product) -> int:
        """What the flatten orders on their way in a position do to it (buys less sells)."""
        seen: set[int] = set()
        total = 0
        for p in self._pending.values():
            if p.flatten is product and p.strategy_id == strategy_id and p.token == token \
                    and id(p) not in seen:
                seen.add(id(p))
                total += p.sign * p.leaves
        return total

    def _add_pending(self, strategy_id: str, token: int, delta: int) -> None:
        key = (strategy_id, token)
        self._pending_qty[key] = self._pending_qty.get(key, 0) + delta

    def _expiry_of(self, placed_ns: int) -> int:
        """The close a DAY order validated at ``placed_ns`` expires at: its day's, or the
        next trading session's when placed after it or on a day NSE does not trade (a
        Friday evening's order lives until Monday's close, as at the paper exchange; the
        day's bounds kept: a date conversion per validated signal cost a backtest 7%)."""
        lo, hi, close, after = self._close_day
        if not lo <= placed_ns < hi:
            lo = day_start_ns(placed_ns)
            hi = lo + DAY_NS
            calendar = self._calendar
            day = ist_date(placed_ns)
            close = ist_ns(day, calendar.close) if calendar.is_trading_day(day) else None
            after = ist_ns(ist_date(calendar.next_open_ns(hi)), calendar.close)
            self._close_day = (lo, hi, close, after)
        return close if close is not None and placed_ns < close else after

    def _expire(self, now_ns: int) -> None:
        """Release the DAY orders whose close is at or before ``now_ns`` (``_next_expiry``)
        that were open at the venue: resting (limit, stop), or filled in part. A market
        order of which no fill was read most likely filled at once, its fill not read yet
        (a replay at full speed): it counts until that fill or the venue's cancel."""
        nxt = _NEVER
        for order_id, pending in list(self._pending.items()):
            at = pending.expires
            if at is None or order_id != pending.order_ids[0]:
                continue
            if at <= now_ns:
                if pending.resting or pending.leaves < pending.quantity:
                    self._release(order_id)
            elif at < nxt:
                nxt = at
        self._next_expiry = nxt

    def _release(self, order_id: str, venue_leaves: int | None = None) -> None:
        """Free what of an order never fills. ``venue_leaves``: what its cancel says was
        left unfilled. Order events are read topic by topic, so the cancel can come before
        fills made before it: those stay pending (the order no longer open) until
        ``on_fill`` reads them, or a buy read in between could pass ``max_position``."""
        pending = self._pending.get(order_id)
        if pending is None:
            return
        if venue_leaves is not None and pending.closed:
            return  # its cancel again: the rest is its fills', read or not
        if venue_leaves is not None and 0 <= venue_leaves < pending.leaves:
            self._free(pending, venue_leaves)
            pending.leaves -= venue_leaves
            if not pending.closed:
                pending.closed = True
                self._open_orders[pending.strategy_id] -= 1
            return
        for other in pending.order_ids:
            self._pending.pop(other, None)
        if pending.leaves:
            self._free(pending, pending.leaves)
        if not pending.closed:
            self._open_orders[pending.strategy_id] -= 1

    def _free(self, pending: _Pending, qty: int) -> None:
        """Take ``qty`` of ``pending``'s unfilled quantity out of the pending totals."""
        key = (pending.strategy_id, pending.token)
        self._add_pending(pending.strategy_id, pending.token, -pending.sign * qty)
        if pending.sign < 0:
            self._pending_sells[key] -= qty
        if pending.cnc:
            self._cnc_pending[key] -= pending.sign * qty
        if pending.resting:
            self._resting[key][pending.sign < 0] -= qty
        if pending.reduce_only:
            self._exits[key][pending.sign < 0] -= qty
        if pending.mis:
            self._mis_open[key][pending.sign < 0] -= qty
