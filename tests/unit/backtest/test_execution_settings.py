"""A strategy file's ``execution:`` section reaches the paper exchange: market hours,
partial fills by traded volume, depth slippage (backtest and pipeline share the mapping)."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import numpy as np
import pytest

from alpha_panda.backtest.engine import run_backtest
from alpha_panda.domain.clock import IST, ist_date, ist_ns
from alpha_panda.domain.errors import StrategyConfigError
from alpha_panda.domain.events import MarketTick, Signal
from alpha_panda.domain.values import OrderType
from alpha_panda.execution.config import execution_configs
from alpha_panda.marketdata.files import TickColumns, generate_random_walk
from alpha_panda.strategy.base import Context, Strategy
from alpha_panda.strategy.builtins.sma_cross import SmaCross
from alpha_panda.strategy.config import StrategyConfig, config_from_mapping

IST_0200 = 1_796_248_800_000_000_000  # 2026-12-03 02:00 IST (a Thursday)
IST_1000 = 1_796_272_200_000_000_000  # 2026-12-03 10:00 IST
S = 1_000_000_000


def spread_over_sessions(ts: np.ndarray, days: int) -> np.ndarray:
    """``ts`` (increasing) re-timed into ``days`` weekday sessions from 2024-01-01 (a
    Monday), 09:15-15:30 IST, an equal share of ticks each, keeping their relative gaps."""
    opens, day = [], date(2024, 1, 1)
    while len(opens) < days:
        if day.weekday() < 5:
            opens.append(ist_ns(day, time(9, 15)))
        day += timedelta(days=1)
    session = (6 * 60 + 15) * 60 * S
    out = np.empty_like(ts)
    bounds = np.linspace(0, len(ts), days + 1).astype(np.int64)
    for open_ns, lo, hi in zip(opens, bounds[:-1], bounds[1:], strict=True):
        if hi <= lo:
            continue
        rel = (ts[lo:hi] - ts[lo]).astype(np.float64)
        span = rel[-1] if rel[-1] > 0 else 1.0
        out[lo:hi] = open_ns + (rel / span * (session - 1)).astype(np.int64)
    return out


class BuyFirst(Strategy):
    """Buys 100 on its first tick, once."""

    def setup(self) -> None:
        self.done = False

    def on_tick(self, tick: MarketTick, ctx: Context) -> list[Signal] | None:
        if self.done:
            return None
        self.done = True
        return [ctx.buy(100)]


def _cfg(sid: str = "b", **execution: Any) -> StrategyConfig:
    return config_from_mapping({"id": sid, "strategy": f"{__name__}:BuyFirst",
                                "instruments": [738561], "execution": execution})


def _ticks(start: int, n: int, quantity: int) -> TickColumns:
    traded = np.full(n, quantity, dtype=np.int64)
    return TickColumns(ts=start + np.arange(n, dtype=np.int64) * S,
                       instrument_token=np.full(n, 738561, dtype=np.int64),
                       last_price=np.full(n, 2500_00, dtype=np.int64),
                       volume=traded, extras={"last_quantity": traded})


def test_the_execution_section_maps_onto_the_exchange_config() -> None:
    config = execution_configs([_cfg(market_hours="queue", volume_participation=0.25,
                                     slippage_model="depth", slippage_jitter_bps=3)])["b"]
    assert (config.market_hours, config.volume_participation, config.slippage_model,
            config.slippage_jitter_bps) == ("queue", Decimal("0.25"), "depth", 3)
    for bad in ({"market_hours": "sometimes"}, {"volume_participation": 0},
                {"volume_participation": 1.5}, {"slippage_model": "magic"}):
        with pytest.raises(StrategyConfigError, match=f"execution.{next(iter(bad))}"):
            _cfg(**bad)


def test_market_hours_reject_an_order_at_night_only_when_asked() -> None:
    night = _ticks(IST_0200, 3, 1000)
    assert len(run_backtest([_cfg()], night).fills) == 1  # off: the default
    result = run_backtest([_cfg(market_hours="reject")], night)
    assert result.fills == []
    assert result.summary["rejections"] == {"MARKET_CLOSED": 1}
    assert len(run_backtest([_cfg(market_hours="reject")], _ticks(IST_1000, 3, 1000)).fills) == 1


def test_strategies_share_an_exchange_only_when_every_setting_agrees() -> None:
    night, day = _ticks(IST_0200, 3, 1000), _ticks(IST_1000, 12, 40)
    plain = _cfg("a")  # sorts first, costs and slippage as b's
    result = run_backtest([plain, _cfg(market_hours="reject")], night)
    assert [f.strategy_id for f in result.fills] == ["a"]  # b's night order: rejected
    result = run_backtest([plain, _cfg(volume_participation=0.25)], day)
    assert [f.quantity for f in result.fills if f.strategy_id == "b"] == [10] * 10
    assert [f.quantity for f in result.fills if f.strategy_id == "a"] == [100]


def test_volume_participation_fills_in_parts() -> None:
    ticks = _ticks(IST_1000, 12, 40)  # 40 traded per tick: a quarter is 10
    result = run_backtest([_cfg(volume_participation=0.25)], ticks)
    # a share of each tick after the signal's own, until the order is done
    assert [(f.quantity, f.ts) for f in result.fills] == [
        (10, IST_1000 + k * S) for k in range(1, 11)]
    assert result.fills[-1].cumulative_quantity == 100
    assert [f.quantity for f in run_backtest([_cfg()], ticks).fills] == [100]
    # a tick file's volume is the quantity of that trade when it has no last_quantity
    plain = TickColumns(ticks.ts, ticks.instrument_token, ticks.last_price, ticks.volume)
    assert [f.quantity for f in run_backtest([_cfg(volume_participation=0.25)], plain).fills
            ] == [10] * 10


class LimitAt(Strategy):
    """A limit buy of 1 at ``price`` paise on its 107th tick."""

    price = 0

    def setup(self) -> None:
        self.n = 0

    def on_tick(self, tick: MarketTick, ctx: Context) -> list[Signal] | None:
        self.n += 1
        return [ctx.buy(1, order_type=OrderType.LIMIT, limit_price=self.price)] if (
            self.n == 107) else None


class LimitAt680(LimitAt):
    price = 680_00


class LimitAt900(LimitAt):
    price = 900_00


def test_the_circuit_band_is_around_the_sessions_first_price_in_a_backtest_too() -> None:
    # no previous close in the file: the band (10% for HDFCBANK) is around the day's first
    # price, 1000, though the exchange is handed ticks only when an order needs one
    n = 200
    prices = np.maximum(1000_00 - np.arange(n, dtype=np.int64) * 2_50, 750_00)
    ticks = TickColumns(ts=IST_1000 + np.arange(n, dtype=np.int64) * 60 * S,
                        instrument_token=np.full(n, 341249, dtype=np.int64),
                        last_price=prices, volume=np.ones(n, dtype=np.int64))
    for cls, rejections in ((LimitAt680, {"PRICE_BAND": 1}), (LimitAt900, {})):
        config = config_from_mapping({"id": "l", "strategy": f"{__name__}:{cls.__name__}",
                                      "instruments": [341249]})
        assert run_backtest([config], ticks).summary["rejections"] == rejections, cls


def test_a_long_only_mis_strategy_stays_long_only_across_square_offs() -> None:
    # The 15:20 square-off closes positions the strategy did not ask to close: its fills
    # say so (origin), and the strategy's own position follows. It used to keep believing
    # it was long, and sold short on the next day.
    cols = generate_random_walk(30_000, [341249, 779521], seed=7)
    ticks = replace(cols, ts=spread_over_sessions(cols.ts, 3))
    config = config_from_mapping({"id": "s", "strategy": "sma_cross", "product": "MIS",
                                  "instruments": [341249, 779521], "exit_at": None,
                                  "params": {"fast": 5, "slow": 20, "quantity": 10}})
    fills = run_backtest([config], ticks).fills
    squared = [f for f in fills if f.origin == "squareoff"]
    assert len(squared) >= 2 and {f.origin for f in fills} == {"signal", "squareoff"}
    held: dict[int, int] = {}
    for f in fills:
        held[f.instrument_token] = held.get(f.instrument_token, 0) + f.side.sign * f.quantity
        assert held[f.instrument_token] >= 0, f


class KeptSma(SmaCross):
    """``sma_cross`` through the runner's ``process`` (a strategy that keeps its ticks gets
    real ones), where the backtest inlines it for the others."""

    keeps_ticks = True


def test_an_intraday_strategy_is_flat_by_its_exit_time_and_pays_no_square_off() -> None:
    cols = generate_random_walk(30_000, [341249, 779521], seed=7)
    ticks = replace(cols, ts=spread_over_sessions(cols.ts, 3))
    base = {"id": "s", "product": "MIS", "instruments": [341249, 779521],
            "params": {"fast": 5, "slow": 20, "quantity": 10}}
    runs = {name: run_backtest([config_from_mapping({**base, "strategy": name})], ticks)
            for name in ("sma_cross", f"{__name__}:KeptSma")}
    fills = runs["sma_cross"].fills
    exits = [f for f in fills if ist_time(f.ts) >= time(15, 15)]
    # every day it held something at 15:15, closed then, at market, by the runner
    assert {f.origin for f in fills} == {"signal"}
    assert exits and all(ist_time(f.ts) < time(15, 16) for f in exits)
    assert {ist_date(f.ts) for f in exits} == {ist_date(t) for t in ticks.ts.tolist()}
    held: dict[int, int] = {}
    for f in fills:
        held[f.instrument_token] = held.get(f.instrument_token, 0) + f.side.sign * f.quantity
    assert set(held.values()) == {0}
    assert runs["sma_cross"].summary["charges"] < run_backtest(
        [config_from_mapping({**base, "strategy": "sma_cross", "exit_at": None})],
        ticks).summary["charges"]  # (no ₹59 auto square-off fee)
    # the backtest's inlined dispatch and the runner's own give the same trades
    assert [(f.ts, f.side, f.quantity, f.price) for f in fills] == [
        (f.ts, f.side, f.quantity, f.price) for f in runs[f"{__name__}:KeptSma"].fills]


def ist_time(ts: int) -> time:
    return datetime.fromtimestamp(ts / 1e9, IST).time()
