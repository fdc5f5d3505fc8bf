"""The asyncio KiteTicker client and the live feed against the fake ticker websocket."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest

from alpha_panda.adapters.memory_log import MemoryLog
from alpha_panda.adapters.zerodha.config import ZerodhaSettings
from alpha_panda.adapters.zerodha.session import KiteSession
from alpha_panda.adapters.zerodha.ticker import KiteTickerClient
from alpha_panda.domain.errors import AuthenticationError, ConfigurationError
from alpha_panda.domain.events import CODEC, Depth, DepthLevel, MarketTick
from alpha_panda.services.kite_feed import build_kite_feed
from alpha_panda.stream.log import TopicPartition
from alpha_panda.stream.topics import MARKET_TICKS
from alpha_panda.testing.fake_kite import FakeKite

from .helpers import INFY, count, wait_for

NIFTY, USDINR = 256265, 412675
TS = 1_764_000_000 * 10**9


async def _until(cond: Any, timeout: float = 5.0) -> None:
    async def check() -> bool:
        return bool(cond())
    await wait_for(check, timeout)


@contextlib.asynccontextmanager
async def running(client: KiteTickerClient) -> AsyncIterator[asyncio.Task[None]]:
    stop = asyncio.Event()
    task = asyncio.create_task(client.run(stop))
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)


def _ticks() -> list[MarketTick]:
    return [
        MarketTick(instrument_token=INFY, last_price=188_055, ts=TS, volume=1000, last_quantity=5,
                   average_price=187_990, open=187_000, high=189_000, low=186_500, close=187_500,
                   change=(188_055 - 187_500) * 100 / 187_500, oi=0, buy_quantity=10,
                   sell_quantity=20, depth=Depth(buy=(DepthLevel(188_050, 10, 2),),
                                                 sell=(DepthLevel(188_060, 3, 1),))),
        MarketTick(instrument_token=NIFTY, last_price=2_450_010, ts=TS, high=2_460_000,
                   low=2_440_000, open=2_445_000, close=2_430_000,
                   change=(2_450_010 - 2_430_000) * 100 / 2_430_000, tradable=False),
        MarketTick(instrument_token=USDINR, last_price=8_425, ts=TS, price_e4=842_525),
    ]


async def test_modes_deliver_the_right_packets(settings: ZerodhaSettings, session: KiteSession,
                                               fake: FakeKite) -> None:
    client = KiteTickerClient(settings, session.access_token)
    await client.subscribe([INFY, NIFTY], "full")
    await client.subscribe([USDINR], "ltp")
    async with running(client):
        await _until(lambda: fake.ws_clients and len(next(iter(fake.ws_clients.values()))) == 3)
        await _until(lambda: next(iter(fake.ws_clients.values())).get(USDINR) == "ltp")
        fake.push_ticks(_ticks())
        got = [await asyncio.wait_for(client.queue.get(), 5) for _ in range(3)]
    # full equity packet, five-level depth and all; the first tick of INFY seen: the day's
    # 1,000 shares traded before it, none in it
    assert got[0] == msgspec.structs.replace(_ticks()[0], volume=0, last_quantity=0)
    assert got[1] == _ticks()[1]  # index full packet, not tradable
    usd = got[2]
    assert (usd.last_price, usd.price_e4, usd.instrument_token) == (8_425, 842_525, USDINR)
    assert {"a": "mode", "v": ["full", [INFY, NIFTY]]} in fake.ws_messages


async def test_reconnects_and_resubscribes_after_the_server_drops_it(
        settings: ZerodhaSettings, session: KiteSession, fake: FakeKite) -> None:
    client = KiteTickerClient(settings, session.access_token, backoff_base_s=0.05)
    await client.subscribe([INFY], "full")
    async with running(client):
        await _until(lambda: any(s.get(INFY) == "full" for s in fake.ws_clients.values()))
        fake.drop_connections()
        await _until(lambda: fake.ws_connects == 2 and any(
            s.get(INFY) == "full" for s in fake.ws_clients.values()))
        fake.push_ticks(_ticks()[:1])
        tick = await asyncio.wait_for(client.queue.get(), 5)
        fake.send_heartbeat()
        await _until(lambda: client.heartbeats == 1)
    assert tick.instrument_token == INFY and tick.depth is not None
    assert client.reconnects == 1
    assert client.health().state.value == "stopped"


async def test_order_postbacks_and_errors_arrive_as_text(
        settings: ZerodhaSettings, session: KiteSession, fake: FakeKite) -> None:
    updates: list[dict[str, Any]] = []
    errors: list[str] = []
    client = KiteTickerClient(settings, session.access_token, on_order_update=updates.append,
                              on_error=errors.append, connections=2)
    async with running(client):
        await _until(lambda: fake.ws_clients)
        fake._place("regular", {"exchange": "NSE", "tradingsymbol": "INFY", "quantity": "2",
                                "transaction_type": "BUY", "product": "CNC", "order_type": "MARKET",
                                "market_protection": "-1"})
        await _until(lambda: any(u["status"] == "COMPLETE" for u in updates))
        fake.send_text({"type": "error", "data": "Invalid instrument token"})
        await _until(lambda: errors)
        await client.subscribe(range(1, 3002))  # one socket cannot take them all
        await _until(lambda: sorted(len(s) for s in fake.ws_clients.values()) == [1, 3000])
    assert updates[-1]["filled_quantity"] == 2
    assert errors == ["Invalid instrument token"]
    assert len(client.subscriptions) == 3001
    assert fake.ws_connects == 2  # the 3,001st instrument opened a second connection


async def test_a_text_message_that_is_not_a_json_object_is_logged_not_fatal(
        settings: ZerodhaSettings, session: KiteSession, fake: FakeKite) -> None:
    # JSON that is not an object (``[1]``, ``"ok"``): ``msg.get`` raised AttributeError out
    # of the socket's task, which ended the ticker and failed the live feed: no more ticks,
    # and no exit of a live position on them.
    client = KiteTickerClient(settings, session.access_token)
    await client.subscribe([INFY], "ltp")
    async with running(client) as task:
        await _until(lambda: any(s.get(INFY) == "ltp" for s in fake.ws_clients.values()))
        for message in ([1], "ok", None, 7):
            fake.send_text(message)
        fake.push_ticks([MarketTick(instrument_token=INFY, last_price=100_00, ts=TS)])
        tick = await asyncio.wait_for(client.queue.get(), 5)
        assert not task.done()
    assert tick.last_price == 100_00
    assert client.reconnects == 0 and client.health().state.value == "stopped"


async def test_more_instruments_than_the_connections_allow_is_an_error(
        settings: ZerodhaSettings) -> None:
    client = KiteTickerClient(settings, "token", connections=1)
    with pytest.raises(ConfigurationError, match="3000 per connection"):
        await client.subscribe(range(1, 3002))
    with pytest.raises(ConfigurationError):
        KiteTickerClient(settings, "token", connections=4)


async def test_a_refused_session_stops_the_ticker(settings: ZerodhaSettings,
                                                  session: KiteSession, fake: FakeKite) -> None:
    fake.expire_tokens()
    client = KiteTickerClient(settings, session.access_token)
    with pytest.raises(AuthenticationError, match="auth login"):
        await asyncio.wait_for(client.run(asyncio.Event()), 5)


async def test_a_slow_consumer_loses_the_oldest_ticks_counted(
        settings: ZerodhaSettings, session: KiteSession, fake: FakeKite) -> None:
    client = KiteTickerClient(settings, session.access_token, queue_size=3)
    await client.subscribe([INFY], "ltp")
    async with running(client):
        await _until(lambda: any(s.get(INFY) == "ltp" for s in fake.ws_clients.values()))
        for i in range(5):
            fake.push_ticks([MarketTick(instrument_token=INFY, last_price=100_00 + i, ts=TS)])
        await _until(lambda: client.received == 5)
    assert client.dropped == 2
    assert [client.queue.get_nowait().last_price for _ in range(3)] == [100_02, 100_03, 100_04]


async def test_a_tick_with_no_last_price_is_not_passed_on(
        settings: ZerodhaSettings, session: KiteSession, fake: FakeKite) -> None:
    # an instrument not traded yet is sent at 0: on the log it filled orders at ₹0
    client = KiteTickerClient(settings, session.access_token)
    await client.subscribe([INFY], "ltp")
    async with running(client):
        await _until(lambda: any(s.get(INFY) == "ltp" for s in fake.ws_clients.values()))
        fake.push_ticks([MarketTick(instrument_token=INFY, last_price=0, ts=TS),
                         MarketTick(instrument_token=INFY, last_price=100_00, ts=TS)])
        await _until(lambda: client.received == 1)
    assert client.no_price == 1
    assert client.queue.get_nowait().last_price == 100_00 and client.queue.empty()


async def test_the_kite_feed_publishes_ticks_to_market_ticks(
        settings: ZerodhaSettings, session: KiteSession, fake: FakeKite, log: MemoryLog) -> None:
    feed = build_kite_feed(settings, log, ["NSE:INFY", NIFTY], mode="full")
    stop = asyncio.Event()
    task = asyncio.create_task(feed.run(stop))
    await _until(lambda: any(len(s) == 2 for s in fake.ws_clients.values()))
    started = time.monotonic()
    fake.push_ticks(_ticks()[:2])
    await wait_for(lambda: _count_at_least(log, 2))
    stop.set()
    await asyncio.wait_for(task, 5)
    assert time.monotonic() - started < 2
    records = []
    for p in await log.end_offsets(MARKET_TICKS):
        records += await log.read(TopicPartition(MARKET_TICKS, p), 0)
    by_key = {r.key: CODEC.decode(r.value) for r in records}
    assert by_key[str(INFY).encode()].data == msgspec.structs.replace(
        _ticks()[0], volume=0, last_quantity=0)  # its first tick: nothing traded in it
    assert by_key[str(NIFTY).encode()].data.tradable is False


async def _count_at_least(log: MemoryLog, n: int) -> bool:
    return await count(log, MARKET_TICKS) >= n


async def test_a_bad_ws_url_is_reported_without_the_access_token(
        settings: ZerodhaSettings) -> None:
    bad = settings.model_copy(update={"ws_url": "http://not-a-websocket"})
    client = KiteTickerClient(bad, "secret-access-token")
    with pytest.raises(ConfigurationError) as err:
        await asyncio.wait_for(client.run(asyncio.Event()), 5)
    assert "not-a-websocket" in str(err.value) and "secret-access-token" not in str(err.value)
    assert client.health().state.value == "failed"


async def test_volume_is_what_traded_since_the_previous_tick_not_the_last_trade_again(
        settings: ZerodhaSettings, session: KiteSession, fake: FakeKite) -> None:
    # Kite sends a quote whenever the book changes, with the day's cumulative volume and the
    # last trade's quantity again even when nothing traded; a reconnect's snapshot repeats
    # them once more. Taken as "traded in this tick", these five ticks held 5+5+7+7+3 = 27
    # shares where 10 traded (bars, VWAP weights, the paper exchange's participation caps).
    def quote(cum: int, last: int, bid_qty: int) -> MarketTick:
        return MarketTick(instrument_token=INFY, last_price=188_055, ts=TS, volume=cum,
                          last_quantity=last, average_price=187_990, open=187_000,
                          high=189_000, low=186_500, close=187_500, buy_quantity=bid_qty,
                          sell_quantity=20)

    client = KiteTickerClient(settings, session.access_token, backoff_base_s=0.05)
    await client.subscribe([INFY], "quote")
    got: list[MarketTick] = []
    async with running(client):
        await _until(lambda: any(s.get(INFY) == "quote" for s in fake.ws_clients.values()))
        # the first tick of the day as seen: 1,000 traded before it, not in it
        for cum, last, bid in [(1_000, 5, 10), (1_000, 5, 12), (1_007, 7, 12)]:
            fake.push_ticks([quote(cum, last, bid)])
            got.append(await asyncio.wait_for(client.queue.get(), 5))
        fake.drop_connections()
        await _until(lambda: fake.ws_connects == 2 and any(
            s.get(INFY) == "quote" for s in fake.ws_clients.values()))
        for cum, last, bid in [(1_007, 7, 12), (1_010, 3, 12)]:  # the snapshot, then a trade
            fake.push_ticks([quote(cum, last, bid)])
            got.append(await asyncio.wait_for(client.queue.get(), 5))
    assert [(t.volume, t.last_quantity) for t in got] == [(0, 0), (0, 0), (7, 7), (0, 0), (3, 3)]
    assert sum(t.last_quantity or t.volume for t in got) == 10
    assert got[2].average_price == 187_990  # the rest of the packet as Kite sent it
