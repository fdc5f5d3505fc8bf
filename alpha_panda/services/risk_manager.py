"""The risk manager of one broker: ``{broker}.signals.raw`` in, validated or rejected out.

Its state (positions including pending orders, order counts, P&L marked to the last tick)
is fed by the broker's own order topics and ``market.ticks``, and rebuilt from the log on
restart. One instance per broker:
paper and zerodha never share a topic or a consumer group.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import structlog

from alpha_panda.backtest.wiring import any_limit_reads_marks
from alpha_panda.domain.errors import InvariantViolation
from alpha_panda.domain.events import (
    Envelope,
    KillSwitchSet,
    MarketTick,
    OrderCancelled,
    OrderFilled,
    OrderRejected,
    Signal,
    SignalRejected,
    SignalValidated,
    StrategyHalted,
    derive_id,
    new_envelope,
)
from alpha_panda.readmodel.views import KillSwitchView
from alpha_panda.risk import RiskConfig, RiskEngine
from alpha_panda.services.logs import read_events
from alpha_panda.stream.emit import BatchFailure, Emit, Emitted
from alpha_panda.stream.log import Log, Record
from alpha_panda.stream.runtime import ProcessorSettings, StreamProcessor
from alpha_panda.stream.topics import MARKET_TICKS, strategy_instrument_key, topic

SOURCE = "risk-manager"
STOP_BY = "risk:daily_loss"  # ``requested_by`` of the halts and switches of a daily-loss stop
log = structlog.get_logger(__name__)


class RiskHandler:
    def __init__(self, broker: str, engine: RiskEngine, *, every_tick: bool = True) -> None:
        self.broker = broker
        self.engine = engine
        # False: ticks reach the engine once per instrument per batch (``handle_batch``).
        self.every_tick = every_tick
        self.validated = 0
        self.rejected = 0
        self.kill_switch = KillSwitchView(broker=broker, active=False)
        self._rebuilding = False
        self._stops = engine.has_stops  # daily-loss stops: looked for after every tick
        self._tick: Envelope[MarketTick] | None = None  # and fill, as of the latest tick
        # Strategies halted with flatten: until when (None: until put back in service) and
        # the flatten's reason; what their orders leave open while so is flattened in turn
        # (``_follow_up``), as what any order leaves while the switch with flatten stands.
        self._flatten_halted: dict[str, tuple[int | None, str]] = {}
        self._flatten_all: str | None = None  # the kill switch's flatten reason, while set

    # A rebuild applies this service's own decisions (every one on ``signals.validated``
    # and ``signals.rejected``: each was committed with its signal's offset) rather than
    # deciding the raw signals again, then the fills up to the committed offsets in event
    # time across partitions (the day's loss starts from each IST day's first event, as
    # live), before the ticks, the control events and the ends of orders (the rest comes
    # live). Replayed by topic name, every order's end came before its signal, and the
    # validated signals stayed pending (and counted as open orders) for ever.
    _RANKS: ClassVar[dict[str, int]] = {
        "market.ticks": 0, "control": 1, "orders.rejected": 2, "orders.cancelled": 2}

    def rebuild_rank(self, name: str) -> int:
        return self._RANKS.get(name.removeprefix(f"{self.broker}."), 3)

    async def before_rebuild(self, log: Log) -> None:
        engine = self.engine
        decisions = [env for name in ("signals.validated", "signals.rejected")
                     for env in await read_events(log, topic(self.broker, name))
                     if isinstance(env.data, SignalValidated | SignalRejected)]
        # in event time: read partition by partition, a later burst of orders took the rate
        # window's room before an earlier one, whose slots were then not taken again
        for env in sorted(decisions, key=lambda e: e.ts):
            engine.replay_decision(env.data, env.ts)
        name = topic(self.broker, "orders.filled")
        committed = await log.committed_offsets(risk_group(self.broker), name)
        fills = [e.data for e in await read_events(log, name, committed)
                 if isinstance(e.data, OrderFilled)]
        for fill in sorted(fills, key=lambda f: f.ts):
            engine.on_fill(fill)
        self._rebuilding = True  # raw signals and fills: applied above

    def after_rebuild(self) -> None:
        self._rebuilding = False

    def handle(self, event: Envelope[Any], record: Record) -> Sequence[Emit]:
        data = event.data
        if isinstance(data, MarketTick):
            self.engine.on_tick(data)
            if not self._stops:
                return ()
            self._tick = event
            return self._daily_loss(event, data)
        if event.broker != self.broker:
            raise InvariantViolation(
                f"{self.broker} risk manager got a {event.broker!r} event {event.id} on {record.topic}"
            )
        if isinstance(data, KillSwitchSet):
            return self._kill_switch(event, data)
        if isinstance(data, StrategyHalted):
            return self._halt(event, data) if data.by_trader else ()
        if isinstance(data, Signal):
            if self._rebuilding:
                return ()  # its decision is replayed instead
            # the kill switch's flatten orders are this service's own: a strategy's signal
            # comes from the strategy runner, whatever it says
            decision = self.engine.check(event.id, data, event.ts,
                                         flatten=event.source == SOURCE)
            if isinstance(decision, SignalValidated):
                self.validated += 1
                suffix = "signals.validated"
            else:
                self.rejected += 1
                suffix = "signals.rejected"
            env = new_envelope(decision, id=derive_id(event.id, "risk"), ts=event.ts, source=SOURCE,
                               key=event.key, broker=self.broker, parent=event)
            return [Emit(topic(self.broker, suffix), env)]
        if isinstance(data, OrderFilled):
            if not self._rebuilding:
                self.engine.on_fill(data)
                follow = self._follow_up(event, data)
                if self._stops and self._tick is not None \
                        and data.ts <= self.engine.market_ns:
                    # a fill read after its tick (the engines trail the ticks) can reach
                    # the limit too: at the latest tick, as if found there. One read before
                    # its tick (an order's latency fills it at a later tick, which the
                    # strategy's signals race) waits for that tick, which marks it as the
                    # backtest does: at the latest tick before, a buy at a rise looked a loss
                    return follow + self._daily_loss(self._tick, self._tick.data,
                                                     at=max(self._tick.data.ts, data.ts))
                return follow
        elif isinstance(data, OrderRejected):
            self.engine.on_order_rejected(data)
        elif isinstance(data, OrderCancelled):
            self.engine.on_order_cancelled(data)
        return ()

    def _follow_up(self, event: Envelope[Any], order: OrderFilled) -> list[Emit]:
        """While a kill switch or a halt with flatten stands, a fill of a strategy it
        flattens may leave a position open, or reversed: the strategy's market sell of 1 in
        flight when the switch was set (placed: it cannot be cancelled), and the flatten's
        sell of the 1 filled, both fill (short 1). What is left is flattened in turn, by
        flatten orders of its own (not while rebuilding: those were made). Only on fills:
        a flatten the venue rejects is not sent again and again. Only while the engine
        still holds the switch (or halt): it releases a daily-loss stop at the next day's
        first event, before this service reads the release back from the control topic,
        and a fill of the new day in between is the strategy's own."""
        if self._rebuilding:
            return []
        sid = order.strategy_id
        scope: str | None
        engine = self.engine
        if self._flatten_all is not None and engine.kill_switch:
            scope, reason = None, self._flatten_all
        elif sid in self._flatten_halted and engine.is_halted(sid):
            until, reason = self._flatten_halted[sid]
            if until is not None and engine.market_ns >= until:
                return []
            scope = sid
        else:
            return []
        # dated at the fill if the ticks here are older: with the feed quiet since (Kite's
        # ticker down), the latest tick's time made a flatten asked minutes before STALE
        # at the zerodha engine, and a refused flatten is not sent again
        at = max(engine.market_ns, order.ts)
        return self._flatten(event, at - 1 if at else None, scope, reason=reason,
                             only=(sid, order.instrument_token))

    def handle_batch(self, events: Sequence[Envelope[Any]],
                     records: Sequence[Record]) -> list[Emitted]:
        """``handle`` over a run of events, ticks in a tight loop.

        Unless ``every_tick``, a tick only notes itself as its instrument's latest; the
        engine gets each instrument's latest tick before anything else is handled and at
        the end of the run. With no limit reading marks (the rule the backtest uses), what
        the engine reads then is what ticks applied one by one would have left.
        """
        out: list[Emitted] = []
        on_tick = self.engine.on_tick
        every_tick = self.every_tick
        latest: dict[int, MarketTick] = {}
        i = 0
        try:
            for i, event in enumerate(events):
                data = event.data
                if type(data) is MarketTick:
                    if every_tick:
                        on_tick(data)
                        if self._stops:
                            self._tick = event
                            stops = self._daily_loss(event, data)
                            if stops:
                                out.append((i, stops))
                    else:
                        latest[data.instrument_token] = data
                    continue
                if latest:
                    self._catch_up(latest)
                emits = self.handle(event, records[i])
                if emits:
                    out.append((i, emits))
            self._catch_up(latest)
        except Exception as exc:
            self._catch_up(latest)
            raise BatchFailure(i, out, exc) from exc
        return out

    def _catch_up(self, latest: dict[int, MarketTick]) -> None:
        on_tick = self.engine.on_tick
        for tick in latest.values():
            on_tick(tick)
        latest.clear()

    def _daily_loss(self, event: Envelope[Any], tick: MarketTick,
                    at: int | None = None) -> list[Emit]:
        """The daily-loss stops this tick releases (a new day) or reaches: each a control
        event, as the trader's halt or kill switch with flatten (released: without), which
        the engines, the runner and this service (its flatten orders) act on as they read
        it. Applied here at once, so that no signal of the stopped strategy passes after
        this tick. A rebuild learns them from the control topic instead."""
        if self._rebuilding:
            return []
        release, reached = self.engine.stop_changes()
        emits = []
        market_ts = tick.ts if at is None else at
        for scope in release:  # (released in the engine: a strategy's halt said until when,
            if scope is None:  # the dashboard shows the switch as the control topic says)
                emits.append(self._stop(event, market_ts, scope, active=False, why=""))
        for scope, why in reached:
            log.warning("risk.daily_loss_stop", broker=self.broker, strategy_id=scope, detail=why)
            emits.append(self._stop(event, market_ts, scope, active=True, why=why))
        return emits

    def _stop(self, event: Envelope[Any], market_ts: int, scope: str | None, *, active: bool,
              why: str) -> Emit:
        data: KillSwitchSet | StrategyHalted
        if scope is None:
            self.engine.set_kill_switch(active)
            data = KillSwitchSet(active=active, flatten=active, requested_by=STOP_BY,
                                 market_ts=market_ts, reason=why)
            key = "kill_switch"
        else:
            # until the next day, unless the trader had halted it already: then theirs
            until = self.engine.day_end_ns if self.engine.stop_released_by_engine(scope) else None
            self.engine.halt_strategy(scope, active)
            data = StrategyHalted(strategy_id=scope, error=why, requested_by=STOP_BY,
                                  active=active, flatten=active, market_ts=market_ts,
                                  until=until)
            key = "halt"
        what = f"daily_loss:{'stop' if active else 'release'}:{scope or ''}"
        env = new_envelope(data, id=derive_id(event.id, what),
                           ts=market_ts, source=SOURCE, key=key, broker=self.broker, parent=event)
        return Emit(topic(self.broker, "control"), env)

    def _kill_switch(self, event: Envelope[Any], data: KillSwitchSet) -> Sequence[Emit]:
        """Applied in log order (and again on rebuild, where the flatten outputs are dropped);
        this service's own, read after a newer one of its own, is only logged."""
        if not self.engine.note_stop(None, data.active, data.market_ts,
                                     by_risk=data.requested_by == STOP_BY):
            log.info("risk.stop_superseded", broker=self.broker, active=data.active)
            return ()
        self.engine.set_kill_switch(data.active)
        self.kill_switch = KillSwitchView(broker=self.broker, active=data.active,
                                          flatten=data.flatten, set_at=event.ts)
        log.warning("risk.kill_switch", broker=self.broker, active=data.active,
                    flatten=data.flatten, requested_by=data.requested_by)
        if not (data.active and data.flatten):
            self._flatten_all = None
            return ()
        self._flatten_all = _flatten_reason(data) or "flatten:kill_switch"
        return self._flatten(event, data.market_ts, None, reason=self._flatten_all)

    def _halt(self, event: Envelope[Any], data: StrategyHalted) -> Sequence[Emit]:
        """The trader's halt of one strategy (or its return to service), or this service's
        daily-loss stop, applied in log order like the kill switch (and again on rebuild,
        where the flatten outputs are dropped). A halt read after it lapsed (``until``: a
        rebuild reads the control topic after the ticks; a full-speed replay can read it
        on the next day) changes nothing: its positions are the next day's now."""
        applies = self.engine.note_stop(data.strategy_id, data.active, data.market_ts,
                                        by_risk=data.requested_by == STOP_BY)
        if not applies or (data.until is not None and self.engine.market_ns >= data.until):
            log.info("risk.stop_superseded", broker=self.broker, strategy_id=data.strategy_id)
            return ()
        self.engine.halt_strategy(data.strategy_id, data.active)
        log.warning("risk.strategy_halted", broker=self.broker, strategy_id=data.strategy_id,
                    active=data.active, flatten=data.flatten, requested_by=data.requested_by)
        if not (data.active and data.flatten):
            self._flatten_halted.pop(data.strategy_id, None)
            return ()
        reason = _flatten_reason(data) or "flatten:halted"
        self._flatten_halted[data.strategy_id] = (data.until, reason)
        return self._flatten(event, data.market_ts, data.strategy_id, reason=reason)

    def _flatten(self, event: Envelope[Any], market_ts: int | None,
                 strategy_id: str | None, *, reason: str | None = None,
                 only: tuple[str, int] | None = None) -> list[Emit]:
        """Market signals closing the filled positions (of ``strategy_id``, or all; ``only``:
        of that strategy and instrument), onto ``signals.raw`` as this service's own: they
        pass the switch or halt they follow."""
        # The flatten orders go in at the market's time (its latest tick), not the wall
        # clock's the operator's request carries: a simulated market runs hours or days
        # apart from it, and orders dated days in its past are rejected as stale.
        # (just after the switch's market time: the engines cancel what was placed by then)
        now = market_ts + 1 if market_ts is not None else (self.engine.market_ns or event.ts)
        emits = []
        signals = self.engine.flatten_signals(now, strategy_id, reason=reason)
        if only is not None:
            signals = [g for g in signals if (g.strategy_id, g.instrument_token) == only]
        for n, sig in enumerate(signals):
            env = new_envelope(sig, id=derive_id(event.id, "flatten", n), ts=now,
                               source=SOURCE, key=strategy_instrument_key(
                                   sig.strategy_id, sig.instrument_token),
                               broker=self.broker, parent=event)
            emits.append(Emit(topic(self.broker, "signals.raw"), env))
        return emits


