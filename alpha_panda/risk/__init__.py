"""Pre-trade risk: limits per account, broker and strategy, and the risk engine. Pure."""

from alpha_panda.risk.engine import RiskEngine
from alpha_panda.risk.limits import KITE_ACCOUNT_LIMITS, Reason, RiskConfig, RiskLimits
from alpha_panda.risk.state import InMemoryRiskStateStore, RateWindow, RiskStateStore

__all__ = [
    "KITE_ACCOUNT_LIMITS", "InMemoryRiskStateStore", "RateWindow", "Reason", "RiskConfig",
    "RiskEngine", "RiskLimits", "RiskStateStore",
]
