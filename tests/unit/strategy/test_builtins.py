"""Each built-in on a price path where the right trades are obvious."""

from __future__ import annotations

from typing import Any

import pytest

from alpha_panda.domain.events import MarketTick
from alpha_panda.domain.values import Side
from alpha_panda.marketdata.files import generate_random_walk, iter_ticks
from alpha_panda.strategy.builtins import BUILTINS
from alpha_panda.strategy.config import config_from_mapping
from alpha_panda.strategy.runner import StrategyRunner


def trades(name: str, prices: list[int], volume: int = 0, **params: Any) -> list[tuple[int, str]]:
    runner = StrategyRunner([config_from_mapping(
        {"id": "s", "strategy": name, "instruments": [9], "params": params})])
    out = []
    for i, p in enumerate(prices):
        for sig in runner.on_tick(MarketTick(instrument_token=9, last_price=p, ts=i,
                                             volume=volume)):
            out.append((i, f"{sig.side.value} {sig.quantity}"))
    assert runner.statuses()[0].state == "ACTIVE"
    return out


DOWN_UP_DOWN = [1000 - 10 * i for i in range(30)] + [710 + 20 * i for i in range(30)] + [
    1290 - 20 * i for i in range(30)]


def test_ema_cross_buys_the_turn_up_and_sells_the_turn_down() -> None:
    got = trades("ema_cross", DOWN_UP_DOWN, fast=3, slow=8, quantity=2)
    assert [t for _, t in got] == ["BUY 2", "SELL 2"]
    assert 30 < got[0][0] < 40 and 60 < got[1][0] < 70


def test_momentum_enters_on_a_rise_and_exits_on_a_fall() -> None:
    got = trades("momentum", DOWN_UP_DOWN, lookback=5, entry_bps=300, exit_bps=300)
    assert [t for _, t in got] == ["BUY 1", "SELL 1"]
    assert 30 < got[0][0] < 40 and 60 < got[1][0] < 70


def test_rsi_buys_oversold_and_sells_overbought() -> None:
    got = trades("rsi", DOWN_UP_DOWN, period=5)
    # The first RSI (tick 6) is already 0; the first rises push it to 100; the final
    # slide makes it oversold again.
    assert [t for _, t in got] == ["BUY 1", "SELL 1", "BUY 1"]
    assert got[0][0] == 6 and 30 < got[1][0] < 40 and 60 < got[2][0] < 70


def test_mean_reversion_buys_a_dip_below_the_band_and_exits_at_the_middle() -> None:
    flat = [1000, 1005] * 15
    prices = flat + [950, 1004, 1000]
    got = trades("mean_reversion", prices, period=10, rsi_period=3, k=2.0)
    assert got == [(30, "BUY 1"), (31, "SELL 1")]


def test_breakout_buys_a_new_high_and_stops_out_on_atr() -> None:
    prices = [1000, 1010] * 10 + [1020, 1000]
    got = trades("breakout", prices, lookback=5, atr_period=3, atr_stop=1.0)
    assert got == [(20, "BUY 1"), (21, "SELL 1")]


def test_vwap_reversion_fades_a_dip_below_vwap() -> None:
    prices = [1000] * 20 + [990, 995, 1001]
    got = trades("vwap_reversion", prices, volume=10, band_bps=50, min_ticks=5)
    assert got == [(20, "BUY 1"), (22, "SELL 1")]


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_every_builtin_loads_with_defaults_and_runs_long_only(name: str) -> None:
    config = config_from_mapping({"id": name, "strategy": name, "instruments": [1, 2]})
    runner = StrategyRunner([config])
    position = {1: 0, 2: 0}
    cols = generate_random_walk(4000, [1, 2], seed=5)
    for tick in iter_ticks(cols):
        for sig in runner.on_tick(tick):
            position[sig.instrument_token] += sig.side.sign * sig.quantity
            assert position[sig.instrument_token] >= 0
            assert sig.side is Side.SELL or position[sig.instrument_token] == config.params[
                "quantity"]
    assert runner.statuses()[0].state == "ACTIVE"
    assert config.strategy_class().__doc__


def test_vwap_reversion_weighs_a_kite_quote_in_which_nothing_traded_at_nothing() -> None:
    # 200 shares at 1,000 and 10 at 990 (it buys there), then 300 quotes at 990 in which
    # only the book moved. Each weighed 1 share, they pulled the VWAP from 999.52 to
    # 993.92, and a trade at 995 sold as "back at VWAP".
    runner = StrategyRunner([config_from_mapping({
        "id": "s", "strategy": "vwap_reversion", "instruments": [9],
        "params": {"band_bps": 50, "min_ticks": 5}})])
    ticks = [(1000, 10)] * 20 + [(990, 10)] + [(990, 0)] * 300 + [(995, 10)]
    got = [(i, sig.side.value) for i, (price, traded) in enumerate(ticks)
           for sig in runner.on_tick(MarketTick(
               instrument_token=9, last_price=price, ts=i, volume=traded,
               last_quantity=traded, average_price=999))]
    assert got == [(20, "BUY")]
