"""Bands and levels: Bollinger, z-score, ATR, VWAP, rolling high/low.

O(1) per update (rolling high/low amortised O(1) with a monotonic deque).
"""

from __future__ import annotations

import math
from collections import deque

from alpha_panda.strategy.indicators.moving import _Window


class _MeanVar:
    """Rolling mean and population variance over a window (exact sums for ints)."""

    __slots__ = ("_q", "_s", "_w")

    def __init__(self, period: int) -> None:
        self._w = _Window(period)
        self._s: float = 0
        self._q: float = 0

    def push(self, x: float) -> bool:
        old = self._w.push(x)
        self._s += x - old
        self._q += x * x - old * old
        return self._w.full

    def mean_std(self) -> tuple[float, float]:
        n = self._w.period
        mean = self._s / n
        var = max(0.0, self._q / n - mean * mean)
        return mean, math.sqrt(var)


class Bollinger:
    """Middle = SMA(period); upper/lower = middle ± ``k`` population standard deviations."""

    __slots__ = ("_mv", "k", "lower", "middle", "std", "upper")

    def __init__(self, period: int = 20, k: float = 2.0) -> None:
        self._mv = _MeanVar(period)
        self.k = k
        self.middle: float | None = None
        self.upper: float | None = None
        self.lower: float | None = None
        self.std: float | None = None

    def update(self, x: float) -> float | None:
        if self._mv.push(x):
            mean, std = self._mv.mean_std()
            self.middle, self.std = mean, std
            self.upper = mean + self.k * std
            self.lower = mean - self.k * std
        return self.middle

    @property
    def ready(self) -> bool:
        return self.middle is not None


class ZScore:
    """(x − mean) / std over the last ``period`` values (0 when the window is flat)."""

    __slots__ = ("_mv", "value")

    def __init__(self, period: int) -> None:
        self._mv = _MeanVar(period)
        self.value: float | None = None

    def update(self, x: float) -> float | None:
        if self._mv.push(x):
            mean, std = self._mv.mean_std()
            self.value = 0.0 if std == 0 else (x - mean) / std
        return self.value

    @property
    def ready(self) -> bool:
        return self.value is not None


class ATR:
    """Wilder's average true range. ``update(high, low, close)``; for ticks pass the price
    three times (true range is then the move from the previous close). The first ATR is
    the mean of the first ``period`` true ranges (the first has no previous close)."""

    __slots__ = ("_acc", "_n", "_prev", "period", "value")

    def __init__(self, period: int = 14) -> None:
        if period < 1:
            raise ValueError(f"period must be >= 1, got {period}")
        self.period = period
        self._prev: float | None = None
        self._n = 0
        self._acc = 0.0
        self.value: float | None = None

    def update(self, high: float, low: float, close: float) -> float | None:
        prev = self._prev
        tr = high - low if prev is None else max(high - low, abs(high - prev), abs(low - prev))
        self._prev = close
        n = self.period
        if self.value is None:
            self._n += 1
            self._acc += tr
            if self._n == n:
                self.value = self._acc / n
        else:
            self.value = (self.value * (n - 1) + tr) / n
        return self.value

    @property
    def ready(self) -> bool:
        return self.value is not None


class VWAP:
    """Volume-weighted average price since the last ``reset`` (e.g. each session).

    Zero-volume updates do not move it; ``value`` is None until some volume is seen.
    """

    __slots__ = ("_pv", "_v", "value")

    def __init__(self) -> None:
        self._pv: float = 0
        self._v: float = 0
        self.value: float | None = None

    def update(self, price: float, volume: float) -> float | None:
        if volume > 0:
            self._pv += price * volume
            self._v += volume
            self.value = self._pv / self._v
        return self.value

    def reset(self) -> None:
        self._pv = self._v = 0
        self.value = None

    @property
    def ready(self) -> bool:
        return self.value is not None


class _RollingExtreme:
    __slots__ = ("_n", "_q", "_sign", "period", "value")

    def __init__(self, period: int, sign: int) -> None:
        if period < 1:
            raise ValueError(f"period must be >= 1, got {period}")
        self.period = period
        self._q: deque[tuple[int, float]] = deque()
        self._n = 0
        self._sign = sign
        self.value: float | None = None

    def update(self, x: float) -> float | None:
        q, s, n = self._q, self._sign, self._n
        # Values that can never again be the extreme leave the back of the queue.
        while q and (q[-1][1] - x) * s <= 0:
            q.pop()
        q.append((n, x))
        if q[0][0] <= n - self.period:
            q.popleft()
        self._n = n + 1
        if self._n >= self.period:
            self.value = q[0][1]
        return self.value

    @property
    def ready(self) -> bool:
        return self.value is not None


class RollingHigh(_RollingExtreme):
    """Highest of the last ``period`` values."""

    def __init__(self, period: int) -> None:
        super().__init__(period, 1)


class RollingLow(_RollingExtreme):
    """Lowest of the last ``period`` values."""

    def __init__(self, period: int) -> None:
        super().__init__(period, -1)
