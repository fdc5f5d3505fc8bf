"""The live market feed: KiteTicker ticks published to ``market.ticks``, keyed by token.

Ticks are appended in batches with ids ``tick_id("kite", seq)``; the sequence resumes
from the tail of ``market.ticks`` after a restart, like the other feeds. Order postbacks
arriving on the same websocket are handed to ``on_order_update`` (the zerodha order
sync), so one socket serves both.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable
from typing import Any

import structlog

from alpha_panda.adapters.zerodha.client import KiteRestClient
from alpha_panda.adapters.zerodha.config import ZerodhaSettings, zerodha_settings
from alpha_panda.adapters.zerodha.instruments import InstrumentMaster
from alpha_panda.adapters.zerodha.session import require_live_session
from alpha_panda.adapters.zerodha.ticker import KiteTickerClient
from alpha_panda.domain.errors import ConfigurationError
from alpha_panda.domain.events import MarketTick
from alpha_panda.execution.market import MarketCalendar
from alpha_panda.observability.health import ComponentStatus, State
from alpha_panda.services.feed import TickPublisher, resume_point
from alpha_panda.stream.log import Log

log_ = structlog.get_logger(__name__)


class KiteFeed:
    """Runs the ticker client and publishes what it receives until stopped."""

    SOURCE = "kite"

    def __init__(self, log: Log, ticker: KiteTickerClient, instruments: Iterable[int | str], *,
                 mode: str = "quote", batch: int = 500, settings: ZerodhaSettings | None = None,
                 access_token: str = "") -> None:
        self._log = log
        self.ticker = ticker
        self.publisher = TickPublisher(log, self.SOURCE)
        self._refs = list(dict.fromkeys(instruments))
        self._tokens: list[int] = []
        self._settings = settings
        self._access_token = access_token
        self.done = asyncio.Event()  # a live feed never finishes on its own
        self._mode = mode
        self._batch = batch
        self._state = State.STARTING
        self._detail = ""

    @property
    def name(self) -> str:
        return "feed.kite"

    def health(self) -> ComponentStatus:
        ticker = self.ticker.health()
        return ComponentStatus(name=self.name, state=self._state,
                               ready=self._state is State.RUNNING and ticker.ready,
                               detail=self._detail or ticker.detail,
                               processed=self.publisher.published, errors=ticker.errors)

    async def _resolve(self) -> list[int]:
        tokens = [int(r) for r in self._refs if isinstance(r, int) or r.isdigit()]
        names = [r for r in self._refs if isinstance(r, str) and not r.isdigit()]
        if names:
            if self._settings is None:
                raise ConfigurationError(f"instrument names {names} need the Kite instrument list")
            kite = KiteRestClient(self._settings, self._access_token)
            try:
                master = await InstrumentMaster.load(self._settings.instruments_dir,
                                                     kite.instruments)
            finally:
                await kite.close()
            tokens += [master.resolve(n) for n in names]
        return list(dict.fromkeys(tokens))

    async def run(self, stop: asyncio.Event) -> None:
        """Subscribe and publish until ``stop``; a refused session fails it (FAILED)."""
        self._tokens = await self._resolve()
        seq, _ = await resume_point(self._log, self.SOURCE)
        await self.ticker.subscribe(self._tokens, self._mode)
        ticker = asyncio.create_task(self.ticker.run(stop))
        self._state = State.RUNNING
        log_.info("kite_feed.started", instruments=len(self._tokens), mode=self._mode)
        # (the sessions the risk manager and the MIS cut-off go by, and a paper engine's)
        if (note := MarketCalendar.load().unknown_years_note(time.time_ns())) is not None:
            log_.warning("calendar.years_unknown", detail=note)
        try:
            while not stop.is_set() and not ticker.done():
                ticks = await self._next_batch(stop)
                if ticks:
                    await self.publisher.publish(ticks, seq)
                    seq += len(ticks)
            if ticker.done():
                ticker.result()  # an authentication failure surfaces here
        except BaseException as exc:
            self._state, self._detail = State.FAILED, f"{type(exc).__name__}: {exc}"
            raise
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
        self._state = State.STOPPED

    async def _next_batch(self, stop: asyncio.Event) -> list[MarketTick]:
        q = self.ticker.queue
        try:
            first = await asyncio.wait_for(q.get(), 0.1)
        except TimeoutError:
            return []
        ticks = [first]
        while len(ticks) < self._batch and not q.empty():
            ticks.append(q.get_nowait())
        return ticks


def build_kite_feed(settings: Any, log: Log, instruments: Iterable[Any], *,
                    mode: str = "quote",
                    on_order_update: Callable[[dict[str, Any]], None] | None = None) -> KiteFeed:
    """The live feed for ``instruments``: tokens, ``EXCHANGE:SYMBOL`` names, or strategy
    configs (their ``instruments``). ``settings``: the app settings or ``ZerodhaSettings``.

    Needs a valid Kite session (``AuthenticationError`` otherwise). Order postbacks go to
    ``on_order_update``, by default the process-wide hub the zerodha order sync listens on.
    """
    zs = zerodha_settings(settings)
    session = require_live_session(zs)
    refs: list[int | str] = []
    for item in instruments:
        if isinstance(item, int | str):
            refs.append(item)
        else:
            refs += list(getattr(item, "instruments", []))
    ticker = KiteTickerClient(zs, session.access_token, on_order_update=on_order_update)
    return KiteFeed(log, ticker, refs, mode=mode, settings=zs, access_token=session.access_token)
