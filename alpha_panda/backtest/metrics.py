"""Performance figures of a run: round trips, win rates, drawdown, Sharpe, exposure.

``performance`` computes them for both ``backtest --json`` and ``run --json`` (one code
path); ``FIGURES`` says what each one is, for the ``--help`` text and the HTML report.
Money stays in int paise here; only ratios (win rates, Sharpe, exposure) are floats.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final, TypeVar

from alpha_panda.domain.clock import (
    DAY_NS,
    ist_date,
    ist_day_number,
    ist_ns,
    ist_time,
)
from alpha_panda.domain.events import NO_CHARGES, OrderFilled
from alpha_panda.domain.values import Product, to_rupees
from alpha_panda.execution.market import MarketCalendar
from alpha_panda.portfolio.ledger import Position, PositionLedger

NS_PER_S: Final = 1_000_000_000
NS_PER_DAY: Final = DAY_NS
# a trading day is an IST calendar date (``ist_day_number``)
TRADING_DAYS_PER_YEAR: Final = 252
"""NSE sessions a year: the basis of the annualised Sharpe (daily returns × √252)."""
T = TypeVar("T")

FIGURES: Final = {
    "round_trips": "closed round trips: a position of one (strategy, instrument) from flat "
                   "back to flat (a fill that crosses zero closes one and opens the next; a "
                   "bracket's exit and the re-entry made at its tick are two)",
    "realized_pnl": "realized P&L of closed quantity, before charges",
    "charges": "brokerage, STT, exchange, SEBI, stamp duty and GST on every fill (a CNC buy "
               "and sell of one day at intraday rates), DP on CNC sells from holdings",
    "net_pnl": "realized + unrealized - charges",
    "win_rate": "share of round trips whose P&L net of their charges is > 0 (a trip that "
                "made Rs 0.50 and paid Rs 27 in charges is a loss); null (n/a) without a "
                "closed round trip",
    "gross_win_rate": "share of round trips whose P&L before charges is > 0 (null without "
                      "one)",
    "max_drawdown": "largest fall of account equity (cash + marked positions, net of charges) "
                    "from its running high, starting from initial_equity, over the sampled "
                    "equity curve (backtest: ~1,000 event-time samples, each day's close and "
                    "the end; run: a point per P&L snapshot and the end), net of capital "
                    "added or withdrawn (a fall "
                    "of net P&L); max_drawdown_pct: that fall in % of the equity at the high",
    "sharpe": "annualised Sharpe ratio of DAILY equity returns (close of each IST trading "
              "day vs the previous close, the first vs initial_equity; capital added or "
              "withdrawn is neither a return nor a loss: a day's return is its change of net "
              "P&L over the previous close with that day's capital; risk-free rate 0; "
              "mean / sample stdev x sqrt(252)); null (n/a) with fewer than 2 trading days "
              "or returns that never vary",
    "initial_equity": "the account's capital: paper.initial_cash per strategy (run: strategies "
                      "added or removed between runs on one data dir add or withdraw theirs, "
                      "and it is the capital at the end, as if there from the start, so that "
                      "final_equity - initial_equity is the net P&L)",
    "final_equity": "equity at the end: cash + marked positions",
    "net_deposits": "capital added (+) or withdrawn (-) over the equity curve (run: strategies "
                    "added to or removed from the account between runs; backtest: 0)",
    "exposure": "share of NSE session time (09:15-15:30 IST on trading days), first tick "
                "to last, during which the account held any open position (exact, from fill "
                "times; nights and weekends count in neither)",
    "max_gross_exposure": "largest sum of |quantity| x mark price over open positions, over "
                          "the sampled equity curve",
    "rejections": "signals and orders rejected, by reason code (risk's and the exchange's)",
    "rejection_messages": "for each reason code, the message of its first rejection (what to fix)",
    "strategies": "per strategy: fills, realized_pnl, unrealized_pnl, charges, net_pnl and "
                  "open_positions (the account's figures, strategy by strategy)",
    "strategies_failed": "strategies taken out of service because they raised; the run goes "
                         "on without them and exits with status 1",
    "daily_loss_stops": "each daily-loss stop (risk: daily_loss_flatten): strategy_id (null: "
                        "the account's), its time (IST) and what it says; the strategy was "
                        "halted for the rest of that day and its positions closed at market",
}


def stop_record(ts: int, scope: str | None, why: str) -> dict[str, Any]:
    """One entry of ``daily_loss_stops``."""
    return {"strategy_id": scope, "time": ist_time(ts), "message": why}


@dataclass(frozen=True, slots=True)
class RoundTrip:
    """A position of one (strategy, instrument, product) from flat back to flat."""

    strategy_id: str
    instrument_token: int
    opened_ns: int
    closed_ns: int
    quantity: int  # largest absolute size held; sign = direction
    pnl: int  # realized over the trip minus its charges, paise
    gross_pnl: int  # realized over the trip, before charges, paise
    product: Product = Product.CNC


class RoundTripTracker:
    """Watches positions fill by fill and closes a round trip whenever one returns to flat
    (a fill that crosses zero closes one trip and opens the next). Also times how long the
    account holds any position (``time_in_market``).

    ``closed``, ``won`` and ``won_gross`` count every trip; ``trips`` lists them only with
    ``keep_trips`` (a backtest reports each one; a live portfolio, running for days, only
    counts). Fills must come in event-time order."""

    def __init__(self, *, keep_trips: bool = True) -> None:
        self._open: dict[tuple[str, int, Product], tuple[int, int, int, int]] = {}
        self._keep = keep_trips
        self.trips: list[RoundTrip] = []
        self.closed = 0
        self.won = 0
        self.won_gross = 0
        # Closed (opened, closed) spans of any position: fills of different instruments can
        # come out of time order (a pipeline consumes partitions one after another), so the
        # account's time in market is their union, merged from time to time.
        self._spans: list[tuple[int, int]] = []
        self._merged = 0

    @property
    def win_rate(self) -> float:
        """Share of closed trips with a profit net of charges (``win_rate(trips)``)."""
        return self.won / self.closed if self.closed else 0.0

    @property
    def gross_win_rate(self) -> float:
        """Share of closed trips with a profit before charges."""
        return self.won_gross / self.closed if self.closed else 0.0

    def time_in_market(self, end_ns: int) -> int:
        """Nanoseconds during which the account held any position, up to ``end_ns`` (the
        positions still open count as held until then)."""
        return sum(b - a for a, b in self.held(end_ns))

    def held(self, end_ns: int) -> list[tuple[int, int]]:
        """The disjoint spans, in order, during which the account held any position."""
        return _merge([*self._spans, *((o[0], end_ns) for o in self._open.values())])

    def _add_span(self, start: int, end: int) -> None:
        self._spans.append((start, end))
        if len(self._spans) > 2 * self._merged + 64:
            self._spans = _merge(self._spans)
            self._merged = len(self._spans)

    def after_fill(self, pos: Position, before_qty: int, ts: int, fill_charges: int) -> None:
        key = (pos.strategy_id, pos.instrument_token, pos.product)  # as the ledger's positions
        after = pos.quantity
        state = self._open.get(key)
        if state is not None and (after == 0 or (after > 0) != (before_qty > 0)):
            opened, realized0, charges0, peak = state
            gross = pos.realized - realized0
            # Charges of a crossing fill all go to the closing trip (one fill, one cost).
            pnl = gross - (pos.charges - charges0)
            self.closed += 1
            self.won += pnl > 0
            self.won_gross += gross > 0
            if self._keep:
                self.trips.append(RoundTrip(pos.strategy_id, pos.instrument_token, opened, ts,
                                            peak, pnl, gross, pos.product))
            del self._open[key]
            self._add_span(opened, ts)
            state = None
        if after != 0:
            if state is None:
                charges = pos.charges - (fill_charges if before_qty == 0 else 0)
                self._open[key] = (ts, pos.realized, charges, after)
            elif abs(after) > abs(state[3]):
                self._open[key] = (*state[:3], after)


def fill_order(fill: OrderFilled) -> tuple[int, str, int, str]:
    """Event-time order of fills: time, then order id and the order's own fill sequence
    (cumulative quantity), then fill id: a stable order whatever order they were made in."""
    return (fill.ts or 0, fill.order_id, fill.cumulative_quantity, fill.fill_id)


def round_trips(fills: Sequence[OrderFilled], *, keep_trips: bool = True) -> RoundTripTracker:
    """The round trips of ``fills`` taken in event-time order (``fill_order``).

    A pipeline's fills of one instrument can come off the log out of time order (a paper
    engine catching up on an order processed late), and so can a backtest's at one event
    time: counting trips in the order fills were made would make the two disagree on the
    same fills. Fills at the same event time of one position follow order ids, not the
    order they happened in, but for the venue's own orders (a bracket's exit, the square-off,
    a flatten): those fill as the tick comes, before the strategy acts on it, so of a
    position held they go first (a bracket's target and the re-entry the strategy made at
    its tick are two trips, not one), and of a flat position last (an entry and its own leg
    filled at one tick: the entry opened what the leg closed)."""
    tracker = RoundTripTracker(keep_trips=keep_trips)
    ledger = PositionLedger(0, keep_cash=False)
    for _, group in itertools.groupby(sorted(fills, key=fill_order), key=lambda f: f.ts or 0):
        batch = list(group)
        if len(batch) > 1:  # (stable: order ids within each side of the split)
            held = {(f.strategy_id, f.instrument_token, f.product): ledger.position(
                f.strategy_id, f.instrument_token, f.product).quantity != 0 for f in batch}
            batch.sort(key=lambda f: (f.origin == "signal")
                       == held[(f.strategy_id, f.instrument_token, f.product)])
        for fill in batch:
            pos = ledger.position(fill.strategy_id, fill.instrument_token, fill.product)
            before = pos.quantity
            ledger.apply_fill(fill)
            charges = fill.charges
            tracker.after_fill(pos, before, fill.ts or 0,
                               0 if charges is NO_CHARGES else charges.total)
    return tracker


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Disjoint spans covering the same time as ``spans``, in order."""
    out: list[tuple[int, int]] = []
    for a, b in sorted(spans):
        if out and a <= out[-1][1]:
            if b > out[-1][1]:
                out[-1] = (out[-1][0], b)
        elif b > a:
            out.append((a, b))
    return out


