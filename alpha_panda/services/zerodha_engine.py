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

A fresh MIS order at or after the MIS cut-off (15:20 IST; Zerodha's 15:25 on NFO/BFO and
16:45 on CDS/BCD; none here on MCX) is rejected here, ``MIS_CUTOFF``,
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

import dataclasses
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import time as clock_time
from typing import Any

import structlog

from alpha_panda.adapters.zerodha.client import KiteRestClient, OrderRefused
from alpha_panda.adapters.zerodha.config import zerodha_settings
from alpha_panda.adapters.zerodha.instruments import InstrumentMaster
from alpha_panda.adapters.zerodha.order_sync import (
    BROKER,
    SOURCE,
    ZerodhaOrderSync,
)
from alpha_panda.adapters.zerodha.session import require_live_session
from alpha_panda.domain.clock import ist_date
from alpha_panda.domain.errors import (
    BrokerUnavailable,
    ConfigurationError,
    InvariantViolation,
    RateLimited,
    RetryableError,
    TransientError,
    ValidationError,
)
from alpha_panda.domain.events import (
    CancelRequested,
    Envelope,
    KillSwitchSet,
    OrderCancelled,
    OrderRejected,
    OrderSubmitted,
    Origin,
    Signal,
    SignalValidated,
    StrategyHalted,
)
from alpha_panda.domain.values import Product, reduces
from alpha_panda.execution.config import MIS_SQUAREOFF
from alpha_panda.execution.costs import CostModel, RateCards
from alpha_panda.execution.market import MarketCalendar, SessionClock
from alpha_panda.execution.rules import mis_cutoff
from alpha_panda.execution.zerodha.orders import (
    kite_order_params,
    order_id_for,
    order_tag,
    our_tag,
)
from alpha_panda.execution.zerodha.reconcile import OrderBook
from alpha_panda.services.emitting import order_emit
from alpha_panda.services.zerodha_cancels import ZerodhaCancels
from alpha_panda.services.zerodha_charges import KiteCharges
from alpha_panda.services.zerodha_processor import ZerodhaTradingProcessor
from alpha_panda.services.zerodha_topics import check_topics
from alpha_panda.stream.emit import Emit
from alpha_panda.stream.log import Log, Record, TopicPartition
from alpha_panda.stream.runtime import ProcessorSettings

log_ = structlog.get_logger(__name__)
UNTIL_KITE_ANSWERS = 2**62  # attempts of a retryable error (each at most backoff_max apart)
REFRESH_EVERY_NS = 600 * 10**9  # Kite's instrument list downloaded again at most this often
# How long a placement whose outcome is unknown (it timed out, Kite failed or answered
# unreadably) is looked for in Kite's order book before it is placed again: Kite slow under
# load may put the order in its book after the request timed out, and a retry that looked at
# once placed it twice.
UNKNOWN_OUTCOME_S = 10.0
_RETRYABLE = tuple(c.__name__ for c in (RetryableError, TransientError, BrokerUnavailable,
                                        RateLimited))
# Zerodha's auto square-off where it is not equity's (``mis_squareoff``, NSE and BSE):
# equity derivatives 15:25, currency 16:45 (support.zerodha.com, "What are the auto
# square-off timings for open intraday positions?"). Commodities (MCX), 25 minutes before a
# close that moves with the US clock change, and any other exchange are left to Kite's RMS.
_EQUITY_EXCHANGES = frozenset({"NSE", "BSE"})
MIS_SQUAREOFF_BY_EXCHANGE = {"NFO": clock_time(15, 25), "BFO": clock_time(15, 25),
                             "CDS": clock_time(16, 45), "BCD": clock_time(16, 45)}


