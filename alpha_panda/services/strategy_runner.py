"""The strategy runner: ``market.ticks`` in, ``{broker}.signals.raw`` out for every broker a
strategy routes to.

Strategies are pure (``strategy/``); the runner core routes each tick in O(1) to the
strategies trading its instrument and isolates a strategy that raises. The same signal
(same id) goes to each of the strategy's brokers, which is paper/live shadow trading.
Feedback (rejections, cancellations, fills) comes from each broker's own topics through a
separate consumer group per broker, applied only to strategies whose primary broker it is.

After a restart the strategies are replayed over the ticks to rebuild their own state,
but what they decide in the replay moves no book (it saw no feedback, or saw it at other
times than the live run): before that replay, each book (``ctx.position()``, ``filled()``,
``open_orders()``, cash) is rebuilt from the log: every signal the strategy made (its
primary broker's ``signals.raw``), then the order events up to the feedback group's
committed offsets, each order's submission before its fills and its fills before its end.
The feedback consumers wait for that, then go on from those offsets.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import msgspec
import structlog

from alpha_panda.domain.errors import ConfigurationError
from alpha_panda.domain.events import (
    CancelRefused,
    CancelRequested,
    Envelope,
    MarketTick,
    OrderCancelled,
    OrderFilled,
    OrderRejected,
    OrderSubmitted,
    Signal,
    SignalRejected,
    StrategyHalted,
    derive_id,
    new_envelope,
)
from alpha_panda.risk.engine import ORDER_STAGES
from alpha_panda.services.logs import read_events
from alpha_panda.services.risk_manager import STOP_BY
from alpha_panda.strategy.runner import StrategyRunner, signal_ids
from alpha_panda.stream.emit import BatchFailure, Emit, Emitted
from alpha_panda.stream.log import Log, Record
from alpha_panda.stream.runtime import ProcessorSettings, StreamProcessor
from alpha_panda.stream.topics import MARKET_TICKS, strategy_instrument_key, topic

log_ = structlog.get_logger(__name__)
SOURCE = "strategy-runner"
BOOKS_WAIT_S = 120.0
"""How long the feedback consumers wait for the strategies' books to be rebuilt."""
# The order a book is rebuilt in: each order's submission before its fills, its fills
# before its end (by topic name, its end would come first).
_REBUILD_ORDER = (("orders.submitted",), ("orders.filled",),
                  ("orders.cancelled", "orders.rejected", "signals.rejected"), ("control",))


def feedback_group(broker: str) -> str:
    return f"{broker}.strategy-feedback"


