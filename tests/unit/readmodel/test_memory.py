"""MemoryCache: TTLs on a monotonic clock, bounded size, the Cache contract."""

from __future__ import annotations

import pytest

from alpha_panda.domain.errors import ValidationError
from alpha_panda.readmodel.cache import Cache
from alpha_panda.readmodel.memory import MemoryCache


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_expired_keys_are_invisible_everywhere() -> None:
    clock = FakeClock()
    cache = MemoryCache(clock=clock)
    await cache.set("paper:portfolio", b"p", ttl=2.0)
    await cache.set("paper:orders", b"o")
    clock.now += 1.999
    assert await cache.get("paper:portfolio") == b"p"
    clock.now += 0.001
    assert await cache.get("paper:portfolio") is None
    assert await cache.get_many(["paper:portfolio", "paper:orders"]) == [None, b"o"]
    assert await cache.keys("paper:") == ["paper:orders"]
    assert len(cache) == 1


async def test_rewrite_without_ttl_makes_a_key_permanent() -> None:
    clock = FakeClock()
    cache = MemoryCache(clock=clock)
    await cache.set("k", b"1", ttl=1)
    await cache.set("k", b"2")
    clock.now += 10_000
    assert await cache.get("k") == b"2"


async def test_bounded_evicts_the_oldest_write() -> None:
    cache = MemoryCache(max_keys=3)
    await cache.set_many({"a": b"1", "b": b"2", "c": b"3"})
    await cache.set("a", b"1'")  # rewritten: now the newest
    await cache.set("d", b"4")
    assert await cache.keys("") == ["a", "c", "d"]


async def test_expired_keys_are_evicted_before_live_ones() -> None:
    clock = FakeClock()
    cache = MemoryCache(max_keys=2, clock=clock)
    await cache.set("live", b"1")
    await cache.set("short", b"2", ttl=1)
    clock.now += 5
    await cache.set("new", b"3")
    assert await cache.keys("") == ["live", "new"]


async def test_bad_ttl_and_non_bytes_are_rejected() -> None:
    cache = MemoryCache()
    with pytest.raises(ValidationError, match="ttl"):
        await cache.set("k", b"v", ttl=0)
    with pytest.raises(ValidationError, match="bytes"):
        await cache.set("k", "text")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        MemoryCache(max_keys=0)


def test_memory_cache_satisfies_the_port() -> None:
    cache: Cache = MemoryCache()
    assert cache is not None
