"""Performance figures of a backtest: round trips, drawdown, Sharpe, exposure.

Money stays in int paise here; only ratios (win rate, Sharpe, exposure) are floats.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from alpha_panda.portfolio.ledger import Position

NS_PER_S: Final = 1_000_000_000
TRADING_SECONDS_PER_YEAR: Final = 252 * 375 * 60
"""252 NSE sessions of 375 minutes (09:15–15:30): the basis of the annualised Sharpe."""


@dataclass(frozen=True, slots=True)
class RoundTrip:
    """A position of one (strategy, instrument) from flat back to flat. Net of charges."""

    strategy_id: str
    instrument_token: int
    opened_ns: int
    closed_ns: int
    quantity: int  # largest absolute size held; sign = direction
    pnl: int  # realized over the trip minus its charges, paise


class RoundTripTracker:
    """Watches positions fill by fill and closes a round trip whenever one returns to flat
    (a fill that crosses zero closes one trip and opens the next).

    ``closed`` and ``won`` count every trip; ``trips`` lists them only with ``keep_trips``
    (a backtest reports each one; a live portfolio, running for days, only counts)."""

    def __init__(self, *, keep_trips: bool = True) -> None:
        self._open: dict[tuple[str, int], tuple[int, int, int, int]] = {}
        self._keep = keep_trips
        self.trips: list[RoundTrip] = []
        self.closed = 0
        self.won = 0

    @property
    def win_rate(self) -> float:
        """Share of closed trips with a profit net of charges (``win_rate(trips)``)."""
        return self.won / self.closed if self.closed else 0.0

    def after_fill(self, pos: Position, before_qty: int, ts: int, fill_charges: int) -> None:
        key = (pos.strategy_id, pos.instrument_token)
        after = pos.quantity
        state = self._open.get(key)
        if state is not None and (after == 0 or (after > 0) != (before_qty > 0)):
            opened, realized0, charges0, peak = state
            # Charges of a crossing fill all go to the closing trip (one fill, one cost).
            pnl = (pos.realized - realized0) - (pos.charges - charges0)
            self.closed += 1
            self.won += pnl > 0
            if self._keep:
                self.trips.append(RoundTrip(pos.strategy_id, pos.instrument_token, opened, ts,
                                            peak, pnl))
            del self._open[key]
            state = None
        if after != 0:
            if state is None:
                charges = pos.charges - (fill_charges if before_qty == 0 else 0)
                self._open[key] = (ts, pos.realized, charges, after)
            elif abs(after) > abs(state[3]):
                self._open[key] = (*state[:3], after)


def max_drawdown(equity: Sequence[int]) -> tuple[int, float]:
    """Largest fall from a running peak: (paise, fraction of that peak)."""
    peak = None
    worst = 0
    worst_frac = 0.0
    for e in equity:
        if peak is None or e > peak:
            peak = e
        dd = peak - e
        if dd > worst:
            worst = dd
            worst_frac = dd / peak if peak > 0 else 0.0
    return worst, worst_frac


SHARPE_MIN_INTERVAL_S: Final = 60.0


def sharpe(equity: Sequence[int], interval_s: float) -> float | None:
    """Annualised Sharpe of equity returns (risk-free 0), or None with too little data.

    ``equity`` is sampled every ``interval_s``; returns are taken over steps of at least
    one minute (finer steps would annualise tick noise) and need three or more.
    """
    if interval_s <= 0:
        return None
    stride = max(1, math.ceil(SHARPE_MIN_INTERVAL_S / interval_s))
    points = list(equity[::stride])
    rets = [(b - a) / a for a, b in itertools.pairwise(points) if a > 0]
    if len(rets) < 3:
        return None
    mean = sum(rets) / len(rets)
    var = sum((r - mean) ** 2 for r in rets) / (len(rets) - 1)
    if var <= 0:
        return None
    return mean / math.sqrt(var) * math.sqrt(TRADING_SECONDS_PER_YEAR / (stride * interval_s))


def win_rate(trips: Sequence[RoundTrip]) -> float:
    return sum(1 for t in trips if t.pnl > 0) / len(trips) if trips else 0.0
