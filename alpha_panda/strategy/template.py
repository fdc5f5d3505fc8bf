"""The commented starting point ``alpha-panda strategy new NAME`` writes."""

from __future__ import annotations

import keyword
from string import Template

STRATEGY_PY = Template('''\
"""$title: describe the idea in one line here.

Run it:   alpha-panda backtest --strategy $name.yaml --data ticks.csv
Live:     put $name.yaml (and this file) in the strategies folder of `alpha-panda run`.
"""

from __future__ import annotations

from pydantic import PositiveInt

from alpha_panda.domain.events import MarketTick, Signal
from alpha_panda.strategy import (
    CancelOrder, Context, OrderType, Side, Strategy, StrategyParams,
)
from alpha_panda.strategy.indicators import SMA


class $cls(Strategy):
    """Buy when the price is above its moving average; sell everything when it drops below."""

    class Params(StrategyParams):
        # Typed, validated when the YAML is loaded: a typo or a wrong type is an error
        # naming the file and the field, before anything runs.
        period: PositiveInt = 20
        quantity: PositiveInt = 1

    params: Params

    def setup(self) -> None:
        # One instance per instrument: keep per-instrument state on self.
        # Signals of the first ``warmup`` ticks are dropped: the average has its first value
        # on tick ``period``, and a signal there counts.
        self.warmup = self.params.period - 1
        self.average = SMA(self.params.period)

    def on_tick(self, tick: MarketTick, ctx: Context) -> list[Signal | CancelOrder] | None:
        # Pure: read the tick, your own state and ctx (filled, pending, open_orders, cash,
        # now_ns); no I/O. Prices are int paise (2500.05 rupees == 250005).
        mean = self.average.update(tick.last_price)
        if mean is None:
            return None
        if ctx.pending():  # an order on its way, or resting: wait to hear how it ends
            if tick.last_price < mean:  # a buy still resting is no longer wanted (its sell is)
                return [ctx.cancel(o) for o in ctx.open_orders() if o.side is Side.BUY]
            return None
        held = ctx.filled()  # what has filled (bracket exits and square-offs included)
        # (an intraday strategy, product: MIS, opens nothing from its exit_at, 15:15 by default)
        if held == 0 and tick.last_price > mean and not ctx.past_exit:
            # A market buy. A limit buy a tick under the market instead rests until the
            # price comes down to it (cancelled above if the price drops under the average
            # first). Its price must be on the exchange's grid, a multiple of
            # ctx.tick_size() (NSE's tick for this instrument today, from its previous
            # close or first price):
            # t = ctx.tick_size()
            # return [ctx.buy(self.params.quantity, order_type=OrderType.LIMIT,
            #                 limit_price=(tick.last_price // t - 1) * t)]
            return [ctx.buy(self.params.quantity, reason="above the average")]
        if held > 0 and tick.last_price < mean:
            return [ctx.sell(held, reason="below the average")]
        # Stop-loss / take-profit brackets (a buy's stop below the entry, its target above):
        # ctx.buy(q, stop_loss=p1, take_profit=p2).
        return None

    # Bars instead of ticks: define on_bar(self, bar, ctx) and set bar_seconds = 60
    # on the class (or a bar_seconds parameter in Params).
''')

STRATEGY_YAML = Template('''\
# $title: the strategy's configuration (one schema for files and the database).
id: "$name"
strategy: $name.py:$cls     # a built-in name, package.module:Class, or file.py:Class
instruments: [738561, 341249] # instrument tokens (RELIANCE, HDFCBANK)
brokers: [paper]              # paper, zerodha, or both (live needs an explicit switch)
params: {period: 20, quantity: 1}
risk: {max_position: 10}      # optional per-strategy limits
execution:                    # paper / backtest simulation
  costs: true                 # Zerodha charges on every fill
  slippage_bps: 0
  latency_ms: 0
''')


_TAKEN = frozenset({"CancelOrder", "Context", "MarketTick", "OrderType", "Side", "Signal",
                    "Strategy", "StrategyParams"})
"""Names the template's code uses at module level: a class of one of them would hide it."""


def class_name(name: str) -> str:
    """``my_breakout`` -> ``MyBreakout``; ``none`` -> ``NoneStrategy`` (``None`` is no class
    name), ``side`` -> ``SideStrategy`` (the code compares with ``Side``)."""
    cls = "".join(part.capitalize() for part in name.replace("-", "_").split("_") if part)
    return f"{cls}Strategy" if keyword.iskeyword(cls) or cls in _TAKEN else cls


def render(name: str) -> tuple[str, str]:
    """The template's Python module and YAML config for strategy ``name``."""
    values = {"name": name, "cls": class_name(name), "title": name.replace("_", " ").title()}
    return STRATEGY_PY.substitute(values), STRATEGY_YAML.substitute(values)
