"""Replaying a tick file through the live pipeline gives exactly the backtest's fills and P&L."""

from __future__ import annotations

from pathlib import Path

import pytest

from alpha_panda.backtest.engine import run_backtest
from alpha_panda.domain.events import CODEC, OrderFilled
from alpha_panda.marketdata.files import load_ticks, tick_source
from alpha_panda.services.logs import open_log
from alpha_panda.services.risk_config import risk_config_for
from alpha_panda.services.summary import run_summary
from alpha_panda.strategy.config import load_strategy_dir
from alpha_panda.testing.pipeline import read_all, run_replay, settings_for, write_strategy

FIGURES = ("ticks", "fills", "round_trips", "realized_pnl", "unrealized_pnl", "charges", "net_pnl",
           "win_rate", "open_positions")


@pytest.mark.parametrize("costs", [True, False])
async def test_pipeline_replay_equals_backtest(tmp_path: Path, tick_file, costs: bool) -> None:
    path, cols = tick_file(8000, 4, seed=11)
    tokens = sorted(set(cols.instrument_token.tolist()))
    write_strategy(tmp_path / "strategies", id="a", tokens=tokens[:2], costs=costs)
    write_strategy(tmp_path / "strategies", id="b", tokens=tokens, quantity=3, costs=costs)
    settings = settings_for(tmp_path, path)
    configs, errors = load_strategy_dir(tmp_path / "strategies")
    assert not errors

    backtest = run_backtest(configs, load_ticks(path), source=tick_source(path),
                            initial_cash=settings.paper.initial_cash,
                            risk=risk_config_for(settings, "paper", configs))
    system = await run_replay(settings)
    live = run_summary(system)
    assert {k: live[k] for k in FIGURES} == {k: backtest.summary[k] for k in FIGURES}

    log = open_log(settings.log, settings.data_dir)
    await log.start()
    try:
        records = await read_all(log, "paper.orders.filled")
    finally:
        await log.close()
    live_fills = sorted((CODEC.decode_as(r.value, OrderFilled).data for r in records),
                        key=lambda f: f.fill_id)
    assert live_fills == sorted(backtest.fills, key=lambda f: f.fill_id)
    assert len(live_fills) > 20
