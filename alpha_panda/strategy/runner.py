"""The strategy runner: routes ticks to strategy instances and collects their signals.

The same runner runs live (wrapped by the strategy service) and in the backtest engine,
which is why both produce the same signals. Per tick:

1. the instrument token finds its slots in O(1) (one strategy instance per
   (strategy, instrument), so a strategy is written as if it sees one instrument);
2. each slot's handler runs (``on_bar`` first when the tick closes a bar, then ``on_tick``);
3. signals returned before the strategy's ``warmup`` ticks are dropped; the others are
   checked (own strategy id, own instrument, positive quantity), get ``price_hint``, and
   move the strategy's intended position at once. Cancels of the strategy's open orders
   (``ctx.cancel``) wait in ``cancels`` for the caller (``take_cancels``).

The feedback (``on_fill``, ``on_order_*``) keeps what the context shows besides: the filled
position and the open orders, whatever order the pipeline delivers the events of one
order in (its topics are read together, so a fill may come before its submission).

A strategy that raises (or emits an invalid signal) is taken out of service: status
FAILED, the error and traceback logged, counted; the other strategies go on.
"""

from __future__ import annotations

import traceback
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable, Sequence
from datetime import time
from typing import Final

import msgspec
import structlog

from alpha_panda.domain.clock import DAY_NS, ist_date, ist_ns
from alpha_panda.domain.errors import ConfigurationError, StrategyError
from alpha_panda.domain.events import (
    NO_CHARGES,
    MarketTick,
    OrderCancelled,
    OrderFilled,
    OrderRejected,
    OrderSubmitted,
    Signal,
    derive_id,
)
from alpha_panda.domain.values import OrderType, Product, Side, Validity, reduces
from alpha_panda.execution.config import MIS_SQUAREOFF
from alpha_panda.risk.engine import ORDER_STAGES
from alpha_panda.strategy.bars import BarBuilder
from alpha_panda.strategy.base import (
    CancelOrder,
    Context,
    OpenOrder,
    Strategy,
    _Book,
    _Clock,
    _Reference,
)
from alpha_panda.strategy.config import StrategyConfig

log = structlog.get_logger(__name__)

_BUY: Final = Side.BUY
_NEVER: Final = 2**63 - 1
_RETRY_NS: Final = 60 * 1_000_000_000  # an exit close refused is sent again this much later

DEFAULT_STRATEGY_CASH: Final = 1_000_000_00
"""Starting cash of each strategy's context, in paise (₹10,00,000)."""

Handler = Callable[[MarketTick, Context], "Sequence[Signal | CancelOrder] | None"]

ENDED_KEPT: Final = 10_000
"""Ids of orders that ended before their submission was read, remembered at most."""


class StrategyStatus(msgspec.Struct, kw_only=True):
    """Operational state of one configured strategy."""

    id: str
    strategy: str
    state: str  # ACTIVE, HALTED (by the trader), FAILED (it raised), DISABLED
    instruments: list[int]
    brokers: list[str]
    signals: int = 0
    dropped_in_warmup: int = 0
    cancels_ignored: int = 0  # ctx.cancel of an order not open (ended, or never its own)
    dropped_while_halted: int = 0  # signals of a strategy the trader halted
    dropped_after_exit: int = 0  # signals that would open or add past the file's exit_at
    error: str | None = None
    traceback: str | None = None
    source: str = ""

    @property
    def strategy_id(self) -> str:
        """Alias of ``id``."""
        return self.id


class _Slot:
    __slots__ = ("ctx", "exit_end", "exit_ns", "exit_stop", "exit_tried", "handler", "sid",
                 "strategy", "token", "warmup_left")

    def __init__(self, sid: str, token: int, strategy: Strategy, ctx: Context) -> None:
        self.sid = sid
        self.token = token
        self.strategy = strategy
        self.ctx = ctx
        self.handler: Handler = _handler_for(strategy)
        self.warmup_left = max(0, int(strategy.warmup))
        # Today's exit window (``StrategyRunner._exiting``): from the file's ``exit_at``,
        # orders closing until ``exit_stop`` (an MIS strategy's cut-off: the exchange squares
        # off after it), and until ``exit_end`` (midnight IST) nothing that opens. Without
        # ``exit_at``, never; with it, set by the first tick.
        self.exit_ns = _NEVER if ctx._book.exit_at is None else 0
        self.exit_stop = self.exit_end = 0
        # what the last exit orders closed (product, quantity), and when they were sent
        self.exit_tried: tuple[tuple[tuple[Product, int], ...], int] | None = None


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


