"""The fake's KiteTicker side: a websocket server on its own event loop thread.

It authenticates connections as Kite does (``api_key`` and ``access_token`` in the query),
keeps each connection's subscriptions and modes, sends ticks in Kite's binary frames (our
encoder, ``adapters.zerodha.ticker_codec``), text messages (errors, order postbacks) and
heartbeats, and can stream random-walk ticks or drop every connection. A mixin of
``FakeKite``: it shares the fake's prices, tokens and lock with the REST side.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlparse

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from alpha_panda.adapters.zerodha.ticker_codec import (
    FULL_LEN,
    INDEX_FULL_LEN,
    LTP_LEN,
    QUOTE_LEN,
    SEG_INDICES,
    encode_ticker_frame,
    segment_of,
)
from alpha_panda.domain.events import MarketTick

# The server's per-connection INFO lines ("connection closed") come from its own thread,
# often after a test's log capture has closed: warnings and errors only.
_WS_LOG = logging.getLogger("alpha_panda.testing.fake_kite.ws")
_WS_LOG.setLevel(logging.WARNING)


class FakeTicker:
    """The ticker part of ``FakeKite`` (a mixin: it uses the fake's state)."""

    if TYPE_CHECKING:
        api_key: str
        access_tokens: set[str]
        prices: dict[int, int]
        clock: Callable[[], int]
        ws_clients: dict[ServerConnection, dict[int, str]]
        ws_connects: int
        ws_messages: list[dict[str, Any]]
        _lock: threading.RLock
        _ws_port: int
        _loop: asyncio.AbstractEventLoop | None
        _ws: Server | None
        _volume: dict[int, int]
        _streams: list[Future[None]]

    def _run_ws(self, ready: threading.Event) -> None:
        loop = self._loop = asyncio.new_event_loop()

        async def boot() -> None:
            self._ws = await serve(self._ws_conn, "127.0.0.1", self._ws_port,
                                   process_request=self._ws_auth, ping_interval=None,
                                   logger=_WS_LOG)

        try:
            loop.run_until_complete(boot())
        except OSError:  # (the port is taken: ``start`` says so)
            return
        finally:
            ready.set()
        loop.run_forever()

    def _ws_auth(self, conn: ServerConnection, request: Request) -> Response | None:
        q = parse_qs(urlparse(request.path).query)
        with self._lock:
            ok = (q.get("api_key", [""])[0] == self.api_key
                  and q.get("access_token", [""])[0] in self.access_tokens)
        if ok:
            return None
        return Response(403, "Forbidden", Headers(), b"invalid api_key or access_token")

    async def _ws_conn(self, conn: ServerConnection) -> None:
        subs: dict[int, str] = {}
        self.ws_clients[conn] = subs
        self.ws_connects += 1
        try:
            async for raw in conn:
                msg = json.loads(raw)
                self.ws_messages.append(msg)
                action, value = msg.get("a"), msg.get("v")
                if action == "subscribe":
                    if len(subs) + len(value) > 3000:
                        await conn.send(json.dumps({"type": "error",
                                                    "data": "instrument limit of 3000 exceeded"}))
                        continue
                    for t in value:
                        subs.setdefault(int(t), "quote")
                elif action == "unsubscribe":
                    for t in value:
                        subs.pop(int(t), None)
                elif action == "mode":
                    for t in value[1]:
                        if int(t) in subs:
                            subs[int(t)] = value[0]
        except ConnectionClosed:
            pass  # the client went away; forget its subscriptions below
        finally:
            self.ws_clients.pop(conn, None)

    def _call(self, coro: Any) -> Any:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(5)

    async def _close_ws(self) -> None:
        assert self._ws is not None
        self._ws.close()
        await self._ws.wait_closed()

    def push_ticks(self, ticks: Iterable[MarketTick]) -> int:
        """Send each subscribed connection its ticks in its mode; returns frames sent."""
        return int(self._call(self._send_ticks(list(ticks))))

    async def _send_ticks(self, ticks: list[MarketTick]) -> int:
        sent = 0
        for conn, subs in list(self.ws_clients.items()):
            packets = [(t, _length(t.instrument_token, subs[t.instrument_token]))
                       for t in ticks if t.instrument_token in subs]
            if packets:
                try:
                    await conn.send(encode_ticker_frame(packets))
                except ConnectionClosed:
                    continue  # that client is reconnecting
                sent += 1
        return sent

    def start_streaming(self, interval_s: float = 0.5, seed: int = 0) -> None:
        """Push random-walk ticks (on the 0.05 grid) for every subscribed token, forever."""
        rng = random.Random(seed)
        # token -> [open, high, low, previous close, turnover, quantity] of the session
        sessions: dict[int, list[int]] = {}

        async def stream() -> None:
            while True:
                await asyncio.sleep(interval_s)
                tokens = {t for subs in self.ws_clients.values() for t in subs}
                ticks = []
                for token in sorted(tokens):
                    with self._lock:
                        before = self.prices.get(token, 1_000_00)
                        last = max(5, before + 5 * rng.randint(-3, 3))
                        self.prices[token] = last
                    # the session so far, as Kite's ticks carry it: close is the previous
                    # session's (here the price streaming started from), not the last price
                    # (the day's change and P&L read it); open, high, low of the day
                    session = sessions.setdefault(token, [last, last, last, before, 0, 0])
                    session[1], session[2] = max(session[1], last), min(session[2], last)
                    traded = rng.randint(1, 50)
                    session[4] += traded * last
                    session[5] += traded
                    self._volume[token] = self._volume.get(token, 0) + traded
                    ticks.append(MarketTick(
                        instrument_token=token, last_price=last, ts=self.clock() // 10**9 * 10**9,
                        volume=self._volume[token], last_quantity=traded,
                        open=session[0], high=session[1], low=session[2], close=session[3],
                        average_price=session[4] // session[5],
                        tradable=segment_of(token) != SEG_INDICES))
                if ticks:
                    await self._send_ticks(ticks)

        assert self._loop is not None
        self._streams.append(asyncio.run_coroutine_threadsafe(stream(), self._loop))

    def send_text(self, message: Any) -> None:
        """A text message to every ticker client: ``message`` as JSON (``{"type": "error",
        "data": ...}``, or any JSON value, as a misbehaving server might send)."""
        async def send() -> None:
            for conn in list(self.ws_clients):
                await conn.send(json.dumps(message))

        self._call(send())

    def send_heartbeat(self) -> None:
        async def send() -> None:
            for conn in list(self.ws_clients):
                await conn.send(b"\x00")

        self._call(send())

    def drop_connections(self) -> None:
        """Close every ticker connection abruptly, as a network failure would."""
        async def drop() -> None:
            for conn in list(self.ws_clients):
                conn.transport.abort()

        self._call(drop())

    def _postback(self, order: dict[str, Any]) -> None:
        if self._loop is None:
            return
        text = json.dumps({"type": "order", "id": "", "data": dict(order)})

        async def send() -> None:
            for conn in list(self.ws_clients):
                try:
                    await conn.send(text)
                except ConnectionClosed:
                    continue  # that client reconnects and polls
        asyncio.run_coroutine_threadsafe(send(), self._loop)


def _length(token: int, mode: str) -> int:
    index = segment_of(token) == SEG_INDICES
    if mode == "ltp":
        return LTP_LEN
    if mode == "full":
        return INDEX_FULL_LEN if index else FULL_LEN
    return 28 if index else QUOTE_LEN
