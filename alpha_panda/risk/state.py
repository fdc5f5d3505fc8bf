"""Shared risk state behind a small port, so several risk managers can share one account:
the order-rate counters and the kill switch.

``RiskStateStore.acquire`` is the one atomic operation: count the orders already
recorded in each rate window ending at the order's event time and, only if every window
has room, record the order in all of them. It is idempotent per ``member`` (the signal
id): a redelivered signal neither counts twice nor gets rejected by its own earlier slot.
``InMemoryRiskStateStore`` serves one process; ``alpha_panda.adapters.redis.risk_state``
serves several, atomically, on Redis.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

KEEP_WINDOWS = 10
"""Entries older than this many windows are dropped: how late an order's event time may be."""


@dataclass(frozen=True, slots=True)
class RateWindow:
    """At most ``limit`` orders in any window of ``window_us`` (a sliding window).

    Orders of several instances reach the store slightly out of event-time order, so an
    order at ``ts`` is admitted only if fewer than ``limit`` orders lie in the open span
    (ts − window, ts + window): every window that could contain it then has room. In time
    order this is the usual sliding window. ``bucket`` names a calendar bucket instead
    (the IST date for a per-day limit): the window is the whole bucket.
    """

    code: str
    limit: int
    window_us: int
    bucket: str | None = None

    def span(self, ts_us: int) -> tuple[int, int]:
        """The open interval of event times an order at ``ts_us`` is counted against."""
        return ts_us - self.window_us, ts_us + self.window_us


@runtime_checkable
class RiskStateStore(Protocol):
    """Atomic rate-limit counters of one or more broker accounts."""

    def acquire(
        self, account: str, member: str, ts_us: int, windows: Sequence[RateWindow]
    ) -> str | None:
        """Record ``member`` at ``ts_us`` in every window and return None, or return the
        code of the first full window and record nothing."""
        ...

    def count(self, account: str, window: RateWindow, ts_us: int) -> int:
        """Orders recorded in the window (ts_us − window, ts_us] (for status pages and tests)."""
        ...

    def kill_switch(self, account: str) -> bool:
        """Whether the account's kill switch is on."""
        ...

    def set_kill_switch(self, account: str, active: bool) -> None:
        """Turn the account's kill switch on or off (for every instance sharing the store)."""
        ...


def window_key(account: str, window: RateWindow) -> str:
    """The storage key of one window's entries (shared by every implementation)."""
    suffix = f"{window.code}:{window.bucket}" if window.bucket else window.code
    return f"risk:{account}:rate:{suffix}"


class InMemoryRiskStateStore:
    """``RiskStateStore`` for one process (backtests, the embedded pipeline, tests)."""

    def __init__(self) -> None:
        self._times: dict[str, list[int]] = {}
        self._members: dict[str, dict[str, int]] = {}
        self._killed: set[str] = set()

    def kill_switch(self, account: str) -> bool:
        return account in self._killed

    def set_kill_switch(self, account: str, active: bool) -> None:
        if active:
            self._killed.add(account)
        else:
            self._killed.discard(account)

    def acquire(
        self, account: str, member: str, ts_us: int, windows: Sequence[RateWindow]
    ) -> str | None:
        keys = [window_key(account, w) for w in windows]
        if any(member in self._members.get(k, {}) for k in keys):
            return None
        for key, w in zip(keys, windows, strict=True):
            if self._count(key, w, ts_us) >= w.limit:
                return w.code
        for key, w in zip(keys, windows, strict=True):
            insort(self._times.setdefault(key, []), ts_us)
            self._members.setdefault(key, {})[member] = ts_us
            self._trim(key, w, ts_us)
        return None

    def count(self, account: str, window: RateWindow, ts_us: int) -> int:
        times = self._times.get(window_key(account, window), [])
        if window.bucket is not None:
            return len(times)
        return bisect_right(times, ts_us) - bisect_right(times, ts_us - window.window_us)

    def _count(self, key: str, w: RateWindow, ts_us: int) -> int:
        times = self._times.get(key, [])
        if w.bucket is not None:
            return len(times)
        lo, hi = w.span(ts_us)
        return bisect_left(times, hi) - bisect_right(times, lo)

    def _trim(self, key: str, w: RateWindow, ts_us: int) -> None:
        """Drop entries far older than any window still to be asked about."""
        if w.bucket is not None:
            return
        times = self._times[key]
        cut = bisect_right(times, ts_us - KEEP_WINDOWS * w.window_us)
        if cut > 1000:
            old = set(times[:cut])
            del times[:cut]
            members = self._members[key]
            for m in [m for m, t in members.items() if t in old]:
                del members[m]
