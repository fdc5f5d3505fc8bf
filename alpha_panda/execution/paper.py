"""The paper exchange: a deterministic, event-time simulation of NSE order handling.

Determinism contract: the live paper engine sees ``market.ticks`` and
``signals.validated`` interleaved in no fixed order; the backtest in a fixed one. Both
produce the same fills because nothing here depends on processing order:

- an order created at ``now_ns`` reaches the book at ``arrival = now_ns + latency``
  (or the next open when ``market_hours="queue"``);
- a market order with no latency fills at once at ``signal.price_hint`` (else the last
  tick with ts <= now) ± slippage;
- everything else is matched against the ticks of its instrument with ts > arrival
  (ts >= arrival for a delayed market order), in tick order. Ticks seen *before* the
  order (in processing order) are kept in a bounded per-instrument history and replayed
  on submit; later ticks are matched in ``on_tick``: the same ticks either way;
- random draws are seeded by (seed, order_id, fill number);
- a CNC fill's charges come from its (strategy, instrument, IST day) book of CNC fills
  (``execution.netting``: same-day buys and sells net off at intraday rates, DP on sells
  from holdings). The book's charges depend only on its fills; how they are shared out
  among the fills follows the order the fills are processed in, when fills of one book
  come out of event-time order (a lagging or rebuilding engine). A rebuild ends with the
  same books, so what follows it is charged alike.

Matching rules: market fills at the tick price ± slippage (or by walking the tick's
depth); a limit order that is marketable when it arrives fills at the tick price, once
resting it fills at its limit when a print reaches it; SL-M/SL trigger on the tick that
crosses the trigger and then behave as market/limit. IOC cancels whatever the first
eligible tick did not fill. DAY orders expire at the close. Bracket exits (take-profit
LIMIT and stop-loss SL-M legs) are placed when the entry completes; one filling cancels
the other (``oco``); legs fill in full when triggered. Order ids:
``derive_id(signal_id, "order")``, fill ids ``derive_id(order_id, "fill", n)``.

Every returned payload carries its event time in ``ts``.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections import OrderedDict, deque
from collections.abc import Iterable, Sequence
from datetime import date
from decimal import Decimal

import msgspec

from alpha_panda.domain.events import (
    NO_CHARGES,
    Charges,
    MarketTick,
    OrderCancelled,
    OrderFilled,
    OrderRejected,
    OrderSubmitted,
    Payload,
    Signal,
    derive_id,
)
from alpha_panda.domain.values import TICK_SIZE_PAISE, OrderType, Product, Side, Validity
from alpha_panda.execution.config import ExecutionConfig
from alpha_panda.execution.costs import RateCards, Segment
from alpha_panda.execution.holdings import CncHoldings
from alpha_panda.execution.market import (
    CircuitBands,
    MarketCalendar,
    SessionClock,
    nse_tick_sizes,
)
from alpha_panda.execution.netting import CncNetting
from alpha_panda.execution.orders import Order, OrderStatus, order_id_for
from alpha_panda.execution.pricing import depth_fills, seeded_rng, slipped, volume_share
from alpha_panda.execution.rules import reference_price, validate
from alpha_panda.execution.squareoff import MisSquareOff

__all__ = ["ExecutionConfig", "PaperExchange"]

CLOSED_ORDERS_KEPT = 50_000
"""Closed orders kept whole (``order()``); older ones are dropped to bound memory."""
CLOSED_IDS_KEPT = 1_000_000
"""Ids of dropped orders kept so a redelivered signal is still recognised."""

# Enum members bound once: attribute access on an enum class costs more than a global.
_MARKET = OrderType.MARKET
_LIMIT = OrderType.LIMIT
_SL_M = OrderType.SL_M
_MIS = Product.MIS
_CNC = Product.CNC
# cancellations a control event causes (the rest a rebuild's matching makes again)
_BY_CONTROL = frozenset({"user", "strategy", "kill_switch", "strategy_halted"})
# and those another order's processing makes (a rebuild processes that order later than the
# ticks after it): a leg cut by an exit (held from then until the exit cuts it again in the
# rebuild, ``_fit_legs``), an exit a leg's fill left nothing to sell (``_fit_exits``)
_BY_ORDER = frozenset({"exit", "reduce_only"})
_RECENT_KEPT = 256  # fills kept per position for ``_held_at``, then those of the last
_RECENT_NS = 2 * 86_400 * 1_000_000_000  # two days
_DAY = Validity.DAY
_IOC = Validity.IOC
_BUY = Side.BUY
_FILLED = OrderStatus.FILLED
_DELIVERY = Segment.EQUITY_DELIVERY



class PaperExchange(MisSquareOff):
    """Simulated NSE for one broker account (``paper``); pure, event-time driven."""

    def __init__(self, config: ExecutionConfig | None = None, seed: int = 0, broker: str = "paper"):
        self.config = config or ExecutionConfig()
        self.seed = seed
        self.broker = broker
        cfg = self.config
        # Charges: the configured card, else the card in force on each fill's IST day.
        self._costs: RateCards | None = None if not cfg.costs else (
            RateCards.load() if cfg.cost_model is None else RateCards.fixed(cfg.cost_model))
        # CNC fills are charged per (strategy, instrument, day) book: same-day netting, DP;
        # one netting per card (a day's book is under one card).
        self._cnc: dict[str, CncNetting] = {}
        self._holdings = CncHoldings()  # CNC fills and sells: a CNC sell must be covered
        self._calendar = cfg.calendar or MarketCalendar.load()
        self._bands = (cfg.bands or CircuitBands.load()) if cfg.price_bands else None
        self._tick_sizes = cfg.tick_sizes or nse_tick_sizes()
        self._slip = Decimal(cfg.slippage_bps)
        self._history: dict[int, deque[MarketTick]] = {}
        self._unordered: set[int] = set()  # instruments a tick of which came out of time order
        self._dropped_ts: dict[int, int] = {}  # newest ts trimmed from an instrument's history
        self._orders: dict[str, Order] = {}  # live orders, and closed ones until pruned
        self._closed: OrderedDict[str, None] = OrderedDict()  # closed orders still held
        self._closed_ids: OrderedDict[str, None] = OrderedDict()  # pruned: ids only
        self._open: dict[int, list[Order]] = {}
        # Net MIS position per (strategy, token, day it was taken on): each day's part is
        # squared off after that day's cut-off, whatever the order fills and ticks come in.
        self._mis: dict[tuple[str, int, date], int] = {}
        # Net filled quantity per (strategy, instrument, product): what a bracket's exits
        # may sell at most (``_fit_legs``); and its recent fills (event time, signed
        # quantity), to take it as of a fill's time when fills later than that came first
        # (a lagging engine, a rebuild: ``_held_at``).
        self._held: dict[tuple[str, int, Product], int] = {}
        self._recent: dict[tuple[str, int, Product], list[tuple[int, int]]] = {}
        self._recent_ts: dict[tuple[str, int, Product], int] = {}  # the latest of them
        self._recent_cap: dict[tuple[str, int, Product], int] = {}  # pruned past this many
        self._squaring: dict[str, date] = {}  # square-off order id -> the day it squares
        # (strategy, instrument, day) -> (net square-off quantity, the fee charged for it)
        self._squareoff_fees: dict[tuple[str, int, date], tuple[int, int]] = {}
        self._squared: dict[tuple[int, object], tuple[int, int]] = {}  # (token, day) -> (ts, px)
        self._squareoffs: dict[tuple[str, int, object], int] = {}
        # MIS positions changed by fills dated before their day's square-off tick but
        # processed after it: flattened, net, once the call that made them is done.
        self._late: dict[tuple[str, int, date], None] = {}
        # (instrument, IST day) -> (ts, price) of its first tick that day: the circuit-band
        # reference of a tick file without the previous close.
        self._day_open: dict[tuple[int, date], tuple[int, int]] = {}
        # Instrument -> the IST day of its latest tick, and where that day ends (read on
        # every tick: a plain int).
        self._tick_day: dict[int, date] = {}
        self._day_end: dict[int, int] = {}
        # Event times the kill switch (key None) or a strategy's halt with flatten was set
        # at, ascending; and a halt without flatten, which stops only the strategy's own
        # orders (``kill``'s ``keep_exits``).
        self._kills: dict[str | None, list[int]] = {}
        self._halts: dict[str, list[int]] = {}
        # Order id -> event time and reason (``user``, ``strategy``) of a cancel that came
        # before the order did.
        self._user_cancels: dict[str, tuple[int, str]] = {}
        # During a rebuild (``recorded``), what the live engine did: order id -> (time,
        # reason) of its cancel by a control event, and -> the time of its last fill.
        self._recorded_cancels: dict[str, tuple[int, str]] = {}
        self._recorded_fills: dict[str, int] = {}
        self._clock = SessionClock(self._calendar, cfg.mis_squareoff)
        # Settings read on every order, taken once from the (frozen) config.
        self._latency_ns = cfg.latency_ns
        self._queue = cfg.market_hours == "queue"
        self._no_slip = self._slip == 0 and not cfg.slippage_jitter_bps
        # Market orders reach the book at once and no market-hours rule applies.
        self._immediate = (self._latency_ns == 0 and cfg.market_hours == "off"
                           and cfg.volume_participation is None)
        self._segments: dict[tuple[int, Product], Segment] = {}
        # Event times in which no MIS square-off can be due (the current session before its
        # cut-off): ticks inside skip the square-off check.
        self._quiet_lo = self._quiet_hi = 0

    # ------------------------------------------------------------------ public API

    def order(self, order_id: str) -> Order | None:
        """The engine's view of an order (None if unknown)."""
        return self._orders.get(order_id)

    def open_orders(self, instrument_token: int | None = None) -> list[Order]:
        if instrument_token is not None:
            return list(self._open.get(instrument_token, ()))
        return [o for orders in self._open.values() for o in orders]

    def needs_tick(self, instrument_token: int) -> bool:
        """False when ``on_tick`` for this instrument could do nothing but record history."""
        if self._open.get(instrument_token):
            return True
        return any(q and tok == instrument_token for (_, tok, _), q in self._mis.items())

    def submit(self, signal_id: str, signal: Signal, now_ns: int, *,
               flatten: bool = False) -> list[Payload]:
        """Place the order a validated signal asks for. Idempotent per ``signal_id``.
        ``flatten``: the kill switch's flatten order (``SignalValidated.flatten``), which
        may sell delivery holdings the venue sees as short (it closes the net position)."""
        order_id = order_id_for(signal_id)
        if order_id in self._orders or order_id in self._closed_ids:
            return []  # redelivered signal: the order exists already
        opened = self._open.get(signal.instrument_token)
        if opened:
            for o in opened:
                if o.expires_ns is not None and o.expires_ns <= now_ns:
                    # a signal read before the tick that expires them (the next day's
                    # first): they end first, as they do at that tick, and free what they
                    # reserved (a CNC sell's holdings)
                    expired: list[Payload] = []
                    for order in list(opened):
                        if order.expires_ns is not None and order.expires_ns <= now_ns:
                            self._cancel(order, "expired", order.expires_ns, expired)
                    return expired + self.submit(signal_id, signal, now_ns, flatten=flatten)
        if (
            self._immediate and signal.order_type is _MARKET and signal.price_hint is not None
            and signal.product is not _MIS and signal.quantity > 0 and signal.limit_price is None
            and signal.trigger_price is None and signal.take_profit is None
            and signal.stop_loss is None
        ):
            return self._submit_market(order_id, signal_id, signal, now_ns, flatten)
        out = self._place(order_id, signal_id, signal, now_ns, flatten)
        if self._late:
            self._squareoff_late(out)
        return out

    def _place(self, order_id: str, signal_id: str, signal: Signal, now_ns: int,
               flatten: bool = False) -> list[Payload]:
        """``submit``'s general path: validate, then fill at once or rest."""
        arrival = now_ns + self._latency_ns
        if arrival == now_ns and self.config.volume_participation is not None:
            # Partial fills by traded volume: an order takes its share of the ticks after
            # its signal (the signal's own tick had traded when the strategy saw it).
            arrival += 1
        queued = False
        if self._queue and not self._calendar.is_open(arrival):
            arrival, queued = self._calendar.next_open_ns(arrival), True
        token = signal.instrument_token
        product = signal.product
        segment = self._segments.get((token, product))
        if segment is None:
            segment = self._segments[(token, product)] = self._segment(token, product)
        order = Order(
            order_id=order_id, signal_id=signal_id, strategy_id=signal.strategy_id,
            instrument_token=token, side=signal.side, quantity=signal.quantity,
            order_type=signal.order_type, product=product, validity=signal.validity,
            segment=segment, created_ns=now_ns, arrival_ns=arrival,
            limit_price=signal.limit_price, trigger_price=signal.trigger_price,
            price_hint=signal.price_hint, take_profit=signal.take_profit,
            stop_loss=signal.stop_loss, origin="flatten" if flatten else "signal",
            reduce_only=signal.reduce_only,
        )
        self._register(order)
        reason = self._validate(order, now_ns)
        if reason is None and product is _CNC and order.side is not _BUY \
                and not flatten:  # the kill switch's: exempt
            short = self._holdings.short(order, now_ns, self._open.get(token, ()))
            reason = None if short is None else ("CNC_SHORT", short)
        if reason is not None:
            return [self._reject(order, reason[0], reason[1], now_ns)]
        if product is _CNC and order.side is not _BUY:
            self._holdings.placed(order)  # it reserves holdings from now
        out: list[Payload] = [self._submitted(order, now_ns)]
        kind = order.order_type
        if kind is _MARKET and arrival == now_ns and not queued:
            price = order.price_hint if order.price_hint is not None else self._last_price(order)
            if price is None:
                out.append(self._reject(order, "NO_PRICE", "no reference price yet", now_ns))
                return out
            if not self._no_slip:
                price = self._market_price(order, price, now_ns)
            self._fill(order, order.quantity, price, now_ns, out)
            return out
        if kind is _LIMIT and arrival == now_ns and not queued:
            hint = order.price_hint
            assert order.limit_price is not None
            if hint is not None and order.side.sign * (order.limit_price - hint) >= 0:
                self._fill(order, order.quantity, hint, now_ns, out)
                return out
            if order.validity is Validity.IOC:
                self._cancel(order, "ioc", now_ns, out)
                return out
            order.rested = hint is not None  # it went on the book behind the market
        self._rest((order,), out)
        return out

    def _submit_market(
        self, order_id: str, signal_id: str, signal: Signal, now_ns: int, flatten: bool = False
    ) -> list[Payload]:
        """``submit`` of a plain market order (a CNC buy or NRML, a price hint, no prices, no exits)
        when it reaches the book at once: the general path's steps, in its order, without
        the branches that cannot apply (no rule of ``validate`` can reject it, it never rests,
        it has no bracket, it is not MIS)."""
        token = signal.instrument_token
        product = signal.product
        segment = self._segments.get((token, product))
        if segment is None:
            segment = self._segments[(token, product)] = self._segment(token, product)
        qty = signal.quantity
        side = signal.side
        hint = signal.price_hint
        assert hint is not None
        order = Order(
            order_id=order_id, signal_id=signal_id, strategy_id=signal.strategy_id,
            instrument_token=token, side=side, quantity=qty, order_type=_MARKET,
            product=product, validity=signal.validity, segment=segment, created_ns=now_ns,
            arrival_ns=now_ns, price_hint=hint, origin="flatten" if flatten else "signal",
            reduce_only=signal.reduce_only,
        )
        if order.validity is _DAY and self.config.expire_day_orders:  # _register, not MIS
            sess = self._clock.session(now_ns)
            order.expires_ns = sess.close if now_ns < sess.close else self._session(sess.hi).close
        if self._user_cancels:  # it fills at once: a cancel asked before came too late
            self._user_cancels.pop(order_id, None)
        self._orders[order_id] = order
        if product is _CNC and side is not _BUY:  # covered by holdings? (_place's rule)
            if not flatten:  # the kill switch's: exempt
                short = self._holdings.short(order, now_ns, self._open.get(token, ()))
                if short is not None:
                    return [self._reject(order, "CNC_SHORT", short, now_ns)]
            self._holdings.placed(order)
        order.status = OrderStatus.SUBMITTED  # NEW -> SUBMITTED
        submitted = OrderSubmitted(
            order_id=order_id, signal_id=signal_id, strategy_id=order.strategy_id,
            instrument_token=token, side=side, quantity=qty, order_type=_MARKET,
            product=product, validity=order.validity, tag=signal_id[:20], ts=now_ns,
            origin=order.origin, expires_ns=order.expires_ns,  # (never MIS here)
        )
        price = hint if self._no_slip else self._market_price(order, hint, now_ns)
        # the whole quantity at one price: SUBMITTED -> FILLED, average price = price
        turnover = qty * price
        order.filled = qty
        order.turnover = turnover
        order.fills = 1
        order.status = _FILLED
        charges = NO_CHARGES
        if self._costs is not None:
            charges = self._charges(order, 0, qty, price, now_ns, 0)
        filled = OrderFilled(
            order_id=order_id, fill_id=derive_id(order_id, "fill", 0),
            strategy_id=order.strategy_id, instrument_token=token, side=side, quantity=qty,
            price=price, cumulative_quantity=qty, leaves_quantity=0, average_price=price,
            product=product, charges=charges, ts=now_ns, origin=order.origin,
        )
        if product is _CNC:
            self._holdings.filled(order, qty, now_ns)
        self._retire(order_id)
        key = (order.strategy_id, token, product)
        was, now = self._book_held(key, now_ns, qty if side is _BUY else -qty)
        if order.origin == "signal" and (
                abs(now) < abs(was) or (now and (now > 0) != (was > 0))):
            out: list[Payload] = [submitted, filled]
            self._fit_legs(key, now_ns, out)
            return out
        return [submitted, filled]

    def on_tick(self, tick: MarketTick) -> list[Payload]:
        """Record the tick and match every open order of its instrument against it."""
        token = tick.instrument_token
        history = self._history.get(token)
        if history is None:
            history = self._history[token] = deque(maxlen=self.config.tick_history)
        if len(history) == history.maxlen:
            self._dropped_ts[token] = history[0].ts
        if history and tick.ts < history[-1].ts:
            self._unordered.add(token)  # (Kite stamps whole seconds of the exchange's clock)
        history.append(tick)
        out: list[Payload] = []
        ts = tick.ts
        if ts >= self._day_end.get(token, -1):
            self._new_day(tick, out)  # a missed day's square-off first, then today's
            self._day_open[(token, self._tick_day[token])] = (ts, tick.last_price)
        if not self._quiet_lo <= ts < self._quiet_hi:
            self._squareoff(tick, out)
        orders = self._open.get(token)
        if orders:
            for order in list(orders):
                if order.status.is_open:
                    self._match(order, tick, out)
            if self._late:
                self._squareoff_late(out)
        return out

    def cancel(self, order_id: str, at_ns: int, reason: str = "user") -> list[Payload]:
        """The trader's (or, ``reason`` ``strategy``, its strategy's) cancel of one order,
        asked at ``at_ns`` in event time (its placing time, if later): what is left of it
        fills on no tick after that and is cancelled (``_stop``); nothing if it is closed
        already (filled first: the cancel lost the race, as at an exchange). An order not
        seen yet (a rebuild replays the control topic before the signals) is stopped as it
        arrives."""
        order = self._orders.get(order_id)
        if order is None:
            if order_id not in self._closed_ids:  # (closed long ago: nothing to remember)
                known = self._user_cancels.get(order_id)
                if known is None or at_ns < known[0]:
                    self._user_cancels[order_id] = (at_ns, reason)
            return []
        if not order.status.is_open:
            return []
        out: list[Payload] = []
        self._stop(order, max(at_ns, order.created_ns), reason, out)
        if self._late:
            self._squareoff_late(out)
        return out

    def _stop(self, order: Order, at: int, reason: str, out: list[Payload]) -> None:
        """A control event stops an open order as of ``at``: it fills on no tick after it.
        If this engine already matched it on a later tick (it read the event late), it is
        cancelled now, at that tick (a rebuild follows the record: ``recorded``); otherwise
        on its first tick after ``at`` (``_match``), so that a tick by ``at`` not yet read
        may still fill it, as it does in a rebuild. A bracket entry's legs may catch up."""
        if order.killed_ns is None or at < order.killed_ns:
            order.killed_ns, order.killed_by = at, reason
        if order.last_ts > order.killed_ns:
            self._cancel(order, order.killed_by, order.last_ts, out)

    def recorded(self, events: Iterable[Payload]) -> None:
        """What this engine recorded before a restart (its ``orders.cancelled`` and
        ``orders.filled`` events), for the rebuild that follows; ``()`` once it is done.

        A control event (kill switch, halt, the trader's cancel) stops orders as of its
        market time, but the live engine applied it when it read it: an order it had
        matched past that time kept those fills, or was cancelled at the latest of them.
        A rebuild, which reads the control topic before any signal, follows the record."""
        cancels: dict[str, tuple[int, str]] = {}
        fills: dict[str, int] = {}
        for e in events:
            if isinstance(e, OrderCancelled) and (e.reason in _BY_CONTROL
                                                  or e.reason in _BY_ORDER):
                cancels[e.order_id] = (e.ts, e.reason)
            elif isinstance(e, OrderFilled):
                fills[e.order_id] = max(fills.get(e.order_id, -1), e.ts)
        self._recorded_cancels, self._recorded_fills = cancels, fills

    def kill(self, at_ns: int, strategy_id: str | None = None, *,
             keep_exits: bool = False) -> list[Payload]:
        """The kill switch, set at ``at_ns`` in event time (or, with ``strategy_id``, that
        strategy's halt): every order (of the strategy) placed by then is cancelled (reason
        ``kill_switch``, ``strategy_halted``) and fills on no tick after it, including one
        still on its way (latency), one processed later (a lagging engine, a rebuild, which
        replays the control topic before the signals) and a bracket's legs placed later.
        Orders placed after it are not touched: the risk manager lets only the flatten
        orders through (placed just after it), and a halted strategy signals no more.

        ``keep_exits`` (a halt without flatten: the strategy raised, or the trader halted
        it and keeps its positions): only the strategy's own orders are stopped, and the
        system's work on: a bracket's stop-loss and target keep protecting what filled.
        """
        if keep_exits:
            assert strategy_id is not None
            kills = self._halts.setdefault(strategy_id, [])
        else:
            kills = self._kills.setdefault(strategy_id, [])
        if at_ns in kills:
            return []  # redelivered
        insort(kills, at_ns)
        reason = "kill_switch" if strategy_id is None else "strategy_halted"
        out: list[Payload] = []
        for order in self.open_orders():
            if (order.created_ns <= at_ns and order.status.is_open
                    and strategy_id in (None, order.strategy_id)
                    and not (keep_exits and order.origin != "signal")):
                self._stop(order, at_ns, reason, out)
        if self._late:
            self._squareoff_late(out)
        return out

    def expire(self, now_ns: int) -> list[Payload]:
        """Expire DAY orders whose session closed at or before ``now_ns`` (end of data, timers)."""
        out: list[Payload] = []
        if not self.config.expire_day_orders:
            return out
        for order in self.open_orders():
            close = order.expires_ns
            if close is not None and close <= now_ns and order.status.is_open:
                self._cancel(order, "expired", close, out)
        if self._late:
            self._squareoff_late(out)
        return out

    # ------------------------------------------------------------------ validation

    def _validate(self, order: Order, now_ns: int) -> tuple[str, str] | None:
        # The tick size and the circuit band (and so the reference price they are taken
        # from) only apply to an order's prices: a plain market order has none.
        priced = next((p for p in (order.limit_price, order.trigger_price, order.take_profit,
                                   order.stop_loss) if p is not None), None)
        reference = tick = None
        if priced is not None and (self._bands is not None or self.config.enforce_tick_size):
            reference = self._reference(order.instrument_token, now_ns)
            tick = self._tick_size(now_ns, priced if reference is None else reference)
        return validate(
            order, now_ns, self.config, self._calendar, self._bands, self._clock,
            reference=reference if self._bands is not None else None,
            tick=tick or TICK_SIZE_PAISE,
            dropped_ts=self._dropped_ts.get(order.instrument_token, -1),
        )

    def _reference(self, token: int, now_ns: int) -> int | None:
        """The instrument's reference price at ``now_ns``: its circuit band's and tick size's."""
        return reference_price(self._history.get(token, ()), now_ns,
                               self._day_open.get((token, self._session(now_ns).day)))

    def _tick_size(self, now_ns: int, reference: int) -> int:
        """NSE's tick size on ``now_ns``'s IST day for an instrument referenced at ``reference``."""
        return self._tick_sizes.at(self._session(now_ns).day, reference)

    # ------------------------------------------------------------------ matching

    def _rest(self, orders: Sequence[Order], out: list[Payload]) -> None:
        """Put orders of one instrument on the book and replay the ticks they have missed.

        They are matched tick by tick together, in book order, as ``on_tick`` would have
        matched them had they been on time: the legs of a bracket, placed at once, must see
        each tick in turn, or the first leg would catch up over the whole history (and fill
        on a late tick) before its sibling saw the tick that should have filled it first.
        """
        self._open.setdefault(orders[0].instrument_token, []).extend(orders)
        # Only ticks at or after the earliest arrival can match (``_eligible``): taken from
        # the end of the history (an instrument's ticks come in time order), usually none,
        # for an order placed on time, instead of scanning all of it for each order.
        token = orders[0].instrument_token
        history = self._history.get(token, ())
        if token in self._unordered:  # a tick came after a later one: look at every tick
            missed = list(history)
        else:
            first = min(o.arrival_ns for o in orders)
            missed = []
            for tick in reversed(history):
                if tick.ts < first:
                    break
                missed.append(tick)
            missed.reverse()
        for tick in missed:
            pending = False
            for order in orders:
                if order.status.is_open:
                    pending = True
                    self._match(order, tick, out)
            if not pending:
                break

    def _eligible(self, order: Order, ts: int) -> bool:
        if order.order_type is OrderType.MARKET:
            return ts >= order.arrival_ns
        return ts > order.arrival_ns

    def _match(self, order: Order, tick: MarketTick, out: list[Payload]) -> None:
        ts = tick.ts
        if not self._eligible(order, ts) or ts < order.last_ts:
            return
        if order.killed_ns is not None and ts > order.killed_ns and order.killed_by == "exit":
            return  # a leg an exit cut then (a rebuild's record): it waits for that exit
        order.last_ts = ts
        cfg = self.config
        if order.cutoff_ns is not None and ts >= order.cutoff_ns:
            self._cancel(order, "squareoff", ts, out)
            return
        if order.expires_ns is not None and ts >= order.expires_ns:
            self._cancel(order, "expired", order.expires_ns, out)
            return
        if order.killed_ns is not None and ts > order.killed_ns:
            self._cancel(order, order.killed_by, order.killed_ns, out)
            return
        price = tick.last_price
        sign = order.side.sign
        if order.is_stop and not order.triggered:
            assert order.trigger_price is not None
            if sign * (price - order.trigger_price) < 0:
                return
            order.triggered = True
        limit = order.limit_price
        market = order.order_type in (OrderType.MARKET, OrderType.SL_M)
        trades = market or (limit is not None and sign * (limit - price) >= 0)
        qty = order.leaves
        if trades and cfg.volume_participation is not None and not order.parent_order_id:
            share = volume_share(tick, cfg.volume_participation)
            if share is not None:  # whole shares now, the fraction carried to the next tick
                share += order.volume_carry
                cap = int(share)
                order.volume_carry = share - cap
                qty = min(qty, cap)
        fills: list[tuple[int, int]] = []  # (quantity, price)
        if qty <= 0 or not trades:
            pass
        elif market:
            fills = self._market_fills(order, price, tick, qty)
        else:
            # a resting order is the passive side: it trades at its own limit
            fresh = order.fills == 0 and not order.rested
            assert limit is not None
            fills = [(qty, price if fresh else limit)]
        for fill_qty, fill_price in fills:
            self._fill(order, fill_qty, fill_price, ts, out)
        order.rested = True
        if order.validity is Validity.IOC and order.status.is_open:
            self._cancel(order, "ioc", ts, out)

    def _market_fills(
        self, order: Order, price: int, tick: MarketTick, qty: int
    ) -> list[tuple[int, int]]:
        """Executions of a market order for ``qty`` against ``tick``: one per book level
        taken (depth model, when the tick has a book), else one at the slipped price."""
        if self.config.slippage_model == "depth":
            levels = depth_fills(tick.depth, order.side, qty)
            if levels:
                return levels
        return [(qty, self._market_price(order, price, tick.ts))]

    def _market_price(self, order: Order, price: int, now_ns: int) -> int:
        bps = self._slip
        if self.config.slippage_jitter_bps:
            rng = seeded_rng(self.seed, order.order_id, order.fills)
            bps += rng.randint(0, self.config.slippage_jitter_bps)
        if not bps:
            return price
        token = order.instrument_token
        reference = self._reference(token, now_ns)
        tick = self._tick_size(now_ns, price if reference is None else reference)
        moved = slipped(price, order.side, bps, tick)
        band = None if self._bands is None or reference is None else self._bands.limits(
            token, reference, tick)
        if band is not None:
            # No trade prints beyond the circuit limit (and Kite's market protection caps a
            # market order's price there): slippage stops at the band, and never moves a
            # price already beyond it (a band flexed since the file was written) further.
            if order.side is _BUY:
                if moved > band[1]:
                    moved = max(band[1], price)
            elif moved < band[0]:
                moved = min(band[0], price)
        return moved

    # ------------------------------------------------------------------ events

    def _submitted(self, order: Order, ts: int) -> OrderSubmitted:
        order.transition(OrderStatus.SUBMITTED)
        return OrderSubmitted(
            order_id=order.order_id, signal_id=order.signal_id, strategy_id=order.strategy_id,
            instrument_token=order.instrument_token, side=order.side, quantity=order.quantity,
            order_type=order.order_type, limit_price=order.limit_price,
            trigger_price=order.trigger_price, product=order.product, validity=order.validity,
            tag=order.signal_id[:20], parent_order_id=order.parent_order_id, ts=ts,
            origin=order.origin, take_profit=order.take_profit, stop_loss=order.stop_loss,
            expires_ns=order.expires_ns if order.cutoff_ns is None else (
                order.cutoff_ns if order.expires_ns is None
                else min(order.expires_ns, order.cutoff_ns)),
        )

    def _reject(self, order: Order, code: str, message: str, ts: int) -> OrderRejected:
        order.transition(OrderStatus.REJECTED)
        self._close(order)
        return OrderRejected(
            order_id=order.order_id, strategy_id=order.strategy_id,
            instrument_token=order.instrument_token, side=order.side, quantity=order.quantity,
            reason_code=code, message=message, ts=ts, origin=order.origin,
            order_type=order.order_type, limit_price=order.limit_price,
            trigger_price=order.trigger_price, product=order.product,
        )

    def _cancel(self, order: Order, reason: str, ts: int, out: list[Payload]) -> None:
        order.transition(OrderStatus.EXPIRED if reason == "expired" else OrderStatus.CANCELLED)
        self._close(order)
        if order.product is _CNC:
            self._holdings.cancelled(order, reason, ts)  # a sell's unfilled part is free
        out.append(
            OrderCancelled(
                order_id=order.order_id, strategy_id=order.strategy_id,
                instrument_token=order.instrument_token, side=order.side,
                filled_quantity=order.filled, leaves_quantity=order.leaves, reason=reason, ts=ts,
                origin=order.origin,
            )
        )

    def _fill(self, order: Order, qty: int, price: int, ts: int, out: list[Payload]) -> None:
        before = order.turnover
        n = order.fills
        order.record_fill(qty, price)
        charges = NO_CHARGES
        if self._costs is not None:
            charges = self._charges(order, n, qty, price, ts, before)
            if order.origin == "squareoff":  # Zerodha's call-and-trade fee
                charges = self._squareoff_fee(order, qty, ts, charges)
        order_id = order.order_id
        filled = order.filled
        out.append(
            OrderFilled(
                order_id=order_id, fill_id=derive_id(order_id, "fill", n),
                strategy_id=order.strategy_id, instrument_token=order.instrument_token,
                side=order.side, quantity=qty, price=price, cumulative_quantity=filled,
                leaves_quantity=order.quantity - filled, average_price=order.average_price,
                product=order.product, charges=charges, ts=ts, origin=order.origin,
            )
        )
        key3 = (order.strategy_id, order.instrument_token, order.product)
        was, now = self._book_held(key3, ts, qty if order.side is _BUY else -qty)
        if order.product is _CNC:
            self._holdings.filled(order, qty, ts)
        elif order.product is _MIS:
            day = self._squaring.pop(order_id, None) or self._session(ts).day
            key = (order.strategy_id, order.instrument_token, day)
            self._mis[key] = self._mis.get(key, 0) + (qty if order.side is _BUY else -qty)
            self._late_squareoff(order, ts, day)
        if order.status is _FILLED:
            self._close(order)
            if order.sibling_order_id is not None:
                sibling = self._orders.get(order.sibling_order_id)
                if sibling is not None and sibling.status.is_open:
                    self._cancel(sibling, "oco", ts, out)
        if order.parent_order_id is None and (
            order.take_profit is not None or order.stop_loss is not None
        ):
            self._exits(order, qty, n, ts, out)
        elif order.origin == "signal" and (
                abs(now) < abs(was) or (now and (now > 0) != (was > 0))):
            self._fit_legs(key3, ts, out)  # the strategy took it down: the legs follow
        elif order.origin == "bracket":
            self._fit_exits(key3, ts, out)  # and its exits follow the legs

    def _squareoff_fee(self, order: Order, qty: int, ts: int, charges: Charges) -> Charges:
        """Zerodha's fee for squaring off the position ``order`` takes down (of its strategy
        and instrument, on its day), on that position's net square-off quantity: less what
        its square-offs were charged so far, so it may be negative. A late fill's square-off
        can undo an earlier one (the strategy had closed the position itself before the
        cut-off, but its fill was read after the square-off tick): then nothing is due, as
        when it is read in time."""
        assert self._costs is not None
        day = self._squaring.get(order.order_id) or self._session(ts).day
        key = (order.strategy_id, order.instrument_token, day)
        net, charged = self._squareoff_fees.get(key, (0, 0))
        net += qty if order.side is _BUY else -qty
        due = self._costs.on(day).auto_squareoff_charge(order.segment, abs(net))
        self._squareoff_fees[key] = (net, due)
        if due == charged:
            return charges
        return msgspec.structs.replace(charges, auto_squareoff=due - charged)

    def _charges(self, order: Order, n: int, qty: int, price: int, ts: int, before: int
                 ) -> Charges:
        """Charges of fill ``n`` (``qty`` at ``price``; the order's turnover was ``before``
        and is now ``order.turnover``): a CNC fill's through its day's netting book, any
        other the order's charges after it minus before it."""
        assert self._costs is not None
        day = self._session(ts).day
        card = self._costs.on(day)
        if order.segment is _DELIVERY:
            netting = self._cnc.get(card.version)
            if netting is None:
                netting = self._cnc[card.version] = CncNetting(card, self.config.exchange)
            return netting.fill_charges(
                order.strategy_id, order.instrument_token, day,
                order.order_id, n, order.side, qty, price, ts)
        return card.fill_charges(
            order.segment, order.side, before, order.turnover, self.config.exchange)

    def _close(self, order: Order) -> None:
        orders = self._open.get(order.instrument_token)
        if orders:
            # by identity: order ids are unique, and comparing dataclasses field by field is slow
            for k, o in enumerate(orders):
                if o is order:
                    del orders[k]
                    break
        self._retire(order.order_id)

    def _retire(self, order_id: str) -> None:
        # closed orders are kept for ``order()`` and idempotency, then only their ids
        self._closed[order_id] = None
        if len(self._closed) > CLOSED_ORDERS_KEPT:
            old, _ = self._closed.popitem(last=False)
            self._orders.pop(old, None)
            self._closed_ids[old] = None
            if len(self._closed_ids) > CLOSED_IDS_KEPT:
                self._closed_ids.popitem(last=False)

    def _exits(self, order: Order, qty: int, n: int, ts: int, out: list[Payload]) -> None:
        """A bracket entry's ``n``-th fill (``qty``) gets its own exits at once, a target and
        a stop for that quantity (one cancelling the other): a partly filled entry is
        protected while the rest of it still rests."""
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
            ))
        if len(legs) == 2:
            legs[0].sibling_order_id, legs[1].sibling_order_id = legs[1].order_id, legs[0].order_id
        for leg in legs:
            self._register(leg)
            out.append(self._submitted(leg, ts))
        if legs:
            self._rest(legs, out)

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
        sid, token, product = key
        pairs: dict[str, list[Order]] = {}
        for o in reversed(self._open.get(token, ())):  # newest first
            if o.origin == "bracket" and o.strategy_id == sid and o.product is product \
                    and o.status.is_open:
                pair = o.order_id if o.sibling_order_id is None else min(
                    o.order_id, o.sibling_order_id)
                pairs.setdefault(pair, []).append(o)
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

    # ------------------------------------------------------------------ helpers

    def _register(self, order: Order) -> None:
        """Store a new order with the session times it is subject to."""
        sess = self._clock.session(order.arrival_ns)
        if order.validity is _DAY and self.config.expire_day_orders:
            # placed after the close (market hours not enforced): it lives until the next one
            close = sess.close if order.arrival_ns < sess.close else self._session(sess.hi).close
            order.expires_ns = close
        if order.product is _MIS:
            order.cutoff_ns = sess.cutoff
        if self._kills or self._halts or self._user_cancels or self._recorded_cancels:
            self._stopped_before(order)
        self._orders[order.order_id] = order

    def _stopped_before(self, order: Order) -> None:
        """A kill switch, a halt of its strategy or the trader's cancel processed before
        the order (a rebuild replays the control topic before the signals) that stops it:
        its ``killed_ns``. In a rebuild, what the live engine recorded decides: the cancel
        it made, at its time; and no stop before a fill it made later (it read the control
        event late, after the order had filled)."""
        recorded = self._recorded_cancels.pop(order.order_id, None)
        if recorded is not None:
            order.killed_ns, order.killed_by = recorded
            return
        filled_until = self._recorded_fills.get(order.order_id, -1)
        stops: list[tuple[int, str]] = []
        for kills, reason in ((self._kills.get(None), "kill_switch"),
                              (self._kills.get(order.strategy_id), "strategy_halted"),
                              (self._halts.get(order.strategy_id) if order.origin == "signal"
                               else None, "strategy_halted")):
            if kills and kills[-1] >= order.created_ns:
                stops.append((kills[bisect_left(kills, order.created_ns)], reason))
        if self._user_cancels:
            asked = self._user_cancels.pop(order.order_id, None)
            if asked is not None:
                stops.append((max(asked[0], order.created_ns), asked[1]))
        for at, reason in stops:
            if at >= filled_until and (order.killed_ns is None or at < order.killed_ns):
                order.killed_ns, order.killed_by = at, reason

    def _segment(self, token: int, product: Product) -> Segment:
        return self.config.segments.get(token) or Segment.for_product(product)

    def _last_price(self, order: Order) -> int | None:
        for tick in reversed(self._history.get(order.instrument_token, ())):
            if tick.ts <= order.created_ns:
                return tick.last_price
        return None
