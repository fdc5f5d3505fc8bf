"""Run the whole embedded pipeline over a tick file, for tests and benchmarks."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import TypeVar

from alpha_panda.domain.events import CODEC, Payload
from alpha_panda.services.app import RunOptions, SystemRun
from alpha_panda.services.logs import open_log
from alpha_panda.services.pipeline import SERVICES, build_pipeline
from alpha_panda.services.settling import caught_up
from alpha_panda.services.strategy_configs import load_strategies
from alpha_panda.settings import ApiSettings, Settings
from alpha_panda.stream.log import Output, read_topic
from alpha_panda.stream.topics import MARKET_TICKS, REGISTRY

P = TypeVar("P", bound=Payload)

SMA_YAML = """\
id: {id}
strategy: sma_cross
instruments: {tokens}
brokers: {brokers}
params: {{fast: 3, slow: 8, quantity: {quantity}}}
execution: {{costs: {costs}}}
"""


def write_strategy(directory: Path, *, id: str = "sma", tokens: list[int], brokers: str = "[paper]",
                   quantity: int = 2, costs: bool = True) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{id}.yaml"
    path.write_text(SMA_YAML.format(id=id, tokens=tokens, brokers=brokers, quantity=quantity,
                                    costs=str(costs).lower()))
    return path


def settings_for(root: Path, ticks: Path, *, log: str = "embedded") -> Settings:
    return Settings().model_copy(update={
        "data_dir": root / "data", "log": log, "feed": f"replay:{ticks}",
        "strategies_dir": root / "strategies", "api": ApiSettings(enabled=False),
    })


async def run_replay(settings: Settings, *, summary: bool = False) -> SystemRun:
    system = SystemRun(settings, RunOptions(exit_at_end=True, progress=False, summary=summary))
    await system.run()
    return system


read_all = read_topic  # every record of a topic (the tests' name for it)


async def drained_beside(settings: Settings, ticks: int, *, timeout: float = 300.0,
                         every: float = 0.005) -> float:
    """Watch the processes that run the pipeline's services on the log of ``settings``
    (``alpha-panda service NAME...``, a replay): return ``time.time()`` once ``ticks``
    ticks are on the log and every consumer group of the pipeline has committed the end
    of every topic it reads, at two looks in a row ``every`` seconds apart (one look
    could miss a record committed as it looked). Raises ``TimeoutError`` after
    ``timeout`` seconds."""
    configs, errors = load_strategies(settings)
    log = open_log(settings.log, settings.data_dir)
    await log.start()
    try:
        await log.ensure_topics(REGISTRY.all())
        # (built, not run: the groups and topics of the pipeline's services)
        dry = build_pipeline(settings, log, configs, errors,
                             services=[x for x in SERVICES if x != "zerodha-engine"])
        deadline = time.monotonic() + timeout
        stable = 0
        while time.monotonic() < deadline:
            published = sum((await log.end_offsets(MARKET_TICKS)).values()) >= ticks
            stable = stable + 1 if published and await caught_up(dry) else 0
            if stable >= 2:
                return time.time()
            await asyncio.sleep(every if published else 0.05)
        raise TimeoutError(f"the pipeline did not process {ticks:,} ticks in {timeout} s")
    finally:
        await log.close()


async def logged(data_dir: Path, topic: str, payload_type: type[P]) -> list[P]:
    """The payloads of every record of ``topic`` on the embedded log in ``data_dir``, as
    ``payload_type`` (the log opened and closed around the read)."""
    log = open_log("embedded", data_dir)
    await log.start()
    try:
        return [CODEC.decode_as(r.value, payload_type).data for r in await read_topic(log, topic)]
    finally:
        await log.close()


# A tick whose instrument token is not a number: every service reading ``market.ticks``
# dead-letters it, and the stream goes on.
POISON_TICK = (b'{"id":"bad","type":"market_tick","ts":1,"source":"x","key":"1",'
               b'"correlation_id":"bad","data":{"instrument_token":"NaN"}}')


async def append_poison_tick(settings: Settings) -> None:
    """Put ``POISON_TICK`` on the log of ``settings`` (its topics created), before a run."""
    log = open_log(settings.log, settings.data_dir)
    await log.start()
    try:
        await log.ensure_topics(REGISTRY.all())
        await log.append([Output(MARKET_TICKS, b"1", POISON_TICK, (("id", b"bad"),))])
    finally:
        await log.close()