def session_time(spans: Sequence[tuple[int, int]], calendar: MarketCalendar) -> int:
    """Nanoseconds of ``spans`` within NSE's sessions (09:15-15:30 IST on trading days)."""
    total = 0
    for a, b in spans:
        day, last = ist_date(a), ist_date(b)
        while day <= last:
            if calendar.is_trading_day(day):
                lo = max(a, ist_ns(day, calendar.open))
                hi = min(b, ist_ns(day, calendar.close))
                total += max(0, hi - lo)
            day += timedelta(days=1)
    return total


def exposure(trips: RoundTripTracker, start_ns: int, end_ns: int,
             calendar: MarketCalendar | None = None) -> float:
    """Share of the session time from the first tick to the last during which the account
    held a position (nights, weekends and holidays count in neither); of event time when no
    tick is in a session (a synthetic file at other hours)."""
    held = trips.held(end_ns)
    calendar = calendar or MarketCalendar.load()
    sessions = session_time([(start_ns, end_ns)], calendar)
    if sessions > 0:
        return min(1.0, session_time(held, calendar) / sessions)
    span = end_ns - start_ns
    return min(1.0, sum(b - a for a, b in held) / span) if span > 0 else 0.0


def max_drawdown(equity: Sequence[int],
                 capital: Sequence[int] | None = None) -> tuple[int, float]:
    """Largest fall from a running peak: (paise, fraction of the equity at that peak).

    ``capital``: the account's capital at each point of ``equity`` (None: the same at all).
    The fall is then of equity less capital, the net P&L: capital added or withdrawn (a
    strategy added to or removed from the account between runs) is not a gain or a loss.
    A ₹10 lakh strategy removed once made a ₹1,364 loss a ₹10,00,436 drawdown."""
    peak = 0
    at = 0  # the equity at the peak
    worst = 0
    worst_frac = 0.0
    for i, e in enumerate(equity):
        value = e if capital is None else e - capital[i]
        if i == 0 or value > peak:
            peak, at = value, e
        dd = peak - value
        if dd > worst:
            worst = dd
            worst_frac = dd / at if at > 0 else 0.0
    return worst, worst_frac