def _handler_for(strategy: Strategy) -> Handler:
    if not type(strategy).uses_bars():
        return strategy.on_tick
    builder = BarBuilder(strategy.instrument_token, strategy.bar_interval())
    on_bar = strategy.on_bar
    on_tick = strategy.on_tick

    def handle(tick: MarketTick, ctx: Context) -> Sequence[Signal | CancelOrder] | None:
        bar = builder.update(tick.ts, tick.last_price, tick.last_quantity or tick.volume)
        from_bar = on_bar(bar, ctx) if bar is not None else None
        from_tick = on_tick(tick, ctx)
        if from_bar and from_tick:
            return [*from_bar, *from_tick]
        return from_bar or from_tick

    return handle


def signal_ids(tick_envelope_id: str, signals: Iterable[Signal]) -> list[str]:
    """Deterministic ids of the signals one tick produced: ``derive_id(tick, strategy:ID, n)``.

    ``n`` counts each strategy's signals within the tick from 0, in emission order.
    """
    counts: dict[str, int] = {}
    ids = []
    for sig in signals:
        n = counts.get(sig.strategy_id, 0)
        counts[sig.strategy_id] = n + 1
        ids.append(derive_id(tick_envelope_id, f"strategy:{sig.strategy_id}", n))
    return ids


