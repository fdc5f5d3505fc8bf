"""Replaying a tick file through the live pipeline gives exactly the backtest's fills and P&L."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from alpha_panda.backtest.engine import run_backtest
from alpha_panda.domain.events import CODEC, OrderFilled, PnlSnapshot
from alpha_panda.marketdata.files import load_ticks, tick_source
from alpha_panda.services.app import RunOptions, SystemRun
from alpha_panda.services.logs import open_log
from alpha_panda.services.risk_config import risk_config_for
from alpha_panda.services.summary import run_summary
from alpha_panda.strategy.config import load_strategy_dir
from alpha_panda.testing.pipeline import read_all, settings_for, write_strategy

FIGURES = ("ticks", "fills", "round_trips", "realized_pnl", "unrealized_pnl", "charges", "net_pnl",
           "win_rate", "gross_win_rate", "exposure", "sharpe", "initial_equity", "final_equity",
           "open_positions", "signals", "signals_rejected", "orders", "orders_rejected",
           "orders_cancelled", "rejections", "strategies_failed")
# max_drawdown(_pct) and max_gross_exposure come from equity curves each samples its own
# way (the backtest on a fixed event-time grid, the pipeline at each account P&L snapshot):
# the pipeline's are recomputed from its snapshots on the log instead.


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
    system = SystemRun(settings, RunOptions(exit_at_end=True, progress=False, summary=True))
    await system.run()
    live = run_summary(system)
    assert {k: live[k] for k in FIGURES} == {k: backtest.summary[k] for k in FIGURES}
    assert list(live) == [*backtest.summary, "ticks_published"]  # same fields, same order
    assert live["ticks_published"] == 8000 and live["sharpe"] is None  # one trading day
    assert live["signals"] == live["orders"] == live["fills"] > 20
    assert 0 < live["exposure"] < 1
    if costs:  # tiny gains, each under its trip's charges: wins before charges only
        assert live["gross_win_rate"] == 0.274684 and live["win_rate"] == 0.0
    else:
        assert live["gross_win_rate"] == live["win_rate"] == 0.274684

    log = open_log(settings.log, settings.data_dir)
    await log.start()
    try:
        records = await read_all(log, "paper.orders.filled")
        snapshots = [CODEC.decode_as(r.value, PnlSnapshot)
                     for r in await read_all(log, "paper.pnl.snapshots") if r.key == b"account"]
    finally:
        await log.close()
    # The sampled figures, recomputed from the account snapshots on the log (in time order)
    # and the end of the run.
    snaps = sorted(snapshots, key=lambda e: e.ts)
    initial = Decimal(live["initial_equity"])
    curve = [initial, *(Decimal(e.data.equity) / 100 for e in snaps), Decimal(live["final_equity"])]
    peak, fall = curve[0], Decimal(0)
    for equity in curve:
        peak = max(peak, equity)
        fall = max(fall, peak - equity)
    assert len(snaps) >= live["fills"]
    assert Decimal(live["max_drawdown"]) == fall > 0
    assert Decimal(live["max_gross_exposure"]) >= max(
        Decimal(e.data.gross_exposure) / 100 for e in snaps) > 0
    live_fills = sorted((CODEC.decode_as(r.value, OrderFilled).data for r in records),
                        key=lambda f: f.fill_id)
    assert live_fills == sorted(backtest.fills, key=lambda f: f.fill_id)
    assert len(live_fills) > 20
