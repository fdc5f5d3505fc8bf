"""The sample strategies shipped for `make run` load cleanly and trade the simulator soon."""

from __future__ import annotations

from pathlib import Path

import pytest

from alpha_panda.execution.market import MarketCalendar
from alpha_panda.marketdata.instruments import BY_TOKEN
from alpha_panda.marketdata.simulator import SIM_INSTRUMENTS, MarketSimulator
from alpha_panda.settings import SimulatorSettings
from alpha_panda.strategy.builtins import BUILTINS
from alpha_panda.strategy.config import load_strategy_dir
from alpha_panda.strategy.runner import StrategyRunner

SAMPLES = Path(__file__).resolve().parents[3] / "alpha_panda" / "sample_strategies"


def test_every_sample_loads_and_covers_every_builtin() -> None:
    configs, errors = load_strategy_dir(SAMPLES)
    assert errors == []
    assert {c.strategy for c in configs} == set(BUILTINS)
    assert all(t in BY_TOKEN for c in configs for t in c.instruments)
    assert all([str(b) for b in c.brokers] == ["paper"] for c in configs)


@pytest.mark.parametrize("seed", [7, 11])
def test_every_sample_signals_within_thirty_seconds_of_simulated_ticks(seed: int) -> None:
    """At ``make run``'s rate and the simulator's default volatility (1.5% a session)."""
    configs, _ = load_strategy_dir(SAMPLES)
    runner = StrategyRunner(configs)
    seen: set[str] = set()
    vol = SimulatorSettings().per_tick_bps(len(SIM_INSTRUMENTS), MarketCalendar().session_seconds)
    sim = MarketSimulator(seed=seed, start_ns=1_704_080_700_000_000_000, volatility_bps=vol)
    for tick in sim.next_ticks(6000):
        seen.update(s.strategy_id for s in runner.on_tick(tick))  # 6,000 ticks: 30 s at 200/s
    assert seen == {c.id for c in configs}
