"""``alpha-panda dlq replay`` against a Kafka-protocol broker, with the Redis the services
deduplicate on (``ALPHA_PANDA_CACHE_URL``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from typer.testing import CliRunner

from alpha_panda.adapters.kafka import KafkaLog, KafkaSettings
from alpha_panda.cli.dlq import app
from alpha_panda.domain.errors import ValidationError
from alpha_panda.stream.dlq import dead_letter_output
from alpha_panda.stream.log import Record, TopicPartition
from alpha_panda.stream.records import REPLAY_FOR
from alpha_panda.testing.redis_server import RedisServer
from alpha_panda.testing.tansu import TansuBroker
from tests.contract.helpers import spec, tick_output

pytestmark = pytest.mark.integration


async def _two_services_failed(settings: KafkaSettings, src: str) -> None:
    """``src``: two ticks; its DLQ: risk's letters of both, then the engine's of the first."""
    log = KafkaLog(settings)
    await log.start()
    try:
        await log.ensure_topics([spec(src, 1), spec(f"{src}.dlq", 1)])
        await log.append([tick_output(src, 1, price=99_000), tick_output(src, 2, price=99_000)])
        ticks = await log.read(TopicPartition(src, 0), 0, 10)
        for r, service in ((ticks[0], "risk"), (ticks[1], "risk"), (ticks[0], "engine")):
            await log.append([dead_letter_output(r, ValidationError("price band"), attempts=1,
                                                 service=service)])
    finally:
        await log.close()


async def _records(settings: KafkaSettings, src: str) -> list[Record]:
    log = KafkaLog(settings)
    await log.start()
    try:
        return await log.read(TopicPartition(src, 0), 0, 100)
    finally:
        await log.close()


def test_a_replay_in_two_runs_puts_each_record_back_once_per_service(
        broker: TansuBroker, settings: KafkaSettings, redis: RedisServer,
        names: Callable[[str], str]) -> None:
    """The replay group remembers which services a copy went back for (the engine's letter
    of the first tick joined risk's copy of it, past --limit): on Kafka in the processed-id
    store, which the command kept in its own memory, not in the Redis the services use.
    The next run put the first tick back once more, for the engine, which took it twice."""
    src = names("in")
    asyncio.run(_two_services_failed(settings, src))
    env = {"ALPHA_PANDA_CACHE_URL": redis.url}
    replay = ["replay", "--log", broker.url, "--topic", src]
    one = CliRunner().invoke(app, [*replay, "--limit", "1"], env=env)
    assert one.exit_code == 0, one.output
    assert "replayed 1 dead letter(s)" in one.output
    rest = CliRunner().invoke(app, replay, env=env)
    assert rest.exit_code == 0, rest.output
    assert "replayed 1 dead letter(s)" in rest.output, rest.output
    records = asyncio.run(_records(settings, src))
    # each tick back once: the first for both services, the second for risk
    assert [(r.value, r.header(REPLAY_FOR)) for r in records[2:]] == [
        (records[0].value, b"engine,risk"), (records[1].value, b"risk")]
