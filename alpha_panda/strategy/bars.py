"""Time bars built from ticks: OHLCV over fixed intervals on a grid from 09:15 IST.

Bars line up as NSE's and Kite's candles do, from the 09:15 open: hour bars run 09:15-10:15,
10:15-11:15, ... (the day's last from 15:15 to the close), 30-minute bars 09:15-09:45, ...,
10-minute bars 09:15-09:25, ..., a day bar from one 09:15 to the next. On the epoch's grid,
as bars were built before, the first hour bar held the open's quarter hour alone and the
next ran 09:30-10:30. Every length that divides a day (1, 3, 5, 10, 15, 30 and 60 minutes,
a day: Kite's) starts at 09:15 each day; another goes on along the grid across days.
"""

from __future__ import annotations

from typing import Final

from alpha_panda.domain.clock import IST_OFFSET_NS
from alpha_panda.strategy.base import Bar

NS_PER_SECOND = 1_000_000_000
ANCHOR_NS: Final = (9 * 3600 + 15 * 60) * NS_PER_SECOND - IST_OFFSET_NS
"""09:15 IST on 1970-01-01, as event time: where the bars' grid starts."""


class BarBuilder:
    """Builds bars of ``interval_s`` seconds for one instrument.

    A bar ``[start, start + interval)`` closes when the first tick at or after its end
    arrives (no timer: the backtest and the live pipeline then close bars identically).
    Volume sums what traded in each tick: ``last_quantity`` when the feed gives it, else
    ``volume`` (``MarketTick``).
    """

    __slots__ = ("_c", "_h", "_interval", "_l", "_n", "_o", "_start", "_token", "_v")

    def __init__(self, instrument_token: int, interval_s: int) -> None:
        if interval_s <= 0:
            raise ValueError("bar interval must be positive")
        self._interval = interval_s * NS_PER_SECOND
        self._token = instrument_token
        self._start = -1
        self._o = self._h = self._l = self._c = self._v = self._n = 0

    def update(self, ts: int, price: int, quantity: int) -> Bar | None:
        """Add one tick; returns the bar this tick closed, if any."""
        start = ts - (ts - ANCHOR_NS) % self._interval
        closed = None
        if start != self._start:
            if self._n:
                closed = self._bar()
            self._start = start
            self._o = self._h = self._l = self._c = price
            self._v = quantity
            self._n = 1
            return closed
        if price > self._h:
            self._h = price
        elif price < self._l:
            self._l = price
        self._c = price
        self._v += quantity
        self._n += 1
        return None

    def flush(self) -> Bar | None:
        """The bar in progress, if any (e.g. at the end of a backtest)."""
        if not self._n:
            return None
        bar = self._bar()
        self._n = 0
        self._start = -1
        return bar

    def _bar(self) -> Bar:
        return Bar(
            instrument_token=self._token, start_ns=self._start,
            end_ns=self._start + self._interval, open=self._o, high=self._h, low=self._l,
            close=self._c, volume=self._v, ticks=self._n,
        )
