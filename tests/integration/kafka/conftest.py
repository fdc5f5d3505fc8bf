"""A Tansu broker (or ``KAFKA_BOOTSTRAP``) and a private Redis for the Kafka tests."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator

import pytest

from alpha_panda.adapters.kafka import KafkaLog, KafkaSettings
from alpha_panda.testing.redis_server import RedisServer, redis_server
from alpha_panda.testing.tansu import TansuBroker, kafka_test_settings, tansu_broker


@pytest.fixture(scope="module")
def broker() -> Iterator[TansuBroker]:
    with tansu_broker() as b:
        yield b


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    with redis_server() as r:
        yield r


@pytest.fixture
def settings(broker: TansuBroker) -> KafkaSettings:
    return kafka_test_settings(broker.bootstrap)


@pytest.fixture
async def kafka(settings: KafkaSettings) -> AsyncIterator[KafkaLog]:
    log = KafkaLog(settings)
    await log.start()
    yield log
    await log.close()


@pytest.fixture
def names() -> Callable[[str], str]:
    suffix = uuid.uuid4().hex[:8]
    return lambda base: f"{base}-{suffix}"
