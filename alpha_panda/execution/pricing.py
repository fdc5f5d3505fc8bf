"""Fill prices and fill sizes: slippage (fixed bps, seeded jitter, book walk) and volume caps.

All pure functions of their arguments. Random draws are seeded from ``(seed, order_id,
fill number)`` through a stable hash, never Python's salted ``hash``, so a fill price
never depends on processing order or the process.
"""

from __future__ import annotations

import hashlib
import random
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from alpha_panda.domain.events import Depth, MarketTick
from alpha_panda.domain.values import TICK_SIZE_PAISE, Side

_BPS = Decimal(10_000)


def seeded_rng(seed: int, order_id: str, n: int = 0) -> random.Random:
    """A generator that depends only on (seed, order_id, n)."""
    digest = hashlib.blake2b(f"{seed}|{order_id}|{n}".encode(), digest_size=8).digest()
    return random.Random(int.from_bytes(digest, "big"))


def to_grid(price: Decimal, side: Side, tick: int = TICK_SIZE_PAISE) -> int:
    """Nearest price on the tick grid; a tie goes against the trader (up for a buy)."""
    steps = price / tick
    lower = int(steps.to_integral_value(rounding=ROUND_FLOOR))
    frac = steps - lower
    if frac > Decimal("0.5") or (frac == Decimal("0.5") and side is Side.BUY):
        lower += 1
    return max(lower * tick, tick)


def slipped(price: int, side: Side, bps: Decimal, tick: int = TICK_SIZE_PAISE) -> int:
    """``price`` moved ``bps`` basis points against the trader, onto the ``tick`` grid on
    the far side (a buy rounds up, a sell down): never less slippage than asked, even where
    ``bps`` is under a tick (2 bps of a Rs 300 share is 6 paise: a 10 paise move on a
    5 paise tick)."""
    if bps == 0:
        return price
    steps = Decimal(price) * (1 + side.sign * bps / _BPS) / tick
    rounding = ROUND_CEILING if side is Side.BUY else ROUND_FLOOR
    return max(int(steps.to_integral_value(rounding=rounding)) * tick, tick)


def depth_fills(depth: Depth | None, side: Side, quantity: int) -> list[tuple[int, int]]:
    """(quantity, price) taken level by level from the opposite side of the book, or [].

    A buy takes the offers (``depth.sell``), a sell the bids, best first. Quantity beyond
    the shown depth is assumed to trade at the last shown level (the book refills there).
    Every price is a book price, so every fill is on the tick grid.
    """
    if depth is None:
        return []
    levels = [lv for lv in (depth.sell if side is Side.BUY else depth.buy)
              if lv.price > 0 and lv.quantity > 0]
    out: list[tuple[int, int]] = []
    remaining = quantity
    for level in levels:
        take = min(remaining, level.quantity)
        out.append((take, level.price))
        remaining -= take
        if remaining == 0:
            return out
    if out:
        last_qty, last_price = out[-1]
        out[-1] = (last_qty + remaining, last_price)
    return out


def volume_share(tick: MarketTick, participation: Decimal | None) -> Decimal | None:
    """An order's exact share of ``tick``: participation × traded quantity; None = no cap.

    The traded quantity is the tick's ``last_quantity``, else its ``volume`` (what traded
    since the instrument's previous tick: ``MarketTick``), as the strategies' bars count it.
    A tick with neither does not cap (a price-only file: no traded quantity is known),
    unless it comes from a feed that reports trades (it carries the day's average price, as
    Kite's quote and full packets do): nothing traded there, and the order takes nothing.
    The order may take the whole shares of it, the fraction carried on to its next tick
    (``Order.volume_carry``): at 10% of trades of 5 shares it fills 1 share every other
    tick, where rounding each tick down would never fill it. Every order is capped
    independently (no queue between orders), which keeps fills independent of the order in
    which orders were processed.
    """
    if participation is None:
        return None
    traded = tick.last_quantity or tick.volume
    if traded <= 0:
        # (a Kite quote that only moved the book filled the whole order: it was uncapped)
        return None if tick.average_price is None else Decimal(0)
    return Decimal(traded) * participation
