"""One contract for every Cache: the in-process MemoryCache, SqliteCache in a file, and
RedisCache on a private server."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from alpha_panda.adapters.redis.cache import RedisCache
from alpha_panda.adapters.sqlite_cache import SqliteCache
from alpha_panda.domain.errors import TransientError, ValidationError
from alpha_panda.readmodel.cache import Cache
from alpha_panda.readmodel.memory import MemoryCache
from alpha_panda.testing.redis_server import RedisServer, free_port, start_redis_server

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    server: RedisServer = start_redis_server()
    try:
        yield server.url
    finally:
        server.stop()


_counter = iter(range(1_000_000))


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def cache(request: pytest.FixtureRequest, redis_url: str,
                tmp_path: Path) -> AsyncIterator[Cache]:
    c: Cache
    if request.param == "memory":
        c = MemoryCache()
    elif request.param == "sqlite":
        c = SqliteCache(tmp_path / "readmodel.sqlite")
    else:
        # a fresh prefix per test: tests share the server but never see each other's keys
        c = RedisCache(redis_url, prefix=f"t{next(_counter)}:")
    try:
        yield c
    finally:
        await c.close()


async def test_get_set_delete(cache: Cache) -> None:
    assert await cache.get("paper:portfolio") is None
    await cache.set("paper:portfolio", b'{"cash": 100}')
    assert await cache.get("paper:portfolio") == b'{"cash": 100}'
    await cache.delete("paper:portfolio")
    await cache.delete("paper:portfolio")  # deleting an absent key is fine
    assert await cache.get("paper:portfolio") is None


async def test_get_many_keeps_order_and_marks_missing(cache: Cache) -> None:
    await cache.set_many({"paper:orders": b"o", "paper:signals": b"s"})
    assert await cache.get_many(["paper:signals", "nope", "paper:orders"]) == [b"s", None, b"o"]
    assert await cache.get_many([]) == []


async def test_keys_by_prefix_isolates_brokers(cache: Cache) -> None:
    await cache.set_many({"paper:a": b"1", "paper:b": b"2", "zerodha:a": b"3", "papers*[x]": b"4"})
    assert await cache.keys("paper:") == ["paper:a", "paper:b"]
    assert await cache.keys("zerodha:") == ["zerodha:a"]
    # glob characters in a key are data, not patterns
    assert await cache.keys("papers*[") == ["papers*[x]"]


async def test_ttl_expires(cache: Cache) -> None:
    await cache.set("short", b"x", ttl=0.15)
    await cache.set_many({"short2": b"y"}, ttl=0.15)
    await cache.set("long", b"z", ttl=60)
    assert await cache.get_many(["short", "short2"]) == [b"x", b"y"]
    await asyncio.sleep(0.3)
    assert await cache.get_many(["short", "short2", "long"]) == [None, None, b"z"]
    assert "short" not in await cache.keys("")


async def test_binary_values_round_trip(cache: Cache) -> None:
    blob = bytes(range(256)) * 4
    await cache.set("blob", blob)
    assert await cache.get("blob") == blob


async def test_redis_prefix_namespaces_deployments(redis_url: str) -> None:
    a, b = RedisCache(redis_url, prefix="deployA:"), RedisCache(redis_url, prefix="deployB:")
    try:
        await a.set("paper:portfolio", b"A")
        assert await b.get("paper:portfolio") is None
        assert await b.keys("") == []
        assert await a.keys("") == ["paper:portfolio"]
    finally:
        await a.close()
        await b.close()


async def test_redis_unreachable_is_a_transient_error() -> None:
    cache = RedisCache(f"redis://user:hunter2@127.0.0.1:{free_port()}/0", socket_timeout=0.5)
    try:
        with pytest.raises(TransientError, match="GET") as info:
            await cache.get("paper:portfolio")
        assert "hunter2" not in str(info.value)
    finally:
        await cache.close()


async def test_sqlite_cache_is_shared_by_the_processes_of_a_file(tmp_path: Path) -> None:
    """Two caches on one file (two processes of one data directory): each sees the other's
    documents, a flush of several as one write; a value that is no bytes is refused."""
    path = tmp_path / "readmodel.sqlite"
    portfolio, api = SqliteCache(path), SqliteCache(path)
    try:
        await portfolio.set_many({"paper:portfolio": b"P", "paper:orders": b"O"})
        assert await api.get_many(["paper:portfolio", "paper:orders"]) == [b"P", b"O"]
        await api.set("strategies", b"S")
        assert await portfolio.keys("") == ["paper:orders", "paper:portfolio", "strategies"]
        with pytest.raises(ValidationError, match="bytes"):
            await portfolio.set_many({"paper:signals": "text"})  # type: ignore[dict-item]
        assert await api.get("paper:signals") is None
    finally:
        await portfolio.close()
        await api.close()


async def test_sqlite_cache_locked_beyond_its_wait_is_a_transient_error(tmp_path: Path) -> None:
    path = tmp_path / "readmodel.sqlite"
    cache = SqliteCache(path, busy_timeout_s=0.05)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(TransientError, match="set failed: database is locked"):
            await cache.set("paper:portfolio", b"P")
        other.execute("COMMIT")
        await cache.set("paper:portfolio", b"P")  # and once free, the write lands
        assert await cache.get("paper:portfolio") == b"P"
    finally:
        other.close()
        await cache.close()
