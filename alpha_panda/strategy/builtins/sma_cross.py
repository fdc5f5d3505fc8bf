"""``sma_cross``: long while SMA(fast) of last price is above SMA(slow); flat otherwise.

Parameters: ``fast`` (ticks, default 10), ``slow`` (ticks, default 30, > fast),
``quantity`` (shares bought on an upward cross, default 1).

Exactly: per instrument, nothing before ``slow`` ticks; the sign of fast − slow is compared
exactly in integers (``sum_fast * slow`` against ``sum_slow * fast``, prices in paise); a
zero difference never changes state; when the last non-zero sign was negative and it turns
positive and the strategy is flat, buy ``quantity`` at market; when it was positive and
turns negative and the strategy is long, sell the whole position at market.
"""

from __future__ import annotations

from pydantic import PositiveInt, model_validator

from alpha_panda.domain.events import MarketTick, Signal
from alpha_panda.strategy.base import Context, Strategy, StrategyParams


class SmaCrossParams(StrategyParams):
    fast: PositiveInt = 10
    slow: PositiveInt = 30
    quantity: PositiveInt = 1

    @model_validator(mode="after")
    def _fast_below_slow(self) -> SmaCrossParams:
        if self.fast >= self.slow:
            raise ValueError(f"fast ({self.fast}) must be smaller than slow ({self.slow})")
        return self


class SmaCross(Strategy):
    """Long while SMA(fast) is above SMA(slow); flat otherwise."""

    Params = SmaCrossParams
    params: SmaCrossParams

    def setup(self) -> None:
        p = self.params
        self.warmup = p.slow
        self._fast = p.fast
        self._slow = p.slow
        # One ring of the last ``slow`` prices serves both windows.
        self._ring = [0] * p.slow
        self._i = 0
        self._n = 0
        self._sum_fast = 0
        self._sum_slow = 0
        self._sign = 0

    def on_tick(self, tick: MarketTick, ctx: Context) -> list[Signal] | None:
        price = tick.last_price
        ring = self._ring
        i = self._i
        slow = self._slow
        j = i - self._fast
        if j < 0:
            j += slow
        self._sum_fast += price - ring[j]
        self._sum_slow += price - ring[i]
        ring[i] = price
        i += 1
        self._i = 0 if i == slow else i
        n = self._n + 1
        self._n = n
        if n < slow:
            return None
        diff = self._sum_fast * slow - self._sum_slow * self._fast
        if diff == 0:
            return None
        sign = 1 if diff > 0 else -1
        last = self._sign
        if sign == last:
            return None
        self._sign = sign
        if last < 0:  # turned positive
            if ctx.position() == 0:
                return [ctx.buy(self.params.quantity, reason="fast SMA crossed above slow")]
        elif last > 0:  # turned negative
            held = ctx.position()
            if held > 0:
                return [ctx.sell(held, reason="fast SMA crossed below slow")]
        return None
