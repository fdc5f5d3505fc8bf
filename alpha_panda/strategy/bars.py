"""Time bars built from ticks: OHLCV over fixed, epoch-aligned intervals."""

from __future__ import annotations

from alpha_panda.strategy.base import Bar

NS_PER_SECOND = 1_000_000_000


class BarBuilder:
    """Builds bars of ``interval_s`` seconds for one instrument.

    A bar ``[start, start + interval)`` closes when the first tick at or after its end
    arrives (no timer: the backtest and the live pipeline then close bars identically).
    Volume sums ``last_quantity`` when the feed gives it, else ``volume``.
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
        start = ts - ts % self._interval
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
