"""The day's P&L: what the account, each strategy and each position made since the
market's current IST day began, exact to the paisa (what Kite shows as "Day's P&L").

For a position, over the day:

    day P&L = Σ today's fills' cash (sells − buys) − today's charges
              + quantity now × mark − quantity at the day's start × reference

The quantity at the day's start is the quantity now less today's fills. Its reference is
the previous close as the day's ticks state it (``MarketTick.close``, as Kite's do),
else the instrument's last price before the day (a replay file without closes), else
its mark (nothing known from before the day: the carried part shows no move).

Which day is "today" follows event time, never the wall clock: the latest IST day an
event of the market's time was seen on (a replay of April shows April's last day). The
figures do not depend on the order ticks and fills are read in, as long as each
instrument's ticks come in their order: a fill is counted by its own time, and a tick
from before the day (a rebuild reads one partition after another) only tells the
instrument's last price before it. So the rebuilt figures equal the live ones.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import time

from alpha_panda.domain.clock import DAY_NS, ist_date, ist_day_number, ist_ns
from alpha_panda.domain.events import NO_CHARGES, OrderFilled
from alpha_panda.domain.values import Product, Side
from alpha_panda.portfolio.ledger import Position

_Figures = dict[tuple[str, int, Product], list[int]]
"""(strategy, token, product) -> [signed quantity, cash, charges] of a day's fills."""


def _add_fill(figures: _Figures, fill: OrderFilled) -> None:
    key = (fill.strategy_id, fill.instrument_token, fill.product)
    f = figures.get(key)
    if f is None:
        f = figures[key] = [0, 0, 0]
    signed = fill.quantity if fill.side is Side.BUY else -fill.quantity
    f[0] += signed
    f[1] -= signed * fill.price
    if fill.charges is not NO_CHARGES:
        f[2] += fill.charges.total


def day_start_ns(ts: int) -> int:
    """The start (00:00 IST) of the IST day ``ts`` falls on, in ns."""
    return ist_ns(ist_date(ts), time(0, 0))


class DayBook:
    """Today's fills per position and each instrument's reference price for the day."""

    __slots__ = ("_before", "_fills", "closes", "day_hi", "day_lo")

    def __init__(self) -> None:
        self.day_lo = 0  # [day_lo, day_hi): the current IST day, in ns (none yet: empty)
        self.day_hi = 0
        self._before: dict[int, int] = {}  # token → last price before the day
        # token → previous close, as the day's first tick says (None: it says none)
        self.closes: dict[int, int | None] = {}
        # (strategy, token, product) → [signed quantity, cash of the fills, charges] today
        self._fills: _Figures = {}

    def roll(self, ts: int, last_prices: Mapping[int, int]) -> None:
        """Move to the IST day of ``ts`` (``ts >= day_hi``): today's fills start afresh and
        ``last_prices`` (every instrument's latest, all from before ``ts``'s day) become
        the prices before the day."""
        lo = day_start_ns(ts)
        self.day_lo, self.day_hi = lo, lo + DAY_NS
        # (cleared in place: the projector's tick loop holds ``closes``)
        self._before.clear()
        self._before.update(last_prices)
        self.closes.clear()
        self._fills.clear()

    def on_tick(self, token: int, price: int, close: int | None, ts: int) -> None:
        """A tick at ``ts < day_hi`` (roll first otherwise)."""
        if ts < self.day_lo:
            self._before[token] = price  # an earlier day's, read late
        elif token not in self.closes:
            self.closes[token] = close

    def on_fill(self, fill: OrderFilled) -> None:
        """A fill at ``fill.ts < day_hi`` (roll first otherwise); an earlier day's counts in
        the quantity the day started with, so it is not today's."""
        if fill.ts >= self.day_lo:
            _add_fill(self._fills, fill)

    def reference(self, token: int) -> int | None:
        """The price the day's start is valued at: the previous close, else the last price
        before the day (None: neither is known)."""
        close = self.closes.get(token)
        return close if close is not None else self._before.get(token)

    def position_pnl(self, p: Position) -> int:
        """The day's P&L of one position, in paise."""
        figures = self._fills.get((p.strategy_id, p.instrument_token, p.product))
        signed, cash, charges = figures if figures is not None else (0, 0, 0)
        mark = p.mark_price
        carried = p.quantity - signed
        if carried:
            reference = self.reference(p.instrument_token)
            start = carried * (reference if reference is not None else mark)
        else:
            start = 0
        return cash - charges + p.quantity * mark - start

    def pnl(self, positions: Iterable[Position]) -> int:
        """The day's P&L of a set of positions (a strategy's, the account's)."""
        return sum(self.position_pnl(p) for p in positions)


MAX_DAYS = 90
"""Days of P&L by day ``DayHistory`` keeps."""


