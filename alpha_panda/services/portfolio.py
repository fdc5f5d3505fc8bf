"""The portfolio projector of one broker: fills and ticks in, positions and P&L out.

It keeps the broker's ledger (pure, ``portfolio/``), publishes ``{broker}.pnl.snapshots``
(on every fill, and every ``snapshot_interval_s`` of event time while positions are open),
and holds the read model (portfolio, positions, orders, signals) that ``ReadModelWriter``
copies to the cache for the API. State is rebuilt from the log on restart.

The equity curve is read back from the account's snapshots on ``pnl.snapshots`` (the
projector consumes its own output): a rebuild replays one partition after another, so
points recomputed from the replayed ticks and fills would differ from the ones published
live; the published ones come back the same, in the order they were made.
"""

from __future__ import annotations

import bisect
import heapq
from collections import OrderedDict, deque
from collections.abc import Sequence
from operator import attrgetter
from typing import Any

from alpha_panda.backtest.metrics import RoundTripTracker
from alpha_panda.domain.clock import ist_day_number
from alpha_panda.domain.errors import InvariantViolation
from alpha_panda.domain.events import (
    CancelRefused,
    CancelRequested,
    Envelope,
    FundsReported,
    KillSwitchSet,
    MarketTick,
    OrderCancelled,
    OrderFilled,
    OrderRejected,
    OrderSubmitted,
    PnlSnapshot,
    SignalRejected,
    SignalValidated,
    StrategyHalted,
    derive_id,
    new_envelope,
)
from alpha_panda.portfolio import PositionLedger
from alpha_panda.portfolio.day import DayBook, DayHistory
from alpha_panda.portfolio.ledger import snapshot_capital, snapshot_equity
from alpha_panda.readmodel.views import (
    MAX_ORDERS,
    MAX_SIGNALS,
    OPEN_STATUSES,
    OrderView,
    SignalView,
)
from alpha_panda.stream.dedup import RecentIds
from alpha_panda.stream.emit import BatchFailure, Emit, Emitted
from alpha_panda.stream.log import Log, Record
from alpha_panda.stream.runtime import ProcessorSettings, StreamProcessor
from alpha_panda.stream.topics import MARKET_TICKS, topic

SOURCE = "portfolio"
MAX_CURVE = 2000
FORGOTTEN_KEPT = 20 * MAX_ORDERS
_signal_ts = attrgetter("ts")
SIGNAL_IDS_KEPT = 100_000  # at least this many recent decisions' signal ids are remembered
# Control events a trader's (or Kite's) action stamps with the wall clock: they do not move
# the portfolio's "as of" market time (in a replay of an old day, it would jump to today).
_WALL_CLOCK = frozenset({KillSwitchSet, CancelRequested, CancelRefused, StrategyHalted,
                         FundsReported})


