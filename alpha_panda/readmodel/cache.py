"""The cache port the projector writes and the API reads."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class Cache(Protocol):
    """A key/value cache with optional TTLs (in-process by default, Redis when configured)."""

    async def get(self, key: str) -> bytes | None: ...

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]: ...

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None: ...

    async def set_many(self, items: dict[str, bytes], ttl: float | None = None) -> None: ...

    async def delete(self, key: str) -> None: ...

    async def keys(self, prefix: str) -> list[str]: ...

    async def close(self) -> None: ...
