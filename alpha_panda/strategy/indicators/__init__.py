"""Incremental indicators, O(1) per update. Each has ``update(...)``, ``value`` (None
until warm) and ``ready``. Floats are fine here; money stays exact elsewhere."""

from alpha_panda.strategy.indicators.bands import (
    ATR,
    VWAP,
    Bollinger,
    RollingHigh,
    RollingLow,
    ZScore,
)
from alpha_panda.strategy.indicators.moving import EMA, SMA, WMA
from alpha_panda.strategy.indicators.oscillators import MACD, RSI

__all__ = ["ATR", "EMA", "MACD", "RSI", "SMA", "VWAP", "WMA", "Bollinger", "RollingHigh",
           "RollingLow", "ZScore"]