def _flatten_reason(data: KillSwitchSet | StrategyHalted) -> str | None:
    """The reason of a daily-loss stop's flatten orders (None: the trader's, its default)."""
    return "flatten:daily_loss" if data.requested_by == STOP_BY else None


def limits_read_marks(config: RiskConfig, broker: str) -> bool:
    """Whether some limit reads marked P&L or exposure, so every tick must reach the engine
    in order: the backtest's rule (``backtest.wiring.any_limit_reads_marks``), for paper;
    always for zerodha."""
    if broker != "paper":
        return True
    return any_limit_reads_marks(config, list(config.strategies))


def risk_group(broker: str) -> str:
    return f"{broker}.risk-manager"


def risk_topics(broker: str) -> list[str]:
    return [MARKET_TICKS] + [topic(broker, s) for s in (
        "signals.raw", "orders.filled", "orders.rejected", "orders.cancelled", "control")]


def build_risk_manager(
    log: Log, broker: str, engine: RiskEngine, settings: ProcessorSettings
) -> tuple[StreamProcessor, RiskHandler]:
    handler = RiskHandler(broker, engine, every_tick=limits_read_marks(engine.config, broker)
                          or engine.has_stops)
    processor = StreamProcessor(
        log, name=f"{broker}.risk-manager", group=risk_group(broker),
        topics=risk_topics(broker), handler=handler, settings=settings, rebuild=True,
    )
    return processor, handler


