"""Charges of the paper exchange's CNC fills: same-day netting and the DP charge.

Zerodha charges a CNC buy and a CNC sell of one stock on one day that net off as an
*intraday* trade (equity-intraday rates: STT on the sell only, the lower stamp duty,
brokerage of 0.03% capped per order) and only the quantity that does not net off at
delivery rates. A day on which more is sold than bought sells from holdings (bought on an
earlier day, BTST included) and pays the DP charge once for the scrip, whatever the
quantity and the number of sells. So a day's charges are known only at its end, while each
fill is an immutable event that carries its charges when it happens.

``CncNetting`` keeps a book per (strategy, instrument, IST day) of the day's CNC fills and
charges each fill the book's charges *with* it minus *without* it, item by item. The
book's charges are a function of its set of fills alone:

- its fills in event-time order (ts, order id, fill number); on each side the first
  ``min(bought, sold)`` shares are intraday, the rest delivery;
- each order pays ``CostModel.order_charges`` at intraday rates on its intraday turnover
  plus at delivery rates on its delivery turnover; one with both parts pays intraday
  brokerage (per order, as on a contract note) on the whole order, as Zerodha charges an
  order that nets off in part;
- plus the DP charge (GST included) when the day sold more than it bought.

Consequences:

- A buy is charged delivery rates when it fills; the sell that nets it off later that day
  pays its own intraday charges *and gives back* the buy's delivery STT and stamp duty
  above the intraday ones (so its ``stt`` and ``stamp_duty`` may be negative), and pays
  the buy order's intraday brokerage. A buy and a sell that net off in full cost exactly
  an MIS round trip of the same orders, to the paisa.
- An order's fills add up to the order's own charges (``fill_charges``) as long as no
  fill of the other side that day nets against it; once one does, the difference rides on
  that fill. The fills of a book always add up to the book's charges.
- The book's charges do not depend on the order fills are processed in. The books are
  the exchange's own state, rebuilt as the rest of it is: the paper engine replays its
  inputs at start (every tick, then the signals), the books end with the same fills, and
  what follows is charged as it would have been without the restart. Each fill's *share*
  does depend on that order when fills of one book are processed out of event-time order
  (a lagging engine): the later-processed fill carries the difference. The same inputs
  in the same order always give the same charges.
- The netting unit is a strategy, each strategy being its own book here; Zerodha nets per
  account (two strategies trading one stock on one day would net against each other
  there, and pay one DP charge). MIS fills are charged at intraday rates already and are
  not netted against CNC ones.

A book is dropped when a book of its strategy and instrument more than ``DAYS_KEPT`` days
later begins (fills reach the exchange at most a session out of time order); a fill dated
on a dropped day would be charged as that day's first. Fills that come in event-time order
on their side (the usual case) cost O(1) plus the orders whose split changed; one that
comes before a later fill of its side splits that side again.
"""

from __future__ import annotations

from bisect import insort
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import msgspec

from alpha_panda.domain.events import Charges
from alpha_panda.domain.values import Side
from alpha_panda.execution.costs import CostModel, Segment

__all__ = ["DAYS_KEPT", "CncNetting"]

DAYS_KEPT = 7
"""A book is dropped when one of its strategy and instrument more than this many days later
begins."""

_ITEMS = ("brokerage", "stt", "exchange_txn", "sebi", "stamp_duty", "gst", "dp")
_INTRADAY = Segment.EQUITY_INTRADAY
_DELIVERY = Segment.EQUITY_DELIVERY


@dataclass(slots=True)
class _Side:
    """One side of a book: its fills in event-time order, the first min(bought, sold)
    shares of which are intraday; ``cursor``/``into``: the first lot not wholly intraday,
    and how much of it is."""

    buy: bool
    lots: list[tuple[int, str, int, int, int]] = field(default_factory=list)
    # (ts, order id, fill number, quantity, price)
    shares: int = 0
    cursor: int = 0
    into: int = 0


@dataclass(slots=True)
class _DayBook:
    """One strategy's CNC fills of one instrument on one IST day."""

    buys: _Side = field(default_factory=lambda: _Side(True))
    sells: _Side = field(default_factory=lambda: _Side(False))
    # order id -> [is buy, intraday turnover, delivery turnover]
    parts: dict[str, list[Any]] = field(default_factory=dict)
    charges: dict[str, Charges] = field(default_factory=dict)  # order id -> at its parts


