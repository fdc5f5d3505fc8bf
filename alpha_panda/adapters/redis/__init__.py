"""Redis adapter: the read-model cache on a real Redis server."""

from alpha_panda.adapters.redis.cache import RedisCache

__all__ = ["RedisCache"]
