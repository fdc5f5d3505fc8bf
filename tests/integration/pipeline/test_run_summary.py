"""``run --feed replay:F --exit-at-end --json``: a failed strategy is in the summary and the
exit status, as in ``backtest``."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from alpha_panda.cli.main import app
from alpha_panda.domain.events import MarketTick, Signal
from alpha_panda.strategy.base import Context, Strategy
from alpha_panda.testing.pipeline import write_strategy


class Crash(Strategy):
    """Raises on its first tick."""

    def on_tick(self, tick: MarketTick, ctx: Context) -> list[Signal] | None:
        raise ZeroDivisionError("bad maths")


def test_a_failed_strategy_is_listed_and_the_run_exits_1(tmp_path: Path, tick_file) -> None:
    path, cols = tick_file(3000, 2, seed=5)
    tokens = sorted(set(cols.instrument_token.tolist()))
    strategies = tmp_path / "strategies"
    write_strategy(strategies, id="ok", tokens=tokens)
    (strategies / "crash.yaml").write_text(
        f"id: crash\nstrategy: {__name__}:Crash\ninstruments: [{tokens[0]}]\nbrokers: [paper]\n")
    result = CliRunner().invoke(app, [
        "run", "--feed", f"replay:{path}", "--strategies", str(strategies), "--no-api",
        "--exit-at-end", "--json", "--data-dir", str(tmp_path / "data"), "--log", "memory"])
    assert result.exit_code == 1, result.output
    assert "strategies failed and were taken out of service: crash" in result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["strategies_failed"] == ["crash"]
    assert summary["ticks"] == summary["ticks_published"] == 3000 and summary["fills"] > 0


def test_an_invalid_strategy_file_makes_the_run_exit_1(tmp_path: Path, tick_file) -> None:
    path, _ = tick_file(1000, 2, seed=5)
    strategies = tmp_path / "strategies"
    strategies.mkdir()
    (strategies / "typo.yaml").write_text(
        "id: typo\nstrategy: sma_cross\ninstruments: [738561]\nparams: {fast: 30, slow: 10}\n")
    result = CliRunner().invoke(app, [
        "run", "--feed", f"replay:{path}", "--strategies", str(strategies), "--no-api",
        "--exit-at-end", "--json", "--data-dir", str(tmp_path / "data"), "--log", "memory"])
    assert result.exit_code == 1, result.output
    assert "1 strategy file(s) invalid, so not run:" in result.stderr
    assert "typo.yaml: params" in result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["fills"] == 0
    [invalid] = summary["strategies_invalid"]  # a script reading only the JSON sees it too
    assert "typo.yaml: params: fast (30) must be smaller than slow (10)" in invalid