class PortfolioHandler:
    """Applies a broker's order events and market ticks to its ledger and read model."""

    def __init__(self, broker: str, ledger: PositionLedger, *, snapshot_interval_ns: int) -> None:
        self.broker = broker
        self.ledger = ledger
        self.orders: OrderedDict[str, OrderView] = OrderedDict()
        # Closed orders the read model let go of (beyond MAX_ORDERS), most recent last, at
        # most FORGOTTEN_KEPT: an event of one read later (its submission, read after its
        # fills) must not bring it back as an open order.
        self._forgotten: OrderedDict[str, None] = OrderedDict()
        # Closed orders by (time, id), for ``_forget_oldest_closed``: pushed as they close,
        # checked as they come off (one let go of already, or its time changed since: a
        # submission read after the fill that closed it). Scanning every order for the
        # oldest closed one at each new order cost 29 us an order past MAX_ORDERS.
        self._closed: list[tuple[int, str]] = []
        self._rebuilding = False
        # while rebuilding: the latest MAX_SIGNALS signals by time, in a heap
        self._rebuild_signals: list[tuple[int, int, SignalView]] = []
        # Cancel requests and refusals of orders not seen yet (a rebuild reads the control
        # topic before the order topics), for when they are: at most MAX_ORDERS.
        self._cancel_notes: dict[str, list[tuple[CancelRequested | CancelRefused, int]]] = {}
        self.signals: deque[SignalView] = deque(maxlen=MAX_SIGNALS)
        # (ts, equity, capital): a change of capital is money added or withdrawn (a strategy
        # added or removed between runs), not P&L; the dashboard's change nets it out
        self.equity_curve: deque[tuple[int, int, int]] = deque(maxlen=MAX_CURVE)
        self.as_of = 0
        self.funds: FundsReported | None = None  # a live account's, as last reported
        self.fills = 0
        # Signals this broker's risk manager decided, on the log so far: a restart's rebuild
        # counts them from the log, as it does the fills. The terminal's progress shows them.
        self.validated = 0
        self.rejected = 0
        # The decisions seen, by signal id: one read again (a partition assigned again on
        # Kafka, and replayed) is neither counted nor listed twice.
        self._decided = RecentIds(SIGNAL_IDS_KEPT)
        self._last: dict[int, int] = {}
        self.day = DayBook()  # the day's P&L (by event time: the market's current IST day)
        self.history = DayHistory(self.day.closes)  # and each day's, P&L by day
        self.round_trips = RoundTripTracker(keep_trips=False)  # counts: memory stays flat
        self._interval = snapshot_interval_ns
        self._last_snapshot_ts = 0
        self._marked_since_snapshot = False
        self.version = 0  # bumps on every change; the writer skips unchanged states

    # ------------------------------------------------------------------ handler
    def rebuild_rank(self, topic_name: str) -> int:
        """A rebuild replays the ticks, then the orders' submissions, then the rest: an
        order's submission before its fills and end, as it happened (by name, the ends came
        first, and an order let go of as closed came back as open at its submission)."""
        if topic_name == MARKET_TICKS:
            return 0
        return 1 if topic_name.endswith(".orders.submitted") else 2

    def handle(self, event: Envelope[Any], record: Record) -> Sequence[Emit]:
        data = event.data
        if type(data) not in _WALL_CLOCK:  # the market's time, not when a trader clicked
            self.as_of = max(self.as_of, event.ts)
        self.version += 1
        if isinstance(data, MarketTick):
            day = self.day
            if data.ts >= day.day_hi:
                self._new_day(data.ts)
            day.on_tick(data.instrument_token, data.last_price, data.close, data.ts)
            if data.ts < day.day_lo:
                self.history.late_tick(data.instrument_token, data.last_price, data.close,
                                       data.ts)
            else:
                self.history.day_prices()[data.instrument_token] = data.last_price
            self.ledger.mark(data.instrument_token, data.last_price)
            self._last[data.instrument_token] = data.last_price
            self._marked_since_snapshot = True
            if data.ts - self._last_snapshot_ts >= self._interval and self._has_open_positions():
                return self._snapshots(event, strategies=None)
            return ()
        if event.broker != self.broker:
            raise InvariantViolation(f"{self.broker} portfolio got {event.broker!r} event {event.id}")
        if isinstance(data, OrderFilled):
            if data.ts >= self.day.day_hi:
                self._new_day(data.ts)
            position = self.ledger.position(data.strategy_id, data.instrument_token, data.product)
            before = position.quantity
            booked = self.ledger.apply_fill(data)
            if booked:  # (not a redelivered one)
                self.day.on_fill(data)
                self.history.on_fill(data)
                self.fills += 1
            self.round_trips.after_fill(position, before, event.ts, data.charges.total)
            # Fills trail ticks: a position opened after its instrument's latest tick was
            # seen must still be marked at that latest price, not at its fill price.
            last = self._last.get(data.instrument_token)
            if last is not None:
                self.ledger.mark(data.instrument_token, last)
            self._order_filled(data, event.ts, booked)
            return self._snapshots(event, strategies=[data.strategy_id])
        if isinstance(data, PnlSnapshot):
            if data.strategy_id is None and data.cash is not None:
                self._curve_point(event.ts, data)
        elif isinstance(data, FundsReported):
            # the live account's cash, as Kite stated it: the account's snapshot says so
            if self.ledger.report_funds(data.cash, event.ts):
                self.funds = data
                # (stamped with the wall clock: not the market time periodic snapshots run on)
                last, marked = self._last_snapshot_ts, self._marked_since_snapshot
                emits = self._snapshots(event, strategies=[])
                self._last_snapshot_ts, self._marked_since_snapshot = last, marked
                return emits
        elif isinstance(data, OrderSubmitted):
            self._order_submitted(data, event.ts)
        elif isinstance(data, OrderRejected):
            self._order_closed(data, "REJECTED", f"{data.reason_code}: {data.message}", event.ts)
        elif isinstance(data, OrderCancelled):
            self._order_closed(data, "CANCELLED", data.reason, event.ts)
        elif isinstance(data, SignalValidated | SignalRejected):
            self._signal(data, event)
        elif isinstance(data, CancelRequested | CancelRefused):
            self._cancel_note(data, event.ts)
        return ()

    def handle_batch(self, events: Sequence[Envelope[Any]],
                     records: Sequence[Record]) -> list[Emitted]:
        """``handle`` over a run of events; ticks only note their price.

        Marking a position twice is the same as marking it once at the second price, so a
        run of ticks marks the ledger once per instrument, when something reads it (a
        snapshot, a fill, the end of the run): the same state as ``handle`` tick by tick.
        """
        out: list[Emitted] = []
        pending: dict[int, int] = {}
        interval = self._interval
        as_of = self.as_of
        day = self.day
        closes = day.closes
        ticks = 0
        i = 0
        try:
            for i, event in enumerate(events):
                data = event.data
                if type(data) is not MarketTick:
                    self._mark_all(pending)
                    self.as_of = as_of
                    emits = self.handle(event, records[i])
                    as_of = self.as_of
                    if emits:
                        out.append((i, emits))
                    continue
                ticks += 1
                if event.ts > as_of:  # noqa: PLR1730 - cheaper than max() per tick
                    as_of = event.ts
                token = data.instrument_token
                ts = data.ts
                if ts >= day.day_hi:
                    self._mark_all(pending)  # the day's start is marked at the last prices
                    self._new_day(ts)
                    day.on_tick(token, data.last_price, data.close, ts)
                elif ts < day.day_lo:
                    day.on_tick(token, data.last_price, data.close, ts)
                    self.history.late_tick(token, data.last_price, data.close, ts)
                elif token not in closes:
                    day.on_tick(token, data.last_price, data.close, ts)
                pending[token] = data.last_price
                if ts - self._last_snapshot_ts >= interval:
                    self._mark_all(pending)
                    if self._has_open_positions():
                        out.append((i, self._snapshots(event, strategies=None)))
            self._mark_all(pending)
        except Exception as exc:
            self._mark_all(pending)
            raise BatchFailure(i, out, exc) from exc
        finally:
            self.as_of = as_of
            self.version += ticks
        return out

    def _new_day(self, ts: int) -> None:
        """The market's IST day moves to ``ts``'s (the history keeps the past day's closes
        before the day's book clears them)."""
        self.history.roll(ist_day_number(ts))
        self.day.roll(ts, self._last)

    def _mark_all(self, prices: dict[int, int]) -> None:
        """Apply the noted tick prices (what ``handle`` does on each tick) and forget them."""
        if not prices:
            return
        if self.history.today is not None:
            self.history.day_prices().update(prices)
        self._marked_since_snapshot = True
        mark = self.ledger.mark
        last = self._last
        for token, price in prices.items():
            mark(token, price)
            last[token] = price
        prices.clear()

    # ------------------------------------------------------------------ snapshots
    def _has_open_positions(self) -> bool:
        return self._marked_since_snapshot and self.ledger.snapshot(None).open_positions > 0

    def _snapshots(self, cause: Envelope[Any], strategies: list[str] | None) -> list[Emit]:
        ids = strategies if strategies is not None else self.ledger.strategies()
        emits = []
        for n, sid in enumerate([*ids, None]):
            snap = self.snapshot(sid)
            env = new_envelope(snap, id=derive_id(cause.id, f"pnl:{self.broker}", n), ts=cause.ts,
                               source=SOURCE, key=sid or "account", broker=self.broker, parent=cause)
            emits.append(Emit(topic(self.broker, "pnl.snapshots"), env))
        self._last_snapshot_ts = cause.ts
        self._marked_since_snapshot = False
        return emits

    def snapshot(self, strategy_id: str | None) -> PnlSnapshot:
        return self.ledger.snapshot(strategy_id)

    def day_pnl(self, strategy_id: str | None = None) -> int:
        """Net P&L of the market's current IST day (of a strategy, or the account)."""
        return self.day.pnl(self.ledger.positions(strategy_id))

    def _curve_point(self, ts: int, snap: PnlSnapshot) -> None:
        """An account snapshot read back: a point of the equity curve. Its time never goes
        back (a fill can carry a time a little before the tick processed just before it)."""
        initial = self.ledger.initial_cash
        curve = self.equity_curve
        if curve and ts < curve[-1][0]:
            ts = curve[-1][0]
        capital = snapshot_capital(snap, initial)
        if not curve and snap.fills == 1:
            # the account's first fill: the curve starts from the capital it had before it,
            # so that its change (the dashboard's "since") is the P&L, that fill's charges in
            curve.append((ts, capital, capital))
        curve.append((ts, snapshot_equity(snap, initial), capital))

    # ------------------------------------------------------------------ read model
    # Order events arrive on separate topics, so a fill or a cancellation may be processed
    # before its ``order_submitted``: whichever comes first creates the view, the others
    # complete it, and a later ``submitted`` never moves the status back.
    def _view(self, order_id: str, strategy_id: str, token: int, side: str, quantity: int,
              ts: int) -> OrderView:
        view = self.orders.get(order_id)
        if view is None:
            view = self.orders[order_id] = OrderView(
                order_id=order_id, strategy_id=strategy_id, instrument_token=token, side=side,
                quantity=quantity, order_type="", status="SUBMITTED", ts=ts, updated_ts=ts)
            if len(self.orders) > MAX_ORDERS and not self._rebuilding:
                self._forget_oldest_closed()
            for note, at in self._cancel_notes.pop(order_id, ()):
                self._note_on(view, note, at)
        return view

    def _forget_oldest_closed(self) -> None:
        """Drop the oldest closed orders beyond ``MAX_ORDERS``, by time (a full-speed replay
        reads one instrument's partition ahead of another's: the oldest read are not the
        oldest, and a rebuild keeps the latest by time): open orders stay in the read model
        however old (the API cancels them by it), beyond it if there are that many."""
        excess = len(self.orders) - MAX_ORDERS
        if excess <= 0:
            return
        closed, orders, forgotten = self._closed, self.orders, self._forgotten
        while excess and closed:
            ts, order_id = heapq.heappop(closed)
            view = orders.get(order_id)
            if view is None:
                continue  # let go of already (or closed twice: pushed twice)
            if view.ts != ts:
                heapq.heappush(closed, (view.ts, order_id))
                continue
            del orders[order_id]
            forgotten[order_id] = None
            excess -= 1
        while len(forgotten) > FORGOTTEN_KEPT:
            forgotten.popitem(last=False)

    async def before_rebuild(self, log: Log) -> None:
        # A rebuild reads the signals partition by partition, and every submission before
        # any order's end: all of them are kept until it is done, then the latest by time
        # (``after_rebuild``). (Trimming the orders as they come would scan every open one
        # at each new order: quadratic in the day's orders.)
        self._rebuilding = True
        self._rebuild_signals = [(g.ts, n - len(self.signals), g)  # (before any version)
                                 for n, g in enumerate(self.signals)]
        heapq.heapify(self._rebuild_signals)

    def after_rebuild(self) -> None:
        """A rebuild reads every submission before the fills that close them, and each
        topic partition by partition: once it is done, the orders go in time order and the
        read model keeps the latest ``MAX_ORDERS`` of them (and every open one), and the
        latest ``MAX_SIGNALS`` signals, as a live run does."""
        self._rebuilding = False
        self.orders = OrderedDict(sorted(self.orders.items(), key=lambda kv: (kv[1].ts, kv[0])))
        self._forget_oldest_closed()
        self.signals = deque((g for _, _, g in sorted(self._rebuild_signals)), maxlen=MAX_SIGNALS)
        self._rebuild_signals = []

    def _order_submitted(self, o: OrderSubmitted, ts: int) -> None:
        if o.order_id in self._forgotten:
            return  # closed, and let go of: its submission read late changes nothing
        view = self._view(o.order_id, o.strategy_id, o.instrument_token, o.side.value,
                          o.quantity, ts)
        view.order_type = o.order_type.value
        view.product, view.validity = o.product.value, o.validity.value
        view.parent_order_id, view.origin = o.parent_order_id, o.origin
        view.limit_price, view.trigger_price, view.ts = o.limit_price, o.trigger_price, ts

    def _order_filled(self, f: OrderFilled, ts: int, booked: bool) -> None:
        """``booked``: the ledger booked the fill (False: the same fill under another event
        id, whose charges the order's view has already)."""
        if f.order_id in self._forgotten:
            return  # (its fill is in the ledger all the same)
        view = self._view(f.order_id, f.strategy_id, f.instrument_token, f.side.value,
                          f.cumulative_quantity + f.leaves_quantity, ts)
        if f.cumulative_quantity >= view.filled_quantity:  # fills of one order stay in order
            view.filled_quantity = f.cumulative_quantity
            view.average_price = f.average_price
            if view.status in OPEN_STATUSES or f.leaves_quantity == 0:  # a closed order stays closed
                # (its cancellation may be read before its fills: topics are read apart)
                view.status = "FILLED" if f.leaves_quantity == 0 else "PARTIALLY_FILLED"
                if f.leaves_quantity == 0:
                    heapq.heappush(self._closed, (view.ts, view.order_id))
        if booked:
            view.charges += f.charges.total
        view.updated_ts = max(view.updated_ts, ts)
        view.origin = f.origin

    def _order_closed(self, event: OrderRejected | OrderCancelled, status: str, reason: str,
                      ts: int) -> None:
        if event.order_id in self._forgotten:
            return
        quantity = event.quantity if isinstance(event, OrderRejected) else (
            event.filled_quantity + event.leaves_quantity)
        view = self._view(event.order_id, event.strategy_id, event.instrument_token,
                          event.side.value, quantity, ts)
        view.status, view.reason, view.updated_ts = status, reason, max(view.updated_ts, ts)
        view.origin = event.origin
        heapq.heappush(self._closed, (view.ts, view.order_id))
        if isinstance(event, OrderRejected) and not view.order_type and event.order_type:
            # rejected before it was submitted: what was asked comes with the rejection
            view.order_type = event.order_type.value
            view.limit_price, view.trigger_price = event.limit_price, event.trigger_price
            if event.product is not None:
                view.product = event.product.value

    def _cancel_note(self, d: CancelRequested | CancelRefused, ts: int) -> None:
        """A cancel asked for an order (a new request clears an earlier one's refusal), or
        refused: on its view, or kept for the view until its first order event is read."""
        view = self.orders.get(d.order_id)
        if view is not None:
            self._note_on(view, d, ts)
            return
        notes = self._cancel_notes
        notes.setdefault(d.order_id, []).append((d, ts))
        if len(notes) > MAX_ORDERS:  # (an order id no order event ever names)
            del notes[next(iter(notes))]

    @staticmethod
    def _note_on(view: OrderView, d: CancelRequested | CancelRefused, ts: int) -> None:
        if isinstance(d, CancelRequested):
            view.cancel_requested_ts, view.cancel_requested_by = ts, d.requested_by
            view.cancel_refused = None
        else:
            view.cancel_refused = d.message

    def _signal(self, d: SignalValidated | SignalRejected, event: Envelope[Any]) -> None:
        if d.signal_id in self._decided:
            return
        self._decided.add(d.signal_id)
        s = d.signal
        rejected = isinstance(d, SignalRejected)
        if rejected:
            self.rejected += 1
        else:
            self.validated += 1
        view = SignalView(
            signal_id=d.signal_id, strategy_id=s.strategy_id, instrument_token=s.instrument_token,
            side=s.side.value, quantity=s.quantity, order_type=s.order_type.value,
            status="REJECTED" if rejected else "VALIDATED",
            reason_code=d.reason_code if isinstance(d, SignalRejected) else None,
            message=d.message or None,  # a rejection's, or how risk sized the signal
            reason=s.reason, ts=event.ts,
        )
        if not self._rebuilding:
            shown = self.signals
            if not shown or view.ts >= shown[-1].ts:
                shown.append(view)
                return
            # read behind a later one (a full-speed replay reads one partition ahead of
            # another): in its place by time, so the latest MAX_SIGNALS are kept, as a rebuild
            if len(shown) == shown.maxlen:
                if view.ts < shown[0].ts:
                    return  # older than every signal kept
                shown.popleft()
            bisect.insort(shown, view, key=_signal_ts)
            return
        kept = self._rebuild_signals
        heapq.heappush(kept, (view.ts, self.version, view))  # (version: one per event)
        if len(kept) > MAX_SIGNALS:
            heapq.heappop(kept)  # the oldest


def portfolio_topics(broker: str) -> list[str]:
    return [MARKET_TICKS] + [topic(broker, s) for s in (
        "orders.submitted", "orders.filled", "orders.rejected", "orders.cancelled",
        "signals.validated", "signals.rejected", "pnl.snapshots", "control")]


def build_portfolio(
    log: Log, broker: str, ledger: PositionLedger, settings: ProcessorSettings,
    *, snapshot_interval_s: float,
) -> tuple[StreamProcessor, PortfolioHandler]:
    handler = PortfolioHandler(broker, ledger, snapshot_interval_ns=int(snapshot_interval_s * 1e9))
    processor = StreamProcessor(
        log, name=f"{broker}.portfolio", group=f"{broker}.portfolio",
        topics=portfolio_topics(broker), handler=handler,
        settings=settings.off_the_fill_path(), rebuild=True,
    )
    return processor, handler
