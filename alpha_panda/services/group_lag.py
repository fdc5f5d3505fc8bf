"""Readiness of services run by other processes, read from the log (``service api``).

An API process alone reported only that it served: ``/ready`` said 200 whatever the
strategy runner or the trading engines of the other processes did. It now watches each
consumer group of the pipeline on the log: its committed offsets against the ends of its
topics, every second, with the readiness rule of a processor (caught up once within
``ready_max_lag``, then not more than that behind for ``ready_lag_grace`` seconds). Offsets cannot
tell whether a group's process still runs while nothing new comes in: it then reads as
caught up.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence

from alpha_panda.observability.health import ComponentStatus, State
from alpha_panda.stream import metrics
from alpha_panda.stream.log import Log


class GroupLag:
    """The health of consumer group ``group`` over ``topics``, as its offsets show it."""

    def __init__(self, name: str, group: str, topics: Sequence[str], *,
                 max_lag: int | None, grace: float) -> None:
        self._name = name
        self.group = group
        self.topics = list(topics)
        self._max_lag = max_lag
        self._grace = grace
        self._lag: int | None = None
        self._committed = False
        self._caught_up = False
        self._behind_since: float | None = None

    @property
    def name(self) -> str:
        return self._name

    def update(self, lag: int, committed: bool, now: float) -> None:
        """Lag as read (``committed``: the group has committed any offset)."""
        self._lag, self._committed = lag, committed
        # (within the limit is caught up, as for a processor: a group that keeps up with a
        # full-speed replay is rarely read at exactly 0)
        if lag == 0 or (committed and self._max_lag is not None and lag <= self._max_lag):
            self._caught_up = True
        if self._max_lag is None or lag <= self._max_lag:
            self._behind_since = None
        elif self._behind_since is None:
            self._behind_since = now

    def health(self) -> ComponentStatus:
        lag = self._lag
        if lag is None:
            return ComponentStatus(name=self._name, state=State.STARTING, ready=False,
                                   detail="lag not read from the log yet")
        detail, ready = "", self._caught_up
        if not self._caught_up:
            detail = (f"{lag:,} records behind, not caught up yet" if self._committed else
                      f"{lag:,} records waiting and nothing committed: is its service running?")
        elif self._behind_since is not None:
            behind = time.monotonic() - self._behind_since
            if behind >= self._grace:
                ready = False
                detail = (f"{lag:,} records behind for {behind:.0f} s (more than "
                          f"{self._max_lag:,}: ALPHA_PANDA_RUNTIME__READY_MAX_LAG)")
        return ComponentStatus(name=self._name, state=State.RUNNING, ready=ready,
                               detail=detail or "read from the log's offsets", lag=lag)


async def watch_groups(log: Log, groups: Sequence[GroupLag], stop: asyncio.Event,
                       interval: float = 1.0) -> None:
    """Read every group's lag from ``log`` each ``interval`` seconds until ``stop``."""
    while not stop.is_set():
        ends: dict[str, dict[int, int]] = {}
        for g in groups:
            lag, committed = 0, False
            for t in g.topics:
                if t not in ends:
                    ends[t] = await log.end_offsets(t)
                done = await log.committed_offsets(g.group, t)
                committed = committed or bool(done)
                lag_t = sum(max(0, end - done.get(p, 0)) for p, end in ends[t].items())
                metrics.child(metrics.LAG, g.name, t).set(lag_t)
                lag += lag_t
            g.update(lag, committed, time.monotonic())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
