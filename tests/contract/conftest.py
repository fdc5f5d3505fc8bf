"""The log backends every contract test runs against.

To add a backend, add one async factory to ``BACKENDS``: given a fresh temporary directory
it returns an *opener*, an async function that opens (and starts) a new ``Log`` client over
the same underlying log each time it is called. Tests call it again after closing a log to
check what survives a restart. Topic names are unique per test (``names``), so a shared
broker needs no cleaning between tests.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from alpha_panda.adapters.memory_log import MemoryStorage
from alpha_panda.adapters.sqlite_log import SqliteLog
from alpha_panda.stream.embedded import EmbeddedLog
from alpha_panda.stream.log import Log

Opener = Callable[[], Awaitable[Log]]


async def _memory(tmp: Path) -> Opener:
    storage = MemoryStorage()  # outlives each EmbeddedLog: a "restart" keeps the data

    async def open_() -> Log:
        log = EmbeddedLog(storage)
        await log.start()
        return log

    return open_


async def _sqlite(tmp: Path) -> Opener:
    path = tmp / "log.sqlite"

    async def open_() -> Log:
        log = SqliteLog(path)
        await log.start()
        return log

    return open_


async def _kafka(tmp: Path) -> Opener:
    # A real Kafka-protocol broker (Tansu, or KAFKA_BOOTSTRAP) and Redis for dedup,
    # shared by the session: names are unique per test.
    from alpha_panda.adapters.kafka import KafkaLog
    from alpha_panda.testing.redis_server import shared_redis
    from alpha_panda.testing.tansu import kafka_test_settings, shared_broker

    settings = kafka_test_settings(shared_broker().bootstrap, dedup_redis_url=shared_redis().url)

    async def open_() -> Log:
        log = KafkaLog(settings)
        await log.start()
        return log

    return open_


BACKENDS: dict[str, Callable[[Path], Awaitable[Opener]]] = {
    "memory": _memory,
    "sqlite": _sqlite,
    "kafka": _kafka,
}


@pytest.fixture(params=sorted(BACKENDS))
async def open_log(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Opener]:
    """Opens logs of the parametrized backend; every log still open is closed at the end.

    Tests close logs themselves to simulate restarts; the teardown only closes the others
    (whether ``close`` is idempotent is a contract case of its own).
    """
    factory = BACKENDS[request.param]
    opener = await factory(tmp_path)
    still_open: list[Log] = []

    async def tracked() -> Log:
        log = await opener()
        still_open.append(log)
        close = log.close

        async def close_and_forget() -> None:
            if log in still_open:
                still_open.remove(log)
            await close()

        log.close = close_and_forget  # type: ignore[method-assign]
        return log

    yield tracked
    while still_open:  # each close removes its log from the list
        await still_open[-1].close()


@pytest.fixture
async def log(open_log: Opener) -> Log:
    return await open_log()


@pytest.fixture
def names() -> Callable[[str], str]:
    """Unique topic/group names for this test: ``names("ticks")``."""
    suffix = uuid.uuid4().hex[:8]
    return lambda base: f"{base}-{suffix}"
