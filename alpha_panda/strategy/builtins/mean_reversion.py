"""``mean_reversion``: buy a stretched dip (below the lower Bollinger band with RSI
oversold); exit back at the middle band or when RSI is overbought.

Parameters: ``period`` (Bollinger window, >= 2, default 20), ``k`` (band width in standard
deviations, default 2.0), ``rsi_period`` (default 14), ``oversold`` (default 30),
``overbought`` (default 70, > oversold), ``quantity`` (default 1). Warm-up: the longer window + 1.
"""

from __future__ import annotations

from pydantic import Field, PositiveFloat, PositiveInt, model_validator

from alpha_panda.domain.events import MarketTick, Signal
from alpha_panda.strategy.base import Context, Strategy, StrategyParams
from alpha_panda.strategy.indicators import RSI, Bollinger


class MeanReversionParams(StrategyParams):
    period: int = Field(default=20, ge=2)  # one tick has no spread: the bands never open
    k: PositiveFloat = 2.0
    rsi_period: PositiveInt = 14
    oversold: float = Field(default=30.0, ge=0, le=100)
    overbought: float = Field(default=70.0, ge=0, le=100)
    quantity: PositiveInt = 1

    @model_validator(mode="after")
    def _ordered(self) -> MeanReversionParams:
        if self.oversold >= self.overbought:
            raise ValueError(
                f"oversold ({self.oversold:g}) must be below overbought ({self.overbought:g})")
        return self


class MeanReversion(Strategy):
    """Bollinger + RSI dip buyer."""

    Params = MeanReversionParams
    params: MeanReversionParams

    def setup(self) -> None:
        p = self.params
        self.warmup = max(p.period, p.rsi_period + 1)
        self._bb = Bollinger(p.period, p.k)
        self._rsi = RSI(p.rsi_period)

    def on_tick(self, tick: MarketTick, ctx: Context) -> list[Signal] | None:
        price = tick.last_price
        middle = self._bb.update(price)
        rsi = self._rsi.update(price)
        lower = self._bb.lower
        if middle is None or rsi is None or lower is None:
            return None
        p = self.params
        held = ctx.position()
        if held == 0 and price < lower and rsi < p.oversold and not ctx.past_exit:
            return [ctx.buy(p.quantity, reason=f"below lower band, RSI {rsi:.1f}")]
        if held > 0 and (price >= middle or rsi > p.overbought):
            return [ctx.sell(held, reason=f"reverted, RSI {rsi:.1f}")]
        return None
