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

The runner's other concerns are mixins of ``StrategyRunner`` in sibling modules, on its own
state: ``feedback`` (fills, order events, the rebuild after a restart), ``exits`` (the
file's ``exit_at``, exits that take resting entries) and ``halts``. ``slots`` holds the
per-(strategy, instrument) slot, ``signal_checks`` what is wrong with a signal refused.
"""

from __future__ import annotations

import traceback
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from types import CodeType
from typing import Final

import msgspec
import structlog

from alpha_panda.domain.errors import ConfigurationError, StrategyError
from alpha_panda.domain.events import MarketTick, Signal, derive_id
from alpha_panda.domain.values import Product, Side, reduces
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
from alpha_panda.strategy.exits import _Replacement
from alpha_panda.strategy.feedback import _Feedback
from alpha_panda.strategy.halts import _Halts
from alpha_panda.strategy.signal_checks import _invalid, _typed
from alpha_panda.strategy.slots import _NEVER, _Slot

log = structlog.get_logger(__name__)

_BUY: Final = Side.BUY

DEFAULT_STRATEGY_CASH: Final = 1_000_000_00
"""Starting cash of each strategy's context, in paise (₹10,00,000)."""


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


class StrategyRunner(_Feedback, _Halts):
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
            reference = self._references.setdefault(token, _Reference())
            try:
                instance = cls(params, token)
                # (its bars and warm-up are read here: a bar_seconds of 0 raises too)
                slots.append(_Slot(sid, token, instance, Context(book, token, reference)))
            except Exception as exc:  # noqa: BLE001 - a user's setup() failing isolates only it
                self._fail(sid, exc)
                return
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

    def strategy_code(self) -> dict[CodeType, str]:
        """The code of each loaded strategy's ``on_tick`` and ``on_bar``, naming the strategy
        (the ids of every strategy running that code, comma-separated): what a stalled
        event loop's stack is matched against to say whose code holds it."""
        ids: dict[CodeType, list[str]] = {}
        base = {Strategy.on_tick.__code__, Strategy.on_bar.__code__}  # (not overridden)
        for sid, slots in self._slots.items():
            cls = type(slots[0].strategy) if slots else None
            for method in (cls.on_tick, cls.on_bar) if cls is not None else ():
                code = getattr(getattr(method, "__func__", method), "__code__", None)
                if isinstance(code, CodeType) and code not in base:
                    ids.setdefault(code, []).append(sid)
        return {code: ", ".join(sids) for code, sids in ids.items()}

    @property
    def tokens(self) -> frozenset[int]:
        """Instrument tokens some active strategy trades (to subscribe the feed)."""
        return frozenset(self._route)

    @property
    def keeps_ticks(self) -> bool:
        """True if some active strategy stores tick objects (no reused tick views then)."""
        return any(s.strategy.keeps_ticks for slots in self._route.values() for s in slots)

