"""The paper exchange: a deterministic, event-time simulation of NSE order handling.

Determinism contract: the live paper engine sees ``market.ticks`` and
``signals.validated`` interleaved in no fixed order; the backtest in a fixed one. Both
produce the same fills because nothing here depends on processing order:

- an order created at ``now_ns`` reaches the book at ``arrival = now_ns + latency``
  (or the next open when ``market_hours="queue"``);
- a market order with no latency fills at once at ``signal.price_hint`` (else the last
  tick with ts <= now) ± slippage; an order of a signal without a hint (one on an
  instrument other than its tick's) takes that last tick's price for it too: the one case
  where the order matters, when this engine has not yet seen that tick (its ticks lag);
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

Placement, the per-tick entry and the order store are here; ``PaperExchange`` inherits the
rest, each part in its own module: matching (``matching``), order events and what a fill
books (``order_events``), bracket exits (``brackets``), control events (``control``) and the
MIS square-off (``squareoff``).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from datetime import date
from decimal import Decimal

from alpha_panda.domain.events import (
    NO_CHARGES,
    MarketTick,
    OrderFilled,
    OrderSubmitted,
    Payload,
    Signal,
    derive_id,
)
from alpha_panda.domain.values import TICK_SIZE_PAISE, OrderType, Product, Side, Validity
from alpha_panda.execution.brackets import BracketExits
from alpha_panda.execution.config import ExecutionConfig
from alpha_panda.execution.control import ControlEvents
from alpha_panda.execution.costs import RateCards, Segment
from alpha_panda.execution.holdings import CncHoldings
from alpha_panda.execution.market import (
    CircuitBands,
    MarketCalendar,
    SessionClock,
    nse_tick_sizes,
)
from alpha_panda.execution.matching import TickMatching
from alpha_panda.execution.netting import CncNetting
from alpha_panda.execution.order_events import OrderEvents
from alpha_panda.execution.orders import Order, OrderStatus, order_id_for
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
_MIS = Product.MIS
_CNC = Product.CNC
_BUY = Side.BUY
_FILLED = OrderStatus.FILLED


class PaperExchange(TickMatching, OrderEvents, BracketExits, ControlEvents, MisSquareOff):
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
            and self._not_tradable(signal.instrument_token) is None
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
        hint = signal.price_hint
        if hint is None:
            # a signal on an instrument other than its tick's (the runner adds the hint only
            # for the tick's own): the instrument's last price then is the market it meets.
            # Without it a limit buy at 99 placed with the market at 100 filled at 97 on a gap
            # (as if it had not rested), and a stop buy triggered below the market was taken.
            hint = self._price_at(token, now_ns)
        order = Order(
            order_id=order_id, signal_id=signal_id, strategy_id=signal.strategy_id,
            instrument_token=token, side=signal.side, quantity=signal.quantity,
            order_type=signal.order_type, product=product, validity=signal.validity,
            segment=segment, created_ns=now_ns, arrival_ns=arrival,
            limit_price=signal.limit_price, trigger_price=signal.trigger_price,
            price_hint=hint, take_profit=signal.take_profit,
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
        elif kind is _LIMIT and not queued and order.price_hint is not None:
            # it reaches the book after its latency: behind the market the strategy saw, it
            # rests there (and trades at its limit) unless a tick on its way passes it
            assert order.limit_price is not None
            order.rested = order.side.sign * (order.limit_price - order.price_hint) < 0
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
        if self.config.expire_day_orders:  # _register, not MIS
            order.expires_ns = self._expiry(now_ns)
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

    # ------------------------------------------------------------------ validation

    def _not_tradable(self, token: int) -> tuple[str, str] | None:
        """``NOT_TRADABLE`` for an instrument whose latest tick says it cannot be traded."""
        # An index (NIFTY 50, 256265): Kite streams its value, flagged ``tradable: false``,
        # and refuses orders on it; filled here at the index's value, a paper position then
        # followed it. (A tick file carries no such flag: its instruments all trade.)
        history = self._history.get(token)
        if history and not history[-1].tradable:
            return ("NOT_TRADABLE", (f"instrument {token} cannot be traded (its ticks say "
                    "`tradable: false`, as an index's do): the exchange takes no orders on it"))
        return None

    def _validate(self, order: Order, now_ns: int) -> tuple[str, str] | None:
        untradable = self._not_tradable(order.instrument_token)
        if untradable is not None:
            return untradable
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

    # ------------------------------------------------------------------ helpers

    def _register(self, order: Order) -> None:
        """Store a new order with the session times it is subject to."""
        sess = self._clock.session(order.arrival_ns)
        if self.config.expire_day_orders:
            # an IOC too (a stop not triggered, an order on its way): it never outlives its day
            order.expires_ns = self._expiry(order.arrival_ns)
        if order.product is _MIS:
            order.cutoff_ns = sess.cutoff
        if self._kills or self._halts or self._user_cancels or self._recorded_cancels:
            self._stopped_before(order)
        self._orders[order.order_id] = order

    def _expiry(self, at_ns: int) -> int:
        """The close an order reaching the book at ``at_ns`` expires at: its session's or,
        placed after it or on a day NSE does not trade (market hours not enforced), the next
        trading session's (Friday evening's order lives until Monday's close, not Saturday's)."""
        sess = self._clock.session(at_ns)
        if at_ns < sess.close and self._calendar.is_trading_day(sess.day):
            return sess.close
        return self._session(self._calendar.next_open_ns(at_ns)).close

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

    def _segment(self, token: int, product: Product) -> Segment:
        return self.config.segments.get(token) or Segment.for_product(product)

    def _last_price(self, order: Order) -> int | None:
        return self._price_at(order.instrument_token, order.created_ns)

    def _price_at(self, token: int, ts: int) -> int | None:
        """The instrument's last price at event time ``ts`` (its latest tick at/before it)."""
        for tick in reversed(self._history.get(token, ())):
            if tick.ts <= ts:
                return tick.last_price
        return None
