"""The JSON summary of a run (``run --json``): the fields of ``backtest --json``, computed by the
same code (``backtest.metrics.performance``) and in the same format (rupee amounts as exact
decimal strings), plus ``ticks_published``, ``strategies_invalid`` and the dead letters
the run wrote (``dead_letters``, ``dead_letters_by_topic``).

What only the log holds (the fills, the account's P&L snapshots, rejections by reason) is
read from it by ``read_run_totals`` at the end of the run, before the log closes
(``RunOptions.summary``). A replay's equity curve is recomputed from its fills in event time
(``equity_in_event_time``); another feed's is the snapshots'.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from alpha_panda.backtest.engine import sample_rows
from alpha_panda.backtest.metrics import performance, round_trips, stop_record
from alpha_panda.backtest.result import rupees, strategy_figures
from alpha_panda.domain.errors import DecodeError
from alpha_panda.domain.events import (
    CODEC,
    Envelope,
    KillSwitchSet,
    OrderFilled,
    OrderRejected,
    P,
    PnlSnapshot,
    SignalRejected,
    StrategyHalted,
)
from alpha_panda.marketdata.files import TickColumns
from alpha_panda.portfolio.ledger import PositionLedger, snapshot_capital, snapshot_equity
from alpha_panda.services.logs import read_events
from alpha_panda.services.risk_manager import STOP_BY
from alpha_panda.stream.log import Log, Record, read_topic
from alpha_panda.stream.topics import topic

if TYPE_CHECKING:
    from alpha_panda.services.app import SystemRun

BROKER = "paper"  # the summary is the paper account's, like a backtest's
_ACCOUNT_KEY = b"account"


@dataclass
class RunTotals:
    """What the summary needs from the log: the account's P&L snapshots as equity samples
    (ts, equity, gross exposure, in paise: equity = capital + net P&L) and counts."""

    samples: list[tuple[int, int, int]] = field(default_factory=list)
    # the account's capital at each sample: strategies added or removed between runs on one
    # data dir add or withdraw theirs, which is not P&L (``performance(capital=...)``)
    capital: list[int] = field(default_factory=list)
    orders_rejected: int = 0
    orders_cancelled: int = 0
    # Risk's decisions on the log (None: not read): a run resumed from a log counts the
    # earlier runs' signals as it counts their fills.
    signals_validated: int | None = None
    signals_rejected: int | None = None
    rejections: Counter[str] = field(default_factory=Counter)
    # reason code -> (event time, message) of its first rejection
    first_rejections: dict[str, tuple[int, str]] = field(default_factory=dict)
    fills: list[OrderFilled] | None = None  # the account's, off the log (round trips)
    stops: list[dict[str, Any]] = field(default_factory=list)  # risk's daily-loss stops

    def count_rejection(self, ts: int, code: str, message: str) -> None:
        """One rejection; the message of each reason's first (by event time) is kept."""
        self.rejections[code] += 1
        first = self.first_rejections.get(code)
        if first is None or ts < first[0]:
            self.first_rejections[code] = (ts, message)


async def _decoded(log: Log, name: str, payload: type[P],
                   keep: Callable[[Record], bool] | None = None) -> list[Envelope[P]]:
    """The ``payload`` events of topic ``name`` (those ``keep`` takes), skipping records
    that do not decode: the services dead-lettered them, and counted none of them. (One
    malformed record on paper.orders.filled ended `run --json` with exit 2 and no summary.)"""
    out: list[Envelope[P]] = []
    for r in await read_topic(log, name):
        if keep is not None and not keep(r):
            continue
        try:
            out.append(CODEC.decode_as(r.value, payload))
        except DecodeError:
            continue
    return out


