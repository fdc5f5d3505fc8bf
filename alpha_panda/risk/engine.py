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
from typing import Final

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
from alpha_panda.domain.values import Product, Side
from alpha_panda.execution.config import MIS_SQUAREOFF
from alpha_panda.execution.market import MarketCalendar
from alpha_panda.portfolio.day import DayBook, day_start_ns
from alpha_panda.portfolio.ledger import FILL_IDS_KEPT, PositionLedger
from alpha_panda.risk.limits import RiskConfig, RiskLimits
from alpha_panda.risk.pending import _NEVER, PendingOrders, _Pending
from alpha_panda.risk.rules import RiskRules
from alpha_panda.risk.state import InMemoryRiskStateStore, RiskStateStore
from alpha_panda.risk.stops import DailyLossStops, _has_stops

_BUY = Side.BUY
_CNC = Product.CNC
_MIS = Product.MIS

DECISIONS_KEPT: Final = 100_000
"""Recent decisions remembered so a redelivered signal is answered the same way."""

UNBOOKED_KEPT: Final = 100_000
"""Fills the lazily booked P&L ledger holds back at most before booking them anyway."""

ORDER_STAGES: Final[dict[str, tuple[str, ...]]] = {
    "paper": ("order",),
    "zerodha": ("zerodha.order", "order"),
}
"""How each broker's engine derives an order id from a signal id (``derive_id(signal_id, stage)``)."""


class RiskEngine(RiskRules, PendingOrders, DailyLossStops):
    """Pre-trade checks for one broker account (``paper`` or ``zerodha``).

    The rules (``risk.rules``), the pending orders (``risk.pending``) and the daily-loss
    stops (``risk.stops``) are mixins of this class: they use its state."""

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
        # Of the pending quantities, the exits' (``reduce_only``), each side: [buys, sells]
        self._exits: dict[tuple[str, int], list[int]] = {}
        # Of the pending quantities, the MIS orders', each side: [buys, sells]. The exchange
        # squares off what is held in MIS at the cut-off, beside whatever the other
        # products hold: it trades what these orders leave (``RiskRules._squareoff``).
        self._mis_open: dict[tuple[str, int], list[int]] = {}
        # per position, the MIS cut-off of the day of its latest MIS fill: from then on the
        # square-off is due, and the next day's MIS orders do not take its place
        self._mis_cutoff: dict[tuple[str, int], int] = {}
        self._cutoff_day = (0, 0, 0)  # (day start, next day's start, cut-off) last asked, ns
        # Positions a bracket entry filled into: per (strategy, instrument), the products
        # whose position may have legs. The paper exchange gives each fill of a bracket
        # entry a stop-loss and a target (one cancelling the other), which this engine never
        # sees placed: they may trade what is held in that product (the exchange cuts them
        # to it), until it is flat or reversed (``RiskRules._worst_open``).
        self._legs: dict[tuple[str, int], set[Product]] = {}
        self._open_orders: dict[str, int] = {}
        self._halted: set[str] = set()  # strategies the trader took out of service
        self._last: dict[int, int] = {}
        # the price of the latest validated order of each instrument (limit, trigger, or
        # price hint): the exposure limits' mark of an instrument before its first tick
        self._order_prices: dict[int, int] = {}
        self._day = DayBook()  # the day's P&L, as the portfolio projector's
        # Daily-loss stops (``daily_loss_flatten``) of the day: scope (strategy, None: the
        # account) -> (the IST day's start it was stopped on, released at the next day by
        # this engine: False once the trader halted or resumed it after the stop).
        self._stopped: dict[str | None, tuple[int, bool]] = {}
        self._released: list[str | None] = []  # stops a new day released, not yet told
        self.has_stops = _has_stops(self.config)
        # DAY orders end at the close of the day they are placed (after it, or on a day NSE
        # does not trade: the next trading session's), as the paper exchange expires them;
        # the venue's cancel comes only with the instrument's next tick, the one its
        # strategy may signal at: from the first check at or after the close, what is
        # unfilled of those open there counts no more (``_expire``).
        self._calendar = MarketCalendar.load()
        # (day start, next day's start, the day's close or None if not a trading day, the
        # next trading session's close) last asked, ns
        self._close_day: tuple[int, int, int | None, int] = (0, 0, None, 0)
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
        entry = False  # a bracket entry's: its legs now rest at the venue
        if pending is not None:
            leaves = pending.leaves
            take = min(leaves, fill.quantity)
            pending.leaves = leaves = leaves - take
            self._free(pending, take)
            if fill.leaves_quantity == 0 or leaves == 0:
                self._release(fill.order_id)
            entry = pending.bracket
        sid, token = fill.strategy_id, fill.instrument_token
        signed = fill.quantity if fill.side is _BUY else -fill.quantity
        self._filled[(sid, token)] = self._filled_qty(sid, token) + signed
        per_product = self._product_filled
        key3 = (sid, token, fill.product)
        per_product[key3] = now = per_product.get(key3, 0) + signed
        if entry or self._legs:
            self._follow_legs(key3, now, signed, entry)
        if fill.product is _MIS:
            self._mis_cutoff[(sid, token)] = self._cutoff_of(fill.ts)
        elif fill.product is _CNC:
            cnc = self._cnc_filled
            cnc[(sid, token)] = cnc.get((sid, token), 0) + signed

    def on_order_rejected(self, event: OrderRejected) -> None:
        self._release(event.order_id)

    def on_order_cancelled(self, event: OrderCancelled) -> None:
        self._release(event.order_id, event.leaves_quantity)

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

    def _follow_legs(self, key3: tuple[str, int, Product], now: int, signed: int,
                     entry: bool) -> None:
        """A fill of ``signed`` left the position ``key3`` (strategy, instrument, product)
        at ``now``; ``entry``: of a bracket entry. Legs rest only on a position a bracket
        entry opened or added to: the exchange cuts them when it is flat or reversed, and
        gives a reversing entry legs only for what it opened."""
        sid, token, product = key3
        key = (sid, token)
        before = now - signed
        products = self._legs.get(key)
        if entry and now and (signed > 0) == (now > 0):
            if products is None:
                products = self._legs[key] = set()
            products.add(product)
        elif products is not None and (not now or (before and (before > 0) != (now > 0))):
            products.discard(product)
            if not products:
                del self._legs[key]

    def _cutoff_of(self, ts: int) -> int:
        """The MIS cut-off (15:20 IST) of the day of ``ts``."""
        lo, hi, cutoff = self._cutoff_day
        if not lo <= ts < hi:
            lo = day_start_ns(ts)
            cutoff = ist_ns(ist_date(ts), MIS_SQUAREOFF)
            self._cutoff_day = (lo, lo + DAY_NS, cutoff)
        return cutoff

    def _filled_qty(self, strategy_id: str, token: int) -> int:
        """Filled quantity of a position: 0, kept from now on, for one not seen before."""
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