class SignalFanout:
    """Ticks in, one ``signal_generated`` per signal per routed broker out."""

    def __init__(self, runner: StrategyRunner,
                 feedback: Sequence[StrategyFeedback] = ()) -> None:
        self.runner = runner
        self.feedback = list(feedback)  # each broker's, whose books this rebuilds
        self.books_ready = asyncio.Event()  # the feedback consumers may go on
        self.ticks = 0

    async def before_rebuild(self, log: Log) -> None:
        """Rebuild the books from the log (at the first assignment only: afterwards the
        feedback consumers keep them, with events they have not committed yet), then replay
        the strategies for their own state only (``replaying``: their decisions move no
        book)."""
        if not self.books_ready.is_set():
            started = time.perf_counter()
            events = sum([await f.rebuild_books(log) for f in self.feedback], 0)
            self.books_ready.set()
            log_.info("strategy_runner.books_rebuilt", events=events,
                      seconds=round(time.perf_counter() - started, 3))
        self.runner.replaying = True

    def after_rebuild(self) -> None:
        self.runner.replaying = False

    def handle(self, event: Envelope[Any], record: Record) -> Sequence[Emit]:
        tick = event.data
        if not isinstance(tick, MarketTick):
            return ()
        self.ticks += 1
        signals = self.runner.process(tick)
        if signals is None and not self.runner.halted:
            return ()
        return self._outputs(event, signals)

    def _outputs(self, event: Envelope[Any], signals: list[Signal] | None) -> list[Emit]:
        """What one tick's strategies asked for: signals, cancels, halts."""
        emits = self._emits(event, signals) if signals else []
        if self.runner.cancels:
            emits += self._cancels(event)
        if self.runner.halted:
            emits += self._halts(event)
        return emits

    def handle_batch(self, events: Sequence[Envelope[Any]],
                     records: Sequence[Record]) -> list[Emitted]:
        """``handle`` over a run of ticks, in one tight loop (most ticks give no signal)."""
        out: list[Emitted] = []
        process = self.runner.process  # None when no signal: no empty list per tick
        i = 0
        try:
            for i, event in enumerate(events):
                tick = event.data
                if type(tick) is not MarketTick:
                    emits = self.handle(event, records[i])
                    if emits:
                        out.append((i, emits))
                    continue
                self.ticks += 1
                signals = process(tick)
                if signals is not None or self.runner.halted:
                    emits = self._outputs(event, signals)
                    if emits:
                        out.append((i, emits))
        except Exception as exc:
            raise BatchFailure(i, out, exc) from exc
        return out

    def _cancels(self, event: Envelope[Any]) -> list[Emit]:
        return cancel_emits(self.runner, event)

    def _halts(self, event: Envelope[Any]) -> list[Emit]:
        """A ``StrategyHalted`` on the control topic of each broker of each strategy that
        failed at this tick: the engines cancel its open orders as of the tick's time."""
        emits: list[Emit] = []
        for sid, error in self.runner.take_halted():
            halted = StrategyHalted(strategy_id=sid, error=error[:500])
            for broker in self.runner.config(sid).brokers:
                env = new_envelope(halted, id=derive_id(event.id, f"halted:{sid}"), ts=event.ts,
                                   source=SOURCE, key=sid, broker=str(broker), parent=event)
                emits.append(Emit(topic(broker, "control"), env))
        return emits

    def _emits(self, event: Envelope[Any], signals: list[Signal]) -> list[Emit]:
        emits: list[Emit] = []
        for sig, sid in zip(signals, signal_ids(event.id, signals), strict=True):
            if sig.replaces:  # an entry placed again smaller: its order id, to watch it by
                self.runner.replacement_sent(sig, sid)
            key = strategy_instrument_key(sig.strategy_id, sig.instrument_token)
            brokers = self.runner.config(sig.strategy_id).brokers
            for k, broker in enumerate(brokers):
                # (a copy for another broker says whose fills the strategy's intent follows)
                copy = sig if k == 0 else msgspec.structs.replace(sig, follows=str(brokers[0]))
                env = new_envelope(copy, id=sid, ts=event.ts, source=SOURCE, key=key,
                                   broker=str(broker), parent=event)
                emits.append(Emit(topic(broker, "signals.raw"), env))
        return emits


def cancel_emits(runner: StrategyRunner, event: Envelope[Any]) -> list[Emit]:
    """A ``CancelRequested`` (reason ``strategy``) on the control topic of each broker of
    the strategy, for each order the runner cancelled for a strategy at ``event`` (a tick;
    or a fill or cancel refusal of an entry an exit cut, whose replacement goes), as the
    market stood at its time. The order is the strategy's first broker's; another broker's
    order of the same signal has that broker's id (an order the system placed, a bracket
    leg or a square-off, is the first broker's only)."""
    emits: list[Emit] = []
    counts: dict[str, int] = {}
    for sid, order in runner.take_cancels():
        n = counts.get(sid, 0)
        counts[sid] = n + 1
        eid = derive_id(event.id, f"cancel:{sid}", n)
        brokers = [str(b) for b in runner.config(sid).brokers]
        for k, broker in enumerate(brokers):
            if k == 0:
                order_id = order.order_id
            elif order.origin == "signal":
                order_id = derive_id(order.signal_id, ORDER_STAGES[broker][0])
            else:
                continue
            request = CancelRequested(order_id=order_id, requested_by=f"strategy:{sid}",
                                      market_ts=event.ts, reason="strategy")
            env = new_envelope(request, id=eid, ts=event.ts, source=SOURCE, key=sid,
                               broker=broker, parent=event)
            emits.append(Emit(topic(broker, "control"), env))
    return emits


