"""``vwap_reversion``: buy when price is ``band_bps`` below the session VWAP; sell when
it is back at or above VWAP.

Parameters: ``band_bps`` (1 to 9,999, default 10), ``min_ticks`` (ticks of the session before
trading, default 20), ``quantity`` (default 1). VWAP resets every IST day; a tick weighs
what traded in it (``last_quantity`` when the feed gives it, else ``volume``), or 1 when its
feed reports no traded quantity at all (a price-only file); a Kite quote in which nothing
traded weighs nothing.
"""

from __future__ import annotations

from pydantic import Field, PositiveInt

from alpha_panda.domain.events import MarketTick, Signal
from alpha_panda.strategy.base import Context, Strategy, StrategyParams
from alpha_panda.strategy.indicators import VWAP

_DAY_NS = 86_400 * 1_000_000_000
_IST_NS = 19_800 * 1_000_000_000  # +05:30


class VwapReversionParams(StrategyParams):
    band_bps: int = Field(default=10, gt=0, lt=10_000)  # 100% below VWAP is a price of 0
    min_ticks: PositiveInt = 20
    quantity: PositiveInt = 1


class VwapReversion(Strategy):
    """Fade dips below the session VWAP."""

    Params = VwapReversionParams
    params: VwapReversionParams

    def setup(self) -> None:
        self.warmup = self.params.min_ticks
        self._vwap = VWAP()
        self._day = -1
        self._seen = 0

    def on_tick(self, tick: MarketTick, ctx: Context) -> list[Signal] | None:
        day = (tick.ts + _IST_NS) // _DAY_NS
        if day != self._day:
            self._day, self._seen = day, 0
            self._vwap.reset()
        self._seen += 1
        price = tick.last_price
        traded = tick.last_quantity or tick.volume
        if not traded and tick.average_price is None:
            traded = 1  # no volume known: every price alike
        vwap = self._vwap.update(price, traded)
        if vwap is None or self._seen < self.params.min_ticks:
            return None
        held = ctx.position()
        if (held == 0 and price * 10_000 < vwap * (10_000 - self.params.band_bps)
                and not ctx.past_exit):
            return [ctx.buy(self.params.quantity, reason="below VWAP band")]
        if held > 0 and price >= vwap:
            return [ctx.sell(held, reason="back at VWAP")]
        return None
