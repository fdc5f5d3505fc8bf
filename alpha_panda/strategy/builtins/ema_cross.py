"""``ema_cross``: long while EMA(fast) of last price is above EMA(slow); flat otherwise.

Parameters: ``fast`` (default 12), ``slow`` (default 26, > fast), ``quantity`` (default 1).
Buys ``quantity`` at market when fast crosses above slow while flat; sells the whole
position when it crosses below while long. Warm-up: ``slow`` ticks.
"""

from __future__ import annotations

from pydantic import PositiveInt, model_validator

from alpha_panda.domain.events import MarketTick, Signal
from alpha_panda.strategy.base import Context, Strategy, StrategyParams
from alpha_panda.strategy.indicators import EMA


class EmaCrossParams(StrategyParams):
    fast: PositiveInt = 12
    slow: PositiveInt = 26
    quantity: PositiveInt = 1

    @model_validator(mode="after")
    def _fast_below_slow(self) -> EmaCrossParams:
        if self.fast >= self.slow:
            raise ValueError(f"fast ({self.fast}) must be smaller than slow ({self.slow})")
        return self


class EmaCross(Strategy):
    """Long while EMA(fast) > EMA(slow)."""

    Params = EmaCrossParams
    params: EmaCrossParams

    def setup(self) -> None:
        self.warmup = self.params.slow
        self._fast = EMA(self.params.fast)
        self._slow = EMA(self.params.slow)
        self._sign = 0

    def on_tick(self, tick: MarketTick, ctx: Context) -> list[Signal] | None:
        f = self._fast.update(tick.last_price)
        s = self._slow.update(tick.last_price)
        if f is None or s is None or f == s:
            return None
        sign = 1 if f > s else -1
        last, self._sign = self._sign, sign
        if last < 0 < sign and ctx.position() == 0 and not ctx.past_exit:
            return [ctx.buy(self.params.quantity, reason="fast EMA crossed above slow")]
        if last > 0 > sign and ctx.position() > 0:
            return [ctx.sell(ctx.position(), reason="fast EMA crossed below slow")]
        return None