trading_day = ist_day_number
"""The IST calendar date of an event time, as a day number (the clock's)."""


def daily_closes(points: Sequence[tuple[int, T]]) -> list[T]:
    """The value at the last point of each IST trading day; ``points`` (ts, value) by ts."""
    closes: dict[int, T] = {}
    for ts, value in points:
        closes[trading_day(ts)] = value
    return list(closes.values())


def sharpe(points: Sequence[tuple[int, int]], initial_equity: int,
           capital: Sequence[int] | None = None) -> float | None:
    """Annualised Sharpe of daily equity returns (risk-free 0), or None below two days.

    ``points`` are (ts, equity) in time order; each day's return is its close over the
    previous close (the first day's over ``initial_equity``). Intraday returns would
    annualise noise: 17 minutes of per-minute returns once gave -2,925.

    ``capital``: the account's capital at each point (None: ``initial_equity`` at all).
    A day's return is then its change of net P&L (equity less capital) over the previous
    close plus the capital added since: time-weighted, as a fund's unit price, so money
    added or withdrawn is neither a return nor a loss, and each day's return is on the
    money at stake that day. With no change of capital, it is the close over the previous.
    """
    caps = [initial_equity] * len(points) if capital is None else capital
    # (equity, capital) at each day's close, from a net P&L of 0 at the start
    closes = [(initial_equity, initial_equity),
              *daily_closes([(ts, (e, caps[i])) for i, (ts, e) in enumerate(points)])]
    rets = []
    for (e0, c0), (e1, c1) in itertools.pairwise(closes):
        base = c1 + e0 - c0  # the previous close, with the capital added since
        if base > 0:
            rets.append((e1 - c1 - (e0 - c0)) / base)
    if len(rets) < 2:
        return None
    mean = sum(rets) / len(rets)
    var = sum((r - mean) ** 2 for r in rets) / (len(rets) - 1)
    if var <= 0:
        return None
    return mean / math.sqrt(var) * math.sqrt(TRADING_DAYS_PER_YEAR)