class StrategyFeedback:
    """A broker's rejections, cancellations and fills, back into the strategies' context;
    after a restart, the books of the strategies whose first broker it is, from the log
    (``rebuild_books``, run by the fanout before its replay)."""

    def __init__(self, broker: str, runner: StrategyRunner) -> None:
        self.broker = broker
        self.runner = runner
        self.books_ready: asyncio.Event | None = None  # set by the fanout's rebuild

    async def before_consuming(self, log: Log) -> None:
        """Wait for the books: what this group consumes from its committed offsets on
        comes after what they were rebuilt from."""
        if self.books_ready is None:
            return
        try:
            await asyncio.wait_for(self.books_ready.wait(), BOOKS_WAIT_S)
        except TimeoutError:
            log_.error("strategy_runner.books_not_rebuilt", broker=self.broker,
                       waited_s=BOOKS_WAIT_S, alert=True)

    async def rebuild_books(self, log: Log) -> int:
        """Empty the books of the strategies whose first broker this is, then move them by
        every signal they made before (``signals.raw``: the runner's own, not the kill
        switch's) and by the order events this group had processed (up to its committed
        offsets: it consumes the rest). The number of events applied."""
        runner = self.runner
        runner.reset_books([c.id for c in runner.configs() if self._primary(c.id)])
        applied = 0
        seen: set[str] = set()
        for env in await read_events(log, topic(self.broker, "signals.raw")):
            sig = env.data
            if (env.source == SOURCE and isinstance(sig, Signal) and env.id not in seen
                    and self._primary(sig.strategy_id)):
                seen.add(env.id)
                runner.replay_signal(sig, env.id)
                applied += 1
        group = feedback_group(self.broker)
        for names in _REBUILD_ORDER:
            for name in names:
                t = topic(self.broker, name)
                upto = await log.committed_offsets(group, t)
                for env in await read_events(log, t, upto):
                    if env.id not in seen:
                        seen.add(env.id)
                        self.handle(env, _NO_RECORD)
                        applied += 1
        return applied

    def _brokers(self, strategy_id: str) -> list[str]:
        try:
            return [str(b) for b in self.runner.config(strategy_id).brokers]
        except ConfigurationError:
            return []

    def _elsewhere(self, strategy_id: str) -> bool:
        """Whether the strategy trades on another broker as well: a daily-loss stop of this
        one's must not take it out of service there, where its positions would then have
        no one to close them."""
        return any(b != self.broker for b in self._brokers(strategy_id))

    def _primary(self, strategy_id: str) -> bool:
        brokers = self._brokers(strategy_id)
        return bool(brokers) and brokers[0] == self.broker

    def handle(self, event: Envelope[Any], record: Record) -> Sequence[Emit]:
        self._apply(event)
        # An entry an exit cut filled instead, or its cancel was refused: the runner cancels
        # the replacement at once (in a rebuild, these went out when the event was read live).
        return cancel_emits(self.runner, event) if self.runner.cancels else ()

    def _apply(self, event: Envelope[Any]) -> None:
        d = event.data
        if isinstance(d, SignalRejected):
            # (a flatten of the risk manager's is not the strategy's: its intent is as it was)
            if not d.flatten and self._primary(d.signal.strategy_id):
                self.runner.on_signal_rejected(d.signal)
        elif isinstance(d, OrderSubmitted | OrderRejected | OrderCancelled | OrderFilled):
            if not self._primary(d.strategy_id):
                return
            if isinstance(d, OrderFilled):
                self.runner.on_fill(d)
            elif isinstance(d, OrderSubmitted):
                self.runner.on_order_submitted(d)
            elif isinstance(d, OrderRejected):
                self.runner.on_order_rejected_event(d)
            else:
                self.runner.on_order_cancelled_event(d)
        elif isinstance(d, CancelRefused) and d.requested_by.startswith("strategy:"):
            sid = d.requested_by.removeprefix("strategy:")
            if self._primary(sid):  # it may ask again
                self.runner.on_cancel_refused(sid, d.order_id)
        elif isinstance(d, StrategyHalted) and d.by_trader:  # (its own halts: it raised)
            if d.requested_by == STOP_BY and self._elsewhere(d.strategy_id):
                # one broker's daily-loss stop: its risk manager holds it there
                if d.active:
                    self.runner.note_stop(d.strategy_id, self.broker, d.error, d.until)
                return
            self.runner.halt(d.strategy_id, d.active, d.error, d.until)


def build_strategy_runner(
    log: Log, runner: StrategyRunner, brokers: Sequence[str], settings: ProcessorSettings
) -> tuple[list[StreamProcessor], SignalFanout]:
    feedback = [StrategyFeedback(broker, runner) for broker in brokers]
    fanout = SignalFanout(runner, feedback)
    processors = [StreamProcessor(log, name="strategy-runner", group="strategy-runner",
                                  topics=[MARKET_TICKS], handler=fanout, settings=settings,
                                  rebuild=True)]
    for handler in feedback:
        broker = handler.broker
        handler.books_ready = fanout.books_ready
        processors.append(StreamProcessor(
            log, name=f"{broker}.strategy-feedback", group=feedback_group(broker),
            topics=[topic(broker, s) for s in ("signals.rejected", "orders.submitted", "orders.rejected",
                                               "orders.cancelled", "orders.filled", "control")],
            handler=handler, settings=settings.off_the_fill_path()))
    return processors, fanout


_NO_RECORD = Record("", 0, 0, None, b"")
