"""The deterministic in-process backtest engine (the live pipeline's code, no log)."""

from alpha_panda.backtest.engine import run_backtest
from alpha_panda.backtest.result import BacktestResult

__all__ = ["BacktestResult", "run_backtest"]
