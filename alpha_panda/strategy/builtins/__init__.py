"""Built-in strategies, by the name a config's ``strategy:`` field uses.

Each maps to ``module:Class`` and is imported only when a config names it.
"""

from __future__ import annotations

from typing import Final

BUILTINS: Final[dict[str, str]] = {
    "sma_cross": "alpha_panda.strategy.builtins.sma_cross:SmaCross",
    "ema_cross": "alpha_panda.strategy.builtins.ema_cross:EmaCross",
    "momentum": "alpha_panda.strategy.builtins.momentum:Momentum",
    "mean_reversion": "alpha_panda.strategy.builtins.mean_reversion:MeanReversion",
    "rsi": "alpha_panda.strategy.builtins.rsi:RsiStrategy",
    "breakout": "alpha_panda.strategy.builtins.breakout:Breakout",
    "vwap_reversion": "alpha_panda.strategy.builtins.vwap_reversion:VwapReversion",
}
