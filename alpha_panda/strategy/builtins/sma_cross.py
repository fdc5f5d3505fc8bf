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
        # One ring of the last ``slow`` prices serves both windows: the price leaving the
        # fast window sits ``fast`` slots behind the write position (a negative index
        # wraps around the ring).
        self._ring = [0] * p.slow
        self._i = 0
        self._ready = False  # True once ``slow`` prices are in (the ring has wrapped)
        # sum_fast * slow - sum_slow * fast, updated per tick: the sign of fast - slow
        self._diff = 0
        self._sign = 0

    def on_tick(self, tick: MarketTick, ctx: Context) -> list[Signal] | None:
        price = tick.last_price
        ring = self._ring
        i = self._i
        fast = self._fast
        diff = self._diff + (price - ring[i - fast]) * self._slow - (price - ring[i]) * fast
        self._diff = diff
        ring[i] = price
        i += 1
        if i == self._slow:
            self._i = 0
            self._ready = True
        else:
            self._i = i
            if not self._ready:
                return None
        # the common case first: the sign did not change (or the difference is zero)
        if diff > 0:
            last = self._sign
            if last > 0:
                return None
            self._sign = 1
            # turned positive while flat (and, for an intraday strategy, before its exit time)
            if last < 0 and ctx.position() == 0 and not ctx.past_exit:
                return [ctx.buy(self.params.quantity, reason="fast SMA crossed above slow")]
            return None
        if diff < 0:
            last = self._sign
            if last < 0:
                return None
            self._sign = -1
            if last > 0:  # turned negative
                held = ctx.position()
                if held > 0:
                    return [ctx.sell(held, reason="fast SMA crossed below slow")]
        return None
