"""``RedisDedupStore``: a consumer group's processed event ids in Redis, with a TTL.

One key per id (``{prefix}dedup:{group}:{id}``), written with ``SET ... EX ttl`` in one
pipelined round trip per batch and checked with one ``MGET``. The TTL bounds memory: an
id only needs to be remembered for as long as a duplicate of it can still arrive
(retention of the input topic, or the replay window you allow). Shared by every member
of the group, so a partition that moves to another process keeps its history.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from alpha_panda.domain.errors import ConfigurationError, TransientError

_CHUNK = 1000  # keys per MGET / pipeline, so one huge batch never blocks Redis for long


class RedisDedupStore:
    """A ``DedupStore`` on Redis.

    Args:
        url: ``redis://host:port/db``.
        group: the consumer group whose ids these are.
        ttl_s: how long an id is remembered, in seconds.
        prefix: namespace shared with the rest of the deployment's keys.
    """

    def __init__(self, url: str, group: str, *, ttl_s: int = 7 * 24 * 3600,
                 prefix: str = "ap:", socket_timeout: float = 5.0) -> None:
        if ttl_s <= 0:
            raise ConfigurationError("dedup ttl must be positive")
        self._ttl = ttl_s
        self._base = f"{prefix}dedup:{group}:"
        self._client: aioredis.Redis = aioredis.Redis.from_url(
            url, socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout
        )

    async def seen(self, ids: Sequence[str]) -> set[str]:
        """The subset of ``ids`` this group already processed."""
        found: set[str] = set()
        async with self._errors("MGET"):
            for i in range(0, len(ids), _CHUNK):
                chunk = ids[i:i + _CHUNK]
                values = await self._client.mget([self._base + x for x in chunk])
                found.update(x for x, v in zip(chunk, values, strict=True) if v is not None)
        return found

    async def mark(self, ids: Sequence[str]) -> None:
        """Remember ``ids`` for ``ttl_s`` seconds."""
        if not ids:
            return
        async with self._errors("SET"):
            for i in range(0, len(ids), _CHUNK):
                pipe = self._client.pipeline(transaction=False)
                for x in ids[i:i + _CHUNK]:
                    pipe.set(self._base + x, b"1", ex=self._ttl)
                await pipe.execute()

    async def forget(self, ids: Sequence[str]) -> None:
        """Drop ``ids`` (an operator re-running events on purpose)."""
        if ids:
            async with self._errors("DEL"):
                await self._client.delete(*[self._base + x for x in ids])

    async def close(self) -> None:
        await self._client.aclose()

    @asynccontextmanager
    async def _errors(self, op: str) -> AsyncIterator[None]:
        # A dedup miss would let a duplicate through, so failures are raised, never
        # treated as "not seen"; the runtime retries them as transient.
        try:
            yield
        except RedisError as exc:
            raise TransientError(f"redis dedup {op} on {self._base}*: {exc}") from exc
