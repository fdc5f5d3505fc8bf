"""``rsi``: buy when Wilder's RSI drops below ``oversold``; sell when it rises above
``overbought``.

Parameters: ``period`` (default 14), ``oversold`` (default 30), ``overbought``
(default 70, > oversold), ``quantity`` (default 1). Warm-up: ``period + 1`` ticks.
"""

from __future__ import annotations

from pydantic import Field, PositiveInt, model_validator

from alpha_panda.domain.events import MarketTick, Signal
from alpha_panda.strategy.base import Context, Strategy, StrategyParams
from alpha_panda.strategy.indicators import RSI


class RsiParams(StrategyParams):
    period: PositiveInt = 14
    oversold: float = Field(default=30.0, ge=0, le=100)
    overbought: float = Field(default=70.0, ge=0, le=100)
    quantity: PositiveInt = 1

    @model_validator(mode="after")
    def _ordered(self) -> RsiParams:
        if self.oversold >= self.overbought:
            raise ValueError(
                f"oversold ({self.oversold:g}) must be below overbought ({self.overbought:g})")
        return self


class RsiStrategy(Strategy):
    """Long from oversold to overbought."""

    Params = RsiParams
    params: RsiParams

    def setup(self) -> None:
        self.warmup = self.params.period + 1
        self._rsi = RSI(self.params.period)

    def on_tick(self, tick: MarketTick, ctx: Context) -> list[Signal] | None:
        rsi = self._rsi.update(tick.last_price)
        if rsi is None:
            return None
        held = ctx.position()
        if held == 0 and rsi < self.params.oversold and not ctx.past_exit:
            return [ctx.buy(self.params.quantity, reason=f"RSI {rsi:.1f} oversold")]
        if held > 0 and rsi > self.params.overbought:
            return [ctx.sell(held, reason=f"RSI {rsi:.1f} overbought")]
        return None
