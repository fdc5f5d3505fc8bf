"""Test helpers: the CNC charges of paper fills, per (strategy, instrument, IST day) book.

A CNC fill's charges depend on the same day's CNC fills of the other side processed before
it (``alpha_panda.execution.netting``), so when fills of one book are processed out of
event-time order each fill's share can differ while the book's total cannot. These
helpers compare fills with the CNC charges taken off, and the CNC charges book by book.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

import msgspec

from alpha_panda.domain.clock import ist_date
from alpha_panda.domain.events import NO_CHARGES, Charges, OrderFilled, Payload
from alpha_panda.domain.values import Product, Side
from alpha_panda.execution.costs import CostModel, Segment

ITEMS = ("brokerage", "stt", "exchange_txn", "sebi", "stamp_duty", "gst", "dp")
Book = tuple[str, int, date]


def add(a: Charges, b: Charges) -> Charges:
    return Charges(**{k: getattr(a, k) + getattr(b, k) for k in ITEMS})


def without_cnc_charges(events: Iterable[Payload]) -> list[Payload]:
    """The events, each CNC fill's charges taken off."""
    return [msgspec.structs.replace(e, charges=NO_CHARGES)
            if isinstance(e, OrderFilled) and e.product is Product.CNC else e for e in events]


def cnc_books(events: Iterable[Payload]) -> dict[Book, Charges]:
    """The CNC fills' charges summed item by item per book."""
    books: dict[Book, Charges] = {}
    for e in events:
        if isinstance(e, OrderFilled) and e.product is Product.CNC:
            key = (e.strategy_id, e.instrument_token, ist_date(e.ts))
            books[key] = add(books.get(key, NO_CHARGES), e.charges)
    return books


def expected_cnc_books(events: Iterable[Payload], costs: CostModel) -> dict[Book, Charges]:
    """What each book must cost, computed from its fills as a set: on each side the day's
    first min(bought, sold) shares in event-time order are intraday, the rest delivery;
    each order pays its intraday and its delivery part, one with both intraday brokerage on
    the whole order; DP once if the day sold more."""
    lots: dict[Book, list[OrderFilled]] = {}
    for e in events:
        if isinstance(e, OrderFilled) and e.product is Product.CNC:
            lots.setdefault((e.strategy_id, e.instrument_token, ist_date(e.ts)), []).append(e)
    out: dict[Book, Charges] = {}
    for key, fills in lots.items():
        fills.sort(key=lambda f: (f.ts, f.order_id, f.cumulative_quantity))
        bought = sum(f.quantity for f in fills if f.side is Side.BUY)
        sold = sum(f.quantity for f in fills if f.side is Side.SELL)
        left = {Side.BUY: min(bought, sold), Side.SELL: min(bought, sold)}
        parts: dict[str, tuple[Side, int, int]] = {}
        for f in fills:
            k = min(f.quantity, left[f.side])
            left[f.side] -= k
            _, intraday, delivery = parts.get(f.order_id, (f.side, 0, 0))
            parts[f.order_id] = (f.side, intraday + k * f.price,
                                 delivery + (f.quantity - k) * f.price)
        total = Charges(dp=costs.dp_charge() if sold > bought else 0)
        for side, intraday, delivery in parts.values():
            a = costs.order_charges(Segment.EQUITY_INTRADAY, side, intraday)
            b = costs.order_charges(Segment.EQUITY_DELIVERY, side, delivery)
            if intraday and delivery:  # intraday brokerage (and GST) on the whole order
                whole = costs.order_charges(Segment.EQUITY_INTRADAY, side, intraday + delivery)
                total = add(total, Charges(
                    brokerage=whole.brokerage, stt=a.stt + b.stt, exchange_txn=whole.exchange_txn,
                    sebi=whole.sebi, stamp_duty=a.stamp_duty + b.stamp_duty, gst=whole.gst))
            else:
                total = add(add(total, a), b)
        out[key] = total
    return out
