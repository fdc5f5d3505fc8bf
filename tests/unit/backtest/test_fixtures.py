"""The shared fixtures in tests/data stay loadable and keep trading."""

from __future__ import annotations

from pathlib import Path

from alpha_panda.backtest import run_backtest
from alpha_panda.marketdata.files import generate_random_walk, load_ticks, tick_source
from alpha_panda.strategy.config import load_strategy_file

DATA = Path(__file__).resolve().parents[2] / "data"


def test_small_fixture_is_the_documented_random_walk_and_trades() -> None:
    ticks = load_ticks(DATA / "ticks_small.csv")
    again = generate_random_walk(3000, [738561, 341249, 1270529], seed=3)
    assert ticks.last_price.tolist() == again.last_price.tolist()
    assert ticks.ts.tolist() == again.ts.tolist()
    config = load_strategy_file(DATA / "sma_cross_small.yaml")
    result = run_backtest(config, ticks, source=tick_source(DATA / "ticks_small.csv"))
    assert result.summary["fills"] > 100 and result.summary["strategies_failed"] == []
