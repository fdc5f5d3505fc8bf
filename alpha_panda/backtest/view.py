"""A mutable stand-in for ``MarketTick`` that the backtest reuses for every row."""

from __future__ import annotations

from alpha_panda.domain.events import Depth


class TickView:
    """Has every ``MarketTick`` attribute; the engine overwrites it row by row.

    A strategy that stores ticks declares ``keeps_ticks = True`` and then gets real
    ``MarketTick`` objects; one that keeps a view without saying so keeps that view (the
    engine sees it referred to after the call and takes a new one for the next row).
    """

    __slots__ = (
        "average_price",
        "buy_quantity",
        "change",
        "close",
        "depth",
        "high",
        "instrument_token",
        "last_price",
        "last_quantity",
        "low",
        "oi",
        "open",
        "price_e4",
        "sell_quantity",
        "tradable",
        "ts",
        "volume",
    )

    def __init__(self) -> None:
        self.instrument_token = 0
        self.last_price = 0
        self.ts = 0
        self.volume = 0
        self.last_quantity = 0
        self.average_price: int | None = None
        self.open: int | None = None
        self.high: int | None = None
        self.low: int | None = None
        self.close: int | None = None
        self.change: float | None = None
        self.oi: int | None = None
        self.buy_quantity: int | None = None
        self.sell_quantity: int | None = None
        self.depth: Depth | None = None
        self.tradable = True
        self.price_e4: int | None = None
