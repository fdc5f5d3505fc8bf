"""`alpha-panda run --feed kite` against a fake Kite process: live ticks in, live fills out."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from kiteconnect import KiteConnect
from pydantic import SecretStr

from alpha_panda.adapters.zerodha.config import ZerodhaSettings
from alpha_panda.adapters.zerodha.session import complete_login
from alpha_panda.domain.events import CODEC, Envelope
from alpha_panda.execution.zerodha import fill_id, order_id_for
from alpha_panda.services.logs import open_log
from alpha_panda.stream.log import TopicPartition

pytestmark = pytest.mark.slow

STRATEGY = """\
id: sma_live_infy
strategy: sma_cross
instruments: [408065]
brokers: [zerodha]
params: {fast: 2, slow: 4, quantity: 1}
"""


def test_run_with_the_kite_feed_trades_live_on_the_fake(served: dict[str, Any],
                                                         tmp_path: Path) -> None:
    env = {**os.environ,
           "ALPHA_PANDA_ZERODHA__API_KEY": served["api_key"],
           "ALPHA_PANDA_ZERODHA__API_SECRET": served["api_secret"],
           "ALPHA_PANDA_ZERODHA__SESSION_KEY": "e2e key",
           "ALPHA_PANDA_ZERODHA__ROOT_URL": served["root_url"],
           "ALPHA_PANDA_ZERODHA__WS_URL": served["ws_url"],
           "ALPHA_PANDA_ZERODHA__SESSION_FILE": str(tmp_path / "session.enc"),
           "ALPHA_PANDA_ZERODHA__INSTRUMENTS_CACHE_DIR": str(tmp_path / "instruments"),
           "ALPHA_PANDA_ZERODHA__LIVE_ENABLED": "true",
           "ALPHA_PANDA_ZERODHA__POLL_INTERVAL_S": "0.5",
           "ALPHA_PANDA_DATA_DIR": str(tmp_path / "data")}
    settings = ZerodhaSettings(api_key=served["api_key"], api_secret=SecretStr(served["api_secret"]),
                               session_key=SecretStr("e2e key"), root_url=served["root_url"],
                               session_file=tmp_path / "session.enc")
    session = complete_login(settings, served["request_token"])
    strategies = tmp_path / "strategies"
    strategies.mkdir()
    (strategies / "live.yaml").write_text(STRATEGY)
    run = subprocess.run(
        [sys.executable, "-m", "alpha_panda.cli", "run", "--feed", "kite", "--duration", "5",
         "--no-api", "--log", "embedded", "--strategies", str(strategies), "--json"],
        check=False, env=env, capture_output=True, text=True, timeout=90)
    assert run.returncode == 0, run.stderr[-3000:]
    summary = json.loads(run.stdout)
    for secret in (session.access_token, served["api_secret"]):  # never in any log line
        assert secret not in run.stderr and secret not in run.stdout
    assert summary["ticks"] > 20
    kite = KiteConnect(served["api_key"], access_token=session.access_token,
                       root=served["root_url"])
    orders, trades = kite.orders(), kite.trades()
    assert orders and all(o["status"] == "COMPLETE" and o["tag"].startswith("ap") for o in orders)
    filled = asyncio.run(_read(tmp_path / "data", "zerodha.orders.filled"))
    submitted = asyncio.run(_read(tmp_path / "data", "zerodha.orders.submitted"))
    # every Kite order came from one of our events, and every Kite trade is a fill event
    assert sorted(e.data.broker_order_id for e in submitted) == sorted(o["order_id"] for o in orders)
    assert len(filled) == len(trades)
    assert {e.data.fill_id for e in filled} == {fill_id(order_id_for(e.data.signal_id), t["trade_id"])
                                                for e in submitted for t in trades
                                                if t["order_id"] == e.data.broker_order_id}


async def _read(data_dir: Path, topic: str) -> list[Envelope[Any]]:
    log = open_log("embedded", data_dir)
    await log.start()
    try:
        out: list[Envelope[Any]] = []
        for partition in await log.end_offsets(topic):
            records = await log.read(TopicPartition(topic, partition), 0, 100_000)
            out += [CODEC.decode(r.value) for r in records]
        return out
    finally:
        await log.close()
