"""Stalls of the event loop: a strategy call that holds it, named while it lasts.

Every service of a process runs on one asyncio loop. While a strategy's ``on_tick`` (or
``on_bar``) computes for seconds, nothing else of the process moves: no tick is read, no
signal checked, no order placed or cancelled, and the API (the kill switch's button among
it) does not answer. Python cannot interrupt that code from outside; ``LoopWatch`` makes
it visible while it lasts.

The loop sets a heartbeat every ``interval_s``. A thread looks at it; while it is older
than two intervals (the loop is inside one long callback), the thread reads the loop
thread's stack (``sys._current_frames``) and looks for a strategy's code in it
(``owners``). When the same call (the same frame object: the thread holds it, so no other
call can take its place) has been on the stack for ``threshold_s``, it logs
``loop.stalled`` naming the strategy and the innermost frames, again every ``repeat_s``
while the call lasts, and ``loop.resumed`` with how long the loop was held when it moves
on. Many short calls are not a stall: a replay's batch of 5,000 ticks holds the loop for
a second or more, each strategy call for microseconds. Code of no strategy is reported
only past ``repeat_s`` (a blocking call somewhere, the loop held that long: no batch
takes that).

It costs nothing per tick or per batch: one loop wake-up and one thread wake-up each
``interval_s``, and a look at the stack while the loop is held.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import CodeType, FrameType
from typing import Final

import structlog
from prometheus_client import Counter, Histogram

log = structlog.get_logger(__name__)

STALLS: Final = Counter(
    "alpha_panda_event_loop_stalls_total",
    "Times the event loop was held past the stall threshold: by one call of a strategy "
    "(its id), or by other code past the repeat interval ('')",
    ["strategy"],
)
STALL_SECONDS: Final = Histogram(
    "alpha_panda_event_loop_stall_seconds",
    "How long the event loop was held, each stall reported",
    buckets=(1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0),
)
_FRAMES: Final = 6  # innermost frames a report shows


class LoopWatch:
    """Watches the loop ``run`` is awaited on, from a thread of its own."""

    def __init__(self, threshold_s: float = 2.0, *, interval_s: float = 0.25,
                 repeat_s: float = 30.0, owners: Mapping[CodeType, str] | None = None) -> None:
        if threshold_s < 2 * interval_s:
            raise ValueError("the stall threshold must be at least two heartbeat intervals")
        self.threshold_s = threshold_s
        self.interval_s = interval_s
        self.repeat_s = max(repeat_s, threshold_s)
        self.owners = dict(owners or {})
        self._beat = time.monotonic()
        self._loop_thread = threading.get_ident()
        self._done = threading.Event()

    async def run(self) -> None:
        """Beat until cancelled; the watching thread runs meanwhile and ends with it."""
        self._loop_thread = threading.get_ident()
        self._beat = time.monotonic()
        self._done.clear()
        thread = threading.Thread(target=self._watch, name="loop-watch", daemon=True)
        thread.start()
        try:
            while True:
                self._beat = time.monotonic()
                await asyncio.sleep(self.interval_s)
        finally:
            self._done.set()  # (the thread ends within ``interval_s``; a daemon: not joined)

    def _watch(self) -> None:
        call: FrameType | None = None  # the strategy call on the stack at the last look
        since = 0.0  # when it was first seen there
        reported = 0.0  # when the stall under way was last reported (0: not reported)
        strategy = ""
        held_from = 0.0  # the beat before the stall under way
        frame: FrameType | None = None
        while not self._done.wait(self.interval_s):
            beat = self._beat
            now = time.monotonic()
            if now - beat < 2 * self.interval_s:  # the loop is moving
                if reported:
                    self._resumed(beat - held_from - self.interval_s / 2, strategy)
                # (no frame of the loop's kept: they hold its batches' locals)
                call = frame = outer = None
                reported = 0.0
                continue
            frame = sys._current_frames().get(self._loop_thread)
            owner, outer = self._strategy_frame(frame)
            if outer is not call:
                call, since = outer, now
            if reported and now - reported < self.repeat_s:
                continue
            if call is not None and now - since >= self.threshold_s - self.interval_s:
                held_s = now - since + self.interval_s  # (it began before it was first seen)
            elif now - beat >= self.repeat_s:
                held_s, owner = now - beat, ""
            else:
                continue
            if not reported:
                held_from, strategy = beat, owner
            reported = now
            self._report(held_s, owner, frame)
        if reported:
            self._resumed(time.monotonic() - held_from, strategy)

    def _strategy_frame(self, frame: FrameType | None) -> tuple[str, FrameType | None]:
        """The outermost frame of ``frame``'s stack that runs a strategy's code (the runner's
        call into it) and the strategy it names, or ('', None)."""
        found: tuple[str, FrameType | None] = ("", None)
        while frame is not None:
            owner = self.owners.get(frame.f_code)
            if owner is not None:
                found = (owner, frame)
            frame = frame.f_back
        return found

    def _report(self, held_s: float, strategy: str, frame: FrameType | None) -> None:
        stack = frames(frame)
        log.warning("loop.stalled", blocked_s=round(held_s, 1), strategy=strategy or None,
                    at=stack[-1] if stack else None, frames=stack,
                    detail=(f"one call of strategy {strategy}'s code" if strategy else
                            "this code") + " holds the event loop: every service of this "
                    "process waits (ticks, risk checks, orders, the API)")

    def _resumed(self, held_s: float, strategy: str) -> None:
        STALLS.labels(strategy=strategy).inc()
        STALL_SECONDS.observe(held_s)
        log.warning("loop.resumed", blocked_s=round(held_s, 1), strategy=strategy or None)


def frames(frame: FrameType | None, most: int = _FRAMES) -> list[str]:
    """The innermost ``most`` frames of ``frame``'s stack as ``file:line in function``,
    outermost first."""
    out: list[str] = []
    while frame is not None and len(out) < most:
        code = frame.f_code
        out.append(f"{Path(code.co_filename).name}:{frame.f_lineno} in {code.co_qualname}")
        frame = frame.f_back
    out.reverse()
    return out
