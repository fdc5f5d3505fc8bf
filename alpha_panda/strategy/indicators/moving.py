"""Moving averages: SMA, EMA, WMA. O(1) per update; ``value`` is None until warm."""

from __future__ import annotations


class _Window:
    """Fixed-length ring of the last ``period`` inputs."""

    __slots__ = ("_i", "_ring", "count", "period")

    def __init__(self, period: int) -> None:
        if period < 1:
            raise ValueError(f"period must be >= 1, got {period}")
        self.period = period
        self._ring: list[float] = [0] * period
        self._i = 0
        self.count = 0

    def push(self, x: float) -> float:
        """Store ``x``; return the value it displaced (0 while filling)."""
        old = self._ring[self._i]
        self._ring[self._i] = x
        self._i = (self._i + 1) % self.period
        self.count += 1
        return old

    @property
    def full(self) -> bool:
        return self.count >= self.period


class SMA:
    """Simple moving average of the last ``period`` values.

    The running ``sum`` stays exact for int inputs (paise), so two SMAs can be compared
    exactly via ``sum``; ``value`` is the float mean.
    """

    __slots__ = ("_w", "sum", "value")

    def __init__(self, period: int) -> None:
        self._w = _Window(period)
        self.sum: float = 0
        self.value: float | None = None

    def update(self, x: float) -> float | None:
        self.sum += x - self._w.push(x)
        if self._w.full:
            self.value = self.sum / self._w.period
        return self.value

    @property
    def ready(self) -> bool:
        return self.value is not None


class EMA:
    """Exponential moving average, ``alpha = 2 / (period + 1)``, seeded with the SMA of the
    first ``period`` values (ready from then on)."""

    __slots__ = ("_n", "_seed", "alpha", "period", "value")

    def __init__(self, period: int) -> None:
        if period < 1:
            raise ValueError(f"period must be >= 1, got {period}")
        self.period = period
        self.alpha = 2.0 / (period + 1)
        self._n = 0
        self._seed = 0.0
        self.value: float | None = None

    def update(self, x: float) -> float | None:
        if self.value is not None:
            self.value += self.alpha * (x - self.value)
            return self.value
        self._n += 1
        self._seed += x
        if self._n == self.period:
            self.value = self._seed / self.period
        return self.value

    @property
    def ready(self) -> bool:
        return self.value is not None


class WMA:
    """Linearly weighted moving average: the newest value weighs ``period``, the oldest 1."""

    __slots__ = ("_den", "_num", "_sum", "_w", "value")

    def __init__(self, period: int) -> None:
        self._w = _Window(period)
        self._sum: float = 0
        self._num: float = 0
        self._den = period * (period + 1) // 2
        self.value: float | None = None

    def update(self, x: float) -> float | None:
        n = self._w.period
        full_before = self._w.full
        old = self._w.push(x)
        if full_before:
            # Every weight drops by one (minus the plain sum), the new value enters at n.
            self._num += n * x - self._sum
            self._sum += x - old
        else:
            self._num += self._w.count * x
            self._sum += x
        if self._w.full:
            self.value = self._num / self._den
        return self.value

    @property
    def ready(self) -> bool:
        return self.value is not None
