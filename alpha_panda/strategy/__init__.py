"""The strategy framework: pure strategies, their config, the runner, indicators."""

from alpha_panda.strategy.base import Bar, Context, Strategy, StrategyParams
from alpha_panda.strategy.config import (
    ExecutionSettings,
    StrategyConfig,
    config_from_mapping,
    load_strategy_dir,
    load_strategy_file,
)
from alpha_panda.strategy.runner import StrategyRunner, StrategyStatus, signal_ids

__all__ = [
    "Bar", "Context", "ExecutionSettings", "Strategy", "StrategyConfig", "StrategyParams",
    "StrategyRunner", "StrategyStatus", "config_from_mapping", "load_strategy_dir",
    "load_strategy_file", "signal_ids",
]
