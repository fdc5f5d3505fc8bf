"""Each broker's portfolio lists the strategies routed to it, and only the paper account
has made-up money: the live account's cash is Kite's, unknown until the engine reads it."""

from __future__ import annotations

from alpha_panda.adapters.memory_log import MemoryLog
from alpha_panda.services.pipeline import build_pipeline
from alpha_panda.settings import Settings
from alpha_panda.strategy.config import StrategyConfig


def cfg(sid: str, *brokers: str) -> StrategyConfig:
    return StrategyConfig.model_validate({"id": sid, "strategy": "sma_cross", "instruments": [1],
                                          "brokers": list(brokers)})


def test_each_portfolio_has_only_the_strategies_routed_to_its_broker() -> None:
    configs = [cfg("paper_only", "paper"), cfg("both", "paper", "zerodha"),
               cfg("live_only", "zerodha")]
    p = build_pipeline(Settings(), MemoryLog(), configs, [], services=("portfolio",))
    paper, live = p.portfolios["paper"].ledger, p.portfolios["zerodha"].ledger
    assert paper.strategies() == ["both", "paper_only"]
    assert live.strategies() == ["both", "live_only"]
    per_strategy = Settings().paper.initial_cash
    assert paper.snapshot(None).cash == 2 * per_strategy  # two strategies trade on paper
    assert live.snapshot(None).cash is None and live.snapshot(None).equity is None
    assert live.snapshot("both").cash is None
