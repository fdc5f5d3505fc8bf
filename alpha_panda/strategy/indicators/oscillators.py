"""Oscillators: RSI (Wilder) and MACD. O(1) per update; ``value`` is None until warm."""

from __future__ import annotations

from alpha_panda.strategy.indicators.moving import EMA


class RSI:
    """Wilder's RSI over ``period`` changes.

    The first average gain/loss is the plain mean of the first ``period`` changes; after
    that ``avg = (avg * (period - 1) + change) / period``. Ready after ``period + 1``
    values. No losses gives 100, no movement at all gives 50.
    """

    __slots__ = ("_gain", "_loss", "_n", "_prev", "period", "value")

    def __init__(self, period: int = 14) -> None:
        if period < 1:
            raise ValueError(f"period must be >= 1, got {period}")
        self.period = period
        self._prev: float | None = None
        self._n = 0
        self._gain = 0.0
        self._loss = 0.0
        self.value: float | None = None

    def update(self, x: float) -> float | None:
        prev = self._prev
        self._prev = x
        if prev is None:
            return None
        change = x - prev
        gain = change if change > 0 else 0.0
        loss = -change if change < 0 else 0.0
        n = self.period
        if self._n < n:
            self._n += 1
            self._gain += gain
            self._loss += loss
            if self._n < n:
                return None
            self._gain /= n
            self._loss /= n
        else:
            self._gain = (self._gain * (n - 1) + gain) / n
            self._loss = (self._loss * (n - 1) + loss) / n
        if self._loss == 0:
            self.value = 50.0 if self._gain == 0 else 100.0
        else:
            self.value = 100.0 - 100.0 / (1.0 + self._gain / self._loss)
        return self.value

    @property
    def ready(self) -> bool:
        return self.value is not None


class MACD:
    """MACD line = EMA(fast) − EMA(slow); signal = EMA(signal) of the MACD line;
    ``histogram`` = line − signal. ``value`` (the line) is ready once EMA(slow) is."""

    __slots__ = ("_fast", "_signal", "_slow", "histogram", "signal", "value")

    def __init__(self, fast: int = 12, slow: int = 26, signal: int = 9) -> None:
        if fast >= slow:
            raise ValueError(f"fast ({fast}) must be smaller than slow ({slow})")
        self._fast = EMA(fast)
        self._slow = EMA(slow)
        self._signal = EMA(signal)
        self.value: float | None = None
        self.signal: float | None = None
        self.histogram: float | None = None

    def update(self, x: float) -> float | None:
        f = self._fast.update(x)
        s = self._slow.update(x)
        if f is None or s is None:
            return None
        self.value = f - s
        self.signal = self._signal.update(self.value)
        self.histogram = None if self.signal is None else self.value - self.signal
        return self.value

    @property
    def ready(self) -> bool:
        return self.signal is not None
