"""A daily-loss stop set with no loss to stop at (``daily_loss_flatten: true`` and no
``daily_loss`` at any level merged into it) never fires: the trader is told so by
``strategy check``, ``preflight``, ``backtest`` and the run's log, not left to find out on
a losing day."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from alpha_panda.cli import app
from alpha_panda.risk import RiskConfig, RiskLimits

FLATTEN = RiskLimits(daily_loss_flatten=True)


def test_a_stop_without_a_loss_is_said_and_one_given_a_loss_at_any_level_is_not() -> None:
    config = RiskConfig(strategies={"a": FLATTEN, "b": FLATTEN,
                                    "c": RiskLimits(daily_loss=500_00, daily_loss_flatten=True)},
                        brokers={"zerodha": RiskLimits(daily_loss=1000_00)})
    idle = "daily_loss_flatten is set but no daily_loss: its daily-loss stop never fires"
    assert config.idle_stops("paper", ["a", "b", "c"]) == [
        f"paper: strategy a: {idle}", f"paper: strategy b: {idle}"]
    assert config.idle_stops("zerodha", ["a", "b", "c"]) == []  # the broker's loss applies
    account = RiskConfig(global_limits=RiskLimits(account_daily_loss_flatten=True))
    assert account.idle_stops("paper", []) == [(
        "paper: account_daily_loss_flatten is set but no account_daily_loss: the account's "
        "daily-loss stop never fires")]
    assert RiskConfig(global_limits=RiskLimits(
        account_daily_loss_flatten=True, account_daily_loss=5000_00)).idle_stops("paper", []) == []


def test_strategy_check_warns_of_it_and_passes(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "s.yaml").write_text(
        "id: s\nstrategy: sma_cross\ninstruments: [738561]\nrisk: {daily_loss_flatten: true}\n")
    result = CliRunner().invoke(app, ["strategy", "check", str(tmp_path)])
    assert result.exit_code == 0
    assert ("warning  risk: paper: strategy s: daily_loss_flatten is set but no daily_loss: "
            "its daily-loss stop never fires\n") in result.stderr
    monkeypatch.setenv("ALPHA_PANDA_RISK", '{"global": {"daily_loss": 100000}}')
    result = CliRunner().invoke(app, ["strategy", "check", str(tmp_path)])
    assert result.exit_code == 0 and "daily_loss_flatten" not in result.stderr
