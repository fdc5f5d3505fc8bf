"""The strategy framework: pure strategies, their config, the runner, indicators.

The order enums a strategy passes to ``ctx.buy``/``ctx.sell`` (``OrderType``, ``Product``,
``Side``, ``Validity``) are re-exported here, so one import line serves a strategy file."""

from alpha_panda.domain.values import OrderType, Product, Side, Validity
from alpha_panda.strategy.base import (
    Bar,
    CancelOrder,
    Context,
    OpenOrder,
    Strategy,
    StrategyParams,
)
from alpha_panda.strategy.config import (
    ExecutionSettings,
    StrategyConfig,
    config_from_mapping,
    load_strategy_dir,
    load_strategy_file,
)
from alpha_panda.strategy.runner import StrategyRunner, StrategyStatus, signal_ids

__all__ = [
    "Bar", "CancelOrder", "Context", "ExecutionSettings", "OpenOrder", "OrderType", "Product",
    "Side", "Strategy",
    "StrategyConfig", "StrategyParams", "StrategyRunner", "StrategyStatus", "Validity",
    "config_from_mapping", "load_strategy_dir", "load_strategy_file", "signal_ids",
]
