"""The zerodha trading engine: validated live signals in, Kite orders out, exactly once.

It consumes only ``zerodha.signals.validated`` and ``zerodha.control`` (hard isolation:
any other topic, or an envelope whose broker is not ``zerodha``, stops it) and writes only
``zerodha.orders.*`` and, for a cancel it could not carry out, ``zerodha.control``. A kill
switch on ``zerodha.control`` cancels every open order of ours at Kite (our tag: orders the
trader placed by hand are left alone), a failed strategy's halt (``StrategyHalted``) the
open orders of that strategy, and a cancel request (``CancelRequested``, the trader's or a
strategy's) the one order of ours it names by our order id (an unknown or closed order, or
one Kite will no longer cancel, is left, and a ``CancelRefused`` says why). The order sync
records the cancellations as Kite reports them, with the reason the engine asked for
(``user``, ``strategy``, ``kill_switch``, ``strategy_halted``; ``broker`` for the rest). A
control event older than the oldest signal the engine would still act on is only logged: a
new consumer group reads the topic from its start.

A fresh MIS order at or after the MIS cut-off (15:20 IST) is rejected here, ``MIS_CUTOFF``,
by the paper exchange's rule (``execution.rules.mis_cutoff``), not sent for Kite's RMS to
reject; an exit of the strategy's MIS position still goes to Kite, which accepts it.

Exactly once across crashes: the order of a signal carries a tag derived from the
signal id (``order_tag``). Before placing, the engine looks the tag up in the day's order
book (fetched at start, after a rebalance and after any placement whose outcome is
unknown); a tag already there is adopted instead of placed again. The ``OrderSubmitted``
it emits is committed with the signal's offset, so a crash after placing and before
committing redelivers the signal, finds the tag, and emits the same event.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from datetime import time as clock_time
from typing import Any

import structlog

from alpha_panda.adapters.zerodha.client import KiteRestClient, OrderRefused, funds_reported
from alpha_panda.adapters.zerodha.config import ZerodhaSettings, zerodha_settings
from alpha_panda.adapters.zerodha.instruments import InstrumentMaster
from alpha_panda.adapters.zerodha.order_sync import (
    BROKER,
    SOURCE,
    ReconcileReport,
    ZerodhaOrderSync,
)
from alpha_panda.adapters.zerodha.session import require_live_session
from alpha_panda.adapters.zerodha.ticker import POSTBACKS
from alpha_panda.domain.clock import ist_date
from alpha_panda.domain.errors import (
    AuthenticationError,
    BrokerUnavailable,
    ConfigurationError,
    DecodeError,
    InvariantViolation,
    RateLimited,
    RetryableError,
    TransientError,
    ValidationError,
)
from alpha_panda.domain.events import (
    CODEC,
    NO_CHARGES,
    CancelRefused,
    CancelRequested,
    Charges,
    Envelope,
    FundsReported,
    KillSwitchSet,
    OrderCancelled,
    OrderFilled,
    OrderRejected,
    OrderSubmitted,
    Origin,
    Signal,
    SignalValidated,
    StrategyHalted,
    derive_id,
    new_envelope,
)
from alpha_panda.domain.values import Product, reduces
from alpha_panda.execution.config import MIS_SQUAREOFF
from alpha_panda.execution.costs import CostModel, Segment
from alpha_panda.execution.market import MarketCalendar, SessionClock
from alpha_panda.execution.netting import CncNetting
from alpha_panda.execution.rules import mis_cutoff
from alpha_panda.execution.zerodha.orders import (
    is_our_tag,
    kite_order_params,
    order_id_for,
    order_tag,
)
from alpha_panda.execution.zerodha.reconcile import OrderBook, TrackedOrder
from alpha_panda.observability.health import ComponentStatus, State
from alpha_panda.services.emitting import order_emit
from alpha_panda.stream.emit import Emit, to_output
from alpha_panda.stream.log import Log, Record, TopicPartition, read_topic
from alpha_panda.stream.runtime import ProcessorSettings, StreamProcessor
from alpha_panda.stream.topics import topic

log_ = structlog.get_logger(__name__)
SIGNALS_TOPIC = topic(BROKER, "signals.validated")
CONTROL_TOPIC = topic(BROKER, "control")
# Kite's statuses of an order that may still trade
_CANCELLABLE = frozenset({"OPEN", "TRIGGER PENDING", "AMO REQ RECEIVED", "OPEN PENDING",
                          "VALIDATION PENDING", "PUT ORDER REQ RECEIVED", "MODIFY PENDING",
                          "MODIFY VALIDATION PENDING"})
_FILLED_OR_REJECTED = frozenset({"COMPLETE", "REJECTED"})
GROUP = "zerodha.trading-engine"
UNTIL_KITE_ANSWERS = 2**62  # attempts of a retryable error (each at most backoff_max apart)
_RETRYABLE = tuple(c.__name__ for c in (RetryableError, TransientError, BrokerUnavailable,
                                        RateLimited))


def check_topics(topics: Sequence[str]) -> None:
    """Refuse any subscription outside ``zerodha.*`` (hard isolation)."""
    bad = [t for t in topics if not t.startswith(f"{BROKER}.")]
    if bad:
        raise ConfigurationError(f"the zerodha trading engine may consume only zerodha.* topics, "
                                 f"not {bad}")


class ZerodhaEngine:
    """The ``Handler`` of the zerodha trading engine (``ahandle`` does the network I/O)."""

    def __init__(self, kite: KiteRestClient, instruments: InstrumentMaster, book: OrderBook, *,
                 market_protection: int = -1, max_signal_age_s: float = 300.0,
                 clock: Callable[[], int] = time.time_ns,
                 mis_squareoff: clock_time | None = MIS_SQUAREOFF) -> None:
        self._kite = kite
        self._instruments = instruments
        self._book = book
        self._protection = market_protection
        self._max_age_ns = int(max_signal_age_s * 1e9)
        self._clock = clock
        self._sessions = SessionClock(MarketCalendar(), mis_squareoff)  # the paper's cut-off
        self._tags: dict[str, str] = {}  # our tag -> Kite order id, from the order book
        self._stale = True  # the order book must be read before the next placement
        self.placed = 0
        self.adopted = 0
        self.rejected = 0
        self.cancelled = 0  # open orders Kite accepted to cancel (switch, halts, requests)
        # The kill switch as last seen (active, set at ns), and the latest market time any
        # activation carried: nothing but its flatten orders is placed while it is on, nor
        # ever a signal of a tick by an activation's market time (validated before it and
        # still on its way when the open orders were swept, even if it was released
        # since). Read from the control topic at start (``note_switch``).
        self._switch: tuple[bool, int] = (False, -1)
        self._stopped_until = -1
        # A strategy's cancels of orders not placed yet (its first broker answered first,
        # while this engine's signal was still on its way): order id -> (its event, it).
        self._early_cancels: dict[str, tuple[Envelope[Any], CancelRequested]] = {}
        # ids of the kill switches and halts whose sweep of open orders began and has not
        # ended (Kite failed mid-way: the event is retried, however old it is by then)
        self._sweeps: set[str] = set()
        # When a flatten was last asked for (the request's wall-clock time): of the account
        # (None, the kill switch) or of one strategy (its halt). Its orders are dated at the
        # market's time of the request, its latest tick: hours old when the system was
        # stopped, the feed down; the trader's request is what must be recent.
        self._flatten_asked: dict[str | None, int] = {}
        # each strategy's latest halt or return to service: (halted, set at), as _switch
        self._halts: dict[str, tuple[bool, int]] = {}
        # reads every switch on the control topic again (set by the processor): an old
        # switch stands only if no record after it says otherwise, read or not yet
        self.read_switches: Callable[[], Awaitable[None]] | None = None

    def note_flatten(self, data: KillSwitchSet | StrategyHalted, asked_at: int) -> None:
        """A kill switch or halt with ``flatten`` asked at ``asked_at`` (ns, wall clock)."""
        if data.active and data.flatten:
            scope = data.strategy_id if isinstance(data, StrategyHalted) else None
            self._flatten_asked[scope] = max(self._flatten_asked.get(scope, -1), asked_at)

    def _too_old(self, event: Envelope[SignalValidated]) -> bool:
        """Older than the engine places: a signal by its event time; a flatten order also
        not when the flatten it is part of was asked for recently (its market time may be
        the last tick before a restart, or before the feed went quiet)."""
        now = self._clock()
        if now - event.ts <= self._max_age_ns:
            return False
        if not event.data.flatten:
            return True
        asked = max(self._flatten_asked.get(None, -1),
                    self._flatten_asked.get(event.data.signal.strategy_id, -1))
        return now - asked > self._max_age_ns

    def note_switch(self, active: bool, set_at: int, market_ts: int | None) -> None:
        """A kill switch set at ``set_at`` (ns); its state applies unless one set later is
        known (a consumer resuming from an older offset replays switches read at start)."""
        if active:  # (no market time: no tick yet; the wall clock's time then bounds them)
            self._stopped_until = max(self._stopped_until,
                                      set_at if market_ts is None else market_ts)
        if set_at >= self._switch[1]:
            self._switch = (active, set_at)

    def note_halt(self, data: StrategyHalted, set_at: int) -> None:
        """A strategy halted (or back in service) at ``set_at`` (ns), as ``note_switch``. A
        halt that lapses by itself (``until``: a daily-loss stop, over at the next day's
        start with no record of its end) is not taken as standing: by now it may be over."""
        latest = self._halts.get(data.strategy_id)
        if latest is None or set_at >= latest[1]:
            self._halts[data.strategy_id] = (data.active and data.until is None, set_at)

    def _standing(self, event: Envelope[Any], strategy_id: str | None) -> bool:
        """Whether ``event`` (a kill switch, or ``strategy_id``'s halt) is the latest known
        and still on: no later release or setting."""
        latest = self._switch if strategy_id is None else self._halts.get(strategy_id)
        return latest == (True, event.ts)

    async def _still_standing(self, event: Envelope[Any], strategy_id: str | None) -> bool:
        """``_standing``, with the control topic read to its end first (a release may wait
        behind it there)."""
        if not self._standing(event, strategy_id):
            return False
        if self.read_switches is not None:
            await self.read_switches()
        return self._standing(event, strategy_id)

    def _stopped(self, event: Envelope[SignalValidated]) -> bool:
        """A signal the kill switch stops here (``note_switch``); never one of its flatten
        orders. While it is on, a signal the risk manager validated before reading it is
        refused too, whatever its tick: the safe side of that race (one validated just after
        a release the engine has not read yet is refused as well)."""
        if event.data.flatten:
            return False
        return self._switch[0] or event.ts <= self._stopped_until

    def handle(self, event: Envelope[Any], record: Record) -> Sequence[Emit]:
        raise InvariantViolation("the zerodha trading engine places orders: it cannot be "
                                 "replayed synchronously (no rebuild)")

    def on_assign(self, tps: Sequence[TopicPartition]) -> None:
        check_topics([tp.topic for tp in tps])
        self._stale = True  # another member may have placed orders for these partitions

    async def ahandle(self, event: Envelope[Any], record: Record) -> Sequence[Emit]:
        check_topics([record.topic])
        if event.broker != BROKER:
            raise InvariantViolation(f"the zerodha trading engine got an envelope for broker "
                                     f"{event.broker!r} ({event.id}) on {record.topic}")
        data = event.data
        if isinstance(data, KillSwitchSet):
            self.note_switch(data.active, event.ts, data.market_ts)
            self.note_flatten(data, event.ts)
            if data.active:
                await self._kill(event)
            return ()
        if isinstance(data, StrategyHalted):
            self.note_halt(data, event.ts)
            self.note_flatten(data, event.ts)
            if data.active:  # (not its return to service)
                await self._kill(event, data.strategy_id)
            return ()
        if isinstance(data, CancelRequested):
            return await self._cancel(event, data)
        if not isinstance(data, SignalValidated):
            return ()
        sig, sid = data.signal, data.signal_id
        tag = order_tag(sid)
        inst = self._instruments.get(sig.instrument_token)
        if inst is None:
            return [self._reject(event, "UNKNOWN_INSTRUMENT",
                                 f"instrument {sig.instrument_token} is not in Kite's list")]
        try:
            params = kite_order_params(sig, exchange=inst.exchange, tradingsymbol=inst.tradingsymbol,
                                       tag=tag, market_protection=self._protection)
        except ValidationError as exc:
            return [self._reject(event, "INVALID_ORDER", str(exc))]
        order_id = order_id_for(sid)
        origin: Origin = "flatten" if data.flatten else "signal"
        early = self._early_cancels.pop(order_id, None) if self._early_cancels else None
        broker_id = await self._existing(tag)
        if broker_id is not None:
            self.adopted += 1
            log_.info("zerodha.order_adopted", signal_id=sid, broker_order_id=broker_id)
        elif early is not None:  # cancelled before it was placed: nothing goes to Kite
            log_.info("zerodha.order_cancelled_before_placing", signal_id=sid,
                      requested_by=early[1].requested_by)
            cancelled = OrderCancelled(
                order_id=order_id, strategy_id=sig.strategy_id,
                instrument_token=sig.instrument_token, side=sig.side, filled_quantity=0,
                leaves_quantity=sig.quantity, reason=early[1].reason, ts=event.ts, origin=origin)
            return [order_emit(BROKER, cancelled, cause=event, source=SOURCE, ts=event.ts)]
        elif self._too_old(event):
            return [self._reject(event, "STALE_SIGNAL", "signal older than the engine accepts")]
        elif self._stopped(event):
            return [self._reject(event, "KILL_SWITCH",
                                 "kill switch is active: an order validated before it is not "
                                 "placed")]
        elif (late := self._past_cutoff(sig)) is not None:
            return [self._reject(event, *late)]
        else:
            try:
                broker_id = await self._kite.place_order(params)
            except OrderRefused as exc:
                return [self._reject(event, "BROKER_REFUSED", str(exc))]
            except RetryableError:
                self._stale = True  # the order may have reached Kite: look before retrying
                raise
            self._tags[tag] = broker_id
            self.placed += 1
        submitted = OrderSubmitted(
            order_id=order_id, signal_id=sid, strategy_id=sig.strategy_id,
            instrument_token=sig.instrument_token, side=sig.side, quantity=sig.quantity,
            order_type=sig.order_type, limit_price=sig.limit_price, trigger_price=sig.trigger_price,
            product=sig.product, validity=sig.validity, tag=tag, broker_order_id=broker_id,
            ts=event.ts, origin=origin)
        self._book.apply(submitted, event.correlation_id)
        out = [order_emit(BROKER, submitted, cause=event, source=SOURCE, ts=event.ts)]
        if early is not None:  # it was at Kite already (adopted): cancel it there
            out += await self._cancel(*early)
        return out

    def _past_cutoff(self, sig: Signal) -> tuple[str, str] | None:
        """``MIS_CUTOFF`` for a fresh MIS order at/after the cut-off, refused here by the rule
        the paper exchange applies, so that both brokers emit the same ``OrderRejected``:
        Kite would take the order and its RMS reject it a moment later (an
        ``OrderSubmitted`` and a ``BROKER_REJECTED``, a placement spent). An exit of the
        strategy's MIS position of the day, by the fills recorded so far, goes to Kite,
        which accepts exits until it squares the position off itself. The time is the
        engine's clock: when Kite gets the order (the paper's is the order's arrival)."""
        if sig.product is not Product.MIS:
            return None
        now = self._clock()
        held = self._book.mis_position(sig.strategy_id, sig.instrument_token, ist_date(now))
        return mis_cutoff(sig.product, now, self._sessions,
                          exit_only=reduces(held, sig.side.sign * sig.quantity))

    def note_cancel(self, event: Envelope[Any], request: CancelRequested) -> bool:
        """Remember a strategy's cancel of an order this engine has not placed (yet): its
        signal may still be on its way (paused by a retry, say) while the strategy saw its
        first broker's order. Applied when the signal comes; forgotten once older than any
        signal the engine would still place. False: not such a cancel."""
        now = self._clock()
        if (request.reason != "strategy" or now - event.ts > self._max_age_ns
                or self._book.by_order_id(request.order_id) is not None):
            return False
        early = self._early_cancels
        if len(early) >= 1000:  # forget the stale ones
            for oid in [o for o, (e, _) in early.items() if now - e.ts > self._max_age_ns]:
                del early[oid]
        early[request.order_id] = (event, request)
        return True

    async def _kill(self, event: Envelope[Any], strategy_id: str | None = None) -> None:
        """Cancel every open order of ours (of ``strategy_id``: it failed) at Kite
        (idempotent: a redelivered event finds them cancelled already). An old event is
        only logged, unless it still stands (no release or later setting since: set while
        the engine was down, or its sweep cut short by a restart, it was only logged, and
        the orders went on working at Kite under a standing kill switch) or its sweep
        began when it was not old: retried through a Kite outage, that sweep is still owed
        however long the outage lasted."""
        old = self._clock() - event.ts > self._max_age_ns
        standing = await self._still_standing(event, strategy_id)
        if old and event.id not in self._sweeps and not standing:
            log_.warning("zerodha.kill_switch_too_old", event_id=event.id, set_at=event.ts,
                         strategy_id=strategy_id)
            return
        self._sweeps.add(event.id)  # (a retry after an outage finds it here)
        mine = None if strategy_id is None else {
            o.broker_order_id for o in self._book.open_orders() if o.strategy_id == strategy_id}
        reason = "kill_switch" if strategy_id is None else "strategy_halted"
        # Orders dated after it (event time) are not its to cancel, as on the paper
        # exchange: its flatten orders (the risk manager dates them just after its market
        # time), at Kite already when it is read late (the engine down, a redelivery), let
        # through as while it stands (``_stopped``); and whatever was placed since, once
        # it was released (or set again) since, or read long after (a group reading the
        # topic afresh: only flatten orders are placed while the engine knows of it). Only
        # while it is recent and stands is a strategy's order of a later tick cancelled:
        # validated before the risk manager read it, placed before this engine did.
        after = getattr(event.data, "market_ts", None)
        if after is None:
            after = event.ts
        cancelled = 0
        for o in await self._kite.orders():
            if not is_our_tag(o.get("tag")) or o.get("status") not in _CANCELLABLE:
                continue
            broker_id = str(o["order_id"])
            if mine is not None and broker_id not in mine:
                continue
            # None: an order of ours no event records yet (its signal adopts it later)
            order = self._book.get(broker_id)
            if order is not None and order.ts > after and (
                    old or not standing or order.origin == "flatten"):
                continue  # (an exit asked with it or since: the position must close)
            if await self._cancel_at_kite(broker_id, str(o.get("variety") or "regular"),
                                          order, reason) is None:
                cancelled += 1
        self._sweeps.discard(event.id)
        self.cancelled += cancelled
        log_.warning("zerodha.kill_switch" if strategy_id is None else "zerodha.strategy_halted",
                     cancelled=cancelled, strategy_id=strategy_id, alert=True)

    async def _cancel(self, event: Envelope[Any], request: CancelRequested) -> list[Emit]:
        """Ask Kite to cancel the one open order of ours the trader (or a strategy) named.
        An unknown order id, an order already closed (ours or at Kite) or one Kite refuses
        to cancel is left as it is, and a ``CancelRefused`` on the control topic says why;
        a redelivered request finds it closed."""
        ctx: dict[str, Any] = {"event_id": event.id, "order_id": request.order_id,
                               "requested_by": request.requested_by}
        if self._clock() - event.ts > self._max_age_ns:  # a new group reading old requests
            log_.warning("zerodha.cancel_request_too_old", requested_at=event.ts, **ctx)
            return []
        # only orders our own OrderSubmitted records: never one placed by hand at Kite
        order = self._book.by_order_id(request.order_id)
        if order is None and self.note_cancel(event, request):
            log_.info("zerodha.cancel_before_order", **ctx)  # applied when its signal comes
            return []
        if order is None or not is_our_tag(order.tag):
            log_.warning("zerodha.cancel_unknown_order", **ctx)
            return [self._refused(event, request, "no order of this system has that id on "
                                                  "Zerodha (placed by hand, or never placed)")]
        ctx["broker_order_id"] = order.broker_order_id
        if order.terminal:
            log_.warning("zerodha.cancel_order_closed", **ctx)
            if order.leaves:  # cancelled (a redelivered request's, maybe) or rejected: its
                return []  # own event says so
            return [self._refused(event, request, "the order is filled: nothing is left of "
                                                  "it to cancel")]
        try:
            history = await self._kite.order_history(order.broker_order_id)
        except OrderRefused as exc:  # not in Kite's book of today: an earlier day's order
            log_.warning("zerodha.cancel_order_not_at_kite", error=str(exc), **ctx)
            return [self._refused(event, request, f"Kite does not list the order today: {exc}")]
        now = history[-1] if history else {}  # Kite lists an order's states oldest first
        if now.get("tag") != order.tag:
            log_.error("zerodha.cancel_tag_mismatch", kite_tag=now.get("tag"), alert=True, **ctx)
            return [self._refused(event, request, f"Kite's order {order.broker_order_id} "
                                                  "carries another tag: not ours to cancel")]
        status = now.get("status")
        if status not in _CANCELLABLE:  # filled, cancelled or being cancelled
            log_.warning("zerodha.cancel_order_not_open", status=status, **ctx)
            if status in _FILLED_OR_REJECTED:  # else cancelled, as asked: the sync says so
                return [self._refused(event, request, f"Kite shows the order {status}: "
                                                      "nothing is left of it to cancel")]
            return []
        refusal = await self._cancel_at_kite(order.broker_order_id,
                                             str(now.get("variety") or "regular"), order,
                                             request.reason)
        if refusal is not None:
            return [self._refused(event, request, f"Kite refused the cancel: {refusal}")]
        self.cancelled += 1
        log_.info("zerodha.order_cancel_requested", **ctx)
        return []

    @staticmethod
    def _refused(event: Envelope[Any], request: CancelRequested, message: str) -> Emit:
        refused = CancelRefused(order_id=request.order_id, requested_by=request.requested_by,
                                reason=request.reason, message=message)
        env = new_envelope(refused, id=derive_id(event.id, "cancel_refused"), ts=event.ts,
                           source=SOURCE, key=event.key, broker=BROKER, parent=event)
        return Emit(CONTROL_TOPIC, env)

    async def _cancel_at_kite(self, broker_order_id: str, variety: str,
                              order: TrackedOrder | None, reason: str) -> str | None:
        """Cancel at Kite, ``reason`` recorded on ``order`` for the sync's OrderCancelled;
        Kite's message when it refuses (the order filled or closed meanwhile), else None."""
        previous = order.cancel_reason if order is not None else None
        if order is not None:
            # set before asking: the sync may see CANCELLED before the call returns. Kept on
            # a retryable error, which the cancel may have reached Kite despite.
            order.cancel_reason = reason
        try:
            await self._kite.cancel_order(broker_order_id, variety)
        except OrderRefused as exc:
            if order is not None:
                order.cancel_reason = previous  # whatever closes it, it is not this request
            log_.warning("zerodha.cancel_refused", broker_order_id=broker_order_id,
                         reason=reason, error=str(exc))
            return str(exc)
        return None

    async def _existing(self, tag: str) -> str | None:
        if self._stale:
            orders = await self._kite.orders()
            self._tags = {str(o["tag"]): str(o["order_id"]) for o in orders if is_our_tag(o.get("tag"))}
            self._stale = False
        return self._tags.get(tag)

    def _reject(self, event: Envelope[SignalValidated], code: str, message: str) -> Emit:
        sig = event.data.signal
        self.rejected += 1
        rejected = OrderRejected(
            order_id=order_id_for(event.data.signal_id), strategy_id=sig.strategy_id,
            instrument_token=sig.instrument_token, side=sig.side, quantity=sig.quantity,
            reason_code=code, message=message, ts=event.ts,
            origin="flatten" if event.data.flatten else "signal", order_type=sig.order_type,
            limit_price=sig.limit_price, trigger_price=sig.trigger_price, product=sig.product)
        return order_emit(BROKER, rejected, cause=event, source=SOURCE, ts=event.ts)


_BOOKED_KEPT = 200_000


class KiteCharges:
    """Zerodha's charges of a live fill from the rate card, as the paper exchange charges
    its own: per order, as contract notes show, and a CNC fill through its IST day's
    netting book (``CncNetting``), so a CNC buy and sell of one stock on one day pay
    intraday rates and only what does not net off pays delivery's (and, once a day, DP)."""

    def __init__(self, costs: CostModel, instruments: InstrumentMaster) -> None:
        self._costs = costs
        self._instruments = instruments
        self._netting: dict[str, CncNetting] = {}  # by exchange
        # (order id, cumulative quantity) of the CNC fills in the books: each once, however
        # often a start-up's rebuild runs (it is retried with the reconcile after a Kite error)
        self._booked: OrderedDict[tuple[str, int], None] = OrderedDict()

    def __call__(self, order: TrackedOrder, quantity: int, price: int, ts: int,
                 cumulative: int, before: int, after: int) -> Charges:
        exchange, segment = self._where(order.instrument_token, order.product)
        try:
            if segment is Segment.EQUITY_DELIVERY:
                self._book((order.order_id, cumulative))
                return self._cnc(exchange).fill_charges(
                    order.strategy_id, order.instrument_token, ist_date(ts), order.order_id,
                    cumulative, order.side, quantity, price, ts)
            return self._costs.fill_charges(segment, order.side, before, after, exchange)
        except ValidationError as exc:
            log_.warning("zerodha.no_rate_card", instrument_token=order.instrument_token,
                         error=str(exc))
            return NO_CHARGES

    def recorded(self, fill: OrderFilled) -> None:
        exchange, segment = self._where(fill.instrument_token, fill.product)
        key = (fill.order_id, fill.cumulative_quantity)
        if segment is Segment.EQUITY_DELIVERY and key not in self._booked:
            self._book(key)
            with contextlib.suppress(ValidationError):  # (charged nothing then: see above)
                self._cnc(exchange).fill_charges(
                    fill.strategy_id, fill.instrument_token, ist_date(fill.ts), fill.order_id,
                    fill.cumulative_quantity, fill.side, fill.quantity, fill.price, fill.ts)

    def _book(self, key: tuple[str, int]) -> None:
        self._booked[key] = None
        if len(self._booked) > _BOOKED_KEPT:  # (older ones are of days whose books are closed)
            self._booked.popitem(last=False)

    def _where(self, token: int, product: Product) -> tuple[str, Segment]:
        inst = self._instruments.get(token)
        exchange = {"NFO": "NSE", "BFO": "BSE"}.get(inst.exchange, inst.exchange) if inst else "NSE"
        options = bool(inst and inst.instrument_type in ("CE", "PE"))
        return exchange, Segment.for_product(product, options=options)

    def _cnc(self, exchange: str) -> CncNetting:
        netting = self._netting.get(exchange)
        if netting is None:
            netting = self._netting[exchange] = CncNetting(self._costs, exchange)
        return netting


class ZerodhaTradingProcessor(StreamProcessor):
    """The engine's stream processor, which also reconciles with Kite before consuming and
    keeps the order sync (postbacks, polling) running beside it.

    It also reads the account's funds from Kite (``margins("equity")``) once the books agree
    and every ``funds_interval_s`` after, and writes them to ``zerodha.control`` as a
    ``FundsReported`` when they changed or the IST day did: the live portfolio's cash, which
    its projector rebuilds from the log. Funds Kite does not give are only logged: trading
    goes on (the portfolio shows its cash as unknown).

    A token error in either part stops both: state FAILED, an alert in the log."""

    def __init__(self, log: Log, settings: ZerodhaSettings, kite: KiteRestClient,
                 instruments: InstrumentMaster, engine: ZerodhaEngine, sync: ZerodhaOrderSync,
                 processor_settings: ProcessorSettings) -> None:
        check_topics([SIGNALS_TOPIC, CONTROL_TOPIC])
        super().__init__(log, name=GROUP, group=GROUP, topics=[SIGNALS_TOPIC, CONTROL_TOPIC],
                         handler=engine, settings=processor_settings)
        self.zerodha = settings
        self.kite = kite
        self.instruments = instruments
        self.engine = engine
        engine.read_switches = self._read_switches
        self.sync = sync
        self.report: ReconcileReport | None = None
        self.funds: tuple[FundsReported, int] | None = None  # the latest on the log, and when

    async def run(self, stop: asyncio.Event) -> None:
        """Load instruments, reconcile, then place orders and follow them until ``stop``."""
        inner = asyncio.Event()
        sync_task: asyncio.Task[None] | None = None
        relay: asyncio.Task[None] | None = None
        funds_task: asyncio.Task[None] | None = None
        try:
            if not await self._prepare(stop):
                return
            POSTBACKS.add(self.sync.on_order_update)
            sync_task = asyncio.create_task(self.sync.run(inner))
            relay = asyncio.create_task(_first(stop, sync_task, inner))
            funds_task = asyncio.create_task(self._follow_funds(inner))
            await super().run(inner)
        except AuthenticationError as exc:
            self._stopped_live(str(exc))
        finally:
            inner.set()  # one part ended: the other must not trade on alone
            if relay is not None:
                relay.cancel()
            if funds_task is not None:
                await funds_task
            POSTBACKS.discard(self.sync.on_order_update)
            if sync_task is not None:
                try:
                    await sync_task
                    await self._last_sync()
                except AuthenticationError as exc:
                    self._stopped_live(str(exc))
            await self.kite.close()

    async def _follow_funds(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.report_funds()
            except (RetryableError, OrderRefused) as exc:
                log_.warning("zerodha.funds_unread", error=str(exc),
                             retry_in_s=self.zerodha.funds_interval_s)
            except AuthenticationError as exc:  # (the engine and the sync stop on it too)
                log_.warning("zerodha.funds_unread", error=str(exc))
                return
            except Exception as exc:  # noqa: BLE001 - the funds are shown, not traded on:
                # an odd answer from Kite (or a failed write) must not end the engine's run,
                # nor skip its shutdown (this task is awaited there)
                log_.error("zerodha.funds_unread", error=f"{type(exc).__name__}: {exc}",
                           alert=True, retry_in_s=self.zerodha.funds_interval_s)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.zerodha.funds_interval_s)

    async def report_funds(self, now: int | None = None) -> FundsReported | None:
        """Read the account's funds from Kite; write them to the control topic when they
        differ from the latest there or are of another IST day. The event written, if any."""
        funds = funds_reported(await self.kite.margins("equity"))
        now = time.time_ns() if now is None else now
        if self.funds is not None and self.funds[0] == funds \
                and ist_date(self.funds[1]) == ist_date(now):
            return None
        env = new_envelope(funds, id=derive_id(f"control:{BROKER}", "funds", now), ts=now,
                           source=SOURCE, key="funds", broker=BROKER)
        await self._log.append([to_output(Emit(CONTROL_TOPIC, env))])
        self.funds = (funds, now)
        log_.info("zerodha.funds_reported", cash=funds.cash, opening_balance=funds.opening_balance)
        return funds

    async def _last_sync(self) -> None:
        # orders placed just before the stop: record the fills Kite already has (the rest
        # are found by the next start's reconciliation)
        try:
            await self.sync.sync()
        except RetryableError as exc:
            log_.warning("zerodha.final_sync_failed", error=str(exc))

    def health(self) -> ComponentStatus:
        """The processor's health, with the order sync's trouble (Kite unreachable) shown."""
        status = super().health()
        sync = self.sync.health()
        if sync.detail and status.state is State.RUNNING:
            status.detail = f"order sync: {sync.detail}"
        status.errors += sync.errors
        return status

    async def _prepare(self, stop: asyncio.Event) -> bool:
        """Instruments and reconciliation, retried with backoff while Kite is unreachable
        (no order is placed before the books agree); False when stopped meanwhile."""
        delay = 0.5
        while not stop.is_set():
            try:
                if not len(self.instruments):
                    self.instruments.update(await InstrumentMaster.load(
                        self.zerodha.instruments_dir, self.kite.instruments))
                self.report = await self.sync.reconcile()
                await self._read_switches()
                return True
            except RetryableError as exc:
                log_.warning("zerodha.reconcile_retry", error=str(exc), retry_in_s=delay)
                try:
                    await asyncio.wait_for(stop.wait(), delay)
                except TimeoutError:
                    delay = min(30.0, delay * 2)
        return False

    async def _read_switches(self) -> None:
        """Every kill switch on the control topic, whichever offset the group resumes at
        (a few records: operator actions), the strategies' recent cancels of orders not
        placed yet (``note_cancel``), and the latest funds reported."""
        for r in await read_topic(self._log, CONTROL_TOPIC):
            try:
                env = CODEC.decode(r.value)
            except DecodeError:  # not an event: the processor dead-letters it
                continue
            if isinstance(env.data, KillSwitchSet):
                self.engine.note_switch(env.data.active, env.ts, env.data.market_ts)
                self.engine.note_flatten(env.data, env.ts)
            elif isinstance(env.data, StrategyHalted):
                self.engine.note_halt(env.data, env.ts)
                self.engine.note_flatten(env.data, env.ts)
            elif isinstance(env.data, FundsReported):
                self.funds = (env.data, env.ts)
            elif isinstance(env.data, CancelRequested):  # a strategy's, before its order
                self.engine.note_cancel(env, env.data)

    def _stopped_live(self, detail: str) -> None:
        log_.error("zerodha.trading_stopped", alert=True, detail=detail)
        self.fail(f"AuthenticationError: {detail}")


async def _first(stop: asyncio.Event, sync: asyncio.Task[None], inner: asyncio.Event) -> None:
    waiter = asyncio.create_task(stop.wait())
    await asyncio.wait({waiter, sync}, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    inner.set()


def build_zerodha_engine(settings: Any, log: Log, processor_settings: ProcessorSettings | None = None,
                         *, now_ns: int | None = None, costs: CostModel | None = None,
                         clock: Callable[[], int] = time.time_ns) -> ZerodhaTradingProcessor:
    """Wire live trading (``settings``: the app settings or a ``ZerodhaSettings``;
    ``clock``: the engine's, which dates placements against the MIS cut-off).

    Refuses without the explicit switch (``ConfigurationError``) or a valid session
    (``AuthenticationError`` telling the operator to run ``alpha-panda auth login``)."""
    zs = zerodha_settings(settings)
    processor_settings = processor_settings or ProcessorSettings()
    # Kite unreachable (or rate limiting) is retried until it answers, never dead-lettered:
    # a kill switch's sweep dead-lettered in an outage of some 15 s left the open orders
    # working at Kite once it was back, and a dead-lettered signal got no order event at
    # all. Retried, a signal is then placed, found placed (its tag), or refused
    # ``STALE_SIGNAL`` once older than the engine places.
    processor_settings = dataclasses.replace(processor_settings, retry_attempts={
        **processor_settings.retry_attempts, **dict.fromkeys(_RETRYABLE, UNTIL_KITE_ANSWERS)})
    if not zs.live_enabled:
        raise ConfigurationError("live trading is off: set ALPHA_PANDA_ZERODHA__LIVE_ENABLED=true")
    session = require_live_session(zs, now_ns=now_ns)
    log_.info("zerodha.starting", user_id=session.user_id, settings=zs.redacted())
    kite = KiteRestClient(zs, session.access_token)
    instruments = InstrumentMaster()
    book = OrderBook()
    sync = ZerodhaOrderSync(log, kite, book, poll_interval_s=zs.poll_interval_s,
                            charges=KiteCharges(costs or CostModel.load(), instruments),
                            clock=clock)
    engine = ZerodhaEngine(kite, instruments, book, market_protection=zs.market_protection,
                           clock=clock)
    return ZerodhaTradingProcessor(log, zs, kite, instruments, engine, sync, processor_settings)
