"""The official ``kiteconnect`` client, wrapped for asyncio, with errors translated.

``KiteConnect`` is synchronous (requests); every call runs on a bounded thread pool so
the event loop never blocks and at most ``max_workers`` calls are in flight. Vendor
errors become ours at this boundary:

    TokenException            -> AuthenticationError (stop live trading, alert)
    HTTP 429                  -> RateLimited (retried with backoff)
    Network/Data/General, I/O -> BrokerUnavailable (retried)
    an answer it cannot read  -> BrokerUnavailable (retried; a placement's tag looked up)
    Input/Order on placement  -> OrderRefused (a rejection event, never retried)
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

import requests
from kiteconnect import KiteConnect
from kiteconnect import exceptions as kex

from alpha_panda.adapters.zerodha.config import ZerodhaSettings
from alpha_panda.adapters.zerodha.rate_limit import RateLimiter
from alpha_panda.domain.errors import (
    AuthenticationError,
    BrokerUnavailable,
    RateLimited,
    TransientError,
    ValidationError,
)
from alpha_panda.domain.events import FundsReported
from alpha_panda.domain.values import round_to_paise

T = TypeVar("T")


class OrderRefused(ValidationError):
    """Kite refused an order outright (bad input, RMS); carries Kite's message."""

    def __init__(self, message: str, error_type: str) -> None:
        super().__init__(message)
        self.error_type = error_type


def translate(exc: BaseException, what: str) -> Exception:
    """Our error for a kiteconnect/requests exception raised while doing ``what``."""
    if isinstance(exc, kex.TokenException):
        return AuthenticationError(f"Kite session rejected during {what}: {exc}; "
                                   "run `alpha-panda auth login`")
    if isinstance(exc, kex.KiteException) and exc.code == 429:
        return RateLimited(f"Kite rate limit during {what}: {exc}", retry_after=1.0)
    if isinstance(exc, (kex.InputException, kex.OrderException, kex.PermissionException)):
        return OrderRefused(str(exc), type(exc).__name__)
    if isinstance(exc, kex.KiteException):
        return BrokerUnavailable(f"Kite error during {what} ({exc.code}): {exc}")
    if isinstance(exc, requests.Timeout):
        # a timed-out placement may still have reached Kite: the tag check finds it on retry
        return TransientError(f"Kite timed out during {what}: {exc}")
    if isinstance(exc, (requests.RequestException, OSError)):
        return BrokerUnavailable(f"Kite unreachable during {what}: {exc}")
    return BrokerUnavailable(f"unexpected Kite client failure during {what}: {exc!r}")


class KiteRestClient:
    """Async facade over ``KiteConnect`` for one logged-in session."""

    def __init__(self, settings: ZerodhaSettings, access_token: str, *,
                 order_limiter: RateLimiter | None = None,
                 request_limiter: RateLimiter | None = None) -> None:
        self._kite = KiteConnect(api_key=settings.api_key, access_token=access_token,
                                 root=settings.root_url, timeout=settings.request_timeout_s,
                                 pool={"pool_connections": settings.max_workers,
                                       "pool_maxsize": settings.max_workers})
        self._kite.reqsession.mount("http://", self._kite.reqsession.adapters["https://"])
        self._pool = ThreadPoolExecutor(settings.max_workers, thread_name_prefix="kite")
        self.order_limiter = order_limiter or RateLimiter.kite_orders(
            settings.orders_per_second, settings.orders_per_minute, settings.orders_per_day)
        self.request_limiter = request_limiter or RateLimiter(
            [(settings.requests_per_second, 1.0)], max_wait_s=5.0)
        self.calls = 0

    async def _call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        self.calls += 1
        try:
            return await loop.run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))
        except Exception as exc:
            # Anything else kiteconnect raises is an answer it could not read (a proxy's
            # error page without a Content-Type is a KeyError): an outcome unknown, as a
            # timeout's, so a placement is looked up by its tag before it is tried again
            # (else the signal was dead-lettered with the order working at Kite).
            raise translate(exc, what) from exc

    async def place_order(self, params: dict[str, Any]) -> str:
        """Place one order (Kite's parameters, ``variety`` included); its Kite order id."""
        await self.order_limiter.acquire()
        p = dict(params)
        variety = p.pop("variety", "regular")
        return str(await self._call("place_order", self._kite.place_order, variety, **p))

    async def cancel_order(self, order_id: str, variety: str = "regular") -> str:
        await self.order_limiter.acquire()
        return str(await self._call("cancel_order", self._kite.cancel_order, variety, order_id))

    async def _get(self, what: str, fn: Callable[..., T], *args: Any) -> T:
        await self.request_limiter.acquire()
        return await self._call(what, fn, *args)

    async def orders(self) -> list[dict[str, Any]]:
        """The day's order book."""
        return await self._get("orders", self._kite.orders)

    async def trades(self) -> list[dict[str, Any]]:
        """The day's trade book (one row per execution)."""
        return await self._get("trades", self._kite.trades)

    async def order_history(self, order_id: str) -> list[dict[str, Any]]:
        return await self._get("order_history", self._kite.order_history, order_id)

    async def positions(self) -> dict[str, list[dict[str, Any]]]:
        return await self._get("positions", self._kite.positions)

    async def margins(self, segment: str = "equity") -> dict[str, Any]:
        """Funds and margins of one segment (Kite's ``GET /user/margins/:segment``)."""
        return await self._get("margins", self._kite.margins, segment)

    async def profile(self) -> dict[str, Any]:
        return await self._get("profile", self._kite.profile)

    async def instruments(self, exchange: str | None = None) -> list[dict[str, Any]]:
        return await self._get("instruments", self._kite.instruments, exchange)

    async def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._kite.reqsession.close()


def funds_reported(margins: dict[str, Any], segment: str = "equity") -> FundsReported:
    """The account's funds from Kite's margins of ``segment``: ``available.cash`` (the cash
    balance, the day's pay-ins included) and ``available.opening_balance``, in paise (Kite
    sends rupees as JSON numbers: 99725.05000000002 is ₹99,725.05)."""
    available = margins.get("available")
    if not isinstance(available, dict) or "cash" not in available:
        raise BrokerUnavailable(f"Kite's {segment} margins carry no available.cash: {margins!r}")
    opening = available.get("opening_balance")
    try:
        return FundsReported(
            cash=round_to_paise(Decimal(str(available["cash"]))),
            opening_balance=None if opening is None else round_to_paise(Decimal(str(opening))),
            segment=segment)
    except InvalidOperation as exc:
        raise BrokerUnavailable(f"Kite's {segment} margins are not amounts: {available!r}") from exc
