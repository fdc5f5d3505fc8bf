"""``/ready`` follows a service that falls behind after catching up: it stayed 200 once a
service had caught up, however far behind it fell later (a trading system whose strategies
read minutes-old ticks reported ready). Past ``ready_max_lag`` records for
``ready_lag_grace`` seconds a service is not ready, with its lag in the body; caught up
again, it is ready again."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx

from alpha_panda.adapters.sqlite_log import SqliteLog
from alpha_panda.api.app import create_app
from alpha_panda.domain.events import Envelope
from alpha_panda.observability.health import HealthRegistry
from alpha_panda.readmodel.memory import MemoryCache
from alpha_panda.stream.emit import Emit
from alpha_panda.stream.log import Record
from alpha_panda.stream.runtime import ProcessorSettings, StreamProcessor
from tests.contract.helpers import spec, tick, tick_output

SETTINGS = ProcessorSettings(poll_timeout=0.01, lag_interval=0.05, batch_size=20,
                             ready_max_lag=50, ready_lag_grace=0.3)


class Slow:
    """Takes 2 ms a record (a strategy busy at the open), emits nothing."""

    def handle(self, event: Envelope[Any], record: Record) -> Sequence[Emit]:
        return []

    async def ahandle(self, event: Envelope[Any], record: Record) -> Sequence[Emit]:
        await asyncio.sleep(0.002)
        return []


async def _until(check: Callable[[], bool], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.02)


async def test_ready_fails_while_a_service_stays_behind_and_recovers(tmp_path: Path) -> None:
    log = SqliteLog(tmp_path / "log.sqlite")
    await log.start()
    await log.ensure_topics([spec("ticks", 1)])
    proc = StreamProcessor(log, name="slow", group="slow", topics=["ticks"], handler=Slow(),
                           settings=SETTINGS)
    health = HealthRegistry()
    health.register(proc)
    api = httpx.AsyncClient(transport=httpx.ASGITransport(
        app=create_app(cache=MemoryCache(), health=health)), base_url="http://api")
    stop = asyncio.Event()
    task = asyncio.create_task(proc.run(stop))
    try:
        await log.append([tick_output("ticks", 0)])
        await _until(lambda: proc.health().ready, "caught up")
        assert (await api.get("/ready")).status_code == 200
        # a burst of 2,000 ticks: about 4 s of work, far past 50 records behind
        await log.append([tick_output("ticks", n) for n in range(1, 2001)])
        await asyncio.sleep(0.15)  # within the grace: still ready (a burst is no alarm)
        assert proc.health().ready
        await _until(lambda: not proc.health().ready, "not ready once behind past the grace")
        answer = await api.get("/ready")
        assert answer.status_code == 503
        [slow] = answer.json()["components"]
        assert slow["lag"] > 50 and "records behind for" in slow["detail"]
        assert "ALPHA_PANDA_RUNTIME__READY_MAX_LAG" in slow["detail"]
        # ready again once back within the limit (the grace is for falling behind only)
        await _until(lambda: proc.health().ready, "ready again once caught up", 30)
        assert (proc.health().lag or 0) <= 50
        assert (await api.get("/ready")).status_code == 200
    finally:
        stop.set()
        await task
        await api.aclose()
        await log.close()


def test_the_pipeline_takes_the_threshold_from_the_settings(tmp_path: Path) -> None:
    from alpha_panda.services.pipeline import build_pipeline
    from alpha_panda.settings import Settings

    settings = Settings.model_validate({"runtime": {"ready_max_lag": 123,
                                                    "ready_lag_grace_s": 7}})
    pipeline = build_pipeline(settings, SqliteLog(tmp_path / "log.sqlite"), [], [])
    assert pipeline.processors
    assert {(p.settings.ready_max_lag, p.settings.ready_lag_grace)
            for p in pipeline.processors} == {(123, 7.0)}


async def test_a_grace_shorter_than_the_lag_interval_does_not_flap(tmp_path: Path) -> None:
    # ALPHA_PANDA_RUNTIME__READY_LAG_GRACE_S below the 1 s between lag reads: an idle,
    # caught-up service went not ready ("lag not read") between every two reads
    log = SqliteLog(tmp_path / "log.sqlite")
    await log.ensure_topics([spec("in", 1)])
    await log.append([tick_output("in", 1)])
    proc = StreamProcessor(log, name="idle", group="g", topics=["in"], handler=Slow(),
                           settings=ProcessorSettings(poll_timeout=0.01, lag_interval=0.5,
                                                      ready_max_lag=50, ready_lag_grace=0.1))
    stop = asyncio.Event()
    task = asyncio.create_task(proc.run(stop))
    try:
        await _until(lambda: proc.health().ready, "it must catch up")
        seen = []
        for _ in range(60):  # 1.2 s: more than two lag reads
            seen.append(proc.health().ready)
            await asyncio.sleep(0.02)
        assert all(seen), f"not ready {seen.count(False)} times of {len(seen)}"
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        await log.close()


class Busy:
    """Appends a record to its own input for each one it takes: a stream that never runs
    dry (a full-speed replay), so its lag, read between batches, is never 0."""

    def __init__(self) -> None:
        self.n = 1_000_000

    def handle(self, event: Envelope[Any], record: Record) -> Sequence[Emit]:
        self.n += 1
        return [Emit("ticks", tick(self.n))]


async def test_a_service_busy_within_the_limit_from_its_start_is_ready(tmp_path: Path) -> None:
    # a full-speed replay: every service consumed a few thousand records behind the feed,
    # well within ALPHA_PANDA_RUNTIME__READY_MAX_LAG, but /ready answered 503 with an empty
    # detail for as long as the replay ran, as none had read a lag of exactly 0 yet (and
    # one that had, between two reads, was ready at a larger lag than the others)
    log = SqliteLog(tmp_path / "log.sqlite")
    await log.ensure_topics([spec("ticks", 1)])
    await log.append([tick_output("ticks", 0)])
    proc = StreamProcessor(log, name="busy", group="busy", topics=["ticks"], handler=Busy(),
                           settings=SETTINGS)
    stop = asyncio.Event()
    task = asyncio.create_task(proc.run(stop))
    try:
        await _until(lambda: proc.stats.processed > 200, "it must run")
        await _until(lambda: proc.health().ready, "ready while within the limit")
        assert 0 < (proc.health().lag or 0) <= 50
        for _ in range(20):  # 0.4 s, more than the grace: it stays ready
            assert proc.health().ready, proc.health()
            await asyncio.sleep(0.02)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        await log.close()


async def test_a_service_catching_up_says_how_far_behind_it_is(tmp_path: Path) -> None:
    # at the start, past the limit: not ready (no grace before it has caught up), and the
    # 503 says why; it used to carry an empty detail
    log = SqliteLog(tmp_path / "log.sqlite")
    await log.ensure_topics([spec("ticks", 1)])
    await log.append([tick_output("ticks", n) for n in range(400)])
    proc = StreamProcessor(log, name="slow", group="slow", topics=["ticks"], handler=Slow(),
                           settings=SETTINGS)
    stop = asyncio.Event()
    task = asyncio.create_task(proc.run(stop))
    try:
        await _until(lambda: proc.health().lag is not None and proc.stats.processed > 0,
                     "lag read")
        status = proc.health()
        assert not status.ready
        assert "records behind" in status.detail and "catching up" in status.detail, status
        await _until(lambda: proc.health().ready, "ready once within the limit")
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        await log.close()
