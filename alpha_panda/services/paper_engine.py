"""The paper trading engine: validated paper signals and market ticks in, order events out.

It consumes only ``paper.signals.validated``, ``paper.control`` (the kill switch cancels
every open order, a failed strategy's halt its own, a trader's cancel request one) and the
shared ``market.ticks``, and writes only ``paper.orders.*``. The simulated exchange is pure
and works in event time, so its fills do not depend on how the input streams interleave,
and a rebuild from the log restores resting orders exactly. A control event is the one
input whose effect does depend on when it is read (fills the engine made past its market
time before reading it stand): a rebuild follows what the engine recorded
(``before_rebuild``). So does the engine's refusal of a signal the risk manager validated
after the kill switch's (or a trader's halt's) market time, before it had read it: as the
zerodha engine does, such an order is not placed (``_refusal``); placed, it bought after the
switch's flatten and was left open under it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

from alpha_panda.domain.errors import DecodeError, InvariantViolation
from alpha_panda.domain.events import (
    CODEC,
    CancelRequested,
    Envelope,
    KillSwitchSet,
    MarketTick,
    OrderCancelled,
    OrderFilled,
    OrderRejected,
    OrderSubmitted,
    Payload,
    SignalValidated,
    StrategyHalted,
)
from alpha_panda.domain.values import Broker
from alpha_panda.execution.config import ExecutionConfig
from alpha_panda.execution.orders import order_id_for
from alpha_panda.execution.routing import PaperVenue
from alpha_panda.services.emitting import order_emit
from alpha_panda.stream.dlq import dead_lettered_by
from alpha_panda.stream.emit import BatchFailure, Emit, Emitted
from alpha_panda.stream.log import Log, Record, TopicPartition, read_topic
from alpha_panda.stream.records import REPLAY_FOR
from alpha_panda.stream.runtime import ProcessorSettings, StreamProcessor
from alpha_panda.stream.topics import MARKET_TICKS, topic

BROKER = Broker.PAPER.value
SOURCE = "paper-trading-engine"
NAME = GROUP = "paper.trading-engine"
_TERMINAL = (OrderRejected, OrderCancelled)
_REFUSALS = {  # reason codes of ``_refusal``, as the zerodha engine's
    "KILL_SWITCH": "kill switch is active: an order validated after it is not placed",
    "STRATEGY_HALTED": "strategy is halted: an order validated after it is not placed",
}


class PaperEngineHandler:
    """Routes ticks and validated signals into the paper exchange and emits its events."""

    def __init__(self, exchange: PaperVenue) -> None:
        self.exchange = exchange
        self._correlation: dict[str, str] = {}
        self.orders = 0
        self.fills = 0
        # The kill switch and the trader's halts standing, as read from the control topic:
        # the market time each was set at (-1: before any tick), and when a halt lapses by
        # itself (a daily-loss stop's ``until``; None: when the trader says).
        self._switch_at: int | None = None
        self._halts: dict[str, tuple[int, int | None]] = {}
        # In a rebuild: the orders the live engine refused (``_refusal``), by order id. It
        # read the control topic interleaved with the signals; the rebuild reads it first
        # (a release the live engine had not read yet is known), so it follows the record.
        self._refused: dict[str, str] | None = None
        # In a rebuild, which replays every tick before any signal: the validated signals
        # by instrument, in event time, each placed among its instrument's ticks where the
        # live engine met them (``_place_due``), and the control events applied before the
        # ticks (their ids), as the rebuild used to apply them before the signals. Placed
        # after every tick instead, an order met only the last ``tick_history`` ticks of its
        # instrument: one older was rejected (``STALE_ORDER``), and a bracket's stop-loss
        # that had closed the position rested again, to sell it a second time.
        self._due: dict[int, deque[tuple[Envelope[Any], Record]]] = {}
        self._applied: set[str] = set()

    def handle(self, event: Envelope[Any], record: Record) -> Sequence[Emit]:
        data = event.data
        if isinstance(data, MarketTick):
            due = self._due.get(data.instrument_token) if self._due else None
            if due:
                self._place_due(due, data.ts - 1)  # in time order: the tick, then its
                payloads = self.exchange.on_tick(data)  # own time's signals
                self._place_due(due, data.ts)
            else:
                payloads = self.exchange.on_tick(data)
            ts = data.ts
        elif self._applied and event.id in self._applied:
            return ()  # a control event the rebuild applied before the ticks
        elif isinstance(data, KillSwitchSet):
            if data.active:
                # a second while one stands (`kill`, then `kill --flatten`): the switch
                # stands from the first, and refuses what was validated after it
                since = -1 if data.market_ts is None else data.market_ts
                self._switch_at = since if self._switch_at is None else min(
                    self._switch_at, since)
            else:
                self._switch_at = None
                return ()
            at = data.market_ts
            if at is None:  # set before any tick reached the log (or written before the
                return ()  # field): no tick, so no order had been placed. Never the engine's
                # own progress, which a rebuild (control after every tick) would misread.
            payloads = self.exchange.kill(at)
            ts = at
        elif isinstance(data, CancelRequested):  # the trader's or a strategy's, of one order
            if event.broker != BROKER:
                raise InvariantViolation(f"paper engine got a {event.broker!r} cancel {event.id}")
            if data.market_ts is None:  # no tick on the log yet: no order to cancel
                return ()
            payloads = self.exchange.cancel(data.order_id, data.market_ts, data.reason)
            ts = data.market_ts
        elif isinstance(data, StrategyHalted):  # it failed, or the trader halted it
            if data.by_trader:  # (the runner's, for a raise, stops its signals itself)
                if data.active:
                    start = -1 if data.market_ts is None else data.market_ts
                    until = data.until
                    old = self._halts.get(data.strategy_id)
                    if old is not None and (old[1] is None or old[1] > start):
                        # a halt that still stands: the strategy is halted from the first
                        start = min(start, old[0])
                        until = None if until is None or old[1] is None else max(until, old[1])
                    self._halts[data.strategy_id] = (start, until)
                else:
                    self._halts.pop(data.strategy_id, None)
            if not data.active:  # back in service: its new orders go as any other's
                return ()
            # the trader's halt stops its orders as of the market's time when asked (the
            # wall clock's is hours or days apart from a simulated market's)
            at = data.market_ts if data.by_trader else event.ts
            if at is None:  # asked before any tick reached the log: no order was placed
                return ()
            # its own orders go; a bracket's exits stay unless its positions are flattened
            payloads = self.exchange.kill(at, data.strategy_id, keep_exits=not data.flatten)
            ts = at
        elif isinstance(data, SignalValidated):
            if event.broker != BROKER:
                raise InvariantViolation(f"paper engine got a {event.broker!r} signal {event.id}")
            refused = self._refusal(data, event.ts)
            if refused is not None:
                return [self._emit(self._refuse(data, refused, event.ts), event, event.ts)]
            payloads = self.exchange.submit(data.signal_id, data.signal, event.ts,
                                            flatten=data.flatten)
            ts = event.ts
            for p in payloads:
                if isinstance(p, OrderSubmitted):
                    self._correlation[p.order_id] = event.correlation_id
        else:
            return ()
        return [self._emit(p, event, ts) for p in payloads]

    def _refusal(self, data: SignalValidated, ts: int) -> str | None:
        """The reason code a signal is not placed for, if any: the risk manager validated it
        (at market time ``ts``) after the kill switch or the trader's halt of its strategy
        was set, before it read it. Never a flatten order. A signal from before the switch
        is placed: the switch stops it as of its time (``PaperExchange.kill``)."""
        if data.flatten:
            return None
        if self._refused is not None:  # a rebuild: what the live engine did
            return self._refused.get(order_id_for(data.signal_id))
        if self._switch_at is not None and ts > self._switch_at:
            return "KILL_SWITCH"
        halt = self._halts.get(data.signal.strategy_id)
        if halt is not None and ts > halt[0] and (halt[1] is None or ts < halt[1]):
            return "STRATEGY_HALTED"
        return None

    def _refuse(self, data: SignalValidated, code: str, ts: int) -> OrderRejected:
        sig = data.signal
        return OrderRejected(
            order_id=order_id_for(data.signal_id), strategy_id=sig.strategy_id,
            instrument_token=sig.instrument_token, side=sig.side, quantity=sig.quantity,
            reason_code=code, message=_REFUSALS[code], ts=ts, order_type=sig.order_type,
            limit_price=sig.limit_price, trigger_price=sig.trigger_price, product=sig.product)

    def handle_batch(self, events: Sequence[Envelope[Any]],
                     records: Sequence[Record]) -> list[Emitted]:
        """``handle`` over a run of events, ticks in a tight loop (most fill nothing)."""
        out: list[Emitted] = []
        on_tick = self.exchange.on_tick
        i = 0
        try:
            for i, event in enumerate(events):
                data = event.data
                if type(data) is MarketTick:
                    payloads = on_tick(data)
                    if payloads:
                        out.append((i, [self._emit(p, event, data.ts) for p in payloads]))
                    continue
                emits = self.handle(event, records[i])
                if emits:
                    out.append((i, emits))
        except Exception as exc:
            raise BatchFailure(i, out, exc) from exc
        return out

    async def before_rebuild(self, log: Log) -> None:
        """Give the exchange what this engine recorded before the restart: a control event
        read late (after ticks past its market time) took effect where the live engine
        applied it, which the rebuild, reading it before every signal, cannot tell."""
        events: list[Payload] = []
        for name, kind in (("orders.cancelled", OrderCancelled), ("orders.filled", OrderFilled),
                           ("orders.rejected", OrderRejected)):
            for r in await read_topic(log, topic(BROKER, name)):
                try:
                    events.append(CODEC.decode_as(r.value, kind).data)
                except DecodeError:  # not the engine's: its consumers dead-letter it
                    continue
        self._refused = {e.order_id: e.reason_code for e in events
                         if isinstance(e, OrderRejected) and e.reason_code in _REFUSALS}
        self.exchange.recorded(e for e in events if not isinstance(e, OrderRejected))

        await self._read_ahead(log)

    async def _read_ahead(self, log: Log) -> None:
        """A rebuild's control events, applied now (no order is placed yet, as when the
        rebuild read them after the ticks), and its validated signals, due among the ticks
        (``_due``). What the rebuild will not replay is left out: past the group's committed
        offsets, dead-lettered live, a copy ``dlq replay`` put back (the rebuild's own pass
        handles those as before); a signal placed here is found placed there."""
        control, signals = topic(BROKER, "control"), topic(BROKER, "signals.validated")
        gone = await dead_lettered_by(log, NAME, (control, signals))
        seen: set[str] = set()
        due: dict[int, list[tuple[int, int, Envelope[Any], Record]]] = {}
        for name in (control, signals):
            upto = await log.committed_offsets(GROUP, name)
            for r in await read_topic(log, name, upto=upto):
                if r.headers and r.headers[-1][0] == REPLAY_FOR:
                    continue
                if r.offset in gone.get(TopicPartition(name, r.partition), ()):
                    continue
                try:
                    event = CODEC.decode(r.value)
                except DecodeError:
                    continue
                if event.id in seen:
                    continue
                seen.add(event.id)
                if name == control:
                    if self._handled(event, r):  # (else the rebuild's own pass meets it)
                        self._applied.add(event.id)
                elif isinstance(event.data, SignalValidated):
                    token = event.data.signal.instrument_token
                    due.setdefault(token, []).append((event.ts, len(seen), event, r))
        self._due = {token: deque((e, r) for _, _, e, r in sorted(items, key=lambda i: i[:2]))
                     for token, items in due.items()}

    def _place_due(self, due: deque[tuple[Envelope[Any], Record]], upto: int) -> None:
        """Place the rebuild's signals of one instrument due by event time ``upto``."""
        while due and due[0][0].ts <= upto:
            event, record = due.popleft()
            self._handled(event, record)  # (failed, left to the rebuild's pass over signals)

    def _handled(self, event: Envelope[Any], record: Record) -> bool:
        """``handle`` ahead of the rebuild's own pass, outputs dropped: whether it passed.
        A failure changed no state; the rebuild's pass handles the event again, as before."""
        try:
            self.handle(event, record)
        except Exception:  # noqa: BLE001 - classified by the rebuild's own pass
            return False
        return True

    def after_rebuild(self) -> None:
        self._refused = None
        self._due = {}
        self._applied = set()
        self.exchange.recorded(())

    def _emit(self, payload: Payload, cause: Envelope[Any], ts: int) -> Emit:
        assert isinstance(payload, OrderSubmitted | OrderFilled | OrderRejected | OrderCancelled)
        corr = self._correlation.get(payload.order_id)
        if isinstance(payload, OrderSubmitted):
            self.orders += 1
        elif isinstance(payload, OrderFilled):
            self.fills += 1
            if payload.leaves_quantity == 0:
                self._correlation.pop(payload.order_id, None)
        elif isinstance(payload, _TERMINAL):
            self._correlation.pop(payload.order_id, None)
        return order_emit(BROKER, payload, cause=cause, source=SOURCE, ts=ts, correlation_id=corr)


def build_paper_engine(
    log: Log, execution: Mapping[str, ExecutionConfig], settings: ProcessorSettings,
    *, seed: int = 0,
) -> tuple[StreamProcessor, PaperEngineHandler]:
    handler = PaperEngineHandler(PaperVenue(execution, seed=seed, broker=BROKER))
    processor = StreamProcessor(
        log,
        name=NAME,
        group=GROUP,
        # control before signals.validated: a rebuild (topic by topic, in name order)
        # knows every kill switch before it places the orders it cancels
        topics=[MARKET_TICKS, topic(BROKER, "control"), topic(BROKER, "signals.validated")],
        handler=handler,
        settings=settings,
        rebuild=True,
    )
    return processor, handler