class DayHistory:
    """P&L by day, each day's as ``DayBook`` states the current one's, exact to the paisa
    and independent of the order ticks and fills are read in (each instrument's ticks in
    order): what each day's fills did, and each instrument's last price of each day and
    the close its first tick of a day stated.

    The projector feeds it the prices of the current day in bulk (``day_prices``, as it
    marks the ledger), an earlier day's tick one by one (``late_tick``), a new day
    (``roll``, with the closes the past day's ticks stated) and every booked fill.
    """

    __slots__ = ("_carried", "_fills", "_keep", "_lasts", "_refs", "today", "today_refs")

    def __init__(self, today_refs: Mapping[int, int | None], keep: int = MAX_DAYS) -> None:
        """``today_refs``: the current day's stated closes (``DayBook.closes``, kept there)."""
        self.today: int | None = None  # the current IST day (``ist_day_number``)
        self.today_refs = today_refs
        self._keep = keep
        self._lasts: dict[int, dict[int, int]] = {}  # day -> token -> its last price then
        self._carried: dict[int, int] = {}  # token -> its last price before the days kept
        self._refs: dict[int, dict[int, int | None]] = {}  # day -> token -> close stated
        # day -> (strategy, token, product) -> [signed quantity, cash, charges]
        self._fills: dict[int, _Figures] = {}

    def roll(self, day: int) -> None:
        """The current day becomes ``day`` (before ``DayBook.roll`` clears its closes: the
        past day's are kept here)."""
        if self.today is not None:
            refs = self._refs.setdefault(self.today, {})
            for token, close in self.today_refs.items():
                refs.setdefault(token, close)
        self.today = day
        self._lasts.setdefault(day, {})
        self._forget(day - self._keep + 1)  # the latest ``keep`` days, this one included

    def day_prices(self) -> dict[int, int]:
        """The current day's last price by token, for the projector to update in bulk."""
        assert self.today is not None
        return self._lasts[self.today]

    def late_tick(self, token: int, price: int, close: int | None, ts: int) -> None:
        """A tick of an earlier day than the current one (a rebuild reads one partition
        after another)."""
        day = ist_day_number(ts)
        if self._gone(day):
            self._carried[token] = price  # before the days kept: where they start from
            return
        self._lasts.setdefault(day, {})[token] = price
        self._refs.setdefault(day, {}).setdefault(token, close)

    def on_fill(self, fill: OrderFilled) -> None:
        """A fill booked (once: the ledger's fill ids decide)."""
        number = ist_day_number(fill.ts)
        if not self._gone(number):  # (else in the quantity the days kept start with)
            _add_fill(self._fills.setdefault(number, {}), fill)

    def _gone(self, day: int) -> bool:
        """Whether ``day`` is before the days kept (a rebuild reads it after the roll)."""
        return self.today is not None and day <= self.today - self._keep

    def _forget(self, before: int) -> None:
        """Drop the days before ``before``; their last prices are what the days kept start
        from."""
        for d in sorted(d for d in self._lasts if d < before):
            self._carried.update(self._lasts.pop(d))
        for d in [d for d in self._refs if d < before]:
            del self._refs[d]
        for d in [d for d in self._fills if d < before]:
            del self._fills[d]

    def pnl(self, positions: Iterable[Position]) -> dict[int, dict[str | None, int]]:
        """Each day's net P&L (oldest first), of the account (None) and of each strategy
        that held or traded that day. The current day's is ``DayBook.pnl``'s."""
        days = sorted(d for d in set(self._lasts) | set(self._fills)
                      if self.today is None or d <= self.today)
        if not days:
            return {}
        # each token's last price on or before each day (carried over days without a tick)
        known = dict(self._carried)
        close_at: dict[int, dict[int, int]] = {}
        for d in days:
            known.update(self._lasts.get(d, {}))
            close_at[d] = dict(known)
        out: dict[int, dict[str | None, int]] = {d: {} for d in days}
        for p in positions:
            key = (p.strategy_id, p.instrument_token, p.product)
            token = p.instrument_token
            end = p.quantity  # at the end of the day in hand, going back from now
            for i in range(len(days) - 1, -1, -1):
                d = days[i]
                figures = self._fills.get(d, {}).get(key)
                signed, cash, charges = figures if figures is not None else (0, 0, 0)
                start = end - signed
                if end or start or figures is not None:
                    last = p.mark_price if d == self.today else close_at[d].get(
                        token, p.mark_price)
                    ref = (self.today_refs if d == self.today else self._refs.get(d, {})).get(token)
                    if ref is None:
                        ref = (close_at[days[i - 1]] if i else self._carried).get(token)
                    if ref is None:
                        ref = last  # nothing known from before the day: no move
                    made = cash - charges + end * last - start * ref
                    figures_of = out[d]
                    figures_of[None] = figures_of.get(None, 0) + made
                    figures_of[p.strategy_id] = figures_of.get(p.strategy_id, 0) + made
                end = start
        return {d: f for d, f in out.items() if f}