class ZerodhaEngine(ZerodhaCancels):
    """The ``Handler`` of the zerodha trading engine (``ahandle`` does the network I/O)."""

    def __init__(self, kite: KiteRestClient, instruments: InstrumentMaster, book: OrderBook, *,
                 market_protection: int = -1, max_signal_age_s: float = 300.0,
                 clock: Callable[[], int] = time.time_ns,
                 mis_squareoff: clock_time | None = MIS_SQUAREOFF,
                 refresh: Callable[[], Awaitable[InstrumentMaster]] | None = None,
                 unknown_outcome_s: float = UNKNOWN_OUTCOME_S) -> None:
        self._kite = kite
        # our tag -> when its placement's outcome became unknown (``UNKNOWN_OUTCOME_S``)
        self._unknown: dict[str, int] = {}
        self._unknown_ns = int(unknown_outcome_s * 1e9)
        self._instruments = instruments
        # Downloads Kite's list again, for an instrument it did not have: Kite lists the
        # day's new contracts in its morning list, so an engine started before that list
        # (or on yesterday's cached one) refused a new weekly option all day. At most once
        # every ``REFRESH_EVERY_NS`` (an unknown token asked for again is refused at once).
        self._refresh = refresh
        self._refreshed_at: int | None = None
        self._book = book
        self._protection = market_protection
        self._max_age_ns = int(max_signal_age_s * 1e9)
        self._clock = clock
        calendar = MarketCalendar()
        self._sessions = SessionClock(calendar, mis_squareoff)  # the paper's cut-off (equity)
        # the other exchanges' (None: no cut-off at all, every late MIS order left to Kite)
        self._exchange_sessions = {} if mis_squareoff is None else {
            ex: SessionClock(calendar, cut) for ex, cut in MIS_SQUAREOFF_BY_EXCHANGE.items()}
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
        # and, for the guard of its signals on their way (``_halted``), the latest market
        # time any halt of it carried, as _stopped_until, and whether the trader's halt
        # stands (a halt of the runner's, the strategy raised, is never released on the
        # log: a fixed strategy trades again after a restart)
        self._halted_until: dict[str, int] = {}
        self._trader_halts: dict[str, tuple[bool, int]] = {}
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
        sid = data.strategy_id
        if data.active:  # (the runner's, it raised, is at its tick: set_at)
            at = data.market_ts if data.by_trader and data.market_ts is not None else set_at
            self._halted_until[sid] = max(self._halted_until.get(sid, -1), at)
        state = (data.active and data.until is None, set_at)
        for halts in (self._halts, self._trader_halts) if data.by_trader else (self._halts,):
            latest = halts.get(sid)
            if latest is None or set_at >= latest[1]:
                halts[sid] = state

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

    def _halted(self, event: Envelope[SignalValidated]) -> bool:
        """A signal of a halted strategy, as ``_stopped`` for the kill switch: one validated
        just before the risk manager read the halt reached Kite after the halt's sweep of
        its open orders, and worked there under the halt (the paper exchange stops it)."""
        if event.data.flatten:
            return False
        sid = event.data.signal.strategy_id
        latest = self._trader_halts.get(sid)
        return (latest is not None and latest[0]) or event.ts <= self._halted_until.get(sid, -1)

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
        if inst is None and await self._refreshed():
            inst = self._instruments.get(sig.instrument_token)
        if inst is None:
            return [self._reject(event, "UNKNOWN_INSTRUMENT",
                                 f"instrument {sig.instrument_token} is not in Kite's list")]
        if inst.segment == "INDICES":
            # Kite lists and streams an index (NIFTY 50) but takes no orders on it: refused
            # here by the paper exchange's rule, so that both brokers reject it alike
            return [self._reject(event, "NOT_TRADABLE", (
                f"instrument {sig.instrument_token} ({inst.exchange}:{inst.tradingsymbol}) "
                "cannot be traded (an index, segment INDICES in Kite's list): the exchange "
                "takes no orders on it"))]
        try:
            params = kite_order_params(sig, exchange=inst.exchange, tradingsymbol=inst.tradingsymbol,
                                       tag=tag, market_protection=self._protection)
        except ValidationError as exc:
            return [self._reject(event, "INVALID_ORDER", str(exc))]
        order_id = order_id_for(sid)
        origin: Origin = "flatten" if data.flatten else "signal"
        # The early cancel stays kept until it is carried out: when Kite fails the look-up
        # or the cancel, the retry must find it (dropped, the retry placed the order, or
        # adopted it and left it working at Kite).
        broker_id = await self._existing(tag)
        early = self._early_cancels.get(order_id) if self._early_cancels else None
        if broker_id is not None:
            self.adopted += 1
            log_.info("zerodha.order_adopted", signal_id=sid, broker_order_id=broker_id)
        elif early is not None:  # cancelled before it was placed: nothing goes to Kite
            self._early_cancels.pop(order_id, None)
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
        elif self._halted(event):
            return [self._reject(event, "STRATEGY_HALTED",
                                 "strategy is halted: an order validated before it is not "
                                 "placed")]
        elif (late := self._past_cutoff(sig, inst.exchange)) is not None:
            return [self._reject(event, *late)]
        else:
            since = self._unknown.get(tag)
            if since is not None and (waited := self._clock() - since) < self._unknown_ns:
                self._stale = True  # (the order book is read again on the next retry)
                raise TransientError(
                    f"the placement of signal {sid} ended unknown {waited / 1e9:.1f}s ago and "
                    "its order is not found at Kite yet: looking again before placing it again")
            try:
                broker_id = await self._kite.place_order(params)
            except OrderRefused as exc:
                return [self._reject(event, "BROKER_REFUSED", str(exc))]
            except RateLimited:  # (not sent, or refused by Kite's rate limit: not placed)
                raise
            except RetryableError:
                self._stale = True  # the order may have reached Kite: look before retrying
                self._unknown.setdefault(tag, self._clock())
                raise
            self._tags[tag] = broker_id
            self.placed += 1
        self._unknown.pop(tag, None)
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
            self._early_cancels.pop(order_id, None)
        return out

    def _past_cutoff(self, sig: Signal, exchange: str) -> tuple[str, str] | None:
        """``MIS_CUTOFF`` for a fresh MIS order at/after the cut-off of ``exchange`` (equity's
        the paper exchange's; F&O's and currency's Zerodha's later ones, commodities' left to
        Kite), refused here by the rule
        the paper exchange applies, so that both brokers emit the same ``OrderRejected``:
        Kite would take the order and its RMS reject it a moment later (an
        ``OrderSubmitted`` and a ``BROKER_REJECTED``, a placement spent). An exit of the
        strategy's MIS position of the day, by the fills recorded so far, goes to Kite,
        which accepts exits until it squares the position off itself. The time is the
        engine's clock: when Kite gets the order (the paper's is the order's arrival)."""
        if sig.product is not Product.MIS:
            return None
        sessions = (self._sessions if exchange in _EQUITY_EXCHANGES
                    else self._exchange_sessions.get(exchange))
        if sessions is None:
            return None
        now = self._clock()
        held = self._book.mis_position(sig.strategy_id, sig.instrument_token, ist_date(now))
        return mis_cutoff(sig.product, now, sessions,
                          exit_only=reduces(held, sig.side.sign * sig.quantity))


    async def _existing(self, tag: str) -> str | None:
        if self._stale:
            orders = await self._kite.orders()
            self._tags = {ours: str(o["order_id"]) for o in orders
                          if (ours := our_tag(o)) is not None}
            self._stale = False
        return self._tags.get(tag)

    async def _refreshed(self) -> bool:
        """Kite's instrument list downloaded again into the master, if it was not within
        ``REFRESH_EVERY_NS``; False when not. A failed download raises (the signal is
        retried, and downloads again)."""
        now = self._clock()
        if self._refresh is None or (self._refreshed_at is not None
                                     and now - self._refreshed_at < REFRESH_EVERY_NS):
            return False
        before = len(self._instruments)
        self._instruments.update(await self._refresh())
        self._refreshed_at = now
        log_.info("zerodha.instruments_refreshed", instruments=len(self._instruments),
                  new=len(self._instruments) - before)
        return True

    def _reject(self, event: Envelope[SignalValidated], code: str, message: str) -> Emit:
        sig = event.data.signal
        self._unknown.pop(order_tag(event.data.signal_id), None)
        self.rejected += 1
        rejected = OrderRejected(
            order_id=order_id_for(event.data.signal_id), strategy_id=sig.strategy_id,
            instrument_token=sig.instrument_token, side=sig.side, quantity=sig.quantity,
            reason_code=code, message=message, ts=event.ts,
            origin="flatten" if event.data.flatten else "signal", order_type=sig.order_type,
            limit_price=sig.limit_price, trigger_price=sig.trigger_price, product=sig.product)
        return order_emit(BROKER, rejected, cause=event, source=SOURCE, ts=event.ts)


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
                            charges=KiteCharges(costs or RateCards.load(), instruments),
                            clock=clock)

    async def refresh() -> InstrumentMaster:
        return await InstrumentMaster.load(zs.instruments_dir, kite.instruments, fresh=True)

    engine = ZerodhaEngine(kite, instruments, book, market_protection=zs.market_protection,
                           clock=clock, refresh=refresh)
    return ZerodhaTradingProcessor(log, zs, kite, instruments, engine, sync, processor_settings)
