"""Sliding-window rate limiter for Kite's per-second, per-minute and per-day limits.

One limiter is shared by everything that places orders on one API key (Kite counts
per key). ``acquire`` waits for a free slot when the wait is short; when it is not
(the minute or day budget is spent) it raises ``RateLimited`` with ``retry_after`` so the
runtime backs off instead of holding a consumer for minutes.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence

from alpha_panda.domain.errors import RateLimited


class RateLimiter:
    """Allow at most ``limit`` events per ``window_s`` for every ``(limit, window_s)``."""

    def __init__(self, limits: Sequence[tuple[int, float]], *, max_wait_s: float = 2.0,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], object] = asyncio.sleep) -> None:
        self._limits = [(n, w, deque[float]()) for n, w in limits]
        self._max_wait = max_wait_s
        self._clock = clock
        self._sleep = sleep
        self._lock = asyncio.Lock()
        self.waits = 0
        self.refusals = 0

    @classmethod
    def kite_orders(cls, per_second: int = 10, per_minute: int = 400, per_day: int = 5000,
                    *, margin_s: float = 0.1, max_wait_s: float = 2.0) -> RateLimiter:
        """Kite's order limits (per API key).

        Kite counts requests when they arrive; ours are counted when they leave, and two
        requests can overtake each other on the way (thread pool, network). ``margin_s``
        widens the one-second window so that jitter does not turn into 429s.
        """
        return cls([(per_second, 1.0 + margin_s), (per_minute, 60.0 + margin_s),
                    (per_day, 86_400.0)], max_wait_s=max_wait_s)

    def wait_needed(self) -> float:
        """Seconds until one more event is allowed (0 when it is allowed now)."""
        now = self._clock()
        wait = 0.0
        for limit, window, stamps in self._limits:
            while stamps and now - stamps[0] >= window:
                stamps.popleft()
            if len(stamps) >= limit:
                wait = max(wait, stamps[len(stamps) - limit] + window - now)
        return wait

    async def acquire(self) -> None:
        """Take one slot, waiting up to ``max_wait_s``; else raise ``RateLimited``."""
        async with self._lock:
            while True:
                wait = self.wait_needed()
                if wait <= 0:
                    break
                if wait > self._max_wait:
                    self.refusals += 1
                    raise RateLimited(f"Kite order limit reached; next slot in {wait:.1f}s",
                                      retry_after=wait)
                self.waits += 1
                result = self._sleep(wait)
                if asyncio.iscoroutine(result):
                    await result
            now = self._clock()
            for _, _, stamps in self._limits:
                stamps.append(now)
