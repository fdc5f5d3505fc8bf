"""``RedisCache``: the read-model cache on Redis (redis-py asyncio).

Every key is stored under ``prefix`` (``ap:paper:positions``) so several deployments can
share a server; callers never see the prefix. TTLs are set in milliseconds (PX), so a
fractional TTL keeps its precision. Connection failures surface as ``TransientError``:
the API answers 503 and the projector retries, rather than both crashing on a blip.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from alpha_panda.domain.errors import InvariantViolation, TransientError, ValidationError

_GLOB_SPECIAL = re.compile(r"([*?\[\]\\])")


class RedisCache:
    """A ``readmodel.cache.Cache`` on Redis.

    Args:
        url: ``redis://host:port/db`` (``rediss://`` for TLS).
        prefix: namespace prepended to every key.
        socket_timeout: seconds before a command gives up.
    """

    def __init__(self, url: str, prefix: str = "ap:", socket_timeout: float = 5.0) -> None:
        self._prefix = prefix
        self._url = url
        self._client: aioredis.Redis = aioredis.Redis.from_url(
            url, socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout
        )

    async def get(self, key: str) -> bytes | None:
        """The value of ``key``, or None when absent or expired."""
        async with self._errors("GET", key):
            value = await self._client.get(self._prefix + key)
        return _as_bytes(value)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """Values of ``keys`` in order (one MGET round trip)."""
        if not keys:
            return []
        async with self._errors("MGET", keys[0]):
            values = await self._client.mget([self._prefix + k for k in keys])
        return [_as_bytes(v) for v in values]

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        """Store ``value``; with ``ttl`` (seconds, > 0) it expires after that long."""
        px = _ttl_ms(ttl)
        async with self._errors("SET", key):
            await self._client.set(self._prefix + key, value, px=px)

    async def set_many(self, items: dict[str, bytes], ttl: float | None = None) -> None:
        """Store every item atomically (one MULTI/EXEC pipeline), all with the same TTL."""
        if not items:
            return
        px = _ttl_ms(ttl)
        async with (
            self._errors("SET (pipeline)", next(iter(items))),
            self._client.pipeline(transaction=True) as pipe,
        ):
            for key, value in items.items():
                pipe.set(self._prefix + key, value, px=px)
            await pipe.execute()

    async def delete(self, key: str) -> None:
        """Remove ``key``; absent keys are fine."""
        async with self._errors("DEL", key):
            await self._client.delete(self._prefix + key)

    async def keys(self, prefix: str) -> list[str]:
        """Live keys starting with ``prefix``, sorted (SCAN, never the blocking KEYS)."""
        pattern = _GLOB_SPECIAL.sub(r"\\\1", self._prefix + prefix) + "*"
        cut = len(self._prefix)
        found: set[str] = set()
        async with self._errors("SCAN", prefix):
            async for raw in self._client.scan_iter(match=pattern, count=500):
                found.add(raw.decode() if isinstance(raw, bytes) else str(raw))
        return sorted(k[cut:] for k in found)

    async def ping(self) -> bool:
        """True when the server answers."""
        async with self._errors("PING", ""):
            return bool(await self._client.ping())

    async def close(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()

    @asynccontextmanager
    async def _errors(self, command: str, key: str) -> AsyncIterator[None]:
        try:
            yield
        except (RedisConnectionError, RedisTimeoutError) as exc:
            raise TransientError(f"redis {command} {key!r} at {_safe(self._url)}: {exc}") from exc
        except RedisError as exc:
            # a server-side refusal (WRONGTYPE, OOM, auth) is not fixed by retrying
            raise InvariantViolation(f"redis {command} {key!r} refused: {exc}") from exc


def _as_bytes(value: bytes | str | None) -> bytes | None:
    # the client is built without decode_responses, so str never comes back; be exact anyway
    return value.encode() if isinstance(value, str) else value


def _ttl_ms(ttl: float | None) -> int | None:
    if ttl is None:
        return None
    if ttl <= 0:
        raise ValidationError(f"ttl must be positive seconds, got {ttl}")
    return max(1, round(ttl * 1000))


def _safe(url: str) -> str:
    """The URL without its password, for error messages."""
    return re.sub(r"//([^:@/]*):[^@/]*@", r"//\1:***@", url)
