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

from alpha_panda.domain.clock import ist_date, ist_ns
from alpha_panda.domain.events import NO_CHARGES, OrderFilled
from alpha_panda.domain.values import Product, Side
from alpha_panda.portfolio.ledger import Position

_DAY_NS = 86_400 * 1_000_000_000


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
        self._fills: dict[tuple[str, int, Product], list[int]] = {}

    def roll(self, ts: int, last_prices: Mapping[int, int]) -> None:
        """Move to the IST day of ``ts`` (``ts >= day_hi``): today's fills start afresh and
        ``last_prices`` (every instrument's latest, all from before ``ts``'s day) become
        the prices before the day."""
        lo = day_start_ns(ts)
        self.day_lo, self.day_hi = lo, lo + _DAY_NS
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
        if fill.ts < self.day_lo:
            return
        key = (fill.strategy_id, fill.instrument_token, fill.product)
        figures = self._fills.get(key)
        if figures is None:
            figures = self._fills[key] = [0, 0, 0]
        signed = fill.quantity if fill.side is Side.BUY else -fill.quantity
        figures[0] += signed
        figures[1] -= signed * fill.price
        if fill.charges is not NO_CHARGES:
            figures[2] += fill.charges.total

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
