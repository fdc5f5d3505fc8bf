"""A feed that dies says so: FAILED, with the error, so that /health (liveness) turns 503
and the operator reads why. A full disk ended the simulator's task while its health said
"stopped" with no detail, and /health stayed 200 with no tick flowing."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import httpx
import pytest

from alpha_panda.adapters.memory_log import MemoryLog
from alpha_panda.api.app import create_app
from alpha_panda.marketdata.files import generate_random_walk
from alpha_panda.observability.health import HealthRegistry, State
from alpha_panda.readmodel.memory import MemoryCache
from alpha_panda.services.feed import ReplayFeed, SimulatedFeed
from alpha_panda.settings import SimulatorSettings
from alpha_panda.stream.log import Output
from alpha_panda.stream.topics import MARKET_TICKS, REGISTRY
from alpha_panda.testing.control import RecordingControl


class FullDisk(MemoryLog):
    async def append(self, outputs: Sequence[Output]) -> None:
        raise sqlite3.OperationalError("database or disk is full")


@pytest.mark.parametrize("kind", ["sim", "replay"])
async def test_a_feed_that_raises_is_failed_with_its_error_and_health_says_so(kind: str) -> None:
    log = FullDisk()
    await log.ensure_topics([REGISTRY.get(MARKET_TICKS)])
    feed: SimulatedFeed | ReplayFeed = (
        SimulatedFeed(log, SimulatorSettings(rate=1000)) if kind == "sim" else
        ReplayFeed(log, Path("day.csv"), ticks=generate_random_walk(100, 2, seed=3)))
    with pytest.raises(sqlite3.OperationalError):
        await asyncio.wait_for(feed.run(asyncio.Event()), 10)
    status = feed.health()
    assert status.state is State.FAILED and not status.ready
    assert status.detail == "OperationalError: database or disk is full"

    registry = HealthRegistry()
    registry.register(feed)
    app = create_app(cache=MemoryCache(), health=registry, control=RecordingControl())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://test") as client:
        health = await client.get("/health")
    assert health.status_code == 503 and health.json()["status"] == "failed"


async def test_a_feed_stopped_on_request_is_stopped_not_failed() -> None:
    log = MemoryLog()
    await log.ensure_topics([REGISTRY.get(MARKET_TICKS)])
    feed = SimulatedFeed(log, SimulatorSettings(rate=1000))
    stop = asyncio.Event()
    task = asyncio.create_task(feed.run(stop))
    await asyncio.sleep(0.2)
    stop.set()
    await asyncio.wait_for(task, 10)
    assert feed.health().state is State.STOPPED and feed.health().detail == ""
