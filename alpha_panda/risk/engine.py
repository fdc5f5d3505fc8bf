"""The pre-trade risk engine of one broker account. Pure and event-time driven.

``check`` runs the rules in a fixed order and answers ``SignalValidated`` or
``SignalRejected`` (with a reason code from ``Reason``); it never raises for a rejection.
Rate-limit slots are taken last, so a signal rejected by another rule uses none.

Positions are *filled + pending*: a validated signal counts at once (conservative and
deterministic), then ``on_fill`` moves quantity from pending to filled and
``on_order_rejected`` / ``on_order_cancelled`` release what never filled. ``max_position``
holds on each side at its worst (filled plus every open buy, or less every open sell): a
ladder of resting buys and sells nets to nothing but may fill on one side only. Order ids are
derived from the signal id as each broker's engine does (``ORDER_STAGES``).

P&L comes from an internal ``PositionLedger`` marked by ``on_tick``. The day's P&L is
the dashboard's (``portfolio.day.DayBook``: "today" is the IST date of event time, the
quantity carried into it valued at the previous close), whichever order a rebuild reads
the fills and ticks in. Fills and marks reach the ledger lazily, in order, when P&L,
positions or exposure are read: the same result as booking each at once (the checks'
filled quantities are kept eagerly). Replaying the same signals (``check``, or
``apply_validated`` for already-validated ones), fills and order closures rebuilds the
state; a redelivered signal id gets its first decision again.

Delivery cannot be sold short (``CNC_SHORT``, always on, not a configurable limit): a CNC
SELL passes only if the strategy's CNC holdings in the instrument cover it. Holdings here
are the net quantity of its CNC fills (MIS and NRML fills, the exchange's MIS square-off
among them, do not count), plus the unfilled part of its validated CNC *market* buys, less
that of its validated CNC sells. A market buy fills at once at the venue, so counting it
keeps the decision independent of when its fill reaches this engine (on the pipeline a
fill can come after the next signal), and the pipeline decides as the backtest does. A
resting limit or stop buy does not count: it may never fill, and Kite would not sell
against it. The venue checks again against what is filled (the paper exchange's
``CNC_SHORT``, ``execution.holdings``). The kill switch's flatten signals are exempt while
it is on.

The kill switch and the account's order-rate windows live in a ``RiskStateStore``
(in memory, or ``alpha_panda.adapters.redis.risk_state.RedisRiskStateStore`` shared by
several instances).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from decimal import Decimal
from typing import Final

import msgspec

from alpha_panda.domain.clock import DAY_NS, ist_date, ist_ns
from alpha_panda.domain.events import (
    MarketTick,
    OrderCancelled,
    OrderFilled,
    OrderRejected,
    Signal,
    SignalRejected,
    SignalValidated,
)
from alpha_panda.domain.values import OrderType, Product, Side, Validity, format_rupees, reduces
from alpha_panda.execution.market import MarketCalendar
from alpha_panda.execution.orders import order_id_for
from alpha_panda.marketdata.instruments import symbol_of
from alpha_panda.portfolio.day import DayBook, day_start_ns
from alpha_panda.portfolio.ledger import FILL_IDS_KEPT, PositionLedger
from alpha_panda.risk.limits import Reason, RiskConfig, RiskLimits
from alpha_panda.risk.state import InMemoryRiskStateStore, RateWindow, RiskStateStore

_US_PER_S = 1_000_000
_BUY = Side.BUY
_CNC = Product.CNC
_MARKET = OrderType.MARKET
_DAY = Validity.DAY
_NEVER: Final = 2**63 - 1

DECISIONS_KEPT: Final = 100_000
"""Recent decisions remembered so a redelivered signal is answered the same way."""

UNBOOKED_KEPT: Final = 100_000
"""Fills the lazily booked P&L ledger holds back at most before booking them anyway."""

ORDER_STAGES: Final[dict[str, tuple[str, ...]]] = {
    "paper": ("order",),
    "zerodha": ("zerodha.order", "order"),
}
"""How each broker's engine derives an order id from a signal id (``derive_id(signal_id, stage)``)."""


_RULE_LIMITS: Final = (
    "fat_finger_qty", "fat_finger_notional", "max_order_qty", "price_band_percent",
    "max_order_notional", "max_position", "max_gross_exposure", "daily_loss", "max_open_orders",
)
_ACCOUNT_LIMITS: Final = (
    "account_max_gross_exposure", "account_daily_loss", "orders_per_second", "orders_per_minute",
    "orders_per_day",
)


def _has_stops(config: RiskConfig) -> bool:
    """Whether some level sets ``daily_loss_flatten`` or ``account_daily_loss_flatten``."""
    levels = [config.global_limits, *config.brokers.values(), *config.strategies.values(),
              *config.strategy_brokers.values()]
    return any(lim.daily_loss_flatten or lim.account_daily_loss_flatten for lim in levels)