def win_rate(trips: Sequence[RoundTrip]) -> float:
    """Share of ``trips`` with a profit net of charges."""
    return sum(1 for t in trips if t.pnl > 0) / len(trips) if trips else 0.0


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def _rupees(paise: int) -> str:
    return str(to_rupees(paise))


def performance(*, samples: Sequence[tuple[int, int, int]], initial_equity: int,
                trips: RoundTripTracker, start_ns: int, end_ns: int,
                capital: Sequence[int] | None = None) -> dict[str, Any]:
    """The figures of ``FIGURES`` that need more than the ledger, in JSON form.

    ``samples``: (ts, account equity, gross exposure) in paise, in time order, the last one
    at the end of the run; ``start_ns``/``end_ns``: the first and last tick's event time.
    ``capital``: the account's capital at each sample, the last one ``initial_equity``
    (None: ``initial_equity`` throughout, as in a backtest). The curve starts from a net
    P&L of 0 on the first sample's capital; drawdown and Sharpe are net of its changes.
    """
    equity = [e for _, e, _ in samples]
    caps = list(capital) if capital is not None and samples else None
    start = caps[0] if caps else initial_equity
    curve = [start, *equity]
    dd, dd_frac = max_drawdown(curve, None if caps is None else [start, *caps])
    return {
        # null without a closed trip (none to judge), as sharpe is without two days
        "win_rate": round(trips.win_rate, 6) if trips.closed else None,
        "gross_win_rate": round(trips.gross_win_rate, 6) if trips.closed else None,
        "max_drawdown": _rupees(dd),
        "max_drawdown_pct": round(100 * dd_frac, 6),
        "sharpe": _round(sharpe([(t, e) for t, e, _ in samples], initial_equity, caps)),
        "exposure": round(exposure(trips, start_ns, end_ns), 6),
        "max_gross_exposure": _rupees(max((g for _, _, g in samples), default=0)),
        "initial_equity": _rupees(initial_equity),
        "final_equity": _rupees(curve[-1]),
        "net_deposits": _rupees(caps[-1] - caps[0] if caps else 0),
    }
