"""A strategy that raises is taken out of service and its open orders are cancelled, in the
pipeline as in the backtest: an order it left resting never fills afterwards."""

from __future__ import annotations

from pathlib import Path

from alpha_panda.domain.events import OrderCancelled, StrategyHalted
from alpha_panda.testing.pipeline import logged
from tests.integration.pipeline.test_parity import both


async def test_a_failed_strategys_resting_order_is_cancelled_as_in_the_backtest(
    tmp_path: Path, tick_file
) -> None:
    path, cols = tick_file(6000, 3, seed=9)
    token = int(cols.instrument_token[0])
    strategies = tmp_path / "strategies"
    strategies.mkdir()
    (strategies / "rc.yaml").write_text(
        "id: rc\nstrategy: tests.unit.backtest.test_engine:RestThenCrash\n"
        f"instruments: [{token}]\nbrokers: [paper]\n")
    (strategies / "sma.yaml").write_text(
        f"id: sma\nstrategy: sma_cross\ninstruments: {sorted(set(cols.instrument_token.tolist()))}\n"
        "brokers: [paper]\nparams: {fast: 3, slow: 8, quantity: 2}\n")
    result = await both(tmp_path, path, strategies)
    assert result.live["strategies_failed"] == result.backtest.summary["strategies_failed"] == ["rc"]
    assert not [f for f in result.live_fills if f.strategy_id == "rc"]
    assert result.live_fills == sorted(result.backtest.fills, key=lambda f: f.fill_id)
    halts = await logged(tmp_path / "data", "paper.control", StrategyHalted)
    cancels = await logged(tmp_path / "data", "paper.orders.cancelled", OrderCancelled)
    assert [(h.strategy_id, h.error) for h in halts] == [("rc", "RuntimeError: bug in my strategy")]
    assert [(c.strategy_id, c.reason, c.leaves_quantity) for c in cancels] == [
        ("rc", "strategy_halted", 5)]
