"""One backtest run's wiring: the live pipeline's parts and how events flow between them.

``Engine`` holds a run's ``StrategyRunner``, ``RiskEngine``, ``PaperVenue`` and
``PositionLedger``, and routes each order event to the ledger, the risk engine and the
runner's feedback as the live services would; it also keeps what lets the tick loop skip
calls that cannot change an outcome (which instrument's tick each part has seen). The tick
loop itself, and the module docstring that explains the order of operations and those
shortcuts, are in ``backtest.engine``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Final

import numpy as np

from alpha_panda.backtest.metrics import NS_PER_DAY, stop_record, trading_day
from alpha_panda.domain.clock import IST_OFFSET_NS
from alpha_panda.domain.events import (
    MarketTick,
    OrderCancelled,
    OrderFilled,
    OrderRejected,
    OrderSubmitted,
    Payload,
    Signal,
    SignalRejected,
    SignalValidated,
    derive_id,
)
from alpha_panda.domain.values import Product
from alpha_panda.execution.config import execution_configs
from alpha_panda.execution.routing import PaperVenue
from alpha_panda.marketdata.columns import FLAG_EXTRAS
from alpha_panda.marketdata.files import TickColumns, tick_id, tick_id_prefix
from alpha_panda.portfolio.ledger import PositionLedger
from alpha_panda.risk import RiskConfig, RiskEngine, RiskLimits
from alpha_panda.strategy.config import StrategyConfig
from alpha_panda.strategy.runner import StrategyRunner, signal_ids

_MIS: Final = Product.MIS
_MARK_LIMITS: Final = ("daily_loss", "account_daily_loss", "max_gross_exposure",
                       "account_max_gross_exposure")


def risk_config(configs: Sequence[StrategyConfig]) -> RiskConfig:
    """The risk configuration the strategies' ``risk:`` sections ask for."""
    return RiskConfig(strategies={
        c.id: RiskLimits.from_mapping(c.risk, f"{c.source or c.id}: risk") for c in configs
    })


def any_limit_reads_marks(config: RiskConfig, ids: Sequence[str]) -> bool:
    """Whether a limit of the account or of one of the strategies ``ids`` reads marks (daily
    loss, gross exposure): then the risk engine must see every tick, in order."""
    scopes: list[str | None] = [None, *ids]
    return any(getattr(config.limits_for("paper", s), name) is not None
               for s in scopes for name in _MARK_LIMITS)


