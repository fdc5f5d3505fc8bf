"""The Kite rate limiter (on a fake clock), the instrument master, settings redaction."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import SecretStr

from alpha_panda.adapters.zerodha.config import ZerodhaSettings, zerodha_settings
from alpha_panda.adapters.zerodha.instruments import InstrumentMaster
from alpha_panda.adapters.zerodha.rate_limit import RateLimiter
from alpha_panda.domain.errors import ConfigurationError, RateLimited


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, s: float) -> None:
        self.slept.append(s)
        self.now += s


async def test_ten_orders_a_second_then_it_waits() -> None:
    clock = Clock()
    limiter = RateLimiter.kite_orders(margin_s=0.0)
    limiter._clock, limiter._sleep = clock, clock.sleep
    for _ in range(10):
        await limiter.acquire()
    assert clock.now == 0.0
    await limiter.acquire()
    assert clock.now == pytest.approx(1.0)
    for _ in range(9):
        await limiter.acquire()
    assert clock.now == pytest.approx(1.0)


async def test_a_spent_minute_budget_is_refused_with_retry_after() -> None:
    clock = Clock()
    limiter = RateLimiter([(400, 60.0)], clock=clock, sleep=clock.sleep)
    for _ in range(400):
        await limiter.acquire()
    clock.now = 10.0
    with pytest.raises(RateLimited) as err:
        await limiter.acquire()
    assert err.value.retry_after == pytest.approx(50.0) and limiter.refusals == 1
    clock.now = 60.0
    await limiter.acquire()


def _rows() -> list[dict[str, Any]]:
    return [{"instrument_token": 408065, "exchange": "NSE", "tradingsymbol": "INFY", "name": "INFOSYS",
             "segment": "NSE", "instrument_type": "EQ", "tick_size": 0.05, "lot_size": 1},
            {"instrument_token": 412675, "exchange": "CDS", "tradingsymbol": "USDINR26DECFUT",
             "segment": "CDS-FUT", "instrument_type": "FUT", "tick_size": 0.0025, "lot_size": 1}]


async def test_the_instrument_list_is_downloaded_once_a_day(tmp_path: Path) -> None:
    calls = 0

    async def download() -> list[dict[str, Any]]:
        nonlocal calls
        calls += 1
        return _rows()

    day1 = 1_764_000_000 * 10**9
    master = await InstrumentMaster.load(tmp_path, download, now_ns=day1)
    again = await InstrumentMaster.load(tmp_path, download, now_ns=day1 + 3600 * 10**9)
    assert calls == 1 and len(again) == 2
    assert master.resolve("nse:infy") == 408065 and master.resolve(412675) == 412675
    usd = master.get(412675)
    assert usd is not None and usd.tick_size == Decimal("0.0025") and usd.key == "CDS:USDINR26DECFUT"
    with pytest.raises(ConfigurationError, match="NSE:NOPE"):
        master.resolve("NSE:NOPE")
    await InstrumentMaster.load(tmp_path, download, now_ns=day1 + 86_400 * 10**9)
    assert calls == 2 and len(list(tmp_path.glob("*.json"))) == 1  # yesterday's list is gone


def test_settings_never_show_secrets_and_come_from_the_app_section() -> None:
    s = zerodha_settings({"api_key": "k", "api_secret": "very-secret", "session_key": "sk"})
    assert isinstance(s, ZerodhaSettings) and s.api_secret.get_secret_value() == "very-secret"
    assert "very-secret" not in repr(s) and "very-secret" not in str(s.redacted())
    assert s.redacted()["api_secret"] == "***" and not s.live_enabled

    app = SimpleNamespace(zerodha={"api_key": "k2", "session_key": SecretStr("x")})
    assert zerodha_settings(app).api_key == "k2"


def test_a_misspelt_setting_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="zerodha.api_secrett"):
        zerodha_settings({"api_secrett": "x"})