class CncNetting:
    """Charges of CNC fills, netted per (strategy, instrument, IST day). Pure."""

    def __init__(self, costs: CostModel, exchange: str = "NSE") -> None:
        self._costs = costs
        self._exchange = exchange
        self._dp = costs.dp_charge(_DELIVERY)
        self._books: dict[tuple[str, int], dict[date, _DayBook]] = {}

    def fill_charges(
        self, strategy_id: str, instrument_token: int, day: date, order_id: str, n: int,
        side: Side, quantity: int, price: int, ts: int,
    ) -> Charges:
        """Charges of fill ``n`` of a CNC order: the day's book with it minus without it."""
        book = self._book(strategy_id, instrument_token, day)
        buys, sells = book.buys, book.sells
        dp_before = sells.shares > buys.shares
        netted = min(buys.shares, sells.shares)
        own = buys if side is Side.BUY else sells
        lot = (ts, order_id, n, quantity, price)
        changed = {order_id}
        part = book.parts.get(order_id)
        if part is None:
            part = book.parts[order_id] = [own.buy, 0, 0]
        own.shares += quantity
        if not own.lots or own.lots[-1] <= lot:
            own.lots.append(lot)
            part[2] += quantity * price
            more = min(buys.shares, sells.shares) - netted
            if more:
                self._net(book, buys, more, changed)
                self._net(book, sells, more, changed)
        else:  # a fill processed after a later one of its side: split the side again
            insort(own.lots, lot)
            self._resplit(book, own, min(buys.shares, sells.shares), changed)
            other = sells if own is buys else buys
            self._net(book, other, min(buys.shares, sells.shares) - netted, changed)
        delta = dict.fromkeys(_ITEMS, 0)
        for oid in changed:
            is_buy, intraday, delivery = book.parts[oid]
            new = self._order_charges(is_buy, intraday, delivery)
            old = book.charges.get(oid)
            book.charges[oid] = new
            for item in _ITEMS:
                delta[item] += getattr(new, item) - (getattr(old, item) if old else 0)
        dp_after = sells.shares > buys.shares
        if dp_after != dp_before:
            delta["dp"] += self._dp if dp_after else -self._dp
        return Charges(**delta)

    def _book(self, strategy_id: str, instrument_token: int, day: date) -> _DayBook:
        days = self._books.setdefault((strategy_id, instrument_token), {})
        book = days.get(day)
        if book is None:
            book = days[day] = _DayBook()
            horizon = day - timedelta(days=DAYS_KEPT)
            for old in [d for d in days if d < horizon]:
                del days[old]
        return book

    @staticmethod
    def _net(book: _DayBook, side: _Side, shares: int, changed: set[str]) -> None:
        """Make the side's next ``shares`` delivery shares, in event-time order, intraday."""
        lots, parts = side.lots, book.parts
        while shares:
            _, oid, _, qty, price = lots[side.cursor]
            k = min(qty - side.into, shares)
            part = parts[oid]
            part[1] += k * price
            part[2] -= k * price
            changed.add(oid)
            shares -= k
            side.into += k
            if side.into == qty:
                side.cursor += 1
                side.into = 0

    @staticmethod
    def _resplit(book: _DayBook, side: _Side, netted: int, changed: set[str]) -> None:
        """Split the side afresh: its first ``netted`` shares intraday, the rest delivery."""
        parts = book.parts
        for _, oid, _, _, _ in side.lots:
            parts[oid][1] = parts[oid][2] = 0
            changed.add(oid)
        side.cursor = side.into = 0
        for _, oid, _, qty, price in side.lots:
            parts[oid][2] += qty * price
        CncNetting._net(book, side, netted, changed)

    def _order_charges(self, buy: bool, intraday: int, delivery: int) -> Charges:
        side = Side.BUY if buy else Side.SELL
        costs, exchange = self._costs, self._exchange
        a = costs.order_charges(_INTRADAY, side, intraday, exchange)
        if not delivery:
            return a
        b = costs.order_charges(_DELIVERY, side, delivery, exchange)
        if not intraday:
            return b
        # An order that nets off in part pays intraday brokerage on the whole order, as
        # Zerodha charges it ("for both orders, regardless of the quantity bought back":
        # 50 held shares sold at ₹1,500 and 25 bought back pay ₹20 on the sell, not 0.03%
        # of the 25 netted, ₹11.25); its STT and stamp duty stay split by what nets off.
        whole = costs.order_charges(_INTRADAY, side, intraday + delivery, exchange)
        return msgspec.structs.replace(
            whole, stt=a.stt + b.stt, stamp_duty=a.stamp_duty + b.stamp_duty)
