"""``RedisRiskStateStore``: the risk engine's rate-limit counters and kill switch on Redis.

Several risk-manager instances of one account call ``acquire`` on the same keys; one
Lua script counts every window and records the order only if all have room, so the
check-and-record is atomic and the account limit (Kite's 10/s, 400/min, 5,000/day)
holds however many instances run. Each window is a sorted set of signal ids scored by
event time in microseconds (exact in a double until the year 2255); a per-day window is
one set per IST date. The keys of one account share a hash tag (``{account}``) so the
script also runs on Redis Cluster. The kill switch is one key per account
(``risk:{account}:kill_switch``, present = on), read on every check: setting it stops
every instance at once, and it survives restarts.

The client is synchronous because ``RiskEngine.check`` is; a local round trip is well
under a millisecond. Redis errors become ``TransientError`` (retried by the consumer).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis
from redis.exceptions import RedisError

from alpha_panda.domain.errors import ConfigurationError, TransientError
from alpha_panda.risk.state import KEEP_WINDOWS, RateWindow

_DAY_TTL_S = 2 * 86_400

# KEYS: one sorted set per window. ARGV: member, ts, n, then per window: limit, exclusive
# lower and upper score ("(x", or -inf/+inf for a calendar bucket), trim bound, ttl ms, code.
# Numbers are passed as strings: Lua would print large ones in exponent form.
_ACQUIRE = """
local member = ARGV[1]
local ts = ARGV[2]
local n = tonumber(ARGV[3])
local w = 6
for i = 1, n do
  if redis.call('ZSCORE', KEYS[i], member) then return '' end
end
for i = 1, n do
  local b = 3 + (i - 1) * w
  local count = redis.call('ZCOUNT', KEYS[i], ARGV[b + 2], ARGV[b + 3])
  if count >= tonumber(ARGV[b + 1]) then return ARGV[b + 6] end
end
for i = 1, n do
  local b = 3 + (i - 1) * w
  redis.call('ZADD', KEYS[i], ts, member)
  if ARGV[b + 4] ~= '' then redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', ARGV[b + 4]) end
  redis.call('PEXPIRE', KEYS[i], ARGV[b + 5])
end
return ''
"""


class RedisRiskStateStore:
    """A ``RiskStateStore`` on Redis, safe to share between processes."""

    def __init__(self, url: str, *, prefix: str = "", client: redis.Redis | None = None) -> None:
        try:
            self._redis = client or redis.Redis.from_url(url, socket_timeout=5.0)
        except ValueError as exc:
            raise ConfigurationError(f"bad Redis URL {url!r}: {exc}") from exc
        self._prefix = prefix
        self._script: Any = self._redis.register_script(_ACQUIRE)

    def _key(self, account: str, window: RateWindow) -> str:
        suffix = f"{window.code}:{window.bucket}" if window.bucket else window.code
        return f"{self._prefix}risk:{{{account}}}:rate:{suffix}"

    def acquire(
        self, account: str, member: str, ts_us: int, windows: Sequence[RateWindow]
    ) -> str | None:
        if not windows:
            return None
        args: list[str | int] = [member, str(ts_us), len(windows)]
        for w in windows:
            if w.bucket is not None:
                args += [w.limit, "-inf", "+inf", "", _DAY_TTL_S * 1000, w.code]
            else:
                lo, hi = w.span(ts_us)
                ttl_ms = max(1, (KEEP_WINDOWS + 2) * w.window_us // 1000)
                args += [w.limit, f"({lo}", f"({hi}", f"({ts_us - KEEP_WINDOWS * w.window_us}",
                         ttl_ms, w.code]
        keys = [self._key(account, w) for w in windows]
        try:
            result = self._script(keys=keys, args=args)
        except RedisError as exc:
            raise TransientError(f"risk state on Redis unavailable: {exc}") from exc
        code = result.decode() if isinstance(result, bytes) else str(result or "")
        return code or None

    def count(self, account: str, window: RateWindow, ts_us: int) -> int:
        lo, hi = ("-inf", "+inf") if window.bucket is not None else (
            f"({ts_us - window.window_us}", str(ts_us))
        try:
            return int(self._redis.zcount(self._key(account, window), lo, hi))
        except RedisError as exc:
            raise TransientError(f"risk state on Redis unavailable: {exc}") from exc

    def kill_switch(self, account: str) -> bool:
        try:
            return bool(self._redis.exists(self._kill_key(account)))
        except RedisError as exc:
            raise TransientError(f"risk state on Redis unavailable: {exc}") from exc

    def set_kill_switch(self, account: str, active: bool) -> None:
        try:
            if active:
                self._redis.set(self._kill_key(account), "1")
            else:
                self._redis.delete(self._kill_key(account))
        except RedisError as exc:
            raise TransientError(f"risk state on Redis unavailable: {exc}") from exc

    def _kill_key(self, account: str) -> str:
        return f"{self._prefix}risk:{{{account}}}:kill_switch"

    def close(self) -> None:
        self._redis.close()