class Engine:
    """One run's wiring and its event routing."""

    def __init__(self, configs: list[StrategyConfig], cols: TickColumns, source: str,
                 initial_cash: int, seed: int, risk: RiskConfig | None) -> None:
        self.cols = cols
        self.ts_l: list[int] = cols.ts.tolist()
        self.tok_l: list[int] = cols.instrument_token.tolist()
        self.px_l: list[int] = cols.last_price.tolist()
        self.vol_l: list[int] = cols.volume.tolist()
        self.source = source
        self.tick_prefix = tick_id_prefix(source)  # tick_id(source, i) == this + str(i)
        self.stages: dict[str, str] = {}  # strategy id -> its signal-id stage
        self.runner = StrategyRunner(configs, initial_cash=initial_cash, ordered_feedback=True)
        rc = risk if risk is not None else risk_config(configs)
        self.risk = RiskEngine(rc, broker="paper")
        self.risk_every_tick = any_limit_reads_marks(rc, [c.id for c in configs]) \
            or self.risk.has_stops
        self.venue = PaperVenue(execution_configs(configs), seed=seed, broker="paper",
                                serve_unknown=False)
        self.ledger = PositionLedger(initial_cash * len(configs), broker="paper",
                                     strategy_cash={c.id: initial_cash for c in configs})
        self._rows: dict[int, np.ndarray] = {}  # token -> its rows, computed on first use
        self.exchange_fed: dict[int, int] = {}  # token -> last row the exchange has seen
        self._exchange_day: dict[int, int] = {}  # token -> IST day of that row
        self._row_ts: dict[int, np.ndarray] = {}  # token -> times of its rows
        self.risk_fed: dict[int, int] = {}
        self.fills: list[OrderFilled] = []
        self.booked = 0  # fills[:booked] are in the ledger
        self.open_orders: dict[int, set[str]] = {}  # token -> open order ids
        self.exchange_every_tick = False
        self.counts = {"signals": 0, "signals_rejected": 0, "orders": 0, "orders_rejected": 0,
                       "orders_cancelled": 0}
        self.rejections: dict[str, int] = {}
        self.rejection_messages: dict[str, str] = {}  # reason code -> its first message
        self.stops: list[dict[str, Any]] = []  # daily-loss stops (``daily_loss``)
        # bound methods of the per-fill path, looked up once
        self.apply_fill = self.ledger.apply_fill
        self.risk_on_fill = self.risk.on_fill
        self.runner_on_fill = self.runner.on_fill
        sole = self.venue.sole_exchange()
        self.venue_on_tick = self.venue.on_tick if sole is None else sole.on_tick
        self.venue_submit = self.venue.submit if sole is None else sole.submit

    # ---------------------------------------------------------------- events

    def route(self, payloads: list[Payload]) -> None:
        """Order events from the exchange to the counts, risk, the runner and the fills."""
        if len(payloads) == 2:
            # The usual pair, an order filled in full at once: it never is an open order.
            sub, p = payloads
            if (isinstance(sub, OrderSubmitted) and isinstance(p, OrderFilled)
                    and p.order_id == sub.order_id and p.leaves_quantity == 0
                    and sub.parent_order_id is None):
                self.counts["orders"] += 1
                self._filled(p)
                return
        for p in payloads:
            if isinstance(p, OrderFilled):
                self._filled(p)
                if p.leaves_quantity == 0:
                    self._closed(p.instrument_token, p.order_id)
            elif isinstance(p, OrderSubmitted):
                self.counts["orders"] += 1
                ids = self.open_orders.get(p.instrument_token)
                if ids is None:
                    ids = self.open_orders[p.instrument_token] = set()
                ids.add(p.order_id)
                self.runner.on_order_submitted(p)
            elif isinstance(p, OrderRejected):
                self.counts["orders_rejected"] += 1
                self.rejections[p.reason_code] = self.rejections.get(p.reason_code, 0) + 1
                self.rejection_messages.setdefault(p.reason_code, p.message)
                self._closed(p.instrument_token, p.order_id)
                self.risk.on_order_rejected(p)
                self.runner.on_order_rejected_event(p)
            elif isinstance(p, OrderCancelled):
                self.counts["orders_cancelled"] += 1
                self._closed(p.instrument_token, p.order_id)
                self.risk.on_order_cancelled(p)
                self.runner.on_order_cancelled_event(p)

    def _filled(self, p: OrderFilled) -> None:
        """A fill to risk and the runner now; to the ledger at ``book``."""
        self.risk_on_fill(p)
        self.runner_on_fill(p)
        self.fills.append(p)
        if p.product is _MIS:
            self.exchange_every_tick = True  # square-off needs every tick

    def book(self) -> None:
        """Book the fills since the last call into the ledger, in order.

        Nothing reads the ledger between equity samples (the engine marks it only then), so
        its fills are booked in one pass just before each sample, which costs less than one
        at a time between strategy calls. (Round trips are counted at the end, over every
        fill in event-time order: ``metrics.round_trips``.)
        """
        fills = self.fills
        apply_fill = self.apply_fill
        for k in range(self.booked, len(fills)):
            apply_fill(fills[k])
        self.booked = len(fills)

    def _closed(self, token: int, order_id: str) -> None:
        ids = self.open_orders.get(token)
        if ids is not None:
            ids.discard(order_id)
            if not ids:
                del self.open_orders[token]

    def tick_at(self, i: int) -> MarketTick:
        """Row ``i`` as a real (immutable) ``MarketTick``: for the exchange, risk, keepers."""
        if not self.cols.extras:  # (no empty ** to unpack)
            return MarketTick(instrument_token=self.tok_l[i], last_price=self.px_l[i],
                              ts=self.ts_l[i], volume=self.vol_l[i])
        extra: dict[str, Any] = {k: bool(v[i]) if k in FLAG_EXTRAS else int(v[i])
                                 for k, v in self.cols.extras.items()}
        for k, mask in self.cols.nulls.items():
            if mask[i]:
                extra[k] = None
        return MarketTick(instrument_token=self.tok_l[i], last_price=self.px_l[i],
                          ts=self.ts_l[i], volume=self.vol_l[i], **extra)

    def latest_row(self, token: int, i: int) -> int | None:
        """The last row at or before ``i`` with a tick of ``token``."""
        tok = self.tok_l
        # usually a few rows back: look there before searching the instrument's rows
        for j in range(i, max(-1, i - 64), -1):
            if tok[j] == token:
                return j
        rows = self._rows.get(token)
        if rows is None:
            rows = self._rows[token] = np.flatnonzero(self.cols.instrument_token == token)
        k = int(rows.searchsorted(i, side="right")) - 1
        return int(rows[k]) if k >= 0 else None

    def latest_rows(self, tokens: set[int], i: int) -> list[tuple[int, int]]:
        """(token, its last row at or before ``i``) for each of ``tokens`` that has one."""
        found: dict[int, int] = {}
        if not tokens:
            return []
        tok = self.tok_l
        want = len(tokens)
        # one pass back over the last rows finds most of them (cf. ``latest_row``)
        for j in range(i, max(-1, i - 64 * want), -1):
            t = tok[j]
            if t in tokens and t not in found:
                found[t] = j
                if len(found) == want:
                    return list(found.items())
        for t in tokens - found.keys():
            row = self.latest_row(t, i)
            if row is not None:
                found[t] = row
        return list(found.items())

    def catch_up(self, token: int, i: int, tick: MarketTick, fed: dict[int, int],
                 feed: Callable[[MarketTick], Any]) -> None:
        """Give a lazily fed component the latest tick of ``token`` it has not seen yet.

        Only the latest one matters: while it was not fed, the component had nothing for
        that instrument that a tick could change (see the module docstring).
        """
        row = i if tick.instrument_token == token else self.latest_row(token, i)
        if row is not None and fed.get(token) != row:
            fed[token] = row
            feed(tick if row == i else self.tick_at(row))

    def feed_exchange(self, token: int, row: int, tick: MarketTick | None = None) -> None:
        """Give the exchange row ``row`` of ``token``; on a new IST day, the day's first tick
        of the instrument before it, if the exchange has not had it: the circuit band's
        reference is that price when ticks carry no previous close (the pipeline's exchange
        sees every tick)."""
        fed = self.exchange_fed
        day = trading_day(self.ts_l[row])
        if self._exchange_day.get(token) != day:
            self._exchange_day[token] = day
            first = self.first_row_of_day(token, row, day)
            if first < row and fed.get(token, -1) < first:
                fed[token] = first
                self.route(self.venue_on_tick(self.tick_at(first)))
        fed[token] = row
        events = self.venue_on_tick(tick if tick is not None else self.tick_at(row))
        if events:
            self.route(events)

    def first_row_of_day(self, token: int, row: int, day: int) -> int:
        """The first row of ``token`` on IST day ``day`` (``row`` is one of them)."""
        rows = self._rows.get(token)
        if rows is None:
            rows = self._rows[token] = np.flatnonzero(self.cols.instrument_token == token)
        times = self._row_ts.get(token)
        if times is None:
            times = self._row_ts[token] = self.cols.ts[rows]
        k = int(times.searchsorted(day * NS_PER_DAY - IST_OFFSET_NS, side="left"))
        return int(rows[k]) if k < len(rows) else row

    def halt(self, ts: int) -> None:
        """Strategies that failed at the tick of ``ts`` lose their open orders, as the
        pipeline's engines cancel them on the runner's ``StrategyHalted``; a bracket's
        stop-loss and target stay, protecting what filled."""
        for sid, _ in self.runner.take_halted():
            self.route(self.venue.kill(ts, sid, keep_exits=True))

    def daily_loss(self, i: int, ts: int) -> None:
        """The daily-loss stops risk finds at row ``i``, as the risk manager writes and then
        acts on them (``RiskHandler._daily_loss``), with the same ids: a strategy's is its
        halt with flatten (the runner makes no more signals; its orders, bracket exits
        included, are cancelled as of the tick), the account's the kill switch with
        flatten; the positions are closed by market orders just after the tick. A new
        day's first tick releases those of an earlier day."""
        risk = self.risk
        release, reached = risk.stop_changes()
        for scope in release:  # (released in risk; the runner lapses its halt at this tick)
            if scope is not None:
                self.runner.halt(scope, False)
        for scope, why in reached:
            self.stops.append(stop_record(ts, scope, why))
            if scope is None:
                risk.set_kill_switch(True)
                self.route(self.venue.kill(ts))
            else:
                risk.halt_strategy(scope)
                self.runner.halt(scope, True, why, until=risk.day_end_ns
                                 if risk.stop_released_by_engine(scope) else None)
                self.route(self.venue.kill(ts, scope))
            control_id = derive_id(f"{self.tick_prefix}{i}", f"daily_loss:stop:{scope or ''}")
            now = ts + 1
            for n, sig in enumerate(risk.flatten_signals(now, scope, reason="flatten:daily_loss")):
                signal_id = derive_id(control_id, "flatten", n)
                self.counts["signals"] += 1  # (risk's own: the pipeline counts its decisions)
                if isinstance(risk.check(signal_id, sig, now, flatten=True), SignalValidated):
                    self.route(self.venue_submit(signal_id, sig, now, flatten=True))
                else:
                    self.counts["signals_rejected"] += 1

    def cancel(self, ts: int) -> None:
        """The cancels strategies asked for at the tick of ``ts`` (``ctx.cancel``), as the
        pipeline's engines apply the runner's ``CancelRequested``."""
        for _, order in self.runner.take_cancels():
            self.route(self.venue.cancel(order.order_id, ts, "strategy"))

    def signals(self, i: int, sigs: list[Signal], tick: MarketTick) -> None:
        """Step 3 for one tick's signals: risk, exchange, events, feedback."""
        if len(sigs) == 1:  # the usual case: signal_ids for one signal, without its bookkeeping
            sid = sigs[0].strategy_id
            stage = self.stages.get(sid)
            if stage is None:
                stage = self.stages[sid] = f"strategy:{sid}"
            ids = [derive_id(f"{self.tick_prefix}{i}", stage, 0)]
        else:
            ids = signal_ids(tick_id(self.source, i), sigs)
        now = tick.ts
        counts = self.counts
        risk_fed = self.risk_fed
        exchange_fed = self.exchange_fed
        risk = self.risk
        for signal_id, sig in zip(ids, sigs, strict=True):
            counts["signals"] += 1
            if sig.replaces:  # an entry placed again smaller: watched by its order id
                self.runner.replacement_sent(sig, signal_id)
            token = sig.instrument_token
            own = token == tick.instrument_token  # the usual case: the tick's own instrument
            if not self.risk_every_tick:
                if not own:
                    self.catch_up(token, i, tick, risk_fed, risk.on_tick)
                elif risk_fed.get(token) != i:
                    risk_fed[token] = i
                    risk.on_tick(tick)
            decision = risk.check(signal_id, sig, now)
            if isinstance(decision, SignalRejected):
                counts["signals_rejected"] += 1
                code = decision.reason_code
                self.rejections[code] = self.rejections.get(code, 0) + 1
                self.rejection_messages.setdefault(code, decision.message)
                self.runner.on_signal_rejected(sig)
                continue
            if not own:
                row = self.latest_row(token, i)
                if row is not None and exchange_fed.get(token) != row:
                    self.feed_exchange(token, row)
            elif exchange_fed.get(token) != i:
                self.feed_exchange(token, i, tick)
            self.route(self.venue_submit(signal_id, decision.signal, now))

    def sample(self, upto: int) -> tuple[int, int]:
        """Mark open positions at their last price at or before row ``upto``; return the
        account's (equity, gross exposure) in paise."""
        self.book()
        px = self.px_l
        ledger = self.ledger
        held = 0
        gross = 0
        positions = ledger.positions(open_only=True)
        for token, row in self.latest_rows({p.instrument_token for p in positions}, upto):
            ledger.mark(token, px[row])
        for pos in positions:
            value = pos.quantity * pos.mark_price
            held += value
            gross += abs(value)
        return ledger.cash(None) + held, gross