def _no_limits(lim: RiskLimits, acct: RiskLimits) -> bool:
    """True when none of the limits ``_rules`` reads after the kill switch is set."""
    return all(getattr(lim, name) is None for name in _RULE_LIMITS) and all(
        getattr(acct, name) is None for name in _ACCOUNT_LIMITS)


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


def _reduces(held: int, s: Signal) -> bool:
    """``s`` takes ``held`` toward zero without crossing it."""
    return reduces(held, s.quantity if s.side is _BUY else -s.quantity)


class RiskEngine:
    """Pre-trade checks for one broker account (``paper`` or ``zerodha``)."""

    def __init__(
        self, config: RiskConfig | None = None, *, broker: str = "paper",
        store: RiskStateStore | None = None, account: str | None = None,
        order_stages: tuple[str, ...] | None = None,
    ) -> None:
        self.config = config or RiskConfig()
        self.broker = broker
        self.account = account or broker
        self.store = store or InMemoryRiskStateStore()
        self._stages = order_stages or ORDER_STAGES.get(broker, ("order",))
        self.market_ns = 0  # event time of the latest tick seen: the market's "now"
        self._ledger = PositionLedger(0, broker=broker, keep_cash=False)  # P&L only
        # Lazy booking (``_book``): fills, marks and position entries waiting, in order;
        # filled quantity per position and fill ids seen (the ledger's dedup), kept eagerly.
        self._unbooked: list[OrderFilled] = []
        self._unmarked: dict[int, int] = {}
        self._filled: dict[tuple[str, int], int] = {}
        self._fill_ids: OrderedDict[str, None] = OrderedDict()
        self._pending: dict[str, _Pending] = {}  # order id(s) -> what is still unfilled
        self._pending_qty: dict[tuple[str, int], int] = {}  # net: buys less sells
        self._pending_sells: dict[tuple[str, int], int] = {}  # of which sells (buys: net + this)
        # and of the orders that may never fill (limit, stop), each side: [buys, sells]
        self._resting: dict[tuple[str, int], list[int]] = {}
        # CNC_SHORT: net CNC quantity filled, and of validated CNC orders still unfilled
        # (sells, and market buys: not resting buys, which may never fill).
        # Kept apart from ``_filled`` and ``_pending_qty`` (which merge products: limits
        # hold on the instrument) so that an MIS long is not taken for delivery holdings.
        self._cnc_filled: dict[tuple[str, int], int] = {}
        # Filled quantity per product, as the ledger keeps positions: what the kill
        # switch's flatten orders close, one per product.
        self._product_filled: dict[tuple[str, int, Product], int] = {}
        self._cnc_pending: dict[tuple[str, int], int] = {}
        self._open_orders: dict[str, int] = {}
        self._halted: set[str] = set()  # strategies the trader took out of service
        self._last: dict[int, int] = {}
        self._day = DayBook()  # the day's P&L, as the portfolio projector's
        # Daily-loss stops (``daily_loss_flatten``) of the day: scope (strategy, None: the
        # account) -> (the IST day's start it was stopped on, released at the next day by
        # this engine: False once the trader halted or resumed it after the stop).
        self._stopped: dict[str | None, tuple[int, bool]] = {}
        self._released: list[str | None] = []  # stops a new day released, not yet told
        self.has_stops = _has_stops(self.config)
        # DAY orders end at the close of the day they are placed (after it: the next day's),
        # as the paper exchange expires them; the venue's cancel comes only with the
        # instrument's next tick, the one its strategy may signal at: from the first check
        # at or after the close, what is unfilled of those open there counts no more
        # (``_expire``).
        self._close = MarketCalendar.load().close
        self._close_day = (0, 0, 0)  # (day start, next day's start, close) last asked, ns
        self._next_expiry = _NEVER
        self._limits: dict[str | None, RiskLimits] = {}
        self._unlimited: dict[str, bool] = {}  # per strategy: no configured limit applies
        self._decisions: OrderedDict[str, SignalValidated | SignalRejected] = OrderedDict()

    # ------------------------------------------------------------------ inputs

    def set_kill_switch(self, active: bool) -> None:
        """While active, only flattening (position-reducing) signals pass.

        The switch lives in the state store, so on Redis it stops every risk-manager
        instance of the account at once."""
        self.store.set_kill_switch(self.account, active)

    @property
    def kill_switch(self) -> bool:
        return self.store.kill_switch(self.account)

    def halt_strategy(self, strategy_id: str, active: bool = True) -> None:
        """The trader took ``strategy_id`` out of service (or put it back): while halted,
        only its flatten orders pass, as for the kill switch (``flatten_signals``)."""
        if active:
            self._halted.add(strategy_id)
        else:
            self._halted.discard(strategy_id)

    def is_halted(self, strategy_id: str) -> bool:
        """Whether ``strategy_id`` is out of service here (its new orders blocked)."""
        return strategy_id in self._halted

    def on_tick(self, tick: MarketTick) -> None:
        if tick.ts > self.market_ns:  # noqa: PLR1730 - cheaper than max() per tick
            self.market_ns = tick.ts
        token, price, ts = tick.instrument_token, tick.last_price, tick.ts
        day = self._day
        if ts >= day.day_hi:
            self._roll(ts)  # the day starts at the prices before this tick
            day.on_tick(token, price, tick.close, ts)
        elif ts < day.day_lo or token not in day.closes:
            day.on_tick(token, price, tick.close, ts)
        self._last[token] = price
        self._unmarked[token] = price

    def on_fill(self, fill: OrderFilled) -> None:
        if fill.ts >= self._day.day_hi:
            self._roll(fill.ts)
        # booked later, even when redelivered (ignored then, but its mark still counts)
        unbooked = self._unbooked
        unbooked.append(fill)
        if len(unbooked) >= UNBOOKED_KEPT:
            self._book()  # bounds memory when nothing reads P&L for a long time
        seen = self._fill_ids
        fill_id = fill.fill_id
        if fill_id in seen:
            # the ledger ignores a redelivered fill: same ids, same bound, same rule; and so
            # do the pending quantities (a redelivered partial fill must not free them twice)
            return
        seen[fill_id] = None
        if len(seen) > FILL_IDS_KEPT:
            seen.popitem(last=False)
        self._day.on_fill(fill)
        pending = self._pending.get(fill.order_id)
        if pending is not None:
            leaves = pending.leaves
            take = min(leaves, fill.quantity)
            pending.leaves = leaves = leaves - take
            key = (pending.strategy_id, pending.token)
            pending_qty = self._pending_qty
            pending_qty[key] = pending_qty.get(key, 0) - pending.sign * take
            if pending.sign < 0:
                self._pending_sells[key] -= take
            if pending.cnc:
                self._cnc_pending[key] -= pending.sign * take
            if pending.resting:
                self._resting[key][pending.sign < 0] -= take
            if fill.leaves_quantity == 0 or leaves == 0:
                self._release(fill.order_id)
        sid, token = fill.strategy_id, fill.instrument_token
        signed = fill.quantity if fill.side is _BUY else -fill.quantity
        self._filled[(sid, token)] = self._filled_qty(sid, token) + signed
        per_product = self._product_filled
        key3 = (sid, token, fill.product)
        per_product[key3] = per_product.get(key3, 0) + signed
        if fill.product is _CNC:
            cnc = self._cnc_filled
            cnc[(sid, token)] = cnc.get((sid, token), 0) + signed

    def on_order_rejected(self, event: OrderRejected) -> None:
        self._release(event.order_id)

    def on_order_cancelled(self, event: OrderCancelled) -> None:
        self._release(event.order_id)

    on_order_closed = on_order_cancelled

    # ------------------------------------------------------------------ the check

    def check(self, signal_id: str, signal: Signal, now_ns: int, *,
              flatten: bool = False) -> SignalValidated | SignalRejected:
        """Validate ``signal`` at event time ``now_ns`` against every configured rule.
        ``flatten``: the kill switch's own flatten order (``flatten_signals``, on the log
        from this risk manager: a strategy cannot make one, whatever its reason says)."""
        seen = self._decisions.get(signal_id)
        if seen is not None:
            return seen  # a redelivered signal gets the decision it got the first time
        if now_ns >= self._day.day_hi:
            self._roll(now_ns)
        if now_ns >= self._next_expiry:
            self._expire(now_ns)
        asked = signal
        if signal.follows and signal.target is not None and not flatten:
            signal = self._toward_target(signal)
        failure = self._rules(signal_id, signal, now_ns, flatten)
        # (the rules judged the size taken: a rejection names it, of the signal as asked)
        sized = "" if signal is asked else (
            f"{signal.quantity} of the {asked.quantity} asked: {self.broker} then holds "
            f"{signal.target}, the strategy's intent (it follows {signal.follows}'s fills)")
        decision: SignalValidated | SignalRejected
        if failure is not None:
            code, message = failure
            decision = SignalRejected(
                signal=asked, signal_id=signal_id, reason_code=code, flatten=flatten,
                message=f"{message} (sized to {sized})" if sized else message)
        else:
            self.apply_validated(signal_id, signal, flatten=flatten, placed_ns=now_ns)
            decision = SignalValidated(signal=signal, signal_id=signal_id, flatten=flatten,
                                       message=sized)
        decisions = self._decisions
        decisions[signal_id] = decision
        if len(decisions) > DECISIONS_KEPT:
            decisions.popitem(last=False)
        return decision

    def replay_decision(self, decision: SignalValidated | SignalRejected, now_ns: int) -> None:
        """A decision made before a restart, read back from the log: the state it left
        (a validated signal pending, its rate slots taken), and the answer to its signal
        if that is delivered again. Not re-decided: the live decision saw the fills of that
        moment, which a replay cannot reproduce (an order event would then follow a
        signal this engine did not validate, or none would release one it did)."""
        if decision.signal_id in self._decisions:
            return  # (no day roll: the fills replayed next mark each day's start)
        if isinstance(decision, SignalValidated):  # a flatten order took no rate slot live
            self.apply_validated(decision.signal_id, decision.signal,
                                 None if decision.flatten else now_ns, flatten=decision.flatten,
                                 placed_ns=now_ns)
        decisions = self._decisions
        decisions[decision.signal_id] = decision
        if len(decisions) > DECISIONS_KEPT:
            decisions.popitem(last=False)

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
        cnc = signal.product is _CNC and (
            signal.side is not _BUY or signal.order_type is _MARKET)  # (see CNC_SHORT)
        resting = signal.order_type is not _MARKET
        expires = None
        if placed_ns is not None and signal.validity is _DAY:
            expires = self._expiry_of(placed_ns)
            self._next_expiry = min(self._next_expiry, expires)
        pending = _Pending(sid, token, sign, signal.quantity, order_ids, cnc, resting,
                           signal.product if flatten else None, expires, signal.quantity)
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
        qty = self._pending_qty
        qty[key] = qty.get(key, 0) + sign * signal.quantity
        if sign < 0:
            sells = self._pending_sells
            sells[key] = sells.get(key, 0) + signal.quantity
        self._open_orders[sid] = self._open_orders.get(sid, 0) + 1

    def _toward_target(self, s: Signal) -> Signal:
        """A copy for a broker other than the strategy's first, sized down to what takes
        the position here to the strategy's intent if all of it would go past: an exit of
        100 where 40 are held (the entry part filled here) sells 40, not 0 and not 100.
        Never sized up (a missed entry is not chased at a later price), and one that moves
        away from the intent is left to the rules (``EXCEEDS_INTENT``, ``REDUCE_ONLY``)."""
        assert s.target is not None
        toward = (s.target - self.position(s.strategy_id, s.instrument_token)) * s.side.sign
        if 0 < toward < s.quantity:
            return msgspec.structs.replace(s, quantity=toward)
        return s

    def _rules(self, signal_id: str, s: Signal, now_ns: int,
               flatten_order: bool = False) -> tuple[str, str] | None:
        sid = s.strategy_id
        qty = s.quantity
        if qty <= 0:
            return Reason.INVALID, f"quantity must be positive, got {qty}"
        token = s.instrument_token
        filled = self._filled_qty(sid, token)
        unlimited = self._unlimited.get(sid)
        if unlimited is None:
            unlimited = self._unlimited[sid] = _no_limits(
                self._strategy_limits(sid), self._account_limits())
        killed = self.store.kill_switch(self.account)
        halted = bool(self._halted) and sid in self._halted
        cnc_sell = s.product is _CNC and s.side is not _BUY
        if unlimited and not killed and not halted and not cnc_sell and not s.reduce_only \
                and not s.follows:
            return None  # no limit is set for this strategy or the account, and no CNC sell
        position = filled + self._pending_qty.get((sid, token), 0)
        after = position + (qty if s.side is _BUY else -qty)
        reducing = abs(after) <= abs(position) and (after == 0 or (after > 0) == (position > 0))
        # The kill switch cancels every open order (the engines read it too), so its
        # flatten reduces the *filled* position of its product, whatever resting orders
        # still count here (a CNC long and an MIS short of one instrument: two orders),
        # less what flatten orders on their way already close: a second flatten of it (the
        # switch set twice in a row, a halt's and the switch's) would reverse it.
        flatten = (killed or halted) and flatten_order and _reduces(
            self._product_filled.get((sid, token, s.product), 0)
            + self._flattening(sid, token, s.product), s)
        if (killed or halted) and flatten_order and not flatten:
            return Reason.KILL_SWITCH if killed else Reason.STRATEGY_HALTED, (
                f"a flatten order would not close {sid}'s {s.product.value} position in "
                f"{token} but open or reverse one: what is filled, less the flatten orders "
                "already on their way, is not there to close")
        if killed and not flatten:
            return Reason.KILL_SWITCH, "kill switch is active: new orders are blocked"
        if halted and not flatten:
            return Reason.STRATEGY_HALTED, (f"strategy {sid} is halted: its new orders are "
                                            "blocked until it is put back in service")
        if flatten:
            return None  # it only closes what is filled: no limit stands in its way
        if s.follows and s.target is not None and after and (
                abs(after) > abs(s.target) or (after > 0) != (s.target > 0)) \
                and abs(after - s.target) >= abs(position - s.target):  # (toward it: passes)
            return Reason.EXCEEDS_INTENT, (
                f"{self.broker} would hold {after} where the strategy means to hold "
                f"{s.target}: it follows {s.follows}'s fills, and {s.follows} did not take "
                "what this one did")
        if s.reduce_only and not reducing:
            return Reason.REDUCE_ONLY, (
                f"an exit of {qty} would open or reverse a position on {self.broker}, where the "
                f"strategy holds {position} (filled and pending): what it meant to close is not "
                "there (the entry was refused here, or a bracket exit, square-off or flatten "
                "closed it first)")
        # (whether it takes new risk: reducing, whichever resting orders fill or not)
        no_risk = reducing and self._takes_no_risk(sid, token, position, s)
        if s.reduce_only and not no_risk:
            # it reduces the position only if resting entries (limit, stop) fill, which they
            # may never do: sent, it could leave the account short (or long) with no intent
            sides = self._resting.get((sid, token))
            resting = (sides[0] if s.side is not _BUY else sides[1]) if sides else 0
            return Reason.REDUCE_ONLY, (
                f"an exit of {qty} is more than the strategy holds on {self.broker} for "
                f"certain: {position - s.side.opposite.sign * resting} filled or on its way at "
                f"market, and {resting} more only if its resting orders fill, which they may "
                "never do (cancel them rather than trade against them)")
        if cnc_sell:
            short = self._cnc_short(sid, token, qty)
            if short is not None:
                return Reason.CNC_SHORT, short
        if unlimited:
            return None
        lim = self._limits.get(sid)
        if lim is None:
            lim = self._strategy_limits(sid)
        acct = self._limits.get(None)
        if acct is None:
            acct = self._account_limits()
        price = self._price(s)
        notional = qty * price if price is not None else None
        # The size limits stop an order too big to open or add: one that only reduces a
        # position is never too big (else a position built in small orders, or the exit
        # at exit_at, could not be closed, and waited for the broker's square-off). Only
        # what is filled, in the order's product, is there to reduce: resting buys that
        # may never fill do not make a big sell an exit.
        exit_only = reducing and _reduces(self._product_filled.get((sid, token, s.product), 0), s)
        if not exit_only:
            failed = self._size(lim, qty, notional)
            if failed is not None:
                return failed
            if notional is None and (lim.max_order_notional is not None
                                     or lim.fat_finger_notional is not None):
                # a notional limit that cannot value the order does not let it through: a
                # market order of another instrument than the tick's, before any tick of it
                name = symbol_of(token)
                what = f"instrument {token} ({name})" if name else f"instrument {token}"
                return (Reason.MAX_ORDER_NOTIONAL if lim.max_order_notional is not None
                        else Reason.FAT_FINGER), (
                    f"no price to value the order against the notional limit: no price hint "
                    f"and no tick of {what} seen yet")
        if lim.price_band_percent is not None:
            band = self._band_violation(s, lim.price_band_percent)
            if band is not None:
                return Reason.PRICE_BAND, band
        if not exit_only and lim.max_order_notional is not None and notional is not None \
                and notional > lim.max_order_notional:
            return Reason.MAX_ORDER_NOTIONAL, (f"notional {format_rupees(notional)} > max order "
                                              f"notional {format_rupees(lim.max_order_notional)}")
        if lim.max_position is not None:
            # Each side at its worst: every open order of that side filled and none of the
            # other (a resting sell may never fill, so it frees no room for buys).
            sells = self._pending_sells.get((sid, token), 0)
            if s.side is _BUY:
                worst = filled + (position - filled + sells) + qty
                if worst > lim.max_position:
                    return Reason.MAX_POSITION, (
                        f"position could reach {worst} if every open buy fills, "
                        f"limit {lim.max_position}")
            elif (worst := filled - sells - qty) < -lim.max_position:
                return Reason.MAX_POSITION, (
                    f"position could reach {worst} if every open sell fills, "
                    f"limit {lim.max_position}")
        if not no_risk:
            if lim.max_gross_exposure is not None or acct.account_max_gross_exposure is not None:
                for scope, limit in ((sid, lim.max_gross_exposure), (None, acct.account_max_gross_exposure)):
                    if limit is not None:
                        exposure = self._exposure(scope, s, price)
                        if exposure > limit:
                            return Reason.MAX_GROSS_EXPOSURE, (
                                f"gross exposure would be {format_rupees(exposure)}, limit "
                                f"{format_rupees(limit)}")
            if lim.daily_loss is not None or acct.account_daily_loss is not None:
                for scope, loss in ((sid, lim.daily_loss), (None, acct.account_daily_loss)):
                    if loss is not None and self.day_pnl(scope) <= -loss:
                        return Reason.DAILY_LOSS, (
                            f"daily loss {format_rupees(-self.day_pnl(scope))} reached the limit "
                            f"{format_rupees(loss)}: "
                            "only position-reducing orders pass"
                        )
        if lim.max_open_orders is not None and self._open_orders.get(sid, 0) >= lim.max_open_orders:
            return Reason.MAX_OPEN_ORDERS, f"{lim.max_open_orders} orders already open"
        if acct.orders_per_second is None and acct.orders_per_minute is None \
                and acct.orders_per_day is None:
            return None  # no account rate limit: no window to take a slot in
        windows = self._windows(acct, now_ns, s.reduce_only)
        if windows:
            code = self.store.acquire(self.account, signal_id, now_ns // 1000, windows)
            if code is not None:
                return code, f"account order rate limit reached ({code})"
        return None

    # ------------------------------------------------------------------ state views

    def position(self, strategy_id: str, token: int) -> int:
        """Net quantity: filled plus pending (validated, not yet filled or closed)."""
        return self._filled_qty(strategy_id, token) + self._pending_qty.get((strategy_id, token), 0)

    def open_orders(self, strategy_id: str) -> int:
        return self._open_orders.get(strategy_id, 0)

    def net_pnl(self, strategy_id: str | None = None) -> int:
        """Realized + unrealized − charges of a strategy (None: the account), in paise."""
        snap = self._book().snapshot(strategy_id)
        return snap.realized + snap.unrealized - snap.charges

    def day_pnl(self, strategy_id: str | None = None) -> int:
        """Net P&L of the current IST day (of a strategy, or the account)."""
        return self._day.pnl(self._book().positions(strategy_id))

    def status(self, now_ns: int | None = None) -> dict[str, object]:
        """What an operator wants to see: kill switch, P&L today, open orders, positions,
        and (given ``now_ns``) the account's orders in each rate window."""
        strategies = sorted({s for s, _ in self._filled} | set(self._book().strategies())
                            | set(self._open_orders))
        out: dict[str, object] = {
            "broker": self.broker,
            "kill_switch": self.kill_switch,
            "day_pnl": self.day_pnl(None),
            "strategies": {
                sid: {
                    "day_pnl": self.day_pnl(sid),
                    "open_orders": self._open_orders.get(sid, 0),
                    "positions": {
                        str(tok): self.position(s, tok)
                        for (s, tok) in sorted(self._pending_qty.keys() | self._filled_keys())
                        if s == sid and self.position(s, tok)
                    },
                }
                for sid in strategies
            },
        }
        if now_ns is not None:
            out["rate"] = {
                w.code: self.store.count(self.account, w, now_ns // 1000)
                for w in self._windows(self._account_limits(), now_ns)
            }
        return out

    def _filled_keys(self) -> set[tuple[str, int]]:
        """Every (strategy, instrument) a signal or fill has been seen of."""
        return set(self._filled)

    def stop_changes(self) -> tuple[list[str | None], list[tuple[str | None, str]]]:
        """The daily-loss stops (``daily_loss_flatten``) to release, set on an earlier day,
        and those reached now, each with what it says: scopes, a strategy id or None for
        the account. Each is taken as done; ask after each tick (``on_tick``)."""
        stopped = self._stopped
        day_lo = self._day.day_lo
        release, self._released = self._released, []
        reached: list[tuple[str | None, str]] = []
        acct = self._account_limits()
        if acct.account_daily_loss_flatten and acct.account_daily_loss is not None \
                and None not in stopped:
            self._reached(None, acct.account_daily_loss, reached)
        for sid in self._book().strategies():
            lim = self._strategy_limits(sid)
            if lim.daily_loss_flatten and lim.daily_loss is not None and sid not in stopped:
                self._reached(sid, lim.daily_loss, reached)
        for scope, _ in reached:
            stopped[scope] = (day_lo, self._unheld(scope))
        return release, reached

    def _unheld(self, scope: str | None) -> bool:
        """Whether a stop of ``scope`` now is this engine's to release: not if the trader
        already holds it (halted the strategy, or set the kill switch), whose halt or
        switch is theirs to end, the next day too."""
        return not self.kill_switch if scope is None else scope not in self._halted

    def stop_released_by_engine(self, scope: str | None) -> bool:
        """Whether the stop of ``scope`` set today ends at the next day's first tick."""
        stop = self._stopped.get(scope)
        return stop is not None and stop[1]

    def _roll(self, ts: int) -> None:
        """A new IST day (``ts >= day_end_ns``): the day's P&L starts afresh, and the stops
        of an earlier day are released at once (a signal of the new day may come before
        its first tick), to be told by ``stop_changes``."""
        self._day.roll(ts, self._last)
        stopped = self._stopped
        for scope, (day, auto) in list(stopped.items()):
            if day < self._day.day_lo:
                del stopped[scope]
                if auto:
                    if scope is None:
                        self.set_kill_switch(False)
                    else:
                        self.halt_strategy(scope, False)
                    self._released.append(scope)

    def _reached(self, scope: str | None, limit: int,
                 reached: list[tuple[str | None, str]]) -> None:
        pnl = self.day_pnl(scope)
        if pnl <= -limit:
            why = (f"daily loss {format_rupees(-pnl)} reached the limit {format_rupees(limit)}: "
                   "stopped for the day, positions closed at market")
            reached.append((scope, why))

    @property
    def day_end_ns(self) -> int:
        """The end of the current IST day (0 before any event): a stop's ``until``."""
        return self._day.day_hi

    def note_stop(self, scope: str | None, active: bool, at_ns: int | None, *,
                  by_risk: bool) -> bool:
        """A halt of ``scope`` (None: the kill switch) read from the control topic: this
        engine's own stop or release (``by_risk``), which a rebuild learns this way, or
        the trader's, after which a stop of the day is the trader's to end. False for one
        of this engine's read after a newer one (a stop of a day already over, a release
        of an earlier day's stop once today's is set): it must change nothing."""
        stopped = self._stopped
        current = stopped.get(scope)
        if not by_risk:
            if current is not None:
                stopped[scope] = (current[0], False)
            return True
        if at_ns is None:
            return True
        day = day_start_ns(at_ns)
        if active:
            if day < self._day.day_lo:
                return False  # its day is over (and released): a restart reads it late
            if current is None or current[0] < day:
                stopped[scope] = (day, self._unheld(scope))  # (a rebuild: in log order)
            return True
        if current is not None and current[0] >= day:
            return False  # a stop of the release's own day stands
        stopped.pop(scope, None)
        return True

    def flatten_signals(self, now_ns: int, strategy_id: str | None = None, *,
                        reason: str | None = None) -> list[Signal]:
        """Market signals that close every filled position (the kill switch's flatten), or
        every one of ``strategy_id`` (its halt's); one per instrument and product."""
        if reason is None:
            reason = "flatten:kill_switch" if strategy_id is None else "flatten:halted"
        out: list[Signal] = []
        for pos in self._book().positions(strategy_id, open_only=True):
            # (less what flatten orders on their way close already: nothing, once they do)
            left = pos.quantity + self._flattening(pos.strategy_id, pos.instrument_token,
                                                   pos.product)
            if left == 0 or (left > 0) != (pos.quantity > 0):
                continue
            out.append(Signal(
                strategy_id=pos.strategy_id, instrument_token=pos.instrument_token,
                side=Side.BUY if left < 0 else Side.SELL, quantity=abs(left),
                product=pos.product, price_hint=self._last.get(pos.instrument_token, pos.mark_price),
                reason=reason,
            ))
        return out

    # ------------------------------------------------------------------ helpers

    def _filled_qty(self, strategy_id: str, token: int) -> int:
        """Filled quantity of a position; a new one is queued for the ledger (``_book``)."""
        key = (strategy_id, token)
        q = self._filled.get(key)
        if q is None:
            q = self._filled[key] = 0
        return q

    def _book(self) -> PositionLedger:
        """The P&L ledger brought up to date: the waiting fills in order, each followed by
        the mark ``on_fill`` made, then the ticks' marks. As booking each at once: with
        ``keep_cash=False`` marks do not change what a fill does, and a position's last mark
        is its instrument's last tick price (without ticks, its last fill's price)."""
        ledger = self._ledger
        if self._unbooked:
            last = self._last
            for fill in self._unbooked:
                ledger.apply_fill(fill)
                token = fill.instrument_token
                ledger.mark(token, last.get(token, fill.price))
            self._unbooked = []
        if self._unmarked:
            for token, price in self._unmarked.items():
                ledger.mark(token, price)
            self._unmarked = {}
        return ledger

    def _strategy_limits(self, strategy_id: str) -> RiskLimits:
        lim = self._limits.get(strategy_id)
        if lim is None:
            lim = self._limits[strategy_id] = self.config.limits_for(self.broker, strategy_id)
        return lim

    def _account_limits(self) -> RiskLimits:
        lim = self._limits.get(None)
        if lim is None:
            lim = self._limits[None] = self.config.limits_for(self.broker, None)
        return lim

    def _windows(self, acct: RiskLimits, now_ns: int, exit_: bool = False) -> list[RateWindow]:
        """The account's order-rate windows a signal takes a slot in. An exit (``reduce_only``:
        it passes only if it reduces the position) takes none of the second's or the minute's:
        refused there, it left the position open, the strategy flat or not in a burst of
        exits (every MIS strategy's at ``exit_at``), when those limits are only Kite's pace,
        which the zerodha engine keeps by waiting. It counts in the day's (Kite refuses
        what is past it)."""
        windows = []
        if acct.orders_per_second is not None and not exit_:
            windows.append(RateWindow(Reason.RATE_LIMIT_SECOND, acct.orders_per_second, _US_PER_S))
        if acct.orders_per_minute is not None and not exit_:
            windows.append(RateWindow(Reason.RATE_LIMIT_MINUTE, acct.orders_per_minute, 60 * _US_PER_S))
        if acct.orders_per_day is not None:
            day = ist_date(now_ns).isoformat()
            windows.append(RateWindow(Reason.RATE_LIMIT_DAY, acct.orders_per_day, 0, bucket=day))
        return windows

    @staticmethod
    def _size(lim: RiskLimits, qty: int, notional: int | None) -> tuple[str, str] | None:
        """FAT_FINGER or MAX_ORDER_QTY for an order that opens or adds to a position."""
        if lim.fat_finger_qty is not None and qty > lim.fat_finger_qty:
            return Reason.FAT_FINGER, f"quantity {qty} > fat-finger limit {lim.fat_finger_qty}"
        if lim.fat_finger_notional is not None and notional is not None \
                and notional > lim.fat_finger_notional:
            return Reason.FAT_FINGER, (f"notional {format_rupees(notional)} > fat-finger limit "
                                       f"{format_rupees(lim.fat_finger_notional)}")
        if lim.max_order_qty is not None and qty > lim.max_order_qty:
            return Reason.MAX_ORDER_QTY, f"quantity {qty} > max order quantity {lim.max_order_qty}"
        return None

    def _price(self, s: Signal) -> int | None:
        if s.order_type in (OrderType.LIMIT, OrderType.SL) and s.limit_price is not None:
            return s.limit_price
        if s.order_type is OrderType.SL_M and s.trigger_price is not None:
            return s.trigger_price
        return s.price_hint if s.price_hint is not None else self._last.get(s.instrument_token)

    def _band_violation(self, s: Signal, pct: Decimal | None) -> str | None:
        last = self._last.get(s.instrument_token, s.price_hint)
        if pct is None or last is None:
            return None
        for name, p in (("limit", s.limit_price), ("trigger", s.trigger_price)):
            if p is not None and abs(Decimal(p - last)) * 100 > pct * last:
                return (f"{name} price {format_rupees(p)} is more than {pct}% away from the last "
                        f"price {format_rupees(last)}")
        return None

    def _takes_no_risk(self, sid: str, token: int, position: int, s: Signal) -> bool:
        """``s`` takes the position toward flat without crossing it, whichever other open
        orders fill: every one of its own side, none of the other side's resting (limit,
        stop) ones. A resting buy may never fill, so a sell of what it would buy opens a
        short: new risk, which the daily-loss and exposure limits must see. A market order
        fills at once at the venue: it counts as filled, whenever its fill reaches this
        engine (on the pipeline, after the next signal may be decided)."""
        sides = self._resting.get((sid, token))
        if s.side is _BUY:
            return position + (sides[1] if sides else 0) + s.quantity <= 0
        return position - (sides[0] if sides else 0) - s.quantity >= 0

    def _exposure(self, scope: str | None, s: Signal, price: int | None) -> int:
        """Gross exposure of ``scope`` (a strategy, or the account) if ``s`` is filled:
        each position at its worst side (every open buy filled and no sell, or the other
        way round), as ``max_position``, so resting orders on one side do not offset what
        is filled or open on the other."""
        keys = {k for k in self._filled if scope is None or k[0] == scope}
        keys |= {k for k in self._pending_qty if scope is None or k[0] == scope}
        own = (s.strategy_id, s.instrument_token)
        keys.add(own)
        total = 0
        for key in keys:
            sid, token = key
            filled = self._filled.get(key, 0)
            sells = self._pending_sells.get(key, 0)
            buys = self._pending_qty.get(key, 0) + sells
            if key == own:
                if s.side is _BUY:
                    buys += s.quantity
                else:
                    sells += s.quantity
            qty = max(abs(filled + buys), abs(filled - sells))
            mark = self._last.get(token)
            if mark is None:
                mark = (price if token == s.instrument_token and price
                        else self._book().last_price(sid, token) or 0)
            total += abs(qty) * mark
        return total

    def _cnc_short(self, strategy_id: str, token: int, qty: int) -> str | None:
        """Why a CNC sell of ``qty`` would sell delivery short, or None if holdings cover it."""
        key = (strategy_id, token)
        filled = self._cnc_filled.get(key, 0)
        pending = self._cnc_pending.get(key, 0)
        held = filled + pending
        if qty <= held:
            return None
        detail = f" ({filled} filled, {pending:+d} in pending CNC orders)" if pending else ""
        name = symbol_of(token)
        what = f"instrument {token} ({name})" if name else f"instrument {token}"
        return (f"CNC sell of {qty} of {what} exceeds holdings of {max(held, 0)}"
                f"{detail}; delivery cannot be sold short (use MIS)")

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
        next day's when placed after it (the day's bounds kept: a date conversion per
        validated signal cost a backtest 7%)."""
        lo, hi, close = self._close_day
        if not lo <= placed_ns < hi:
            lo = day_start_ns(placed_ns)
            hi = lo + DAY_NS
            close = ist_ns(ist_date(placed_ns), self._close)
            self._close_day = (lo, hi, close)
        return close if placed_ns < close else close + DAY_NS

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

    def _release(self, order_id: str) -> None:
        pending = self._pending.pop(order_id, None)
        if pending is None:
            return
        for other in pending.order_ids:
            self._pending.pop(other, None)
        if pending.leaves:
            self._add_pending(pending.strategy_id, pending.token, -pending.sign * pending.leaves)
            if pending.sign < 0:
                self._pending_sells[(pending.strategy_id, pending.token)] -= pending.leaves
            if pending.cnc:
                self._cnc_pending[(pending.strategy_id, pending.token)] -= pending.sign * pending.leaves
            if pending.resting:
                self._resting[(pending.strategy_id, pending.token)][pending.sign < 0] -= pending.leaves
        self._open_orders[pending.strategy_id] -= 1
