"""``breakout``: buy when price breaks above the highest price of the previous
``lookback`` ticks; exit when it breaks below the previous ``lookback`` low or falls
``atr_stop`` ATRs below the entry price (after a restart: below the position's average
price, ``ctx.average_price()``, by the ATR of then).

Parameters: ``lookback`` (default 50), ``atr_period`` (default 14), ``atr_stop``
(ATR multiples, default 2.0), ``quantity`` (default 1). Warm-up: the longer window + 1.
"""

from __future__ import annotations

from pydantic import PositiveFloat, PositiveInt

from alpha_panda.domain.events import MarketTick, Signal
from alpha_panda.strategy.base import Context, Strategy, StrategyParams
from alpha_panda.strategy.indicators import ATR, RollingHigh, RollingLow


class BreakoutParams(StrategyParams):
    lookback: PositiveInt = 50
    atr_period: PositiveInt = 14
    atr_stop: PositiveFloat = 2.0
    quantity: PositiveInt = 1


class Breakout(Strategy):
    """Channel breakout with an ATR stop."""

    Params = BreakoutParams
    params: BreakoutParams

    def setup(self) -> None:
        p = self.params
        self.warmup = max(p.lookback, p.atr_period) + 1
        self._high = RollingHigh(p.lookback)
        self._low = RollingLow(p.lookback)
        self._atr = ATR(p.atr_period)
        self._stop: float | None = None

    def on_tick(self, tick: MarketTick, ctx: Context) -> list[Signal] | None:
        price = tick.last_price
        # The channel is the *previous* lookback ticks: read it before adding this one.
        high, low = self._high.value, self._low.value
        self._high.update(price)
        self._low.update(price)
        atr = self._atr.update(price, price, price)
        if high is None or low is None or atr is None:
            return None
        held = ctx.position()
        if held > 0 and self._stop is None:
            # held with no stop: a restart (its replay shows the position held, not the
            # entry) or an exit refused. The stop is put back from what the entry filled at.
            entry = ctx.average_price()
            if entry is not None:
                self._stop = entry - self.params.atr_stop * atr
        if held == 0 and price > high and not ctx.past_exit:
            self._stop = price - self.params.atr_stop * atr
            return [ctx.buy(self.params.quantity, reason="broke above the channel")]
        if held > 0 and (price < low or (self._stop is not None and price <= self._stop)):
            self._stop = None
            return [ctx.sell(held, reason="channel low or ATR stop")]
        return None
