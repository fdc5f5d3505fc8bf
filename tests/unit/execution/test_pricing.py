"""Slippage onto the tick grid, seeded draws, volume caps."""

from __future__ import annotations

from decimal import Decimal

from alpha_panda.domain.events import MarketTick
from alpha_panda.domain.values import Side
from alpha_panda.execution.pricing import seeded_rng, slipped, to_grid, volume_share


def test_to_grid_ties_go_against_the_trader() -> None:
    assert to_grid(Decimal(100025), Side.BUY) == 100025
    assert to_grid(Decimal("1002.5"), Side.BUY) == 1005
    assert to_grid(Decimal("1002.5"), Side.SELL) == 1000
    assert to_grid(Decimal(1), Side.SELL) == 5  # never below one tick


def test_slipped_moves_against_the_trader() -> None:
    assert slipped(2000_00, Side.BUY, Decimal(10)) == 2002_00
    assert slipped(2000_00, Side.SELL, Decimal(10)) == 1998_00
    assert slipped(2000_00, Side.BUY, Decimal(0)) == 2000_00
    # off the grid: rounded against the trader, never to less slippage than asked
    assert slipped(100_00, Side.BUY, Decimal(2)) == 100_05  # 2 paise asked, a tick taken
    assert slipped(100_00, Side.SELL, Decimal(2)) == 99_95
    assert slipped(2510_00, Side.SELL, Decimal(7)) == 2508_20  # 2508.243 down, not up
    assert slipped(2510_00, Side.BUY, Decimal(7)) == 2511_80  # 2511.757 up
    assert slipped(5, Side.SELL, Decimal(9000)) == 5  # never below one tick


def test_seeded_draws_depend_only_on_seed_and_order() -> None:
    a = [seeded_rng(1, "order-x", n).random() for n in range(3)]
    assert a == [seeded_rng(1, "order-x", n).random() for n in range(3)]
    assert a != [seeded_rng(2, "order-x", n).random() for n in range(3)]


def test_volume_share() -> None:
    tick = MarketTick(instrument_token=1, last_price=100, ts=0, last_quantity=47)
    assert volume_share(tick, Decimal("0.1")) == Decimal("4.7")
    assert volume_share(tick, None) is None
    assert volume_share(MarketTick(instrument_token=1, last_price=100, ts=0), Decimal("0.1")) is None


def test_a_tick_from_a_feed_of_trades_that_traded_nothing_caps_at_nothing() -> None:
    # A Kite quote (it carries the day's average price) that only moved the book: nothing
    # traded, so an order capped by participation takes nothing there. It filled in full,
    # uncapped, as a price-only tick (no traded quantity known) does.
    book_only = MarketTick(instrument_token=1, last_price=100, ts=0, average_price=99)
    assert volume_share(book_only, Decimal("0.1")) == Decimal(0)
