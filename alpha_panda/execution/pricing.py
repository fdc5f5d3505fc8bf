"""Fill prices and fill sizes: slippage (fixed bps, seeded jitter, depth walk) and volume caps.

All pure functions of their arguments. Random draws are seeded from ``(seed, order_id,
fill number)`` through a stable hash, never Python's salted ``hash``, so a fill price
never depends on processing order or the process.
"""

from __future__ import annotations

import hashlib
import random
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal

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


def slipped(price: int, side: Side, bps: Decimal) -> int:
    """``price`` moved ``bps`` basis points against the trader, back on the tick grid."""
    if bps == 0:
        return price
    factor = 1 + side.sign * bps / _BPS
    return to_grid(Decimal(price) * factor, side)


def depth_price(depth: Depth | None, side: Side, quantity: int) -> int | None:
    """Average price of walking the opposite side of the book for ``quantity``, or None.

    A buy takes the offers (``depth.sell``), a sell the bids. Quantity beyond the shown
    depth is assumed to trade at the last shown level. Rounded half up, against the trader.
    """
    if depth is None:
        return None
    levels = depth.sell if side is Side.BUY else depth.buy
    levels = tuple(lv for lv in levels if lv.price > 0 and lv.quantity > 0)
    if not levels:
        return None
    remaining, cost = quantity, 0
    for level in levels:
        take = min(remaining, level.quantity)
        cost += take * level.price
        remaining -= take
        if remaining == 0:
            break
    cost += remaining * levels[-1].price
    avg = Decimal(cost) / quantity
    rounding = ROUND_HALF_UP
    whole = int(avg.to_integral_value(rounding=rounding))
    if side is Side.SELL and Decimal(whole) > avg:
        whole -= 1  # a seller's average rounds down: never better than the book gave
    return whole


def volume_cap(tick: MarketTick, participation: Decimal | None) -> int | None:
    """Most this order may take from ``tick``: participation × traded quantity; None = no cap.

    The traded quantity is the tick's ``last_quantity``; a tick without it does not cap.
    Every order is capped independently (no queue between orders), which keeps fills
    independent of the order in which orders were processed.
    """
    if participation is None or tick.last_quantity <= 0:
        return None
    return int((Decimal(tick.last_quantity) * participation).to_integral_value(rounding=ROUND_FLOOR))
