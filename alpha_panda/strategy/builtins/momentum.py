"""``momentum``: buy after a strong rise over ``lookback`` ticks; exit on a fall.

Parameters: ``lookback`` (ticks, default 20), ``entry_bps`` (rise over the lookback
that triggers a buy while flat, default 20), ``exit_bps`` (fall over the lookback that
sells the whole position while long, below 10,000, default 10), ``quantity`` (default 1).
Warm-up: ``lookback + 1`` ticks. Returns are compared exactly in integers.
"""

from __future__ import annotations

from collections import deque

from pydantic import Field, PositiveInt

from alpha_panda.domain.events import MarketTick, Signal
from alpha_panda.strategy.base import Context, Strategy, StrategyParams


class MomentumParams(StrategyParams):
    lookback: PositiveInt = 20
    entry_bps: PositiveInt = 20
    exit_bps: int = Field(default=10, gt=0, lt=10_000)  # a fall of 100% is a price of 0
    quantity: PositiveInt = 1


class Momentum(Strategy):
    """Rate of change over ``lookback`` ticks, in basis points."""

    Params = MomentumParams
    params: MomentumParams

    def setup(self) -> None:
        self.warmup = self.params.lookback + 1
        self._past: deque[int] = deque(maxlen=self.params.lookback + 1)

    def on_tick(self, tick: MarketTick, ctx: Context) -> list[Signal] | None:
        price = tick.last_price
        self._past.append(price)
        if len(self._past) <= self.params.lookback:
            return None
        then = self._past[0]
        move = (price - then) * 10_000  # compared with bps * then: exact
        held = ctx.position()
        if held == 0 and move >= self.params.entry_bps * then and not ctx.past_exit:
            return [ctx.buy(self.params.quantity, reason="momentum up")]
        if held > 0 and move <= -self.params.exit_bps * then:
            return [ctx.sell(held, reason="momentum lost")]
        return None
