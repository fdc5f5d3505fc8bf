"""``RedisDedupStore`` on a private redis-server: shared by members, bounded by TTL,
loud when Redis is gone."""

from __future__ import annotations

import asyncio

import pytest

from alpha_panda.adapters.redis.dedup import RedisDedupStore
from alpha_panda.domain.errors import TransientError
from alpha_panda.testing.redis_server import RedisServer, redis_server

pytestmark = pytest.mark.integration


async def test_ids_marked_by_one_member_are_seen_by_another(redis: RedisServer) -> None:
    a = RedisDedupStore(redis.url, "risk", prefix="t1:")
    b = RedisDedupStore(redis.url, "risk", prefix="t1:")
    other_group = RedisDedupStore(redis.url, "portfolio", prefix="t1:")
    ids = [f"sig-{i}" for i in range(2500)]  # more than one pipeline chunk
    await a.mark(ids)
    assert await b.seen([*ids[-3:], "sig-new"]) == set(ids[-3:])
    assert await b.seen(ids) == set(ids)
    assert await other_group.seen(ids) == set()
    await b.forget(["sig-0"])
    assert await a.seen(["sig-0", "sig-1"]) == {"sig-1"}
    for s in (a, b, other_group):
        await s.close()


async def test_ids_expire_after_their_ttl(redis: RedisServer) -> None:
    store = RedisDedupStore(redis.url, "g", ttl_s=1, prefix="t2:")
    await store.mark(["x"])
    assert await store.seen(["x"]) == {"x"}
    await asyncio.sleep(1.2)
    assert await store.seen(["x"]) == set()
    await store.close()


async def test_a_dead_redis_is_an_error_not_a_miss() -> None:
    with redis_server() as server:
        url = server.url
    store = RedisDedupStore(url, "g", socket_timeout=0.5)
    with pytest.raises(TransientError):
        await store.seen(["x"])
    await store.close()