async def read_run_totals(log: Log, initial_equity: int) -> RunTotals:
    """The paper account's equity curve and rejection counts, from the log."""
    totals = RunTotals()
    points = []
    for env in await _decoded(log, topic(BROKER, "pnl.snapshots"), PnlSnapshot,
                              lambda r: r.key == _ACCOUNT_KEY):
        s = env.data
        points.append((env.ts, snapshot_equity(s, initial_equity), s.gross_exposure,
                       snapshot_capital(s, initial_equity)))
    # Made in processing order, which is not event-time order across instruments (the
    # projector reads partitions one after another): in time order for the daily closes.
    points.sort(key=lambda x: x[0])
    totals.samples = [(ts, equity, gross) for ts, equity, gross, _ in points]
    totals.capital = [capital for *_, capital in points]
    rejected_signals = await _decoded(log, topic(BROKER, "signals.rejected"), SignalRejected)
    for rejected in rejected_signals:
        totals.count_rejection(rejected.ts, rejected.data.reason_code, rejected.data.message)
    totals.signals_rejected = len(rejected_signals)
    totals.signals_validated = len(await read_events(log, topic(BROKER, "signals.validated")))
    for order in await _decoded(log, topic(BROKER, "orders.rejected"), OrderRejected):
        totals.count_rejection(order.ts, order.data.reason_code, order.data.message)
        totals.orders_rejected += 1
    totals.fills = [env.data for env in
                    await _decoded(log, topic(BROKER, "orders.filled"), OrderFilled)]
    totals.orders_cancelled = len(await read_events(log, topic(BROKER, "orders.cancelled")))
    stops = []
    for env in await read_events(log, topic(BROKER, "control")):
        d = env.data
        if isinstance(d, StrategyHalted | KillSwitchSet) and d.requested_by == STOP_BY \
                and d.active and d.market_ts is not None:
            scope = d.strategy_id if isinstance(d, StrategyHalted) else None
            stops.append(stop_record(d.market_ts, scope,
                                     d.error if isinstance(d, StrategyHalted) else d.reason))
    totals.stops = sorted(stops, key=lambda s: (s["time"], s["strategy_id"] or ""))
    return totals


def run_summary(system: SystemRun) -> dict[str, Any]:
    """Ticks, fills, round trips, P&L and performance of the paper account, plus timings;
    the keys of ``backtest --json`` in its order, then ``ticks_published``,
    ``strategies_invalid`` and the run's dead letters."""
    p = system.pipeline
    feed = system.feed
    published = feed.publisher.published if feed is not None else 0
    # a replay's: the file's ticks on the log (this run's and the runs' before it, whose
    # fills the figures count too), not the file's length: a run stopped early said 20000
    # ticks where it had published 7943
    ticks = getattr(feed, "upto", None)
    if ticks is None:
        ticks = published
    elapsed = system.stopped - system.started
    out: dict[str, Any] = {"ticks": ticks}
    handler = p.portfolios.get(BROKER) if p else None
    if p is not None and handler is not None:
        ledger = handler.ledger
        snap = handler.snapshot(None)
        initial = ledger.initial_cash
        totals = system.totals or RunTotals()
        # Counted over the fills in event-time order, as the backtest counts them: the
        # projector books them in log order, which is not time order after a catch-up.
        trips = handler.round_trips if totals.fills is None else round_trips(
            totals.fills, keep_trips=False)
        start_ns, end_ns = _span(system, totals)
        cols = _replayed(system)
        capital: list[int] | None = None  # a replay's curve is on today's capital throughout
        if cols is not None and totals.fills is not None:
            samples = equity_in_event_time(cols, totals.fills, initial)
        else:
            samples = [*totals.samples, (end_ns, ledger.equity(), snap.gross_exposure)]
            capital = [*totals.capital, initial]
        risk = p.risk.get(BROKER)
        # risk's decisions: on the log (every run's, as the fills), else this process's
        if totals.signals_validated is not None and totals.signals_rejected is not None:
            validated, rejected = totals.signals_validated, totals.signals_rejected
        else:
            validated, rejected = (risk.validated, risk.rejected) if risk else (0, 0)
        out.update(
            fills=snap.fills,
            round_trips=trips.closed,
            realized_pnl=rupees(snap.realized),
            unrealized_pnl=rupees(snap.unrealized),
            charges=rupees(snap.charges),
            net_pnl=rupees(snap.realized + snap.unrealized - snap.charges),
            **performance(samples=samples, initial_equity=initial, trips=trips,
                          start_ns=start_ns, end_ns=end_ns, capital=capital),
            open_positions=snap.open_positions,
            signals=validated + rejected,
            signals_rejected=rejected,
            orders=p.paper.orders if p.paper else 0,
            orders_rejected=totals.orders_rejected,
            orders_cancelled=totals.orders_cancelled,
            rejections=dict(sorted(totals.rejections.items())),
            rejection_messages={code: message for code, (_, message)
                                in sorted(totals.first_rejections.items())},
            strategies=strategy_figures(ledger, [s.id for s in p.runner.statuses()
                                                 if BROKER in s.brokers]
                                        if p.runner else ledger.strategies()),
            strategies_failed=strategies_failed(system),
            daily_loss_stops=totals.stops,
        )
    out.update(
        load_s=round(getattr(feed, "load_s", 0.0), 6),
        elapsed_s=round(elapsed, 6),
        ticks_per_s=round(published / elapsed) if elapsed > 0 else 0,
        ticks_published=published,
        # files that did not load (each message names the file and the field): they did not
        # run, so the figures lack them (the run exits 1, as for strategies_failed)
        strategies_invalid=[str(e) for e in p.config_errors] if p else [],
        # records set aside on the DLQ topics during this run (one letter per service that
        # failed on a record): handled, so the run still exits 0; `alpha-panda dlq list`
        dead_letters=sum(system.dead_letters.values()),
        dead_letters_by_topic=dict(system.dead_letters),
    )
    return out


