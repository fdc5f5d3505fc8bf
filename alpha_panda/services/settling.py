"""Whether the pipeline's services have caught up with the log (``caught_up``), and the
wait for it as a run stops (``settle``).

Apart from the run (``services.app``): the test pipeline waits on ``caught_up`` too.
"""

from __future__ import annotations

import asyncio
import time

from alpha_panda.observability.health import State
from alpha_panda.services.pipeline import Pipeline


async def caught_up(pipeline: Pipeline) -> bool:
    """True when every processor has committed up to the end of every topic it reads.
    Each topic's ends are asked once per check (four groups read ``market.ticks``): on
    Kafka every ask is a broker round trip or more."""
    ends_of: dict[str, dict[int, int]] = {}
    for p in pipeline.processors:
        for t in p.topics:
            ends = ends_of.get(t)
            if ends is None:
                ends = ends_of[t] = await pipeline.log.end_offsets(t)
            committed = await pipeline.log.committed_offsets(p.group, t)
            if any(committed.get(part, 0) < end for part, end in ends.items()):
                return False
    return True


# After the feed stops, the longest the services of ``run`` are given to take what is in
# flight (the last ticks' signals, their orders and fills) before they stop: the run then
# ends with the portfolio showing every fill on the log. (They used to stop at once, each
# after its batch: the portfolio a few fills short of the engine, until the next start.)
# What remains after it (a full-speed replay stopped half-way) waits on the log for the
# next start. A process of some services (``service``) stops at once, as a service told
# to stop should: its inputs may come from processes that go on.
SETTLE_S = 5.0


async def settle(pipeline: Pipeline, timeout: float = SETTLE_S) -> bool:
    """Until every processor has caught up (``caught_up``, twice in a row), for at most
    ``timeout`` seconds, or until one has failed (a failed one never catches up): whether
    they all caught up."""
    deadline = time.monotonic() + timeout
    stable = 0
    while time.monotonic() < deadline:
        if any(p.state is State.FAILED for p in pipeline.processors):
            return False
        stable = stable + 1 if await caught_up(pipeline) else 0
        if stable >= 2:  # twice in a row: nothing was in flight between the checks
            return True
        await asyncio.sleep(0.05)
    return False
