"""A slot: one strategy instance on one instrument, as the runner feeds it.

The runner keeps one per (strategy, instrument), so a strategy is written as if it sees one
instrument; a slot holds that instance, its context, the handler a tick calls (``on_bar``
first when the tick closes a bar, then ``on_tick``), its warm-up and its ``exit_at`` window.
Separate from ``runner`` as the per-slot data the runner, its exits and the backtest engine
(which inlines ``process``) share.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final

from alpha_panda.domain.events import MarketTick, Signal
from alpha_panda.domain.values import Product
from alpha_panda.strategy.bars import BarBuilder
from alpha_panda.strategy.base import CancelOrder, Context, Strategy

_NEVER: Final = 2**63 - 1

Handler = Callable[[MarketTick, Context], "Sequence[Signal | CancelOrder] | None"]


class _Slot:
    __slots__ = ("ctx", "exit_end", "exit_ns", "exit_stop", "exit_tried", "handler", "sid",
                 "strategy", "token", "warmup_left")

    def __init__(self, sid: str, token: int, strategy: Strategy, ctx: Context) -> None:
        self.sid = sid
        self.token = token
        self.strategy = strategy
        self.ctx = ctx
        self.handler: Handler = _handler_for(strategy)
        self.warmup_left = max(0, int(strategy.warmup))
        # Today's exit window (``StrategyRunner._exiting``): from the file's ``exit_at``,
        # orders closing until ``exit_stop`` (an MIS strategy's cut-off: the exchange squares
        # off after it), and until ``exit_end`` (midnight IST) nothing that opens. Without
        # ``exit_at``, never; with it, set by the first tick.
        self.exit_ns = _NEVER if ctx._book.exit_at is None else 0
        self.exit_stop = self.exit_end = 0
        # what the last exit orders closed (product, quantity), and when they were sent
        self.exit_tried: tuple[tuple[tuple[Product, int], ...], int] | None = None


def _handler_for(strategy: Strategy) -> Handler:
    if not type(strategy).uses_bars():
        return strategy.on_tick
    builder = BarBuilder(strategy.instrument_token, strategy.bar_interval())
    on_bar = strategy.on_bar
    on_tick = strategy.on_tick

    def handle(tick: MarketTick, ctx: Context) -> Sequence[Signal | CancelOrder] | None:
        bar = builder.update(tick.ts, tick.last_price, tick.last_quantity or tick.volume)
        from_bar = on_bar(bar, ctx) if bar is not None else None
        from_tick = on_tick(tick, ctx)
        if from_bar and from_tick:
            return [*from_bar, *from_tick]
        return from_bar or from_tick

    return handle