def strategies_failed(system: SystemRun) -> list[str]:
    """Ids of the strategies the runner took out of service (they raised), sorted."""
    runner = system.pipeline.runner if system.pipeline else None
    return sorted(s.id for s in runner.statuses() if s.state == "FAILED") if runner else []


def _replayed(system: SystemRun) -> TickColumns | None:
    """The replay file's ticks the run published (all of them unless it was stopped early;
    None for another feed, or none published)."""
    feed = system.feed
    if feed is not None and hasattr(feed, "load"):
        cols: TickColumns = feed.load()  # already loaded: returns the columns
        upto = min(len(cols), getattr(feed, "upto", len(cols)))
        return cols.slice(0, upto) if upto else None
    return None


def equity_in_event_time(cols: TickColumns, fills: Sequence[OrderFilled], initial: int
                         ) -> list[tuple[int, int, int]]:
    """The account's (ts, equity, gross exposure) where the backtest samples them (the last
    tick of each step of its event-time grid: each day's last tick among them), from the
    fills in event-time order and the file's prices. The projector's snapshots are made in
    processing order: on a replay at full speed, one dated on a day may already hold
    another instrument's marks of the next, and a 3-day Sharpe from them was -82.90 where
    the backtest's, on the same fills, was -18.41."""
    ends, _ = sample_rows(cols.ts)
    ts, tokens, prices = cols.ts, cols.instrument_token, cols.last_price
    rows: dict[int, np.ndarray] = {}
    ledger = PositionLedger(initial, broker=BROKER)
    ordered = sorted(fills, key=lambda f: f.ts)
    k, out = 0, []
    for end in ends:
        at = int(ts[end - 1])
        while k < len(ordered) and ordered[k].ts <= at:
            ledger.apply_fill(ordered[k])
            k += 1
        for token in {p.instrument_token for p in ledger.positions(open_only=True)}:
            mine = rows.get(token)
            if mine is None:
                mine = rows[token] = np.flatnonzero(tokens == token)
            i = int(np.searchsorted(mine, end - 1, side="right")) - 1
            if i >= 0:
                ledger.mark(token, int(prices[mine[i]]))
        out.append((at, ledger.equity(), ledger.snapshot().gross_exposure))
    return out


def _span(system: SystemRun, totals: RunTotals) -> tuple[int, int]:
    """Event time of the first and last tick: the replay file's, else what the run saw."""
    cols = _replayed(system)
    if cols is not None:
        return int(cols.ts[0]), int(cols.ts[-1])
    handler = system.pipeline.portfolios[BROKER] if system.pipeline else None
    end = handler.as_of if handler is not None else 0
    start = totals.samples[0][0] if totals.samples else end
    return start, end
