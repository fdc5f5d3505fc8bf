"""``ReadModelWriter``: what it writes to the cache, for how long, and a failing cache."""

from __future__ import annotations

import asyncio

import msgspec

from alpha_panda.domain.errors import TransientError
from alpha_panda.portfolio import PositionLedger
from alpha_panda.readmodel.memory import MemoryCache
from alpha_panda.readmodel.views import STRATEGIES_KEY, StrategyView, key
from alpha_panda.services.portfolio import PortfolioHandler
from alpha_panda.services.readmodel import LIVE_TTL_S, ReadModelWriter


def _views() -> list[StrategyView]:
    return [StrategyView(id="sma", strategy="sma_cross", instruments=[256265], brokers=["paper"],
                         params={}, status="ACTIVE")]


async def test_the_strategies_live_a_few_flushes_and_the_portfolio_stays() -> None:
    """The runner's strategies are rewritten at every flush and expire unless they are:
    an API of another process stops showing them once the runner's process stops. The
    portfolio's documents, written when they change, stay."""
    now = [1000.0]
    cache = MemoryCache(clock=lambda: now[0])
    portfolio = PortfolioHandler("paper", PositionLedger(1_000_000_00), snapshot_interval_ns=10**9)
    writer = ReadModelWriter(cache, [portfolio], _views, interval=0.25)
    await writer.flush()
    got = msgspec.json.decode(await cache.get(STRATEGIES_KEY) or b"null")
    assert [s["id"] for s in got] == ["sma"]
    now[0] += LIVE_TTL_S - 1
    assert await cache.get(STRATEGIES_KEY) is not None
    now[0] += 2  # no flush for longer than the TTL: the runner's process is gone
    assert await cache.get(STRATEGIES_KEY) is None
    assert await cache.get(key("paper", "portfolio")) is not None


class _FailingOnce(MemoryCache):
    """A cache whose first ``fail`` writes fail as a locked file or a Redis outage does."""

    def __init__(self, fail: int) -> None:
        super().__init__()
        self.fail = fail

    async def set_many(self, items: dict[str, bytes], ttl: float | None = None) -> None:
        if self.fail:
            self.fail -= 1
            raise TransientError("read-model cache: set failed: database is locked")
        await super().set_many(items, ttl)


async def test_a_failing_cache_is_tried_again_and_the_run_goes_on() -> None:
    """A cache write that fails (TransientError) no longer ends the writer, nor the run
    at its stop: the next flush writes everything, the portfolio's documents included."""
    cache = _FailingOnce(fail=2)
    portfolio = PortfolioHandler("paper", PositionLedger(1_000_000_00), snapshot_interval_ns=10**9)
    writer = ReadModelWriter(cache, [portfolio], _views, interval=0.01)
    stop = asyncio.Event()
    task = asyncio.create_task(writer.run(stop))
    for _ in range(200):
        if await cache.get(key("paper", "portfolio")) is not None:
            break
        await asyncio.sleep(0.01)
    stop.set()
    await task  # (raised the TransientError before)
    assert cache.fail == 0
    assert await cache.get(STRATEGIES_KEY) is not None
    assert await cache.get(key("paper", "portfolio")) is not None
