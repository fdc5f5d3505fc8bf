"""The paced replay: every tick, in order, none before it is due, in few appends."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from alpha_panda.adapters.memory_log import MemoryLog
from alpha_panda.domain.events import CODEC, MarketTick
from alpha_panda.marketdata.files import generate_random_walk
from alpha_panda.services.feed import ReplayFeed
from alpha_panda.stream.log import Output
from alpha_panda.stream.topics import MARKET_TICKS, REGISTRY


class CountingLog(MemoryLog):
    """Records when each append happened and the event times of its ticks."""

    def __init__(self) -> None:
        super().__init__()
        self.appends: list[tuple[float, list[int]]] = []

    async def append(self, outputs: Sequence[Output]) -> None:
        await super().append(outputs)
        ts = [CODEC.decode_as(o.value, MarketTick).data.ts for o in outputs]
        self.appends.append((time.monotonic(), ts))


@pytest.mark.parametrize("linger", [0.001, 0.005])
async def test_a_paced_replay_sends_each_tick_once_when_due_and_groups_what_falls_due_together(
        linger: float) -> None:
    n = 3000
    cols = generate_random_walk(n, 5, seed=3)
    # One tick every 100 us of event time: 0.3 s at speed 1.
    cols = replace(cols, ts=cols.ts[0] + np.arange(n, dtype=np.int64) * 100_000)
    log = CountingLog()
    await log.ensure_topics([REGISTRY.get(MARKET_TICKS)])
    feed = ReplayFeed(log, Path("paced.csv"), speed=1.0, ticks=cols, linger=linger)
    await asyncio.wait_for(feed.run(asyncio.Event()), 10)

    assert feed.done.is_set()
    sent = [ts for _, batch in log.appends for ts in batch]
    assert sent == cols.ts.tolist()  # every tick, once, in file order
    assert feed.paced_from is not None
    wall0, t0 = feed.paced_from
    for at, batch in log.appends:
        assert at >= wall0 + (batch[-1] - t0) / 1e9  # none went out before it was due
    # Appended whatever fell due meanwhile, at most once per linger: not once per tick.
    duration = (cols.ts[-1] - cols.ts[0]) / 1e9
    assert len(log.appends) <= duration / linger + 2
    assert len(log.appends) >= 3  # and paced: not all at once


async def test_a_paced_replay_restarted_mid_file_goes_on_at_once() -> None:
    # one tick a second: resumed at the 3,000th, it must not first wait the 50 minutes
    # already replayed
    n = 3010
    cols = generate_random_walk(n, 5, seed=3)
    cols = replace(cols, ts=cols.ts[0] + np.arange(n, dtype=np.int64) * 1_000_000_000)
    log = CountingLog()
    await log.ensure_topics([REGISTRY.get(MARKET_TICKS)])
    first = ReplayFeed(log, Path("paced.csv"), speed=None, ticks=cols.slice(0, 3000))
    await first.run(asyncio.Event())  # (the same source: a run stopped at the 3,000th)
    feed = ReplayFeed(log, Path("paced.csv"), speed=100.0, ticks=cols)
    await asyncio.wait_for(feed.run(asyncio.Event()), 5)  # 10 ticks of 1 s at 100x: 0.1 s
    assert feed.done.is_set()
    assert feed.paced_from is not None and feed.paced_from[1] == int(cols.ts[3000])
