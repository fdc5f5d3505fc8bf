"""Run the whole embedded pipeline over a tick file, for tests and benchmarks."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

from alpha_panda.domain.events import CODEC, Payload
from alpha_panda.services.app import RunOptions, SystemRun
from alpha_panda.services.logs import open_log
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