class StrategyRunner:
    """Runs configured strategies over ticks; keeps their intended positions and cash."""

    def __init__(
        self, configs: Sequence[StrategyConfig], *, initial_cash: int = DEFAULT_STRATEGY_CASH,
        ordered_feedback: bool = False,
    ) -> None:
        self._initial_cash = initial_cash
        self._configs: dict[str, StrategyConfig] = {}
        self._instrument_sets: dict[str, frozenset[int]] = {}
        self._status: dict[str, StrategyStatus] = {}
        self._books: dict[str, _Book] = {}
        self._slots: dict[str, list[_Slot]] = {}
        # Orders whose events came before their submission (the pipeline reads the order
        # topics together): leaves quantity of a part fill, or ended (filled in full,
        # cancelled, rejected: never open), oldest first, at most ``ENDED_KEPT``. Not kept
        # when ``ordered_feedback`` (the backtest: every order's events in order, and an
        # order filled at once not submitted to the runner at all).
        self._early_leaves: dict[str, int] = {}
        self._ended: OrderedDict[str, None] = OrderedDict()
        self.ordered_feedback = ordered_feedback
        # While the strategies are replayed to rebuild their own state after a restart:
        # their decisions are not the live run's (its feedback came at other times), so
        # they move no book; the books are rebuilt from the log instead (``replay_signal``
        # and the feedback, ``reset_books``).
        self.replaying = False
        self._clock = _Clock()
        # Per instrument: what the exchange takes its tick size from (``ctx.tick_size()``).
        self._references: dict[int, _Reference] = {}
        self.failures = 0
        # Strategies taken out of service since the caller last took them (``take_halted``):
        # their open orders are to be cancelled.
        self.halted: list[tuple[str, str]] = []
        # Cancels the strategies asked for since the caller last took them (``take_cancels``).
        self.cancels: list[tuple[str, OpenOrder]] = []
        # Resting entries an exit cancelled in its place (``_cancel_entries``): order id ->
        # (strategy, instrument, signed leaves the exit already took off the intended
        # position); what of it fills before the cancel lands moves the intent back.
        self._exit_cancels: dict[str, tuple[str, int, int]] = {}
        # Of those, the ones an exit placed again smaller (``_cancel_entries``): order id ->
        # its replacement. Should the entry fill instead of being cancelled (the cancel lost
        # the race at the venue), or its cancel be refused, the replacement is cancelled
        # (``_trim_failed``); once the entry is cancelled whole, it is an entry as any.
        self._replacements: dict[str, _Replacement] = {}
        self._replaced: dict[str, str] = {}  # replacement's order id -> the entry's
        self._cancelled_early: set[str] = set()  # replacements cancelled before submission
        self._halted: set[str] = set()  # strategies the trader took out of service
        self._halt_until: dict[str, int] = {}  # of those, the ones back at a market time
        # strategies one of whose brokers stopped them (``note_stop``): shown until then
        self._note_until: dict[str, int] = {}
        self._next_lapse = _NEVER  # the earliest of those times
        # Open orders the venue said it fills no more from a time on (``expires_ns``: the
        # close, the MIS cut-off): order id -> (that time, strategy). From the first tick at
        # or after it the runner counts the unfilled rest as ended, as the backtest, whose
        # exchange sees the tick first, tells it then; the pipeline's OrderCancelled comes
        # from the paper engine's reading of that same tick, after the strategy's (not
        # kept when ``ordered_feedback``: the backtest's cancel comes first).
        self._expiring: dict[str, tuple[int, str]] = {}
        self._next_expiry = _NEVER
        # Of those, the orders of the strategies' own signals ended so: order id ->
        # (strategy, instrument, signed leaves taken off the intended position), less what
        # filled before the time but was read after it; the venue's cancel puts the rest
        # back as it takes its own leaves off (``_order_ended``).
        self._expired: dict[str, tuple[str, int, int]] = {}
        for config in configs:
            self._add(config, initial_cash)
        self._route: dict[int, list[_Slot]] = {}
        self._rebuild_route()

    def _add(self, config: StrategyConfig, cash: int) -> None:
        sid = config.id
        if sid in self._configs:
            raise ConfigurationError(f"duplicate strategy id {sid!r}")
        self._configs[sid] = config
        self._instrument_sets[sid] = frozenset(config.instruments)
        self._status[sid] = StrategyStatus(
            id=sid, strategy=config.strategy, state="ACTIVE" if config.enabled else "DISABLED",
            instruments=list(config.instruments), brokers=[b.value for b in config.brokers],
            source=config.source,
        )
        book = self._books[sid] = _Book(sid, cash, self._clock, Product(config.product),
                                        config.exit_at)
        if not config.enabled:
            return
        cls = config.strategy_class()
        params = cls.Params.model_validate(config.params)
        slots = []
        for token in config.instruments:
            try:
                instance = cls(params, token)
            except Exception as exc:  # noqa: BLE001 - a user's setup() failing isolates only it
                self._fail(sid, exc)
                return
            reference = self._references.setdefault(token, _Reference())
            slots.append(_Slot(sid, token, instance, Context(book, token, reference)))
        self._slots[sid] = slots

    def _rebuild_route(self) -> None:
        route: dict[int, list[_Slot]] = {}
        for sid, slots in self._slots.items():
            if self._status[sid].state not in ("ACTIVE", "HALTED"):  # (halted: still fed)
                continue
            for slot in slots:
                route.setdefault(slot.token, []).append(slot)
        self._route = route

    # ------------------------------------------------------------------ ticks

    def on_tick(self, tick: MarketTick) -> list[Signal]:
        """Signals of every strategy trading ``tick``'s instrument, in config order."""
        return self.process(tick) or []

    def process(self, tick: MarketTick) -> list[Signal] | None:
        """``on_tick`` returning ``None`` when there is no signal (the engine's fast path);
        an empty list when a strategy asked for cancels only (``take_cancels``)."""
        slots = self._route.get(tick.instrument_token)
        if slots is None:
            return None
        out: list[Signal] | None = None
        self._clock.now_ns = ts = tick.ts
        if ts >= self._next_lapse:
            self.lapse(ts)
        if ts >= self._next_expiry and not self.replaying:
            self._expire(ts)
        ref = self._references[tick.instrument_token]
        if ts >= ref.day_end:
            ref.new_day(ts, tick.last_price)
        ref.close = tick.close
        for slot in slots:
            try:
                sigs = slot.handler(tick, slot.ctx)
            except Exception as exc:  # noqa: BLE001 - isolation: this one stops, others go on
                self._fail(slot.sid, exc)
                continue
            if slot.warmup_left:
                slot.warmup_left -= 1
                if sigs:
                    self._status[slot.sid].dropped_in_warmup += len(sigs)
                continue
            if ts >= slot.exit_ns:
                out = self._exiting(slot, sigs, tick, out)
            elif sigs:
                out = self._accept(slot, sigs, tick, out)
        return out

    def lapse(self, now_ns: int) -> None:
        """Put back the strategies whose halt lapses by ``now_ns`` (``halt``'s ``until``)."""
        for sid, until in list(self._halt_until.items()):
            if until <= now_ns:
                self.halt(sid, False)
        for sid, until in list(self._note_until.items()):
            if until <= now_ns:
                del self._note_until[sid]
                status = self._status[sid]
                if status.state == "ACTIVE":
                    status.error = None
        self._next_lapse = min([*self._halt_until.values(), *self._note_until.values()],
                               default=_NEVER)

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

    def note_stop(self, strategy_id: str, broker: str, reason: str, until: int | None) -> None:
        """One broker's daily-loss stop of a strategy that trades on others too: that
        broker's risk manager holds it there, and it trades on at the others; its status
        says so (``error``) until ``until``."""
        status = self._status.get(strategy_id)
        if status is None or status.state != "ACTIVE" or until is None \
                or until <= self._clock.now_ns:
            return
        status.error = f"{reason} (on {broker}; it trades on at its other brokers)"
        self._note_until[strategy_id] = until
        self._next_lapse = min(self._next_lapse, until)

    # The engine's inlined form of ``process`` (the backtest runs it for every tick): the
    # table, the clock, and the three steps after a handler returns, as ``process`` does.

    def dispatch(self) -> dict[int, list[_Slot]]:
        """Instrument token -> its active slots in config order. A new dict replaces it when
        a strategy fails: fetch it again after ``fail_slot`` and ``accept``."""
        return self._route

    def references(self) -> dict[int, _Reference]:
        """Instrument token -> its tick-size reference: before a tick's handlers run, roll
        it on a new IST day (``new_day``) and set ``close`` (``process``'s rule)."""
        return self._references

    @property
    def clock(self) -> _Clock:
        """The clock every context reads; set ``now_ns`` to the tick's time before handlers."""
        return self._clock

    def fail_slot(self, slot: _Slot, exc: BaseException) -> None:
        """A handler raised: take its strategy out of service (``process``'s rule)."""
        self._fail(slot.sid, exc)

    def warming_up(self, slot: _Slot, sigs: Sequence[Signal | CancelOrder] | None) -> None:
        """A handler returned during its warm-up: count the tick, drop its signals."""
        slot.warmup_left -= 1
        if sigs:
            self._status[slot.sid].dropped_in_warmup += len(sigs)

    def accept(
        self, slot: _Slot, sigs: Sequence[Signal | CancelOrder], tick: MarketTick,
        out: list[Signal] | None,
    ) -> list[Signal] | None:
        """Check a handler's signals after warm-up and add them to ``out`` (``process``'s rule)."""
        return self._accept(slot, sigs, tick, out)

    def _accept(
        self, slot: _Slot, sigs: Sequence[Signal | CancelOrder], tick: MarketTick,
        out: list[Signal] | None,
    ) -> list[Signal] | None:
        if self._halted and slot.sid in self._halted:
            # halted by the trader: it still sees every tick (its state stays current for
            # when it is put back in service), and what it decides goes nowhere
            self._status[slot.sid].dropped_while_halted += len(sigs)
            return out
        if not isinstance(sigs, (list, tuple)):  # the tuple form is faster than a union
            self._fail(slot.sid, StrategyError(
                slot.sid, f"returned {type(sigs).__name__}; expected a list of Signals (and "
                          "ctx.cancel requests) or None"))
            return out
        accepted = []
        sid = slot.sid
        instruments = self._instrument_sets[sid]
        cancels: list[CancelOrder] = []
        for sig in sigs:
            if type(sig) is CancelOrder:
                if sig.strategy_id != sid:
                    self._fail(sid, StrategyError(
                        sid, f"cancels an order of strategy {sig.strategy_id!r}: a strategy "
                             "cancels only its own orders (ctx.cancel)"))
                    return out
                cancels.append(sig)
                continue
            # the usual case in one test; ``_invalid`` says what is wrong otherwise
            if not (isinstance(sig, Signal) and sig.strategy_id == sid
                    and sig.instrument_token in instruments
                    and type(sig.quantity) is int and not sig.quantity <= 0
                    and _typed(sig) is None):  # (``_invalid``'s very tests)
                problem = _invalid(sig, sid, instruments)
                assert problem is not None
                self._fail(sid, StrategyError(sid, problem))
                return out
            if sig.price_hint is None and sig.instrument_token == tick.instrument_token:
                sig = msgspec.structs.replace(sig, price_hint=tick.last_price)
            accepted.append(sig)
        if self.replaying:  # (counted as they are read back instead: ``replay_signal``)
            return accepted if out is None else out + accepted
        self._status[slot.sid].signals += len(accepted)
        book = slot.ctx._book
        positions = book.positions
        emptied = False
        resized: list[Signal] = []  # entries placed again smaller for an exit (``_cancel_entries``)
        for n, sig in enumerate(accepted):
            token = sig.instrument_token
            q = sig.quantity
            held = positions.get(token, 0)
            signed = q if sig.side is _BUY else -q
            positions[token] = held + signed
            exit_ = bool(held) and reduces(held, signed)
            # (its brackets' stop-loss and target the venue cuts to what it leaves held,
            # once it fills: refused, it leaves them protecting the position)
            if exit_ and book.orders:
                q = self._cancel_entries(sid, book, token, held, q, sig, resized)
            # an exit must not open a position anywhere; no broker may hold beyond the intent
            accepted[n] = msgspec.structs.replace(
                sig, quantity=q, reduce_only=exit_, target=held + signed)
            if not q:
                emptied = True
        if emptied:  # exits made of cancels only: nothing to send
            accepted = [s for s in accepted if s.quantity]
        if resized:
            accepted += resized
        for cancel in cancels:
            order = book.orders.get(cancel.order_id)
            if order is None:
                self._cancel_ignored(sid, cancel.order_id)
            elif not order.cancel_requested:  # else: asked already, nothing more to ask
                self._ask_cancel(sid, book, order)
        if not accepted:  # cancels only: an empty list, not None, tells the caller to look
            return [] if out is None else out
        if out is None:
            return accepted
        out.extend(accepted)
        return out

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
        order's quantity: keeping 6 of a resting buy of 10 cancels it and buys 6. An entry
        the strategy asked to cancel already counts as whole, its cancel not asked again."""
        sign = 1 if held > 0 else -1
        entries = [o for o in book.orders.values()
                   if o.instrument_token == token and o.origin == "signal"
                   and o.side.sign == sign and o.order_type is not OrderType.MARKET
                   and o.order_id not in self._exit_cancels]  # (those left ``held`` already)
        if not entries:
            return qty
        # ``held`` counts them all, and those the strategy asked to cancel until that lands
        resting = sum(o.leaves_quantity for o in entries)
        excess = qty - (abs(held) - resting)  # what the exit would sell beyond the rest
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
                self._exit_cancels[part.order_id] = (sid, token, sign * leaves)
                qty -= excess
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

    def halt(self, strategy_id: str, active: bool = True, reason: str = "",
             until: int | None = None) -> bool:
        """The trader (or a daily-loss stop) takes a strategy out of service (``active``,
        for ``reason``; until the market time ``until``, if given: the first tick at or
        after it puts it back) or puts it back; False for a strategy this runner does not
        run. A strategy that failed stays failed."""
        status = self._status.get(strategy_id)
        if status is None:
            return False
        self._halt_until.pop(strategy_id, None)
        if active and until is not None:
            if until <= self._clock.now_ns:
                return True  # read after it lapsed (a restart's catch-up)
            self._halt_until[strategy_id] = until
        self._next_lapse = min([*self._halt_until.values(), *self._note_until.values()],
                               default=_NEVER)
        if active:
            self._halted.add(strategy_id)
            if status.state in ("ACTIVE", "HALTED"):
                status.state = "HALTED"
                status.error = reason or None
        else:
            self._halted.discard(strategy_id)
            if status.state == "HALTED":
                status.state = "ACTIVE"
                status.error = None
        return True

    def _cancel_ignored(self, sid: str, order_id: str) -> None:
        """A cancel of an order the strategy has not open: counted, and logged the first
        time (a strategy asking on every tick would flood the log)."""
        status = self._status[sid]
        status.cancels_ignored += 1
        if status.cancels_ignored == 1:
            log.warning("strategy_cancel_ignored", strategy_id=sid, order_id=order_id,
                        detail="no open order of this strategy has this id (it ended, or is "
                               "not an order id from ctx.open_orders()); further ones are "
                               "only counted (cancels_ignored)")

    def _fail(self, sid: str, exc: BaseException) -> None:
        status = self._status[sid]
        if status.state == "FAILED":
            return
        tb = "".join(traceback.format_exception(exc))
        status.state = "FAILED"
        status.error = f"{type(exc).__name__}: {exc}"
        status.traceback = tb
        self.failures += 1
        self.halted.append((sid, status.error))
        log.error("strategy_failed", strategy_id=sid, error=status.error, traceback=tb)
        self._rebuild_route()

    def take_halted(self) -> list[tuple[str, str]]:
        """(strategy id, error) of each strategy failed since the last call, in order."""
        halted, self.halted = self.halted, []
        return halted

    def take_cancels(self) -> list[tuple[str, OpenOrder]]:
        """(strategy id, order) of each cancel a strategy asked for since the last call,
        in order; each open order once."""
        cancels, self.cancels = self.cancels, []
        return cancels

    # ------------------------------------------------------------------ feedback
    # Only an order of the strategy's own signal (``origin`` "signal") moved its intended
    # position when it was signalled: its rejection or cancellation undoes what never
    # filled. An order the system placed for it (a bracket leg, the square-off, the kill
    # switch's flatten) moves the position when it fills, and its end undoes nothing.

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
        book.filled[token] = book.filled.get(token, 0) + signed
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

    # ------------------------------------------------------------------ queries

    def statuses(self) -> list[StrategyStatus]:
        return list(self._status.values())

    def config(self, strategy_id: str) -> StrategyConfig:
        try:
            return self._configs[strategy_id]
        except KeyError:
            raise ConfigurationError(f"no strategy with id {strategy_id!r}") from None

    def configs(self) -> list[StrategyConfig]:
        return list(self._configs.values())

    def position(self, strategy_id: str, token: int) -> int:
        """The intended position of a strategy in an instrument."""
        return self._books[strategy_id].positions.get(token, 0)

    def cash(self, strategy_id: str) -> int:
        return self._books[strategy_id].cash

    @property
    def tokens(self) -> frozenset[int]:
        """Instrument tokens some active strategy trades (to subscribe the feed)."""
        return frozenset(self._route)

    @property
    def keeps_ticks(self) -> bool:
        """True if some active strategy stores tick objects (no reused tick views then)."""
        return any(s.strategy.keeps_ticks for slots in self._route.values() for s in slots)


def _invalid(sig: object, sid: str, instruments: Collection[int]) -> str | None:
    if not isinstance(sig, Signal):
        return f"returned {type(sig).__name__}, not a Signal"
    if sig.strategy_id != sid:
        return f"emitted a signal for strategy {sig.strategy_id!r}"
    if sig.instrument_token not in instruments:
        return f"emitted a signal for instrument {sig.instrument_token} it does not trade"
    if type(sig.quantity) is not int:
        return (f"emitted a signal with quantity {sig.quantity!r} "
                f"({type(sig.quantity).__name__}): quantities are whole shares (int)")
    if sig.quantity <= 0:
        return f"emitted a signal with quantity {sig.quantity}"
    return _typed(sig)


_PRICES = ("limit_price", "trigger_price", "take_profit", "stop_loss", "price_hint")
_ENUMS = (("side", Side), ("order_type", OrderType), ("product", Product), ("validity", Validity))


def _typed(sig: Signal) -> str | None:
    """What is of the wrong type in ``sig`` (a ``Signal`` is not checked when built): the
    log's codec would refuse it downstream, and the backtest would misread it."""
    if type(sig.instrument_token) is not int:
        return f"emitted a signal for instrument {sig.instrument_token!r}: expected an int token"
    for name in _PRICES:
        value = getattr(sig, name)
        if value is not None and type(value) is not int:
            return (f"emitted a signal with {name} {value!r} ({type(value).__name__}): prices "
                    "are int paise (an average is a float: round it, e.g. int(x) // t * t)")
    for name, kind in _ENUMS:
        value = getattr(sig, name)
        if not isinstance(value, kind):
            return (f"emitted a signal with {name} {value!r}: expected a {kind.__name__} "
                    f"(from alpha_panda.strategy import {kind.__name__})")
    if not isinstance(sig.reason, str):
        return f"emitted a signal with reason {sig.reason!r}: expected text"
    return None
