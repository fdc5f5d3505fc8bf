"""An asyncio KiteTicker client: subscriptions, modes, reconnects, a bounded tick queue.

Kite allows 3,000 instruments per websocket and 3 websockets per API key; tokens are
spread over up to ``connections`` sockets, first filling one. Each socket reconnects on
its own with exponential backoff (with jitter, capped) and re-sends its subscriptions
and modes. Binary messages are decoded with ``parse_ticker_frame``; text messages are
order postbacks (``on_order_update``), errors and notices.

The reader never blocks its socket (Kite drops slow readers): ticks go into a bounded
queue, and when the consumer falls behind the oldest tick is dropped and counted.

Kite's quote and full packets carry the day's cumulative volume and the last trade's
quantity, sent again whenever the book changes though nothing traded (and again in a
reconnect's snapshot). The ticks queued here carry what the log means by them instead
(``MarketTick``): the quantity traded since the instrument's previous tick (``TradedSince``).
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable, Iterable
from typing import Any, Final
from urllib.parse import urlencode

import msgspec
import structlog
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from alpha_panda.adapters.zerodha.config import ZerodhaSettings
from alpha_panda.adapters.zerodha.ticker_codec import parse_ticker_frame
from alpha_panda.domain.errors import AuthenticationError, ConfigurationError, DecodeError
from alpha_panda.domain.events import MarketTick
from alpha_panda.observability.health import ComponentStatus, State

log_ = structlog.get_logger(__name__)
MAX_PER_CONNECTION: Final = 3000
MAX_CONNECTIONS: Final = 3
MODES: Final = ("ltp", "quote", "full")
_BATCH: Final = 500  # tokens per subscribe message


class PostbackHub:
    """Fans order postbacks from whichever ticker socket receives them out to listeners
    (the zerodha order sync), so the feed's socket serves the engine too."""

    def __init__(self) -> None:
        self._listeners: list[Callable[[dict[str, Any]], None]] = []

    def add(self, listener: Callable[[dict[str, Any]], None]) -> None:
        if listener not in self._listeners:
            self._listeners.append(listener)

    def discard(self, listener: Callable[[dict[str, Any]], None]) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def __call__(self, update: dict[str, Any]) -> None:
        for listener in list(self._listeners):
            listener(update)


POSTBACKS: Final = PostbackHub()
"""The process-wide hub: ticker clients publish to it unless given another callback."""


class TradedSince:
    """Turns Kite's cumulative day volume into the quantity traded since each instrument's
    previous tick, into ``volume`` and ``last_quantity`` both (0: nothing traded).

    An instrument's first tick counts nothing: what traded before it was not in it (taken
    whole, a subscription at 11:00 put the morning's volume into one tick, one bar). A
    volume below the last one seen (a new session, or the feed started over) counts nothing
    either and is the new start. A reconnect keeps what was seen: its snapshot counts only
    what traded while the socket was down. Packets without a volume (LTP, index) pass as
    they are and leave the count alone.
    """

    def __init__(self) -> None:
        self._seen: dict[int, int] = {}  # token -> the day's volume at its latest tick

    def __call__(self, tick: MarketTick) -> MarketTick:
        if tick.average_price is None:  # an LTP or index packet: no volume on it
            return tick
        token = tick.instrument_token
        day = tick.volume
        before = self._seen.get(token)
        self._seen[token] = day
        traded = day - before if before is not None and day >= before else 0
        return msgspec.structs.replace(tick, volume=traded, last_quantity=traded)


