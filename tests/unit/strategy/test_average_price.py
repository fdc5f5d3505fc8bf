"""``ctx.average_price()``: the average price of what is filled, as Kite's position average,
kept from the fills (so a restart has it), and ``breakout``'s ATR stop put back from it."""

from __future__ import annotations

from typing import Any

from alpha_panda.domain.events import MarketTick, OrderFilled, derive_id
from alpha_panda.domain.values import Product, Side
from alpha_panda.strategy.base import Context, _Book
from alpha_panda.strategy.builtins.breakout import Breakout, BreakoutParams
from alpha_panda.strategy.config import config_from_mapping
from alpha_panda.strategy.runner import StrategyRunner

TOKEN = 9


def fill(n: int, side: Side, qty: int, price: int) -> OrderFilled:
    order_id = f"o{n}"
    return OrderFilled(order_id=order_id, fill_id=derive_id(order_id, "fill", 0),
                       strategy_id="s", instrument_token=TOKEN, side=side, quantity=qty,
                       price=price, cumulative_quantity=qty, leaves_quantity=0,
                       average_price=price, product=Product.MIS, ts=n)


def test_fills_that_add_are_averaged_in_those_that_reduce_leave_it() -> None:
    runner = StrategyRunner([config_from_mapping(
        {"id": "s", "strategy": "sma_cross", "instruments": [TOKEN]})])
    ctx = runner._slots["s"][0].ctx
    seen: list[Any] = []
    for n, (side, qty, price) in enumerate([
        (Side.BUY, 1, 100_00), (Side.BUY, 2, 100_05),  # 300.10 for 3: ₹100.0333
        (Side.SELL, 2, 101_00),                        # reduced: the same
        (Side.SELL, 3, 99_00),                         # reversed: short 2 at ₹99
        (Side.SELL, 2, 98_00),                         # short 4 at ₹98.50
        (Side.BUY, 4, 97_00),                          # flat
    ]):
        runner.on_fill(fill(n, side, qty, price))
        seen.append((ctx.filled(), ctx.average_price()))
    assert seen == [(1, 100_00), (3, 100_03), (1, 100_03), (-2, 99_00), (-4, 98_50),
                    (0, None)]


def test_breakout_puts_its_atr_stop_back_from_the_average_price() -> None:
    # As after a restart: the replay shows the strategy the long 1 it held, never its entry
    # at ₹11.00, so it kept no stop and sold only at the channel's low. On a market rising
    # 5 paise a tick (ATR 5 paise), atr_stop 2 puts the stop at ₹10.90: the fall to ₹10.85
    # sells, well above the 20 ticks' low of ₹10.25.
    book = _Book("s", 0)
    book.positions[TOKEN] = book.filled[TOKEN] = 1
    book.average[TOKEN] = 11_00
    ctx = Context(book, TOKEN)
    strategy = Breakout(BreakoutParams(lookback=20, atr_period=3, atr_stop=2.0), TOKEN)
    out = [strategy.on_tick(MarketTick(instrument_token=TOKEN, last_price=p, ts=k), ctx)
           for k, p in enumerate([10_00 + 5 * k for k in range(25)] + [10_85])]
    assert [k for k, o in enumerate(out) if o] == [25]
    (sell,) = out[25] or []
    assert (sell.side, sell.quantity) == (Side.SELL, 1)
