"""The fake Kite as its own process (``python -m alpha_panda.testing.fake_kite``)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from alpha_panda.adapters.zerodha.client import KiteRestClient
from alpha_panda.adapters.zerodha.config import ZerodhaSettings
from alpha_panda.adapters.zerodha.session import complete_login
from alpha_panda.adapters.zerodha.ticker import KiteTickerClient

from .helpers import INFY


async def test_the_fake_process_serves_logins_ticks_and_fills(served: dict[str, Any],
                                                              tmp_path: Path) -> None:
    settings = ZerodhaSettings(
        api_key=served["api_key"], api_secret=SecretStr(served["api_secret"]),
        session_key=SecretStr("k"), root_url=served["root_url"], ws_url=served["ws_url"],
        session_file=tmp_path / "s.enc")
    session = await asyncio.to_thread(complete_login, settings, served["request_token"])
    ticker = KiteTickerClient(settings, session.access_token)
    await ticker.subscribe([INFY], "full")
    stop = asyncio.Event()
    task = asyncio.create_task(ticker.run(stop))
    ticks = [await asyncio.wait_for(ticker.queue.get(), 5) for _ in range(20)]
    stop.set()
    await asyncio.wait_for(task, 5)
    first = ticks[0]
    assert first.instrument_token == INFY and first.last_price % 5 == 0
    # what traded since the previous tick: none counted in the first (the day's so far),
    # then each streamed trade's quantity, from the change in the day's volume
    assert first.volume == 0 and all(1 <= t.volume == t.last_quantity <= 50 for t in ticks[1:])
    # as Kite's: close is the previous session's, the same all day (it was the last price,
    # so the day's change read 0 and moved nothing); open, high and low are the day's so far
    assert {t.close for t in ticks} == {first.close} and {t.open for t in ticks} == {first.open}
    assert any(t.last_price != t.close for t in ticks)
    assert all(t.low <= t.last_price <= t.high for t in ticks)  # type: ignore[operator]
    assert ticks[-1].high == max(t.last_price for t in ticks)
    kite = KiteRestClient(settings, session.access_token)
    try:
        oid = await kite.place_order({"exchange": "NSE", "tradingsymbol": "INFY", "quantity": 1,
                                      "transaction_type": "BUY", "product": "CNC",
                                      "order_type": "MARKET", "market_protection": -1})
        [order] = [o for o in await kite.orders() if o["order_id"] == oid]
        assert order["status"] == "COMPLETE" and order["filled_quantity"] == 1
    finally:
        await kite.close()