class KiteTickerClient:
    """Streams ticks for the subscribed tokens until ``run``'s stop event is set."""

    def __init__(self, settings: ZerodhaSettings, access_token: str, *,
                 on_order_update: Callable[[dict[str, Any]], None] | None = None,
                 on_error: Callable[[str], None] | None = None,
                 connections: int | None = None, queue_size: int | None = None,
                 backoff_base_s: float = 0.5, max_delay_s: float | None = None) -> None:
        n = connections or settings.ticker_connections
        if not 1 <= n <= MAX_CONNECTIONS:
            raise ConfigurationError(f"Kite allows 1 to {MAX_CONNECTIONS} ticker connections, not {n}")
        self._ws_url = settings.ws_url
        self._url = settings.ws_url + "?" + urlencode(
            {"api_key": settings.api_key, "access_token": access_token})
        self._on_order = on_order_update or POSTBACKS
        self._on_error = on_error
        self._subs: list[dict[int, str]] = [{} for _ in range(n)]
        self._sockets: list[ClientConnection | None] = [None] * n
        self.queue: asyncio.Queue[MarketTick] = asyncio.Queue(queue_size or settings.ticker_queue_size)
        self._traded = TradedSince()  # (kept over reconnects: a snapshot is no new trade)
        self._base = backoff_base_s
        self._max_delay = max_delay_s or settings.reconnect_max_delay_s
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._stop: asyncio.Event | None = None
        self._state = State.STARTING
        self._detail = ""
        self.received = 0
        self.dropped = 0
        self.heartbeats = 0
        self.decode_errors = 0
        self.no_price = 0  # ticks with no last price (0), not put on the queue
        self.connects = 0
        self.reconnects = 0

    # ------------------------------------------------------------------ subscriptions
    @property
    def subscriptions(self) -> dict[int, str]:
        """Every subscribed token with its mode."""
        return {t: m for subs in self._subs for t, m in subs.items()}

    async def subscribe(self, tokens: Iterable[int], mode: str = "quote") -> None:
        """Subscribe ``tokens`` in ``mode`` (``ltp``, ``quote`` or ``full``); a token already
        subscribed just changes mode. Sent now on live sockets, and again on reconnects."""
        if mode not in MODES:
            raise ConfigurationError(f"unknown ticker mode {mode!r}; one of {', '.join(MODES)}")
        touched: dict[int, list[int]] = {}
        for token in dict.fromkeys(int(t) for t in tokens):
            idx = next((i for i, s in enumerate(self._subs) if token in s), None)
            if idx is None:
                idx = next((i for i, s in enumerate(self._subs) if len(s) < MAX_PER_CONNECTION), None)
            if idx is None:
                raise ConfigurationError(
                    f"more than {MAX_PER_CONNECTION * len(self._subs)} instruments: Kite allows "
                    f"{MAX_PER_CONNECTION} per connection and this client has {len(self._subs)}")
            self._subs[idx][token] = mode
            touched.setdefault(idx, []).append(token)
        for idx, toks in touched.items():
            ws = self._sockets[idx]
            if ws is not None:
                await self._send_subscriptions(ws, {t: mode for t in toks})
            elif self._stop is not None and idx not in self._tasks:
                self._start(idx)  # this socket was not needed until now

    async def unsubscribe(self, tokens: Iterable[int]) -> None:
        drop = {int(t) for t in tokens}
        for idx, subs in enumerate(self._subs):
            gone = [t for t in subs if t in drop]
            for t in gone:
                del subs[t]
            ws = self._sockets[idx]
            if gone and ws is not None:
                for i in range(0, len(gone), _BATCH):
                    await ws.send(json.dumps({"a": "unsubscribe", "v": gone[i:i + _BATCH]}))

    @staticmethod
    async def _send_subscriptions(ws: ClientConnection, subs: dict[int, str]) -> None:
        tokens = list(subs)
        for i in range(0, len(tokens), _BATCH):
            await ws.send(json.dumps({"a": "subscribe", "v": tokens[i:i + _BATCH]}))
        by_mode: dict[str, list[int]] = {}
        for t, m in subs.items():
            by_mode.setdefault(m, []).append(t)
        for m, toks in by_mode.items():
            for i in range(0, len(toks), _BATCH):
                await ws.send(json.dumps({"a": "mode", "v": [m, toks[i:i + _BATCH]]}))

    # ------------------------------------------------------------------ running
    @property
    def name(self) -> str:
        return "feed.kite-ticker"

    def health(self) -> ComponentStatus:
        live = sum(ws is not None for ws in self._sockets)
        return ComponentStatus(
            name=self.name, state=self._state, ready=self._state is State.RUNNING and live > 0,
            detail=self._detail or f"{live}/{len(self._sockets)} connected, {self.dropped} dropped",
            processed=self.received, errors=self.decode_errors)

    async def run(self, stop: asyncio.Event) -> None:
        """Keep every needed connection up until ``stop``; an auth failure ends it."""
        self._state = State.RUNNING
        self._stop = stop
        for idx in [i for i, s in enumerate(self._subs) if s] or [0]:
            self._start(idx)
        watcher = asyncio.create_task(self._close_on(stop))
        try:
            while self._tasks and not stop.is_set():
                done, _ = await asyncio.wait([*self._tasks.values(), watcher],
                                             return_when=asyncio.FIRST_COMPLETED)
                for idx, task in list(self._tasks.items()):
                    if task in done:
                        del self._tasks[idx]
                        task.result()  # re-raises an authentication or configuration error
        except (AuthenticationError, ConfigurationError) as exc:
            self._state, self._detail = State.FAILED, str(exc)
            raise
        finally:
            tasks = [*self._tasks.values(), watcher]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._tasks.clear()
            self._stop = None
            if self._state is not State.FAILED:
                self._state = State.STOPPED

    def _start(self, idx: int) -> None:
        assert self._stop is not None
        self._tasks[idx] = asyncio.create_task(self._connection(idx, self._stop))

    async def _close_on(self, stop: asyncio.Event) -> None:
        await stop.wait()
        for ws in self._sockets:
            if ws is not None:
                await ws.close()

    async def _connection(self, idx: int, stop: asyncio.Event) -> None:
        failures = 0
        while not stop.is_set():
            try:
                async with connect(self._url, ping_interval=10, ping_timeout=10,
                                   max_size=2**22, open_timeout=10) as ws:
                    self._sockets[idx] = ws
                    self.connects += 1
                    if self.connects > 1:
                        self.reconnects += 1
                    failures = 0
                    if self._subs[idx]:
                        await self._send_subscriptions(ws, dict(self._subs[idx]))
                    async for message in ws:
                        self._dispatch(message)
            except InvalidStatus as exc:
                if exc.response.status_code in (401, 403):
                    raise AuthenticationError(
                        "KiteTicker refused the session (HTTP "
                        f"{exc.response.status_code}); run `alpha-panda auth login`") from exc
                self._note(f"ticker handshake failed: HTTP {exc.response.status_code}")
            except InvalidURI as exc:
                # the exception text holds the full URL, access token included: not shown
                raise ConfigurationError(f"bad zerodha.ws_url {self._ws_url!r}") from exc
            except (OSError, ConnectionClosed, InvalidHandshake, TimeoutError) as exc:
                self._note(f"ticker connection {idx} lost: {exc!r}")
            finally:
                self._sockets[idx] = None
            if stop.is_set():
                return
            failures += 1
            delay = min(self._max_delay, self._base * 2 ** (failures - 1))
            delay = random.uniform(delay / 2, delay)  # jitter: sockets do not reconnect in step
            try:
                await asyncio.wait_for(stop.wait(), delay)
            except TimeoutError:
                pass  # backoff over: reconnect

    def _note(self, detail: str) -> None:
        self._detail = detail
        log_.warning("kite_ticker.disconnected", detail=detail)

    def _dispatch(self, message: str | bytes) -> None:
        if isinstance(message, bytes):
            if len(message) <= 1:
                self.heartbeats += 1
                return
            try:
                ticks = parse_ticker_frame(message)
            except DecodeError as exc:
                self.decode_errors += 1
                log_.error("kite_ticker.bad_frame", error=str(exc), size=len(message))
                return
            for tick in ticks:
                if tick.last_price <= 0:
                    # no price (an instrument with no trade yet): not a print to match or
                    # mark at, and the services would dead-letter it (``MarketTick``)
                    self.no_price += 1
                    continue
                self._put(self._traded(tick))
            return
        self._text(message)

    def _put(self, tick: MarketTick) -> None:
        self.received += 1
        if self.queue.full():
            self.queue.get_nowait()  # the oldest tick is the least useful one
            self.dropped += 1
        self.queue.put_nowait(tick)

    def _text(self, message: str) -> None:
        try:
            msg = json.loads(message)
        except json.JSONDecodeError:
            log_.warning("kite_ticker.unreadable_text", size=len(message))
            return
        if not isinstance(msg, dict):
            # (JSON but no object: raised out of the socket's task, it ended the ticker)
            log_.warning("kite_ticker.unreadable_text", size=len(message))
            return
        kind, data = msg.get("type"), msg.get("data")
        if kind == "order" and isinstance(data, dict):
            self._on_order(data)
        elif kind == "error":
            log_.error("kite_ticker.error", message=str(data))
            if self._on_error is not None:
                self._on_error(str(data))
        else:
            log_.info("kite_ticker.message", type=kind, message=str(data)[:200])
